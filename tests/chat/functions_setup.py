"""Helpers for the function-calling tests: registry functions and assistant definitions made in
a live server's database, a real webhook receiver, and reading an answer until it waits."""

from __future__ import annotations

import html
import json
import re
import secrets
from typing import Any

from tests.chat.conftest import ChatClient, Event
from tests.servers import ThreadlineServer, shell

WEBHOOK_SECRET = "webhook-secret-for-tests"

GIVE_FUNCTIONS = """
import json
from django.contrib.auth.models import Group
from chat.models import AssistantProfile, Function
profile = AssistantProfile.objects.get(pk={profile})
profile.functions = json.loads({raw!r})
for spec in json.loads({registry!r}):
    groups = spec.pop("groups", [])
    function, _ = Function.objects.update_or_create(name=spec.pop("name"), defaults=spec)
    function.groups.set([Group.objects.get_or_create(name=name)[0] for name in groups])
    profile.registry_functions.add(function)
profile.save()
print(json.dumps(profile.pk))
"""

QUIZ = {
    "name": "display_quiz",
    "description": "Displays a quiz to the student, and returns the student's response.",
    "parameters": {
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "questions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "question_text": {"type": "string"},
                        "question_type": {
                            "type": "string",
                            "enum": ["MULTIPLE_CHOICE", "FREE_RESPONSE"],
                        },
                        "choices": {"type": "array", "items": {"type": "string"}},
                    },
                    "required": ["question_text"],
                },
            },
        },
        "required": ["title", "questions"],
    },
}
QUIZ_ARGUMENTS = {
    "title": "Fractions",
    "questions": [
        {
            "question_text": "What is 1/2 + 1/4?",
            "question_type": "MULTIPLE_CHOICE",
            "choices": ["2/6", "3/4", "1/8"],
        },
        {"question_text": "Explain why.", "question_type": "FREE_RESPONSE"},
    ],
}
CITY = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}


def unique(name: str) -> str:
    """Registry names are unique server-wide: each test makes its own (a Python function's is
    the name it is registered under, so those are shared, and set again by each test)."""
    return f"{name}_{secrets.token_hex(3)}"


def give_functions(
    server: ThreadlineServer,
    profile_id: int,
    *,
    raw: list[dict[str, Any]] | None = None,
    registry: list[dict[str, Any]] | None = None,
) -> None:
    """Give the assistant raw definitions and registry functions (made here); it re-syncs."""
    for spec in registry or []:
        spec.setdefault("secret", WEBHOOK_SECRET)
        spec.setdefault("parameters", CITY)
    shell(
        server,
        GIVE_FUNCTIONS.format(
            profile=profile_id, raw=json.dumps(raw or []), registry=json.dumps(registry or [])
        ),
    )


def has_form(event: Event) -> bool:
    return "Send answer" in event.data or ">Allow</button>" in event.data


def read_until_waiting(client: ChatClient, url: str, after: int | None = None) -> list[Event]:
    status, events = client.events(url, last_event_id=after, until=has_form)
    assert status == 200
    assert events and has_form(events[-1]), "the answer should wait for the person"
    return events


def action_url(fragment: str) -> str:
    found = re.search(r'hx-post="(/c/\d+/runs/[^/]+/calls/[^"]+)"', fragment)
    assert found, "a call waiting on the person has a form"
    return html.unescape(found.group(1))


def tool_outputs(requests: list[dict[str, Any]], model: str) -> list[str]:
    """The tool outputs of the model's last request that had any (a later request may be the
    one that titles the thread)."""
    for request in reversed(requests):
        body = request.get("body") or {}
        if body.get("model") == model:
            outputs = [m["content"] for m in body.get("messages", []) if m.get("role") == "tool"]
            if outputs:
                return outputs
    return []

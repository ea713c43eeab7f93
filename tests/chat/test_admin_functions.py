"""The function registry and the calls list in the admin, through Django's test client; the
assistants that offer a function are synced to the real (offline) engine."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from django.contrib.auth.models import User
from django.contrib.messages import get_messages
from django.test import Client
from django.utils import timezone

from chat.models import AssistantProfile, Conversation
from chat.tools import python
from chat.tools.models import CallRound, Function, FunctionCall

pytestmark = pytest.mark.django_db(transaction=True)

ADD = "/admin/chat/function/add/"
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def form(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": json.dumps(SCHEMA, indent=2),
        "kind": "webhook",
        "url": "https://hooks.example.com/weather",
        "timeout_seconds": "10",
        "new_secret": "",
        "new_headers": "X-Api-Key: top-secret-value",
    }
    data.update(changes)
    return data


def errors_of(response: Any) -> str:
    return json.dumps(response.context["adminform"].form.errors)


def test_a_webhook_function_is_added_with_its_secret_shown_once_and_headers_write_only(
    admin_client: Client,
) -> None:
    response = admin_client.post(ADD, form())
    assert response.status_code == 302, errors_of(response)
    function = Function.objects.get(name="get_weather")
    assert function.parameters == SCHEMA
    assert function.headers == {"X-Api-Key": "top-secret-value"}
    shown = [str(m) for m in get_messages(response.wsgi_request)]
    assert any(function.secret in m for m in shown), "the new secret is shown once"

    admin_client.get("/admin/chat/function/")  # where the message is shown, once
    page = admin_client.get(f"/admin/chat/function/{function.pk}/change/").content.decode()
    assert "X-Api-Key: (hidden)" in page
    assert "top-secret-value" not in page and function.secret not in page

    # Saving again with the write-only boxes empty keeps both.
    kept = admin_client.post(
        f"/admin/chat/function/{function.pk}/change/", form(new_headers="", description="New")
    )
    assert kept.status_code == 302, errors_of(kept)
    function.refresh_from_db()
    assert function.headers == {"X-Api-Key": "top-secret-value"}
    assert function.description == "New"


@pytest.mark.parametrize(
    ("parameters", "error"),
    [
        ('{\n  "type": "object",\n  "properties": {\n    "city": {"type": "string"}\n  \n', "Line"),
        (
            '{\n  "type": "object",\n  "properties": {\n    "city": {"type": "strang"}\n  }\n}',
            "Line 4 (properties/city/type)",
        ),
        ('["not", "an", "object"]', "must be a JSON object"),
    ],
)
def test_parameters_that_are_not_a_json_schema_are_refused_at_their_line(
    admin_client: Client, parameters: str, error: str
) -> None:
    response = admin_client.post(ADD, form(parameters=parameters))
    assert response.status_code == 200
    assert error in errors_of(response)
    assert not Function.objects.exists()


def test_the_form_shows_an_example_schema(admin_client: Client) -> None:
    page = admin_client.get(ADD).content.decode()
    assert "&quot;required&quot;: [" in page or '"required": [' in page


def test_webhook_urls_to_metadata_addresses_are_refused_at_once(admin_client: Client) -> None:
    response = admin_client.post(ADD, form(url="http://169.254.169.254/latest/meta-data/"))
    assert "link-local or metadata" in errors_of(response)


def test_a_python_function_must_be_registered(admin_client: Client) -> None:
    response = admin_client.post(ADD, form(kind="python", name="not_registered", url=""))
    assert "No Python function is registered as not_registered" in errors_of(response)

    python.function("registered_here")(lambda arguments, context: "ok")
    ok = admin_client.post(ADD, form(kind="python", name="registered_here", url=""))
    assert ok.status_code == 302, errors_of(ok)


def test_an_assistant_offers_registry_functions_and_follows_their_edits(
    admin_client: Client, remote: openai.OpenAI
) -> None:
    function = Function.objects.create(name="lookup", kind="user", parameters=SCHEMA)
    response = admin_client.post(
        "/admin/chat/assistantprofile/add/",
        {
            "name": "Helper",
            "description": "",
            "model": "threadline-retrieval",
            "instructions": "",
            "response_format": "auto",
            "registry_functions": [str(function.pk)],
            "functions": json.dumps([{"name": "quiz", "parameters": {"type": "object"}}]),
            "metadata": "",
            "assistant_id": "",
        },
    )
    assert response.status_code == 302
    profile = AssistantProfile.objects.get(name="Helper")
    tools = remote.beta.assistants.retrieve(profile.assistant_id).tools
    offered = {t.function.name: t.function for t in tools if t.type == "function"}
    assert set(offered) == {"quiz", "lookup"}
    assert offered["lookup"].parameters == SCHEMA

    changed = admin_client.post(
        f"/admin/chat/function/{function.pk}/change/",
        form(kind="user", name="lookup", url="", description="Look it up"),
    )
    assert changed.status_code == 302, errors_of(changed)
    tools = remote.beta.assistants.retrieve(profile.assistant_id).tools
    (lookup,) = [t for t in tools if t.type == "function" and t.function.name == "lookup"]
    assert lookup.function.description == "Look it up"


def test_the_calls_list_shows_who_called_what_and_how_it_went(admin_client: Client) -> None:
    person = User.objects.create_user("caller")
    conversation = Conversation.objects.create(owner=person, thread_id="thread_x", title="T")
    found = CallRound.objects.create(
        conversation=conversation,
        owner=person,
        run_id="run_x",
        thread_id="thread_x",
        step_id="step_x",
        relay="p:r",
    )
    started = timezone.now()
    FunctionCall.objects.create(
        round=found,
        run_id="run_x",
        call_id="call_x",
        name="get_weather",
        arguments='{"city": "Oslo"}',
        kind="webhook",
        status="done",
        output="sunny " * 100,
        user=person,
        started_at=started,
        finished_at=started + timezone.timedelta(seconds=1.5),
    )
    page = admin_client.get("/admin/chat/functioncall/").content.decode()
    assert "caller" in page and "get_weather" in page and "1.5 s" in page
    assert "sunny sunny" in page and "…" in page  # the output, cut short
    assert "Oslo" in page

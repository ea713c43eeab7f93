"""Questions an MCP server asks the person during a call (elicitation), as a form in the chat.

The server sends a message and a flat JSON Schema (strings, numbers, booleans, choices). The
call records the question and waits; the relay shows it on the call's card; the person's answer
(or "Decline") reaches any process, which records it with one conditional update and notifies
the run's group; the call wakes and gives the server its answer. The time the person takes does
not count against the call's timeout; the run's expiry ends the wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from asgiref.sync import sync_to_async
from django.http import QueryDict
from django.utils import timezone
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from chat.tools import notices
from chat.tools.mcp_models import Elicitation
from chat.tools.models import FunctionCall

log = logging.getLogger(__name__)
Status = Elicitation.Status
# How often a waiting call looks at its question besides being notified.
LOOK_SECONDS = 1.0
INPUT_TYPES = {"email": "email", "uri": "url", "date": "date", "date-time": "datetime-local"}


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    kind: str  # text, email, url, date, datetime-local, number, checkbox, choice
    help: str = ""
    required: bool = False
    choices: list[tuple[str, str]] = field(default_factory=list)  # (value, label)
    step: str = ""  # "1" for integers, "any" for numbers
    minimum: str = ""
    maximum: str = ""


@dataclass(frozen=True)
class Question:
    """A question waiting on the person, as the card shows it."""

    message: str
    fields: list[Field]


def choices_of(spec: dict[str, Any]) -> list[tuple[str, str]]:
    if isinstance(spec.get("enum"), list):
        names = spec.get("enumNames")
        labels = names if isinstance(names, list) and len(names) == len(spec["enum"]) else None
        return [(str(v), str(labels[i] if labels else v)) for i, v in enumerate(spec["enum"])]
    options = spec.get("oneOf") or spec.get("anyOf")
    if isinstance(options, list):
        found = [o for o in options if isinstance(o, dict) and "const" in o]
        return [(str(o["const"]), str(o.get("title") or o["const"])) for o in found]
    return []


def fields_of(schema: dict[str, Any]) -> list[Field]:
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return []
    required = set(schema.get("required") or [])
    fields = []
    for name, spec in properties.items():
        if not isinstance(spec, dict):
            continue
        label = str(spec.get("title") or name)
        help_text = str(spec.get("description") or "")
        kind = spec.get("type")
        choices = choices_of(spec)
        name, required_here = str(name), name in required
        if choices:
            fields.append(Field(name, label, "choice", help_text, required_here, choices))
        elif kind == "boolean":
            fields.append(Field(name, label, "checkbox", help_text))
        elif kind in ("number", "integer"):
            fields.append(
                Field(
                    name,
                    label,
                    "number",
                    help_text,
                    required_here,
                    step="1" if kind == "integer" else "any",
                    minimum=str(spec.get("minimum", "")),
                    maximum=str(spec.get("maximum", "")),
                )
            )
        else:
            input_type = INPUT_TYPES.get(str(spec.get("format")), "text")
            fields.append(Field(name, label, input_type, help_text, required_here))
    return fields


def question_of(elicitation: Elicitation) -> Question:
    return Question(elicitation.message, fields_of(elicitation.schema))


class Incomplete(Exception):
    """The answer leaves something out or does not fit; the message says what."""


def content_for(schema: dict[str, Any], data: QueryDict) -> dict[str, Any]:
    """The answer (the form's POST) as the content the server asked for."""
    properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
    content: dict[str, Any] = {}
    for name, spec in (properties or {}).items():
        kind = spec.get("type") if isinstance(spec, dict) else None
        if kind == "boolean":
            content[name] = data.get(name) == "on"
            continue
        text = data.get(name, "").strip()
        if not text:
            continue
        if kind in ("number", "integer"):
            try:
                number = float(text)
            except ValueError:
                raise Incomplete(f"{spec.get('title') or name} must be a number.") from None
            if kind == "integer":
                if not number.is_integer():
                    raise Incomplete(f"{spec.get('title') or name} must be a whole number.")
                content[name] = int(number)
            else:
                content[name] = number
        else:
            content[name] = text
    error = best_match(Draft202012Validator(schema).iter_errors(content))
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path)
        raise Incomplete(f"{where + ': ' if where else ''}{error.message}.")
    return content


# --- The call's side ------------------------------------------------------------------------------


def record(call_pk: int, message: str, schema: dict[str, Any]) -> int:
    return Elicitation.objects.create(call_id=call_pk, message=message, schema=schema).pk


def state(elicitation_pk: int) -> tuple[str, dict[str, Any] | None, datetime | None, str]:
    """The question's status and content, when the run stops waiting, and the call's status."""
    found = Elicitation.objects.select_related("call__round").get(pk=elicitation_pk)
    return found.status, found.content, found.call.round.expires_at, found.call.status


def cancel(elicitation_pk: int) -> None:
    Elicitation.objects.filter(pk=elicitation_pk, status=Status.WAITING).update(
        status=Status.CANCELLED, answered_at=timezone.now()
    )


Action = Literal["accept", "decline", "cancel"]


async def ask(
    call_pk: int, run_id: str, message: str, schema: dict[str, Any]
) -> tuple[Action, dict[str, Any] | None]:
    """Show the question on the call's card and wait for the person: ("accept", content),
    ("decline", None), or ("cancel", None) when the run stops waiting or the call ends."""
    elicitation_pk = await sync_to_async(record)(call_pk, message, schema)
    listener = notices.Notifications(notices.group_name(run_id))
    await listener.start()
    try:
        await notices.notify(run_id)  # the relay shows the form
        while True:
            status, content, expires_at, call_status = await sync_to_async(state)(elicitation_pk)
            if status == Status.ACCEPTED:
                return "accept", content
            if status == Status.DECLINED:
                return "decline", None
            if status == Status.CANCELLED:
                return "cancel", None
            over = expires_at is not None and timezone.now() >= expires_at
            if over or call_status != FunctionCall.Status.RUNNING:
                await sync_to_async(cancel)(elicitation_pk)
                return "cancel", None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(listener.event.wait(), LOOK_SECONDS)
            listener.event.clear()
    except asyncio.CancelledError:
        await asyncio.shield(sync_to_async(cancel)(elicitation_pk))
        raise
    finally:
        await listener.stop()


# --- The person's side ----------------------------------------------------------------------------


def waiting_question(call: FunctionCall) -> Elicitation | None:
    if call.status != FunctionCall.Status.RUNNING:
        return None
    return next((e for e in call.elicitations.all() if e.status == Status.WAITING), None)


def reply(call: FunctionCall, data: QueryDict) -> str:
    """Record the person's answer to the call's waiting question; what went wrong, or ""."""
    found = waiting_question(call)
    if found is None:
        return "This question was answered already, or the assistant stopped waiting for it."
    try:
        content = content_for(found.schema, data)
    except Incomplete as incomplete:
        return str(incomplete)
    moved = Elicitation.objects.filter(pk=found.pk, status=Status.WAITING).update(
        status=Status.ACCEPTED, content=content, answered_at=timezone.now()
    )
    return "" if moved else "This question was answered already; the first answer counts."


def decline(call: FunctionCall) -> str:
    found = waiting_question(call)
    moved = found is not None and Elicitation.objects.filter(
        pk=found.pk, status=Status.WAITING
    ).update(status=Status.DECLINED, answered_at=timezone.now())
    return "" if moved else "This question was answered already; the first answer counts."

"""The tool calls of finished runs, for the history a page shows after a reload.

Which runs had function calls comes from the records here (one query); where the assistant has
code interpreter, every run of the page may have run code. What the calls were and in what
order comes from the runs' steps in the Assistants API. Each message gets the calls its run
made before it, shown as the live page showed them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chat import assistants_api as api
from chat.live.answer import Call, Step, merge_call
from chat.models import Conversation
from chat.rendering import OWNER_FILES, dom_id, file_url
from chat.tools.cards import card_of
from chat.tools.models import FunctionCall


def steps_by_message(
    conversation: Conversation,
    messages: list[dict[str, Any]],
    file_route: str = OWNER_FILES,
) -> dict[str, list[Step]]:
    """The steps with calls that came before each message, by message id."""
    run_ids = {m["run_id"] for m in messages if m.get("run_id")}
    records = {
        (call.run_id, call.call_id): call
        for call in FunctionCall.objects.filter(
            round__conversation=conversation, run_id__in=run_ids
        )
        .select_related("round")
        .prefetch_related("elicitations", "files")
    }
    runs = {run_id for run_id, _ in records}
    assistant = conversation.assistant
    if assistant is not None and assistant.code_interpreter:
        runs |= {m["run_id"] for m in messages if m.get("run_id") and m["role"] == "assistant"}
    shown_ids = {m["id"] for m in messages if m.get("id")}
    found: dict[str, list[Step]] = {}

    def files(file_id: str) -> str:
        return file_url(conversation.pk, file_id, route=file_route)

    for run_id in sorted(runs):
        pending: list[Step] = []
        last: str | None = None
        for step in api.function_steps(conversation.thread_id, run_id):
            details = step.get("step_details") or {}
            if details.get("type") == "tool_calls":
                shown = step_of(conversation, step, details, records, files, file_route)
                if shown.calls:
                    pending.append(shown)
            elif details.get("type") == "message_creation":
                message_id = str((details.get("message_creation") or {}).get("message_id"))
                if message_id in shown_ids:
                    found.setdefault(message_id, []).extend(pending)
                    pending, last = [], message_id
        if pending and last is not None:
            found[last].extend(pending)
    return found


def step_of(
    conversation: Conversation,
    step: dict[str, Any],
    details: dict[str, Any],
    records: dict[tuple[str, str], FunctionCall],
    files: Callable[[str], str],
    file_route: str = OWNER_FILES,
) -> Step:
    shown = Step(step["id"], f"s-{dom_id(step['id'])}")
    for data in details.get("tool_calls") or []:
        if data.get("type") == "code_interpreter":
            code = Call(kind="code_interpreter", running=False)
            merge_call(code, data, append=False, files=files)
            shown.calls.append(code)
            continue
        if data.get("type") != "function":
            continue
        call = Call(kind="function", running=False)
        merge_call(call, data, append=False)
        record = records.get((step["run_id"], call.call_id))
        if record is not None:
            call.card = card_of(record, conversation.pk, None, file_route)
        shown.calls.append(call)
    return shown

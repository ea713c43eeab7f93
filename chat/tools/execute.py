"""Running one server-side call, once: claimed, run with its timeout, its output recorded.

The claim (`queued` → `running`) is a conditional update, so a call runs at most once whatever
the processes do; a process that dies with a call `running` leaves it for recovery to report as
interrupted, never to run again.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone

from chat.tools import mcp_calls, mcp_client, python, webhook
from chat.tools.decide import error_output
from chat.tools.models import Function, FunctionCall
from chat.tools.python import CallContext

log = logging.getLogger(__name__)
Status = FunctionCall.Status


class Failed(Exception):
    """The call gave no output; the message says why, for the person and the model."""


def claim(call: FunctionCall) -> bool:
    return call.move(Status.QUEUED, Status.RUNNING, started_at=timezone.now())


def finish(call: FunctionCall, output: str, problem: str = "") -> bool:
    """Record the outcome of a running call; False if it is no longer running (the run ended
    meanwhile, or recovery reported it interrupted)."""
    if problem:
        return call.move(
            Status.RUNNING,
            Status.FAILED,
            output=error_output(problem),
            problem=problem,
            error=True,
            finished_at=timezone.now(),
        )
    return call.move(Status.RUNNING, Status.DONE, output=output, finished_at=timezone.now())


def load(call_pk: int) -> tuple[FunctionCall, CallContext] | None:
    call = (
        FunctionCall.objects.select_related(
            "function", "user", "round", "round__conversation__assistant"
        )
        .filter(pk=call_pk)
        .first()
    )
    if call is None or call.function is None:
        return None
    conversation = call.round.conversation
    context = CallContext(
        user=call.user,
        conversation_id=conversation.pk,
        assistant_name=conversation.assistant.name if conversation.assistant else "",
        run_id=call.run_id,
        thread_id=call.round.thread_id,
        call_id=call.call_id,
    )
    return call, context


async def run(call_pk: int) -> None:
    """Run the call if it is still queued; whatever happens, it ends settled."""
    loaded = await sync_to_async(load)(call_pk)
    if loaded is None:
        return
    call, context = loaded
    if not await sync_to_async(claim)(call):
        return  # another process has it, or it was never meant to run
    function = call.function
    assert function is not None
    output, problem = "", ""
    try:
        arguments = json.loads(call.arguments or "{}")
        # An MCP call keeps its own clock, stopped while the person answers the server.
        limit = None if function.kind == Function.Kind.MCP else function.timeout_seconds
        result = await asyncio.wait_for(answer(function, arguments, context), timeout=limit)
        output = as_text(result)
        if len(output.encode()) > settings.FUNCTION_MAX_OUTPUT_BYTES:
            problem = (
                f"{call.name} gave an output larger than "
                f"{settings.FUNCTION_MAX_OUTPUT_BYTES:,} bytes, the limit."
            )
    except TimeoutError:
        problem = f"{call.name} did not finish within {function.timeout_seconds} seconds."
    except (Failed, webhook.WebhookError, python.Unavailable, mcp_client.McpFailure) as error:
        problem = f"{call.name} failed: {error}"
    except Exception as error:
        log.warning("Function %s raised", call.name, exc_info=True)
        problem = f"{call.name} failed: {type(error).__name__}: {error}"
    await sync_to_async(finish)(call, output, problem)


async def run_python(function: Function, arguments: dict[str, Any], context: CallContext) -> Any:
    return await python.call(function.name, arguments, context)


async def run_webhook(function: Function, arguments: dict[str, Any], context: CallContext) -> Any:
    user = context.user
    payload = {
        "function": function.name,
        "arguments": arguments,
        "call_id": context.call_id,
        "run_id": context.run_id,
        "thread_id": context.thread_id,
        "user": {"id": user.pk, "username": user.get_username(), "email": user.email},
    }
    headers = {str(k): str(v) for k, v in (function.headers or {}).items()}
    request = webhook.Request(
        function.url, function.secret, headers, function.timeout_seconds, payload
    )
    return await webhook.post(request)


Executor = Callable[[Function, dict[str, Any], CallContext], Awaitable[Any]]
# What runs each kind of server-side function; each raises Failed (or its own error) or returns.
EXECUTORS: dict[str, Executor] = {
    Function.Kind.PYTHON: run_python,
    Function.Kind.WEBHOOK: run_webhook,
    Function.Kind.MCP: mcp_calls.run_mcp,
}


async def answer(function: Function, arguments: dict[str, Any], context: CallContext) -> Any:
    executor = EXECUTORS.get(function.kind)
    if executor is None:
        raise Failed(f"it is not run on the server ({function.get_kind_display()}).")
    return await executor(function, arguments, context)


def as_text(result: Any) -> str:
    if isinstance(result, str):
        return result
    try:
        return json.dumps(result, ensure_ascii=False, default=str)
    except (TypeError, ValueError) as error:
        raise Failed(f"its result cannot be written as JSON ({error}).") from None

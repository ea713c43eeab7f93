"""A run's lifecycle: created, handed to the worker, cancelled, given tool outputs, settled.

A run's status only moves through `Run.transition` (`UPDATE … WHERE status IN (…)`), so a cancel
from another request or process and the worker executing the run never overwrite each other.
Runs execute on this process's `worker`; runs a dead process left behind are settled by any live
one, on the worker's tick or when someone looks at the thread.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from engine.api.errors import ApiError
from engine.knowledge import ingest
from engine.models import Assistant, Run, RunStep, Thread
from engine.runs import events
from engine.runs.execution import RunExecution
from engine.runs.worker import Worker

LOST_RUN_ERROR = {
    "code": "server_error",
    "message": (
        "The run was interrupted because the server restarted or lost the worker executing it. "
        "Start a new run to continue."
    ),
}


# --- State kept honest ----------------------------------------------------------------------------


def settle_lost_runs(thread: Thread | None = None) -> None:
    """End runs nobody executes any more: lost by a dead worker, or parked past `expires_at`."""
    now = timezone.now()
    runs = Run.objects.all() if thread is None else Run.objects.filter(thread=thread)
    stale = now - timedelta(seconds=settings.RUN_STALE_SECONDS)
    # Not lost while this process executes them, whatever their heartbeat says (it may not have
    # been written: a full disk).
    lost = runs.filter(status__in=Run.UNDER_WAY, heartbeat_at__lt=stale)
    # Each in one transaction with what it left open: an ended run leaves no answer in progress.
    for run in lost.exclude(pk__in=worker.executing()):
        with transaction.atomic():
            if run.transition(
                run.status,
                Run.Status.FAILED,
                failed_at=now,
                last_error=LOST_RUN_ERROR,
                required_action=None,
            ):
                run.end_open_parts(Run.Status.FAILED, now)
    for run in runs.filter(status=Run.Status.CANCELLING, heartbeat_at__lt=stale):
        with transaction.atomic():
            if run.transition(Run.Status.CANCELLING, Run.Status.CANCELLED, cancelled_at=now):
                run.end_open_parts(Run.Status.CANCELLED, now)
    for run in runs.filter(status__in=Run.ACTIVE, expires_at__lt=now):
        with transaction.atomic():
            if run.transition(run.status, Run.Status.EXPIRED, required_action=None):
                run.end_open_parts(Run.Status.EXPIRED, now)


def settle_lost_work() -> None:
    """What every live process does on its worker's tick: end the runs nobody executes any more,
    and queue again the files whose ingestion lost its process."""
    settle_lost_runs()
    ingest.resume_stale()


def heartbeat(run_ids: list[str]) -> list[str]:
    """Note that this process still executes these runs; return those asked to cancel."""
    if not run_ids:
        return []
    Run.objects.filter(pk__in=run_ids, status__in=Run.EXECUTING).update(heartbeat_at=timezone.now())
    return list(
        Run.objects.filter(pk__in=run_ids, status=Run.Status.CANCELLING).values_list(
            "pk", flat=True
        )
    )


def active_run_id(thread: Thread) -> str | None:
    # Ids only: every new message and run asks this, and a whole run row is mostly JSON.
    active = Run.objects.filter(thread=thread, status__in=Run.ACTIVE).values_list("id", flat=True)
    if active.first() is None:
        return None
    # Only a run that looks active can be a lost or expired one: settle, then look again.
    settle_lost_runs(thread)
    return active.first()


def refuse_if_active(thread: Thread, doing: str) -> None:
    run_id = active_run_id(thread)
    if run_id is None:
        return
    if doing == "message":
        message = f"Can't add messages to {thread.id} while a run {run_id} is active."
    else:
        message = f"Thread {thread.id} already has an active run {run_id}."
    raise ApiError(400, message)


def new_run(thread: Thread, assistant: Assistant, fields: dict[str, Any]) -> Run:
    """Create a queued run from validated fields (the run's overrides over the assistant's)."""
    instructions = fields.get("instructions")
    if instructions is None:
        instructions = assistant.instructions or ""
    if fields.get("additional_instructions"):
        instructions = f"{instructions}\n\n{fields['additional_instructions']}".strip()
    tools = fields["tools"] if fields.get("tools") is not None else assistant.tools
    thread_stores = thread.tool_resources.get("file_search", {}).get("vector_store_ids")
    if thread_stores and not any(tool["type"] == "file_search" for tool in tools):
        # Files attached to messages for file_search are searched even if the assistant
        # does not list the tool, as OpenAI did.
        tools = [*tools, {"type": "file_search"}]
    now = timezone.now()
    return Run.objects.create(
        project=thread.project,
        thread=thread,
        assistant_id=assistant.id,
        status=Run.Status.QUEUED,
        created_at=now,
        heartbeat_at=now,
        expires_at=now + timedelta(seconds=settings.RUN_EXPIRES_SECONDS),
        model=fields.get("model") or assistant.model,
        instructions=instructions,
        tools=tools,
        metadata=fields.get("metadata") or {},
        temperature=pick(fields.get("temperature"), assistant.temperature),
        top_p=pick(fields.get("top_p"), assistant.top_p),
        max_prompt_tokens=fields.get("max_prompt_tokens"),
        max_completion_tokens=fields.get("max_completion_tokens"),
        truncation_strategy=fields.get("truncation_strategy")
        or {"type": "auto", "last_messages": None},
        tool_choice=pick(fields.get("tool_choice"), "auto"),
        parallel_tool_calls=fields.get("parallel_tool_calls", True),
        response_format=pick(fields.get("response_format"), assistant.response_format),
    )


def pick(value: Any, default: Any) -> Any:
    return default if value is None else value


def launch(run: Run, *, resume: bool = False) -> None:
    """Hand a run to the worker and return at once: the run goes on without any client."""
    execution = RunExecution(run)
    work = execution.resume if resume else execution.start
    worker.start(run.id, work, unstarted=execution.settle_interrupted)


def launch_streaming(run: Run, *, resume: bool = False) -> events.Subscription:
    """Subscribe to the run's events, then start it, so the stream misses nothing."""
    subscription = events.subscribe(run.id)
    launch(run, resume=resume)
    return subscription


def cancel(run: Run) -> Run:
    """Cancel the run, or refuse (400) if it has ended. Each step is conditional on the status in
    the database, not on the one read before: tool outputs submitted at the same moment move the
    run from requires_action to queued, and the cancel then stops it as queued."""
    now = timezone.now()
    if run.transition(
        Run.Status.REQUIRES_ACTION, Run.Status.CANCELLED, cancelled_at=now, required_action=None
    ):
        run.end_open_parts(Run.Status.CANCELLED, now)
    elif run.transition(Run.UNDER_WAY, Run.Status.CANCELLING):
        worker.cancel(run.id)
    else:
        run.refresh_from_db()
        if run.status == Run.Status.REQUIRES_ACTION:
            # Parked again between the two updates (a new tool call): cancel it there.
            return cancel(run)
        if run.status != Run.Status.CANCELLING:
            raise ApiError(400, f"Cannot cancel run with status '{run.status}'.", param="run_id")
    run.refresh_from_db()
    return run


def record_tool_outputs(run: Run, outputs: list[dict[str, str]]) -> RunStep:
    """Store the client's outputs in the function step and requeue the run."""
    if run.status != Run.Status.REQUIRES_ACTION:
        raise ApiError(
            400,
            f'Runs in status "{run.status}" do not accept tool outputs.',
            param="run_id",
        )
    assert run.required_action is not None, "a run in requires_action says what it requires"
    pending = {call["id"] for call in run.required_action["submit_tool_outputs"]["tool_calls"]}
    given = {output["tool_call_id"]: output["output"] for output in outputs}
    unknown = sorted(set(given) - pending)
    if unknown:
        raise ApiError(400, f"No tool call found with id '{unknown[0]}'.", param="tool_outputs")
    missing = sorted(pending - set(given))
    if missing:
        raise ApiError(
            400,
            f"Expected tool outputs for call_ids {sorted(pending)}, got {sorted(given)}; "
            f"missing {missing}.",
            param="tool_outputs",
        )
    with transaction.atomic():
        if not run.transition(
            Run.Status.REQUIRES_ACTION,
            Run.Status.QUEUED,
            required_action=None,
            heartbeat_at=timezone.now(),
        ):
            raise ApiError(400, "The run is no longer waiting for tool outputs.", param="run_id")
        step = RunStep.objects.filter(run=run, type="tool_calls", status="in_progress").last()
        assert step is not None, "a run in requires_action has an open tool step"
        for call in step.step_details["tool_calls"]:
            if call["id"] in given:
                call["function"]["output"] = given[call["id"]]
        step.status = "completed"
        step.completed_at = timezone.now()
        step.save(update_fields=["step_details", "status", "completed_at"])
    run.refresh_from_db()
    return step


# This process's run worker; its tick settles what other processes lost and keeps ours alive.
worker = Worker(on_tick=settle_lost_work, heartbeat=heartbeat)


def start_upkeep() -> None:
    """Start the worker loop and the ingestion pool now, when a server process starts: their
    tickers settle the runs and resume the files a dead process left, which must not wait for
    this process's first run or upload."""
    worker.loop()
    ingest.start()

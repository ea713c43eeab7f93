"""Runs: creating them, executing them on the worker, and keeping their state honest.

A run's status only moves through `Run.transition` (`UPDATE … WHERE status IN (…)`), so a
cancel from another request or process and the executing worker can never overwrite each other.
The execution streams events to subscribers as they happen, but writes the growing answers to the
database only every `FLUSH_SECONDS`, all of them together (`AnswerFlusher`), never once per token.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import time
from datetime import timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from engine.api.errors import ApiError
from engine.knowledge import citations, search
from engine.knowledge import stores as knowledge
from engine.models import Assistant, Message, Run, RunStep, Thread, VectorStore, VectorStoreFile
from engine.providers.choice import is_offline, provider_for
from engine.providers.interface import (
    Knowledge,
    ModelError,
    ModelRequest,
    TextDelta,
    ToolCallRequest,
)
from engine.runs import events, worker
from engine.runs import prompt as context

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.5
# A model that keeps calling tools without answering is stopped after this many turns.
MAX_MODEL_TURNS = 12
# How often a run waiting for its files' ingestion looks again.
INGEST_POLL_SECONDS = 0.2
# Passages a file_search call returns when the tool does not say.
DEFAULT_SEARCH_RESULTS = 8

LOST_RUN_ERROR = {
    "code": "server_error",
    "message": (
        "The run was interrupted because the server restarted or lost the worker executing it. "
        "Start a new run to continue."
    ),
}


def db(function: Any) -> Any:
    return sync_to_async(function, thread_sensitive=True)


# --- State kept honest ----------------------------------------------------------------------------


def settle_lost_runs(thread: Thread | None = None) -> None:
    """End runs nobody executes any more: lost by a dead worker, or parked past `expires_at`."""
    now = timezone.now()
    runs = Run.objects.all() if thread is None else Run.objects.filter(thread=thread)
    stale = now - timedelta(seconds=settings.RUN_STALE_SECONDS)
    for run in runs.filter(status__in=Run.UNDER_WAY, heartbeat_at__lt=stale):
        if run.transition(
            run.status,
            Run.Status.FAILED,
            failed_at=now,
            last_error=LOST_RUN_ERROR,
            required_action=None,
        ):
            run.end_open_parts(Run.Status.FAILED, now)
    for run in runs.filter(status=Run.Status.CANCELLING, heartbeat_at__lt=stale):
        if run.transition(Run.Status.CANCELLING, Run.Status.CANCELLED, cancelled_at=now):
            run.end_open_parts(Run.Status.CANCELLED, now)
    for run in runs.filter(status__in=Run.ACTIVE, expires_at__lt=now):
        if run.transition(run.status, Run.Status.EXPIRED, required_action=None):
            run.end_open_parts(Run.Status.EXPIRED, now)


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


# --- Creating, cancelling, continuing -------------------------------------------------------------


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
    worker.start(run.id, execution.resume if resume else execution.start)


def launch_streaming(run: Run, *, resume: bool = False) -> events.Subscription:
    """Subscribe to the run's events, then start it, so the stream misses nothing."""
    subscription = events.subscribe(run.id)
    launch(run, resume=resume)
    return subscription


def cancel(run: Run) -> Run:
    now = timezone.now()
    if run.status == Run.Status.REQUIRES_ACTION:
        if run.transition(
            Run.Status.REQUIRES_ACTION, Run.Status.CANCELLED, cancelled_at=now, required_action=None
        ):
            run.end_open_parts(Run.Status.CANCELLED, now)
    elif run.status in Run.UNDER_WAY:
        run.transition(Run.UNDER_WAY, Run.Status.CANCELLING)
        worker.cancel(run.id)
    elif run.status != Run.Status.CANCELLING:
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


# --- Execution ------------------------------------------------------------------------------------


class RunExecution:
    """Executes one run on the worker loop, from `queued` to a terminal or parked state."""

    def __init__(self, run: Run) -> None:
        self.run_id = run.id
        self.run = run
        # The answer being written, if any: a cancel or failure ends it as incomplete.
        self.open_message_id: str | None = None
        self.usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}

    def emit(self, event: str, data: Any) -> None:
        events.publish(self.run_id, event, data)

    def emit_run(self, event: str) -> None:
        self.emit(event, self.run.to_api())

    async def start(self) -> None:
        self.emit_run("thread.run.created")
        self.emit_run("thread.run.queued")
        await self.execute()

    async def resume(self) -> None:
        self.usage = dict(self.run.usage or self.usage)
        step = await db(lambda: RunStep.objects.filter(run_id=self.run_id).last())()
        if step is not None:
            self.emit("thread.run.step.completed", step.to_api())
        self.emit_run("thread.run.queued")
        await self.execute()

    async def execute(self) -> None:
        try:
            if not await self.move(
                Run.Status.QUEUED, Run.Status.IN_PROGRESS, started_at=timezone.now()
            ):
                await self.settle_interrupted()
                return
            self.emit_run("thread.run.in_progress")
            await self.wait_for_ingestion()
            await self.drive()
        except asyncio.CancelledError:
            await self.settle_interrupted()
        except ModelError as error:
            await self.fail(error.code, error.message)
        except Exception:
            log.exception("Run %s failed unexpectedly", self.run_id)
            await self.fail(
                "server_error", "The engine hit an internal error while running this request."
            )
        finally:
            self.emit(events.DONE, "[DONE]")

    async def wait_for_ingestion(self) -> None:
        """Let files still being ingested into the run's stores finish first, as OpenAI did,
        so a question asked right after attaching a file is answered from it."""
        if not any(tool["type"] == "file_search" for tool in self.run.tools):
            return
        deadline = time.monotonic() + settings.RUN_INGEST_WAIT_SECONDS
        while time.monotonic() < deadline and await db(self.ingesting)():
            await asyncio.sleep(INGEST_POLL_SECONDS)

    def ingesting(self) -> bool:
        store_ids = search_scope(self.run)
        return VectorStoreFile.objects.filter(
            vector_store_id__in=store_ids, status="in_progress"
        ).exists()

    async def move(self, source: str | tuple[str, ...], target: Run.Status, **fields: Any) -> bool:
        """`Run.transition` from the worker loop: False when a cancel got there first."""
        return await db(self.run.transition)(source, target, **fields)

    async def drive(self) -> None:
        for _ in range(MAX_MODEL_TURNS):
            outcome = await self.model_turn()
            if outcome != "continue":
                return
        await self.fail(
            "server_error",
            f"The model called tools {MAX_MODEL_TURNS} times without answering; stopped.",
        )

    async def model_turn(self) -> str:
        prompt = await db(context.build_prompt)(self.run)
        if not prompt.fits and self.run.max_prompt_tokens:
            await self.end_incomplete("max_prompt_tokens")
            return "incomplete"
        request = ModelRequest(
            model=self.run.model,
            messages=prompt.messages,
            tools=context.chat_tools(self.run),
            tool_choice=context.chat_tool_choice(self.run),
            parallel_tool_calls=self.run.parallel_tool_calls,
            temperature=self.run.temperature,
            top_p=self.run.top_p,
            max_tokens=self.remaining_completion_tokens(),
            response_format=context.chat_response_format(self.run),
        )
        if is_offline(self.run.model):
            request.knowledge = await db(self.knowledge)()
        answer = AnswerWriter(self)
        end = None
        try:
            async for event in provider_for(self.run.model).stream(request):
                if isinstance(event, TextDelta):
                    await answer.write(event.text)
                else:
                    end = event
        except BaseException:
            # Keep the partial answer; whoever ends the run marks the message and step.
            if answer.message is not None:
                answers.discard(answer)
                await db(answer.flush)()
            raise
        assert end is not None, "a provider ends every turn with a TurnEnd"
        self.add_usage(end.prompt_tokens or prompt.tokens, end.completion_tokens, answer.step)
        truncated = end.finish_reason == "length"
        await answer.close("incomplete" if truncated else "completed")
        if truncated:
            await self.end_incomplete("max_completion_tokens")
            return "incomplete"
        if self.over_budget():
            return "incomplete"
        if end.tool_calls:
            return await self.call_tools(end.tool_calls)
        await self.complete()
        return "completed"

    def remaining_completion_tokens(self) -> int | None:
        if not self.run.max_completion_tokens:
            return None
        return max(self.run.max_completion_tokens - self.usage["completion_tokens"], 1)

    def add_usage(self, prompt: int, completion: int, step: RunStep | None) -> None:
        self.usage["prompt_tokens"] += prompt
        self.usage["completion_tokens"] += completion
        self.usage["total_tokens"] = self.usage["prompt_tokens"] + self.usage["completion_tokens"]
        self.run.usage = dict(self.usage)
        if step is not None:
            step.usage = {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            }

    def over_budget(self) -> bool:
        return bool(
            self.run.max_prompt_tokens and self.usage["prompt_tokens"] > self.run.max_prompt_tokens
        )

    async def call_tools(self, calls: list[ToolCallRequest]) -> str:
        step = await db(self.new_step)("tool_calls", {"type": "tool_calls", "tool_calls": []})
        details = [tool_call_details(call) for call in calls]
        step.step_details = {"type": "tool_calls", "tool_calls": details}
        self.emit(
            "thread.run.step.delta",
            {
                "id": step.id,
                "object": "thread.run.step.delta",
                "delta": {
                    "step_details": {
                        "type": "tool_calls",
                        "tool_calls": [{"index": i, **call} for i, call in enumerate(details)],
                    }
                },
            },
        )
        searches = [call["file_search"] for call in details if call["type"] == "file_search"]
        if searches:
            await db(self.run_file_searches)(searches)
        functions = [call for call in details if call["type"] == "function"]
        if functions:
            await db(step.save)(update_fields=["step_details"])
            required = {
                "type": "submit_tool_outputs",
                "submit_tool_outputs": {"tool_calls": [without_output(c) for c in functions]},
            }
            if await self.move(
                Run.Status.IN_PROGRESS,
                Run.Status.REQUIRES_ACTION,
                required_action=required,
                usage=dict(self.usage),
            ):
                self.emit_run("thread.run.requires_action")
            else:
                await self.settle_interrupted()
            return "requires_action"
        step.status = "completed"
        step.completed_at = timezone.now()
        await db(step.save)()
        self.emit("thread.run.step.completed", step.to_api())
        return "continue"

    def run_file_searches(self, searches: list[dict[str, Any]]) -> None:
        """Execute the model's file_search calls over the assistant's and thread's stores."""
        store_ids = search_scope(self.run)
        max_results, threshold = file_search_settings(self.run.tools)
        for call in searches:
            hits = search.search(
                store_ids, call["query"], max_results=max_results, score_threshold=threshold
            )
            call["ranking_options"] = {"ranker": "default_2024_08_21", "score_threshold": threshold}
            call["results"] = [citations.result_entry(hit) for hit in hits]
        knowledge.touch_stores(store_ids)

    def knowledge(self) -> Knowledge:
        return Knowledge(
            has_stores=bool(search_scope(self.run)),
            searches=citations.search_calls(self.run_id),
        )

    def new_step(self, kind: str, details: dict[str, Any]) -> RunStep:
        step = RunStep.objects.create(
            project_id=self.run.project_id,
            run_id=self.run_id,
            thread_id=self.run.thread_id,
            assistant_id=self.run.assistant_id,
            type=kind,
            status="in_progress",
            step_details=details,
        )
        self.emit("thread.run.step.created", step.to_api())
        self.emit("thread.run.step.in_progress", step.to_api())
        return step

    async def complete(self) -> None:
        if await self.move(
            Run.Status.IN_PROGRESS,
            Run.Status.COMPLETED,
            completed_at=timezone.now(),
            usage=self.usage,
        ):
            self.emit_run("thread.run.completed")
        else:
            await self.settle_interrupted()

    async def end_incomplete(self, reason: str) -> None:
        if await self.move(
            Run.Status.IN_PROGRESS,
            Run.Status.INCOMPLETE,
            incomplete_details={"reason": reason},
            usage=self.usage,
        ):
            self.emit_run("thread.run.incomplete")
        else:
            await self.settle_interrupted()

    async def fail(self, code: str, message: str) -> None:
        now = timezone.now()
        if await self.move(
            Run.UNDER_WAY,
            Run.Status.FAILED,
            failed_at=now,
            last_error={"code": code, "message": message},
            usage=self.usage,
        ):
            await db(self.run.end_open_parts)(Run.Status.FAILED, now)
            await self.emit_incomplete_message()
            self.emit_run("thread.run.failed")
        else:
            await self.settle_interrupted()

    async def settle_interrupted(self) -> None:
        """The run was cancelled (here or from elsewhere) while this worker held it."""
        now = timezone.now()
        await self.move(Run.EXECUTING, Run.Status.CANCELLED, cancelled_at=now, usage=self.usage)
        self.run = await db(Run.objects.get)(pk=self.run_id)
        await db(self.run.end_open_parts)(Run.Status.CANCELLED, now)
        if self.run.status == Run.Status.CANCELLED:
            await self.emit_incomplete_message()
            self.emit_run("thread.run.cancelled")

    async def emit_incomplete_message(self) -> None:
        if self.open_message_id is None:
            return
        message = await db(Message.objects.filter(pk=self.open_message_id).first)()
        if message is not None and message.status == "incomplete":
            self.emit("thread.message.incomplete", message.to_api())


def tool_call_details(call: ToolCallRequest) -> dict[str, Any]:
    if call.name == "file_search":
        try:
            query = json.loads(call.arguments or "{}").get("query", "")
        except ValueError:
            query = call.arguments
        return {"id": call.id, "type": "file_search", "file_search": {"query": query}}
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments, "output": None},
    }


def search_scope(run: Run) -> list[str]:
    """The unexpired vector stores a run searches: its assistant's and its thread's."""
    store_ids: list[str] = []
    assistant = Assistant.objects.filter(pk=run.assistant_id).first()
    for owner in (assistant, run.thread):
        if owner is not None:
            store_ids += owner.tool_resources.get("file_search", {}).get("vector_store_ids", [])
    stores = VectorStore.objects.filter(pk__in=store_ids)
    live = {store.id for store in stores if not knowledge.is_expired(store)}
    return [store_id for store_id in dict.fromkeys(store_ids) if store_id in live]


def file_search_settings(tools: list[dict[str, Any]]) -> tuple[int, float]:
    for tool in tools:
        if tool["type"] == "file_search":
            options = tool.get("file_search") or {}
            ranking = options.get("ranking_options") or {}
            return (
                options.get("max_num_results") or DEFAULT_SEARCH_RESULTS,
                ranking.get("score_threshold") or 0.0,
            )
    return DEFAULT_SEARCH_RESULTS, 0.0


def without_output(call: dict[str, Any]) -> dict[str, Any]:
    function = {k: v for k, v in call["function"].items() if k != "output"}
    return {"id": call["id"], "type": "function", "function": function}


class AnswerWriter:
    """The assistant message a model turn writes: opened on the first token, then kept in the
    database by `answers`, the flusher, until it closes."""

    def __init__(self, execution: RunExecution) -> None:
        self.execution = execution
        self.message: Message | None = None
        self.step: RunStep | None = None
        self.parts: list[str] = []
        self.dirty = False  # text arrived since the last flush

    async def write(self, text: str) -> None:
        if self.message is None:
            await db(self.open)()
            answers.add(self)
        self.parts.append(text)
        self.dirty = True
        self.execution.emit(events.MESSAGE_DELTA, events.MessageText(self.message.id, text))

    def open(self) -> None:
        run = self.execution.run
        self.message = Message.objects.create(
            project_id=run.project_id,
            thread_id=run.thread_id,
            role="assistant",
            status="in_progress",
            content=[],
            assistant_id=run.assistant_id,
            run_id=run.id,
        )
        self.step = self.execution.new_step(
            "message_creation",
            {"type": "message_creation", "message_creation": {"message_id": self.message.id}},
        )
        self.execution.open_message_id = self.message.id
        self.execution.emit("thread.message.created", self.message.to_api())
        self.execution.emit("thread.message.in_progress", self.message.to_api())

    def content(self) -> list[dict[str, Any]]:
        return [{"type": "text", "text": {"value": "".join(self.parts), "annotations": []}}]

    def flush(self) -> None:
        assert self.message is not None
        Message.objects.filter(pk=self.message.pk).update(content=self.content())

    async def close(self, status: str) -> None:
        if self.message is None or self.step is None:
            return
        answers.discard(self)
        await db(self.save_final)(status)
        self.execution.open_message_id = None
        event = "completed" if status == "completed" else "incomplete"
        self.execution.emit(f"thread.message.{event}", self.message.to_api())
        if self.step.status == "completed":
            self.execution.emit("thread.run.step.completed", self.step.to_api())

    def save_final(self, status: str) -> None:
        assert self.message is not None and self.step is not None
        now = timezone.now()
        message, step = self.message, self.step
        text = "".join(self.parts)
        annotations = citations.annotate(text, citations.search_calls(self.execution.run_id))
        message.content = [{"type": "text", "text": {"value": text, "annotations": annotations}}]
        message.status = status
        if status == "completed":
            message.completed_at = now
        else:
            message.incomplete_at = now
            message.incomplete_details = {"reason": "max_tokens"}
        # A cancel or failure settles the message afterwards; keep what it decides.
        Message.objects.filter(pk=message.pk).filter(~Q(status="incomplete")).update(
            content=message.content,
            status=message.status,
            completed_at=message.completed_at,
            incomplete_at=message.incomplete_at,
            incomplete_details=message.incomplete_details,
        )
        step.status = "completed"
        step.completed_at = now
        step.save(update_fields=["status", "completed_at", "usage"])


class AnswerFlusher:
    """Writes the growing answers of every run on this worker to the database, every
    `FLUSH_SECONDS`, in one transaction: with a few hundred runs streaming, one write per
    answer per interval (each a thread hop and a commit) was a tenth of the process's CPU.

    Lives on the worker loop; only that loop touches it.
    """

    def __init__(self) -> None:
        self.writers: set[AnswerWriter] = set()
        self.task: asyncio.Task[None] | None = None

    def add(self, writer: AnswerWriter) -> None:
        self.writers.add(writer)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(
                self.run(), name="answer flusher", context=contextvars.Context()
            )

    def discard(self, writer: AnswerWriter) -> None:
        self.writers.discard(writer)

    async def run(self) -> None:
        while self.writers:
            await asyncio.sleep(FLUSH_SECONDS)
            # Taken with no await since the sleep: a writer that closed is no longer here, and
            # its final save queues behind this write on the same database thread.
            due = [w for w in self.writers if w.dirty and w.message is not None]
            if not due:
                continue
            pending = []
            for writer in due:
                assert writer.message is not None
                pending.append((writer.message.pk, writer.content()))
                writer.dirty = False
            try:
                await db(write_contents)(pending)
            except Exception:
                log.exception("Saving %d streaming answers failed; trying again", len(due))
                for writer in due:
                    writer.dirty = True


def write_contents(pending: list[tuple[str, list[dict[str, Any]]]]) -> None:
    with transaction.atomic():
        for message_id, content in pending:
            # A cancel or failure may have settled the message meanwhile: leave it as it is.
            Message.objects.filter(pk=message_id, status="in_progress").update(content=content)


answers = AnswerFlusher()

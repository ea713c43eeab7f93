"""The execution of one run on the worker loop: model turns, tool calls, and how the run ends."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from engine import disk
from engine.models import Message, Run, RunStep
from engine.providers.choice import is_offline, provider_for
from engine.providers.interface import (
    ModelError,
    ModelRequest,
    TextDelta,
    ToolCallDelta,
    ToolCallRequest,
)
from engine.runs import events, prompt
from engine.runs.answers import AnswerWriter, answers
from engine.runs.worker import db
from engine.tools import file_search
from engine.tools.code_interpreter import tool as code_interpreter
from engine.tools.code_interpreter.sessions import InputFile

log = logging.getLogger(__name__)

# A model that keeps calling tools without answering is stopped after this many turns.
MAX_MODEL_TURNS = 12
# How often a run waiting for its files' ingestion looks again.
INGEST_POLL_SECONDS = 0.2
# How often a run stopped by a full disk tries again to record that it failed.
DISK_FULL_RETRY_SECONDS = 1.0


class RunExecution:
    """Executes one run on the worker loop, from `queued` to a terminal or parked state."""

    def __init__(self, run: Run) -> None:
        self.run_id = run.id
        self.run = run
        # The answer being written, if any: a cancel or failure ends it as incomplete.
        self.open_message_id: str | None = None
        self.usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        # What this run's code wrote to /mnt/data (path -> file id) and showed (image file
        # ids not yet in an answer): the next answer links and shows them.
        self.sandbox_files: dict[str, str] = {}
        self.code_images: list[str] = []
        # This turn's tool calls as they stream: the step that shows code being written, and
        # each call's id, name and decoded code so far, by the model's index.
        self.streaming_step: RunStep | None = None
        self.streaming_calls: dict[int, StreamingCall] = {}

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
        except Exception as error:
            if disk.full(error):
                log.error("Run %s stopped: the disk is full (%s)", self.run_id, error)
                await self.fail_once_written("server_error", disk.RUN_MESSAGE)
            else:
                log.exception("Run %s failed unexpectedly", self.run_id)
                await self.fail(
                    "server_error", "The engine hit an internal error while running this request."
                )
        finally:
            self.emit(events.DONE, "[DONE]")

    async def wait_for_ingestion(self) -> None:
        """Let files still being ingested into the run's stores finish first, as OpenAI did,
        so a question asked right after attaching a file is answered from it."""
        if not any(tool["type"] == file_search.NAME for tool in self.run.tools):
            return
        deadline = time.monotonic() + settings.RUN_INGEST_WAIT_SECONDS
        while time.monotonic() < deadline and await db(file_search.still_ingesting)(self.run):
            await asyncio.sleep(INGEST_POLL_SECONDS)

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
        built = await db(prompt.build_prompt)(self.run)
        if not built.fits and self.run.max_prompt_tokens:
            await self.end_incomplete("max_prompt_tokens")
            return "incomplete"
        request = ModelRequest(
            model=self.run.model,
            messages=built.messages,
            tools=prompt.chat_tools(self.run, await self.code_files()),
            tool_choice=prompt.chat_tool_choice(self.run),
            parallel_tool_calls=self.run.parallel_tool_calls,
            temperature=self.run.temperature,
            top_p=self.run.top_p,
            max_tokens=self.remaining_completion_tokens(),
            response_format=prompt.chat_response_format(self.run),
        )
        if is_offline(self.run.model):
            request.knowledge = await db(file_search.knowledge)(self.run)
        answer = AnswerWriter(self)
        end = None
        self.streaming_step, self.streaming_calls = None, {}
        try:
            async for event in provider_for(self.run.model).stream(request):
                if isinstance(event, TextDelta):
                    await answer.write(event.text)
                elif isinstance(event, ToolCallDelta):
                    await self.stream_call(event)
                else:
                    end = event
        except BaseException:
            # Keep the partial answer; whoever ends the run marks the message and step.
            if answer.message is not None:
                answers.discard(answer)
                await db(answer.flush)()
            raise
        assert end is not None, "a provider ends every turn with a TurnEnd"
        self.add_usage(end.prompt_tokens or built.tokens, end.completion_tokens, answer.step)
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

    async def code_files(self) -> list[InputFile]:
        if not code_interpreter.enabled(self.run) or is_offline(self.run.model):
            return []
        return await db(code_interpreter.input_files)(self.run)

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

    async def stream_call(self, piece: ToolCallDelta) -> None:
        """Show a `python` call's code as the model writes it, as OpenAI's stream did: the
        tool-call step starts at its first piece and each piece of code is a step delta."""
        call = self.streaming_calls.setdefault(piece.index, StreamingCall())
        call.id = call.id or piece.id
        call.name += piece.name
        if call.name != code_interpreter.NAME or not code_interpreter.enabled(self.run):
            return
        code = call.code.feed(piece.arguments)
        if self.streaming_step is None:
            self.streaming_step = await db(self.new_step)(
                "tool_calls", {"type": "tool_calls", "tool_calls": []}
            )
        delta: dict[str, Any] = {"input": code}
        if not call.shown:
            call.shown = True
            delta["outputs"] = []
            self.emit_code_delta(self.streaming_step, piece.index, delta, call_id=call.id)
        elif code:
            self.emit_code_delta(self.streaming_step, piece.index, delta)

    async def call_tools(self, calls: list[ToolCallRequest]) -> str:
        step = self.streaming_step
        if step is None:
            step = await db(self.new_step)("tool_calls", {"type": "tool_calls", "tool_calls": []})
        code = code_interpreter.enabled(self.run)
        details = [tool_call_details(call, code) for call in calls]
        step.step_details = {"type": "tool_calls", "tool_calls": details}
        # Calls whose code streamed in are on the reader's side already; the others now.
        shown = {call.id for call in self.streaming_calls.values() if call.shown}
        unseen = [{"index": i, **call} for i, call in enumerate(details) if call["id"] not in shown]
        if unseen:
            self.emit(
                "thread.run.step.delta",
                {
                    "id": step.id,
                    "object": "thread.run.step.delta",
                    "delta": {"step_details": {"type": "tool_calls", "tool_calls": unseen}},
                },
            )
        searches = [call[file_search.NAME] for call in details if call["type"] == file_search.NAME]
        if searches:
            await db(file_search.run_searches)(self.run, searches)
        runs = [call for call in details if call["type"] == code_interpreter.TYPE]
        if runs:
            await self.run_code(step, details, runs)
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

    async def run_code(
        self, step: RunStep, details: list[dict[str, Any]], calls: list[dict[str, Any]]
    ) -> None:
        """Run the model's code in the thread's sandbox, one call after the other; the log
        streams as step deltas, then the step records each call's outputs."""
        files = await self.code_files()
        after = await db(code_interpreter.last_call)(self.run)
        # The code is recorded before it runs: a poll sees it, and should this process die
        # meanwhile, the thread's next run knows that code ran (its session was lost).
        await db(step.save)(update_fields=["step_details"])
        for call in calls:
            index = details.index(call)

            async def on_output(text: str, index: int = index) -> None:
                self.emit_code_delta(
                    step, index, {"outputs": [{"index": 0, "type": "logs", "logs": text}]}
                )

            result = await code_interpreter.execute(self.run, call, files, after, on_output)
            after = call["id"]
            self.sandbox_files.update(await db(code_interpreter.record)(self.run, call, result))
            outputs = call[code_interpreter.TYPE]["outputs"]
            images = [o for o in outputs if o["type"] == "image"]
            self.code_images += [image["image"]["file_id"] for image in images]
            if images:
                first = len(outputs) - len(images)
                self.emit_code_delta(
                    step,
                    index,
                    {"outputs": [{"index": first + i, **o} for i, o in enumerate(images)]},
                )
            await db(step.save)(update_fields=["step_details"])

    def emit_code_delta(
        self, step: RunStep, index: int, delta: dict[str, Any], call_id: str | None = None
    ) -> None:
        call: dict[str, Any] = {"index": index, "type": code_interpreter.TYPE}
        if call_id:
            call["id"] = call_id
        call[code_interpreter.TYPE] = delta
        self.emit(
            "thread.run.step.delta",
            {
                "id": step.id,
                "object": "thread.run.step.delta",
                "delta": {"step_details": {"type": "tool_calls", "tool_calls": [call]}},
            },
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
        if await db(self.record_failure)(code, message, timezone.now()):
            await self.emit_incomplete_message()
            self.emit_run("thread.run.failed")
        else:
            await self.settle_interrupted()

    def record_failure(self, code: str, message: str, now: datetime) -> bool:
        """The run failed, and what it left open ends with it: one transaction, so a failed run
        never leaves its answer in progress. False when a cancel got there first."""
        with transaction.atomic():
            if not self.run.transition(
                Run.UNDER_WAY,
                Run.Status.FAILED,
                failed_at=now,
                last_error={"code": code, "message": message},
                usage=self.usage,
            ):
                return False
            self.run.end_open_parts(Run.Status.FAILED, now)
        return True

    async def fail_once_written(self, code: str, message: str) -> None:
        """Fail the run, trying again while the disk is full (until the run would expire): its
        error must say why, not be taken later for a lost worker's. The worker keeps the run
        as its own meanwhile, so no one settles it as lost."""
        deadline = time.monotonic() + settings.RUN_EXPIRES_SECONDS
        while True:
            try:
                await self.fail(code, message)
                return
            except Exception as error:
                if not disk.full(error) or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(DISK_FULL_RETRY_SECONDS)

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


@dataclass
class StreamingCall:
    """A tool call while the model streams it (RunExecution.stream_call)."""

    id: str = ""
    name: str = ""
    code: code_interpreter.StreamedCode = field(default_factory=code_interpreter.StreamedCode)
    # Its step delta went out: the reader has the call and its code so far.
    shown: bool = False


def tool_call_details(call: ToolCallRequest, code: bool) -> dict[str, Any]:
    """The run step's record of a model's tool call; any call the engine does not execute is a
    function call for the client. `code`: the run has code interpreter."""
    if call.name == file_search.NAME:
        return file_search.call_details(call)
    if code and call.name == code_interpreter.NAME:
        return code_interpreter.call_details(call)
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments, "output": None},
    }


def without_output(call: dict[str, Any]) -> dict[str, Any]:
    function = {k: v for k, v in call["function"].items() if k != "output"}
    return {"id": call["id"], "type": "function", "function": function}

"""The answer a model turn writes: each token sent at once, the text saved in batches.

An `AnswerWriter` opens the assistant message on the first token and streams every token to the
run's subscribers as it arrives, but the growing text reaches the database only every
`FLUSH_SECONDS`, for all the answers of the worker together (`AnswerFlusher`), never per token.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from typing import Any, Protocol

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from engine.knowledge import citations
from engine.models import Message, Run, RunStep
from engine.runs import events
from engine.runs.worker import db
from engine.tools.code_interpreter import tool as code_interpreter

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.5


class Execution(Protocol):
    """What a writer needs of the run execution it writes for."""

    run: Run
    run_id: str
    # The answer being written, if any: a cancel or failure ends it as incomplete.
    open_message_id: str | None
    # Files this run's code wrote (path -> file id) and figures not yet in an answer.
    sandbox_files: dict[str, str]
    code_images: list[str]

    def emit(self, event: str, data: Any) -> None: ...

    def new_step(self, kind: str, details: dict[str, Any]) -> RunStep: ...


class AnswerWriter:
    """The assistant message a model turn writes: opened on the first token, then kept in the
    database by `answers`, the flusher, until it closes."""

    def __init__(self, execution: Execution) -> None:
        self.execution = execution
        self.message: Message | None = None
        self.step: RunStep | None = None
        self.parts: list[str] = []
        self.dirty = False  # text arrived since the last flush

    async def write(self, text: str) -> None:
        message = self.message
        if message is None:
            message = await db(self.open)()
            answers.add(self)
        self.parts.append(text)
        self.dirty = True
        self.execution.emit(events.MESSAGE_DELTA, events.MessageText(message.id, text))

    def open(self) -> Message:
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
        return self.message

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
        annotations += code_interpreter.file_path_annotations(text, self.execution.sandbox_files)
        # Figures the run's code showed open the answer, as in OpenAI's messages.
        images = [
            {"type": "image_file", "image_file": {"file_id": file_id}}
            for file_id in self.execution.code_images
        ]
        self.execution.code_images = []
        message.content = [
            *images,
            {"type": "text", "text": {"value": text, "annotations": annotations}},
        ]
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

"""Relaying one run: its upstream events become HTML fragments, published with sequence numbers.

`RunView` is the answer's state, and the only place that knows what each event means for the
page; it is plain Python, testable without a server. `Relay` is the background task that the
POST which started the run also starts (a GET never does): it reads the run's event stream,
feeds `RunView`, and publishes what it returns, writing each event to the replay log before the
channel layer carries it to the live subscribers. Events that pile up while a publish is in
flight go out together as one event, so a fast stream costs fewer, larger events.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.template.loader import render_to_string
from django.utils.safestring import SafeString

from chat import assistants_api as api
from chat.live import replay
from chat.live.routing import events_url
from chat.models import Conversation
from chat.rendering import (
    Checkpoints,
    MessageView,
    cited_file_ids,
    dom_id,
    escape_text,
    markdown_html,
)
from chat.rendering import message_view as render_message

log = logging.getLogger(__name__)

TERMINAL = {
    "thread.run.completed",
    "thread.run.failed",
    "thread.run.cancelled",
    "thread.run.expired",
    "thread.run.incomplete",
}
# After the stream broke: how long to wait for the run to end before giving up on it.
RECOVER_SECONDS = 300.0
RECOVER_POLL_SECONDS = 1.0


def group_name(run_id: str) -> str:
    return f"chat.run.{dom_id(run_id)}"


def plural(count: int, word: str) -> str:
    return f"{count:,} {word}" if count == 1 else f"{count:,} {word}s"


# --- The answer's state ---------------------------------------------------------------------------


@dataclass
class Call:
    """One tool call of a step, as the page shows it."""

    kind: str  # file_search | function | code_interpreter
    name: str = ""
    arguments: str = ""
    output: str = ""
    results: int | None = None  # file_search hits
    running: bool = True

    def label(self, file_count: int | None) -> str:
        files = plural(file_count, "file") if file_count is not None else "files"
        if self.kind == "file_search":
            if self.running:
                return f"Searching {files}…"
            found = f" · {plural(self.results, 'result')}" if self.results is not None else ""
            return f"Searched {files}{found}"
        if self.kind == "code_interpreter":
            return "Running code…" if self.running else "Ran code"
        return f"Calling {self.name}…" if self.running else f"Called {self.name}"


@dataclass
class Step:
    step_id: str
    dom_id: str
    calls: list[Call] = field(default_factory=list)
    file_count: int | None = None
    kind: str = "step"

    @property
    def labels(self) -> list[tuple[str, Call]]:
        return [(call.label(self.file_count), call) for call in self.calls]


@dataclass
class Reply:
    message_id: str
    dom_id: str
    parts: list[str] = field(default_factory=list)
    length: int = 0
    rendered: SafeString = field(default_factory=SafeString)  # the checkpointed markdown
    rendered_upto: int = 0  # characters of the text that `rendered` covers
    checkpoints: Checkpoints = field(default_factory=Checkpoints)
    final: MessageView | None = None
    kind: str = "reply"

    def text(self) -> str:
        if len(self.parts) > 1:
            self.parts = ["".join(self.parts)]
        return self.parts[0] if self.parts else ""

    @property
    def tail(self) -> str:
        """The text after the last checkpoint, streamed as plain text (the template escapes it)."""
        return self.text()[self.rendered_upto :]


@dataclass
class Notice:
    lines: list[str]
    error: bool = False
    retry: bool = False


@dataclass
class TextPiece:
    """Escaped text to append to an element; adjacent pieces for one element merge."""

    target: str
    html: str


Fragment = str | TextPiece


class RunView:
    """What the page shows of one run, and the fragments that move the page along with it."""

    def __init__(self, conversation_id: int, run_id: str) -> None:
        self.conversation_id = conversation_id
        self.run_id = run_id
        self.dom_id = dom_id(run_id)
        self.items: list[Step | Reply] = []
        self.steps: dict[str, Step] = {}
        self.replies: dict[str, Reply] = {}
        self.notice: Notice | None = None
        self.status = "queued"
        self.live = True
        self.file_count: int | None = None
        self.file_names: dict[str, str] = {}

    # -- template context --

    @property
    def events_url(self) -> str:
        return events_url(self.conversation_id, self.run_id)

    def render(self, partial: str, **context: Any) -> str:
        return render_to_string(f"chat/run.html#{partial}", {"run": self, **context})

    def append(self, html: str) -> str:
        return f'<div hx-swap-oob="beforeend:#run-{self.dom_id}">{html}</div>'

    def snapshot(self) -> str:
        """The whole answer so far, replacing what the page has: safe to apply at any time."""
        return self.render("run_body", body_oob=True)

    def final(self) -> str:
        """The finished answer, replacing the live section (which closes its event source)."""
        self.live = False
        return self.render("live", live_oob=True) + self.render("idle_controls")

    # -- events --

    def apply(self, name: str, data: dict[str, Any]) -> list[Fragment]:
        if name == "thread.message.delta":
            return self.delta(data["message_id"], data["text"])
        if name == "thread.message.created":
            return self.message_created(data)
        if name in ("thread.message.completed", "thread.message.incomplete"):
            return self.message_done(data)
        if name in ("thread.run.step.created", "thread.run.step.delta"):
            return self.step_changed(data, delta=name.endswith("delta"))
        if name.startswith("thread.run.step."):
            return self.step_changed(data, delta=False, ended=True)
        if name.startswith("thread.run."):
            self.run_changed(name, data)
        return []

    def delta(self, message_id: str, text: str) -> list[Fragment]:
        reply = self.replies.get(message_id)
        if reply is None or reply.final is not None or not text:
            return []
        reply.parts.append(text)
        reply.length += len(text)
        fragments: list[Fragment] = [TextPiece(f"{reply.dom_id}-tail", escape_text(text))]
        if reply.length >= reply.checkpoints.next_at:
            whole = reply.text()
            upto = reply.checkpoints.due(whole)
            if upto:
                reply.rendered = markdown_html(whole[:upto])
                reply.rendered_upto = upto
                fragments.append(self.render("reply_text", reply=reply, text_oob=True))
        return fragments

    def message_created(self, data: dict[str, Any]) -> list[Fragment]:
        message_id = data["id"]
        if message_id in self.replies or data.get("role") != "assistant":
            return []
        # The same id as the finished message's (MessageView.dom_id): the final swap finds it.
        reply = Reply(message_id, f"m-{dom_id(message_id)}")
        self.replies[message_id] = reply
        self.items.append(reply)
        return [self.append(self.render("reply", reply=reply))]

    def message_done(self, data: dict[str, Any]) -> list[Fragment]:
        reply = self.replies.get(data["id"])
        if reply is None:
            created = self.message_created(data)
            reply = self.replies.get(data["id"])
            if reply is None:
                return created
        reply.final = render_message(data, self.conversation_id, self.file_names)
        return [self.render("reply", reply=reply, reply_oob=True)]

    def step_changed(
        self, data: dict[str, Any], *, delta: bool, ended: bool = False
    ) -> list[Fragment]:
        details = (
            (data.get("delta") or {}).get("step_details") if delta else data.get("step_details")
        )
        if not details or details.get("type") != "tool_calls":
            return []
        step = self.steps.get(data["id"])
        new = step is None
        if step is None:
            step = Step(data["id"], f"s-{dom_id(data['id'])}")
            self.steps[step.step_id] = step
            self.items.append(step)
        step.file_count = self.file_count
        for position, call_data in enumerate(details.get("tool_calls") or []):
            index = call_data.get("index", position)
            while len(step.calls) <= index:
                step.calls.append(Call(kind=call_data.get("type") or "function"))
            merge_call(step.calls[index], call_data, append=delta)
        if ended:
            for call in step.calls:
                call.running = False
        # A step joins the page when it starts (empty steps are hidden), so the page keeps the
        # run's order; later it is replaced whole, which is cheap: steps are small.
        if new:
            return [self.append(self.render("step", step=step))]
        return [self.render("step", step=step, step_oob=True)]

    def run_changed(self, name: str, data: dict[str, Any]) -> None:
        self.status = data.get("status") or self.status
        if name == "thread.run.failed":
            error = data.get("last_error") or {}
            message = error.get("message") or "The assistant could not answer."
            self.notice = Notice([f"The answer failed: {message}"], error=True, retry=True)
        elif name == "thread.run.expired":
            self.notice = Notice(["The answer took too long and was stopped."], True, True)
        elif name == "thread.run.cancelled":
            self.notice = Notice(["Stopped."])
        elif name == "thread.run.incomplete":
            reason = (data.get("incomplete_details") or {}).get("reason") or "a limit"
            self.notice = Notice([f"The answer was cut short ({reason.replace('_', ' ')})."])

    def unsupported_tools(self, data: dict[str, Any]) -> None:
        calls = ((data.get("required_action") or {}).get("submit_tool_outputs") or {}).get(
            "tool_calls"
        ) or []
        names = sorted({call["function"]["name"] for call in calls}) or ["a tool"]
        self.notice = Notice(
            [
                f"The assistant asked to run {', '.join(names)}, which this chat cannot do, "
                "so the answer stopped here."
            ],
            error=True,
        )

    def lost(self, reason: str) -> None:
        self.notice = Notice([reason], error=True, retry=True)

    def finish(self, messages: list[dict[str, Any]] | None = None) -> None:
        """Settle every reply: the API's final messages where known, else the streamed text."""
        for message in messages or []:
            if message["id"] not in self.replies:
                self.message_created(message)
            self.message_done(message)
        for reply in self.replies.values():
            if reply.final is None:
                partial = {
                    "id": reply.message_id,
                    "role": "assistant",
                    "status": "incomplete",
                    "content": [{"type": "text", "text": {"value": reply.text()}}],
                }
                reply.final = render_message(partial, self.conversation_id, self.file_names)
        for step in self.steps.values():
            for call in step.calls:
                call.running = False

    def add_file_problems(self, problems: list[str]) -> None:
        if not problems:
            return
        if self.notice is None:
            self.notice = Notice([], error=True)
        self.notice.lines.extend(problems)
        self.notice.error = True


def merge_call(call: Call, data: dict[str, Any], *, append: bool) -> None:
    call.kind = data.get("type") or call.kind
    if call.kind == "function":
        function = data.get("function") or {}
        call.name = function.get("name") or call.name
        arguments = function.get("arguments") or ""
        call.arguments = call.arguments + arguments if append else arguments or call.arguments
        if function.get("output") is not None:
            call.output = str(function["output"])
    elif call.kind == "file_search":
        results = (data.get("file_search") or {}).get("results")
        if results is not None:
            call.results = len(results)
    elif call.kind == "code_interpreter":
        code = data.get("code_interpreter") or {}
        piece = code.get("input") or ""
        call.arguments = call.arguments + piece if append else piece or call.arguments
        outputs = code.get("outputs") or []
        logs = [o.get("logs", "") for o in outputs if o.get("type") == "logs"]
        if logs:
            call.output = "\n".join(logs)


def merged(fragments: list[Fragment]) -> str:
    out: list[str] = []
    pending: TextPiece | None = None
    for fragment in fragments:
        if isinstance(fragment, TextPiece):
            if pending is not None and pending.target == fragment.target:
                pending.html += fragment.html
                continue
            if pending is not None:
                out.append(text_html(pending))
            pending = TextPiece(fragment.target, fragment.html)
            continue
        if pending is not None:
            out.append(text_html(pending))
            pending = None
        out.append(fragment)
    if pending is not None:
        out.append(text_html(pending))
    return "".join(out)


def text_html(piece: TextPiece) -> str:
    # beforeend on an out-of-band element appends its children: here, the escaped text alone.
    return f'<span hx-swap-oob="beforeend:#{piece.target}">{piece.html}</span>'


# --- The background task --------------------------------------------------------------------------


@dataclass
class RunStart:
    """What the POST that started a run hands to its relay."""

    conversation_id: int
    thread_id: str
    assistant_id: str
    run_id: str
    events: AsyncIterator[api.RunEvent]
    uploads: dict[str, str] = field(default_factory=dict)  # file id -> name, of this message


_relays: set[asyncio.Task[None]] = set()


def start(run: RunStart) -> asyncio.Task[None]:
    """Relay the run on this loop, in a context of its own: the request's ends with its response."""
    relay = Relay(run)
    task = asyncio.get_running_loop().create_task(
        relay.run(), name=f"relay {run.run_id}", context=contextvars.Context()
    )
    _relays.add(task)
    task.add_done_callback(_relays.discard)
    return task


def open_log(run_id: str, conversation_id: int) -> None:
    """Called by the POST before it answers, so the page's first connection finds the log."""
    replay.open_log(run_id, conversation_id)


async def running() -> None:
    """Wait for every relay in flight (tests and shutdown)."""
    while _relays:
        await asyncio.gather(*list(_relays), return_exceptions=True)


class Relay:
    def __init__(self, run: RunStart) -> None:
        self.run_start = run
        self.run_id = run.run_id
        self.view = RunView(run.conversation_id, run.run_id)
        self.view.file_names.update(run.uploads)
        self.outbox: list[Fragment] = []
        self.wake = asyncio.Event()
        self.read_done = False
        self.seq = 0
        self.base = 0
        self.layer = get_channel_layer()
        self.group = group_name(run.run_id)

    async def run(self) -> None:
        # The first event is a snapshot (of nothing yet): a browser that connects without a
        # Last-Event-ID starts from a clean slate, so a full replay never doubles anything.
        reader: asyncio.Task[None] | None = None
        try:
            await self.publish_snapshot(self.view.snapshot())
            reader = asyncio.create_task(self.read())
            await self.publish_loop()
        except Exception:
            log.exception("Relaying run %s failed", self.run_id)
        finally:
            if reader is not None:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
            await self.end()

    # -- reading upstream --

    async def read(self) -> None:
        terminal = False
        try:
            async for event in self.run_start.events:
                await self.prepare(event)
                self.outbox.extend(self.view.apply(event.name, event.data))
                terminal = terminal or event.name in TERMINAL
                if event.name == "thread.run.requires_action":
                    self.view.unsupported_tools(event.data)
                    await api.cancel_run(self.run_start.thread_id, self.run_id)
                self.wake.set()
            if not terminal:
                await self.recover()
        except api.AssistantsError as error:
            log.warning("Run %s stream broke: %s", self.run_id, error)
            await self.recover()
        except Exception:
            log.exception("Run %s: relaying an event failed", self.run_id)
            await self.recover()
        finally:
            self.read_done = True
            self.wake.set()

    async def prepare(self, event: api.RunEvent) -> None:
        """Fetch what rendering the event needs from the API: file counts and names."""
        if event.name in ("thread.run.step.created", "thread.run.step.delta"):
            details = event.data.get("step_details") or (event.data.get("delta") or {}).get(
                "step_details"
            )
            calls = (details or {}).get("tool_calls") or []
            if self.view.file_count is None and any(
                call.get("type") == "file_search" for call in calls
            ):
                self.view.file_count = await self.file_count()
        elif event.name == "thread.message.completed":
            await self.learn_names([event.data])

    async def file_count(self) -> int | None:
        try:
            return await api.searchable_file_count(
                self.run_start.thread_id, self.run_start.assistant_id
            )
        except api.AssistantsError:
            return None

    async def learn_names(self, messages: list[dict[str, Any]]) -> None:
        for file_id in cited_file_ids(messages) - set(self.view.file_names):
            try:
                self.view.file_names[file_id] = (await api.file_info(file_id))["filename"]
            except api.AssistantsError:
                self.view.file_names[file_id] = "a file"

    async def recover(self) -> None:
        """The stream ended early: wait for the run to end, then show what the API has."""
        thread_id = self.run_start.thread_id
        deadline = asyncio.get_running_loop().time() + RECOVER_SECONDS
        try:
            while True:
                run = await api.retrieve_run(thread_id, self.run_id)
                if run["status"] not in api.ACTIVE_STATUSES:
                    break
                if run["status"] == "requires_action":
                    self.view.unsupported_tools(run)
                    await api.cancel_run(thread_id, self.run_id)
                if asyncio.get_running_loop().time() > deadline:
                    self.view.lost("The answer is taking too long; reload the page later.")
                    return
                await asyncio.sleep(RECOVER_POLL_SECONDS)
            messages = await api.run_messages(thread_id, self.run_id)
            await self.learn_names(messages)
            self.view.finish(messages)
            if self.view.notice is None:
                self.view.run_changed(f"thread.run.{run['status']}", run)
        except api.AssistantsError:
            self.view.lost(
                "Lost the connection to the assistant. Reload the page to see whether the "
                "answer arrived."
            )

    # -- publishing --

    async def publish_loop(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            batch, self.outbox = self.outbox, []
            # Rendered now, with no await since the batch was taken: the snapshot shows exactly
            # the state after this batch, and the outbox's next fragments build on it.
            snapshot = None
            if batch and self.seq + 1 - self.base >= replay.COMPACT_EVERY:
                snapshot = self.view.snapshot()
            if batch:
                await self.publish("update", merged(batch))
            if snapshot is not None:
                await self.publish_snapshot(snapshot)
            if self.read_done and not self.outbox:
                return

    async def publish(self, event: str, data: str) -> replay.Entry:
        self.seq += 1
        entry = replay.Entry(self.seq, event, data)
        await replay.call(replay.append, self.run_id, [entry])
        await self.layer.group_send(
            self.group, {"type": "run.event", "seq": entry.seq, "event": event, "data": data}
        )
        return entry

    async def publish_snapshot(self, snapshot: str) -> None:
        entry = await self.publish("update", snapshot)
        await replay.call(replay.rebase, self.run_id, entry)
        self.base = entry.seq

    async def end(self) -> None:
        try:
            self.view.finish()
            await self.check_uploads()
        except Exception:
            log.exception("Run %s: settling the answer failed", self.run_id)
        try:
            # Before the last events: once a browser has seen the end, a reload must find the
            # thread idle (its page then shows the answer from the API, not a live section).
            await sync_to_async(Conversation.end_run)(self.view.conversation_id, self.run_id)
        except Exception:
            log.exception("Run %s: marking the conversation idle failed", self.run_id)
        final = await self.publish("update", self.view.final())
        end = await self.publish("end", "")
        await replay.call(replay.rebase, self.run_id, final, end=end.seq)

    async def check_uploads(self) -> None:
        """Say which of this message's files could not be read (say, an encrypted PDF)."""
        uploads = self.run_start.uploads
        if not uploads:
            return
        try:
            failed = await api.failed_files(self.run_start.thread_id, list(uploads))
        except api.AssistantsError:
            return
        self.view.add_file_problems(
            [
                f"{uploads[file_id]} could not be read: {reason}"
                for file_id, reason in failed.items()
            ]
        )

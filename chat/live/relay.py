"""Relaying one run: its upstream events become HTML fragments, published with sequence numbers.

`Relay` is the background task that the POST which started the run also starts (a GET never
does): it reads the run's event stream, feeds the answer's `RunView` (chat.live.answer), and
publishes what it returns, writing each event to the replay log before the channel layer
carries it to the live subscribers. Events that pile up while a publish is in flight go out
together as one event, so a fast stream costs fewer, larger events.
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

from chat import assistants_api as api
from chat import search, titles
from chat.limits import admission
from chat.live import replay
from chat.live.answer import Fragment, RunView, merged
from chat.models import Conversation
from chat.rendering import cited_file_ids, dom_id
from chat.tools import rounds
from chat.tools.cards import Card

log = logging.getLogger(__name__)

TERMINAL = {
    "thread.run.completed",
    "thread.run.failed",
    "thread.run.cancelled",
    "thread.run.expired",
    "thread.run.incomplete",
}
# The events that carry a message of the run as it ended: what search keeps of it.
WRITTEN = {"thread.message.completed", "thread.message.incomplete"}
# A streaming answer's events go at most this often: each event costs the same work (the log, the
# channel layer, a write per browser) whether it carries one token or five, and a model sends a
# token every 20-50 ms. Well under what a reader notices, and half the 100 ms between two pieces
# of text the page is allowed (bench/chat_stream.py).
PUBLISH_EVERY_SECONDS = 0.05
# After the stream broke: how long to wait for the run to end before giving up on it.
RECOVER_SECONDS = 300.0
RECOVER_POLL_SECONDS = 1.0


def group_name(run_id: str) -> str:
    return f"chat.run.{dom_id(run_id)}"


@dataclass
class RunStart:
    """What the POST that started a run hands to its relay."""

    conversation_id: int
    thread_id: str
    assistant_id: str
    run_id: str
    events: AsyncIterator[api.RunEvent] | None
    uploads: dict[str, str] = field(default_factory=dict)  # file id -> name, of this message
    # The person's message the run answers, if it was just sent: its id, or the name the chat
    # gave it (chat.search.new_key), and its text.
    asked: tuple[str, str] | None = None
    # A relay taking over the run's calls from a dead process (chat.tools.recovery): no stream
    # yet, the run read from the API, and the lease it took.
    taken_over: bool = False
    token: str = ""
    last_seq: int = 0  # the last event in the answer's log so far


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
        self.view = RunView.started(run.conversation_id, run.run_id, file_names=run.uploads)
        self.outbox: list[Fragment] = []
        self.wake = asyncio.Event()
        self.read_done = False
        # The run object as it ended (with its token usage), once known.
        self.final_run: dict[str, Any] | None = None
        self.seq = 0
        self.base = 0
        self.layer = get_channel_layer()
        self.group = group_name(run.run_id)
        self.terminal = False  # the stream said how the run ended
        # Holds the run's function calls while they are answered (chat.tools.rounds).
        self.token = run.token or rounds.relay_token()
        self.handed_over = False  # another process's relay took the run's calls over
        # The messages the run wrote, as their last events (or the API) gave them.
        self.written: dict[str, dict[str, Any]] = {}

    async def run(self) -> None:
        # The first event is a snapshot (of nothing yet): a browser that connects without a
        # Last-Event-ID starts from a clean slate, so a full replay never doubles anything.
        reader: asyncio.Task[None] | None = None
        try:
            if self.run_start.taken_over:
                await self.rebuild()
            await self.publish_snapshot(self.view.snapshot())
            reader = asyncio.create_task(self.read())
            await self.publish_loop()
        except Exception:
            # The replay log is out of reach. The run goes on in the API regardless: follow it
            # to its end, so that the last events carry the whole answer (or why it stopped),
            # never an empty one, and the thread is idle when the run is over, not before.
            log.exception("Relaying run %s failed; following it to its end", self.run_id)
            if reader is None:
                reader = asyncio.create_task(self.read())
            await asyncio.gather(reader, return_exceptions=True)
        finally:
            if reader is not None:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
            said = None
            if not self.handed_over:  # else the relay that took over ends the answer
                said = await self.end()
        if said is not None:
            # After the end: the answer is whole on the page while the model writes a title.
            await titles.write(self.view.conversation_id, self.run_start.assistant_id, said)

    # -- reading upstream --

    async def read(self) -> None:
        """Follow the run to its end: its stream, the function calls it waits on (answered by
        chat.tools.rounds), and the stream that goes on once they are submitted."""
        events = self.run_start.events
        try:
            while True:
                action = None
                if events is not None:
                    action = await self.follow(events)
                    events = None
                if action is None and not self.terminal:
                    action = await self.recover()
                if action is None:
                    return
                events = await self.answer_calls(action)
                if self.handed_over:
                    return
        except Exception:
            log.exception("Run %s: relaying an event failed", self.run_id)
            await self.recover()
        finally:
            self.read_done = True
            self.wake.set()

    async def follow(self, events: AsyncIterator[api.RunEvent]) -> dict[str, Any] | None:
        """Relay a stream of the run; the run, if it stopped to wait for function calls."""
        action = None
        try:
            async for event in events:
                await self.prepare(event)
                self.outbox.extend(self.view.apply(event.name, event.data))
                if event.name in WRITTEN and event.data.get("id"):
                    self.written[event.data["id"]] = event.data
                if event.name in TERMINAL:
                    self.terminal = True
                    self.final_run = event.data  # its usage counts against the person's limits
                if event.name == "thread.run.requires_action":
                    action = event.data
                self.wake.set()
        except api.AssistantsError as error:
            log.warning("Run %s stream broke: %s", self.run_id, error)
        return action

    async def answer_calls(self, run: dict[str, Any]) -> AsyncIterator[api.RunEvent] | None:
        """Answer the calls the run waits on; the run's stream once their outputs are in."""
        calls = (run.get("required_action") or {}).get("submit_tool_outputs") or {}
        call_ids = {call["id"] for call in calls.get("tool_calls") or []}
        step_id = self.view.step_with(call_ids) or await self.step_of(call_ids)
        if step_id is None:
            log.warning("Run %s: no step holds the calls it waits on", self.run_id)
            return None
        where = rounds.Where(
            self.run_start.conversation_id,
            self.run_start.thread_id,
            self.run_id,
            self.run_start.assistant_id,
        )

        async def show(cards: list[Card], expires_at: Any) -> None:
            self.outbox.extend(self.view.show_cards(step_id, cards))
            self.wake.set()

        outcome = await rounds.answer(where, run, step_id, self.token, show)
        if outcome.lost:
            self.handed_over = True
        elif outcome.run is not None:
            self.view.stopped_waiting(outcome.run)
        return outcome.events

    async def step_of(self, call_ids: set[str]) -> str | None:
        try:
            steps = await api.run_steps(self.run_start.thread_id, self.run_id)
        except api.AssistantsError:
            return None
        for step in reversed(steps):
            details = step.get("step_details") or {}
            if call_ids & {call.get("id") for call in details.get("tool_calls") or []}:
                return str(step["id"])
        return None

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

    async def recover(self) -> dict[str, Any] | None:
        """The stream ended early: wait for the run to end, then show what the API has; the
        run, if it waits for function calls instead."""
        thread_id = self.run_start.thread_id
        deadline = asyncio.get_running_loop().time() + RECOVER_SECONDS
        try:
            while True:
                run = await api.retrieve_run(thread_id, self.run_id)
                if run["status"] == "requires_action":
                    return run
                if run["status"] not in api.ACTIVE_STATUSES:
                    self.final_run = run
                    break
                if asyncio.get_running_loop().time() > deadline:
                    self.view.lost("The answer is taking too long; reload the page later.")
                    self.terminal = True
                    return None
                await asyncio.sleep(RECOVER_POLL_SECONDS)
            messages = await api.run_messages(thread_id, self.run_id)
            self.written.update((m["id"], m) for m in messages)
            await self.learn_names(messages)
            self.view.finish(messages)
            if self.view.notice is None:
                self.view.run_changed(f"thread.run.{run['status']}", run)
        except api.AssistantsError:
            self.view.lost(
                "Lost the connection to the assistant. Reload the page to see whether the "
                "answer arrived."
            )
        self.terminal = True
        return None

    async def rebuild(self) -> None:
        """A relay taking over: the run so far as the API has it; the log goes on after the
        last event it holds (chat.tools.recovery reopened it)."""
        thread_id = self.run_start.thread_id
        try:
            steps = await api.run_steps(thread_id, self.run_id)
            messages = await api.run_messages(thread_id, self.run_id)
            self.written.update((m["id"], m) for m in messages)
            await self.learn_names(messages)
            self.view.rebuild(steps, messages)
        except api.AssistantsError as error:
            log.warning("Run %s: could not read the run to take it over: %s", self.run_id, error)
        self.seq = self.base = self.run_start.last_seq

    # -- publishing --

    async def publish_loop(self) -> None:
        loop = asyncio.get_running_loop()
        published_at = -PUBLISH_EVERY_SECONDS
        while True:
            await self.wake.wait()
            # What arrives within PUBLISH_EVERY_SECONDS of the last event joins the next one:
            # the first token of a quiet stream goes at once, a busy stream's in fewer events.
            wait = published_at + PUBLISH_EVERY_SECONDS - loop.time()
            if wait > 0 and not self.read_done:
                await asyncio.sleep(wait)
            self.wake.clear()
            if self.handed_over:
                return  # the log is the new relay's now
            batch, self.outbox = self.outbox, []
            # Rendered now, with no await since the batch was taken: the snapshot shows exactly
            # the state after this batch, and the outbox's next fragments build on it.
            snapshot = None
            if batch and self.seq + 1 - self.base >= replay.COMPACT_EVERY:
                snapshot = self.view.snapshot()
            if batch:
                published_at = loop.time()
                await self.publish("update", merged(batch))
            if snapshot is not None:
                await self.publish_snapshot(snapshot)
            if self.read_done and not self.outbox:
                return

    async def publish(self, event: str, data: str) -> replay.Entry:
        self.seq += 1
        entry = replay.Entry(self.seq, event, data)
        await replay.call(replay.append, self.run_id, [entry])
        message = {"type": "run.event", "seq": entry.seq, "event": event, "data": data}
        try:
            await self.layer.group_send(self.group, message)
        except Exception:
            # A connection that Redis closed (it restarted) fails one command, then reconnects:
            # try once more. Past that, readers still get the event: it is in the log, which
            # they read when the live events go quiet.
            log.warning("Run %s: publishing event %s failed; trying again", self.run_id, entry.seq)
            try:
                await self.layer.group_send(self.group, message)
            except Exception:
                log.exception("Run %s: event %s is in the log only", self.run_id, entry.seq)
        return entry

    async def publish_snapshot(self, snapshot: str) -> None:
        entry = await self.publish("update", snapshot)
        await replay.call(replay.rebase, self.run_id, entry)
        self.base = entry.seq

    async def end(self) -> list[dict[str, str]] | None:
        """Publish the finished answer and the end; the conversation's last messages, as a
        title is written from them, if the model is to write one now."""
        try:
            self.view.finish()
            await self.check_uploads()
        except Exception:
            log.exception("Run %s: settling the answer failed", self.run_id)
        recent = await self.remember_said()
        try:
            await sync_to_async(rounds.release)(self.run_id, self.token)
        except Exception:
            log.exception("Run %s: releasing its function calls failed", self.run_id)
        try:
            # Unknown (the answer was lost): the next send asks the API (settle_lost).
            if self.final_run is not None:
                await sync_to_async(admission.ended)(self.run_id, self.final_run)
        except Exception:
            log.exception("Run %s: recording its usage failed", self.run_id)
        try:
            # Before the last events: once a browser has seen the end, a reload must find the
            # thread idle (its page then shows the answer from the API, not a live section).
            await sync_to_async(Conversation.end_run)(self.view.conversation_id, self.run_id)
        except Exception:
            log.exception("Run %s: marking the conversation idle failed", self.run_id)
        header = ""
        titled = None
        if self.view.status == "completed" and recent:
            try:
                titled = await sync_to_async(titles.ask)(self.view.conversation_id)
            except Exception:
                log.exception("Run %s: asking for a title failed", self.run_id)
        if titled is not None:
            # The header, which asks for the title until the model has written it.
            header = await sync_to_async(render_to_string)(
                "chat/conversation.html#header", {"conversation": titled, "header_oob": True}
            )
        final = await self.publish("update", self.view.final() + header)
        end = await self.publish("end", "")
        await replay.call(replay.rebase, self.run_id, final, end=end.seq)
        if titled is None:
            return None
        return [{"role": m["role"], "content": search.plain(m)} for m in reversed(recent[:4])]

    async def remember_said(self) -> list[dict[str, Any]]:
        """Keep the text of the person's message and of the run's for search; they are
        returned, newest first. The run's events said it all: no request to the API for it."""
        try:
            if self.run_start.taken_over:
                # The relay that started the run died with its process before keeping what it
                # had seen: the thread's newest messages, from the API.
                said = list(reversed(await api.recent_messages(self.run_start.thread_id)))
            else:
                said = list(self.written.values())
                if self.run_start.asked is not None:
                    said.insert(0, search.person_said(*self.run_start.asked))
            await sync_to_async(search.remember)(self.view.conversation_id, said)
        except Exception:
            log.exception("Run %s: keeping its text for search failed", self.run_id)
            return []
        return list(reversed(said))

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

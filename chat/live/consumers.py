"""The live answer's event stream: server-sent events of HTML fragments, resumable.

A browser connects with the id of the last event it has (`Last-Event-ID`, which EventSource
sends by itself when it reconnects), gets what it missed from the replay log, then follows live.
Every event carries its `id:`. A live event that skips ahead (the channel layer dropped one for a
slow reader) is filled in from the log; one already sent is skipped. When the live events go
quiet, the log is read anyway: a dropped last event (the end) has no next one to show the gap.
Nothing here starts or changes a run: EventSource reconnects on its own, and a GET must never
run anything twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from channels.exceptions import StopConsumer
from channels.generic.http import AsyncHttpConsumer
from django.http import Http404

from chat.access import aconversation_for
from chat.live import replay
from chat.live.recovery import final_from_the_api
from chat.live.relay import group_name

log = logging.getLogger(__name__)
# While no live event arrives for this long, the stream reads the log and sends a comment.
HEARTBEAT_SECONDS = 5.0
HEADERS = [
    (b"Content-Type", b"text/event-stream; charset=utf-8"),
    (b"Cache-Control", b"no-cache, no-store"),
    # Proxies (nginx) would otherwise buffer the stream and deliver it in lumps.
    (b"X-Accel-Buffering", b"no"),
]


def last_event_id(scope: dict[str, Any]) -> int:
    for name, value in scope.get("headers", []):
        if name == b"last-event-id":
            with contextlib.suppress(ValueError):
                return max(0, int(value.decode("latin-1").strip()))
    return 0


def sse_event(seq: int, event: str, data: str) -> bytes:
    """One server-sent event; every line of the data gets its own `data:` field."""
    lines = data.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    body = "".join(f"data: {line}\n" for line in lines)
    return f"id: {seq}\nevent: {event}\n{body}\n".encode()


# channels ships no type information: its classes are Any to mypy.
class RunEventsConsumer(AsyncHttpConsumer):  # type: ignore[misc]
    """GET /c/<conversation_id>/runs/<run_id>/events"""

    run_id = ""
    group: str | None = None
    heartbeat: asyncio.Task[None] | None = None
    streaming = False  # the 200 and its headers are out
    closed = False
    heard = False  # a live event arrived since the heartbeat last looked

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        except Exception:
            # The channel layer failed under the stream (Redis went away, say). Daphne would
            # leave a started response open, and the heartbeat would keep it alive: end it
            # instead, so that EventSource reconnects and resumes from its Last-Event-ID.
            if not self.streaming or self.closed:
                raise
            log.exception("The event stream of run %s failed; ending it", self.run_id)
            await self.end_stream()
        finally:
            self.closed = True
            if self.heartbeat is not None:
                self.heartbeat.cancel()

    async def handle(self, body: bytes) -> None:
        kwargs = self.scope["url_route"]["kwargs"]
        self.run_id = kwargs["run_id"]
        self.last = last_event_id(self.scope)
        if self.scope.get("method") != "GET":
            await self.send_response(405, b"Method not allowed", headers=[(b"Allow", b"GET")])
            raise StopConsumer()
        try:
            conversation = await aconversation_for(self.scope["user"], kwargs["conversation_id"])
        except Http404:
            await self.not_found()
        self.conversation = conversation
        meta = await replay.call(replay.meta, self.run_id)
        if meta is None:
            # No log: expired, or lost (Redis restarted empty). The API has the answer, if the
            # run is one of this conversation's; anyone else's is a 404 all the same.
            final = await final_from_the_api(conversation.pk, conversation.thread_id, self.run_id)
            if final is None:
                await self.not_found()
            await self.send_headers(status=200, headers=HEADERS)
            self.streaming = True
            await self.send_final(final or "")
            raise StopConsumer()
        if meta.conversation_id != conversation.pk:
            await self.not_found()
        if meta.end is not None and self.last >= meta.end:
            # All seen. 204 tells EventSource not to reconnect.
            await self.send_response(204, b"")
            raise StopConsumer()

        self.group = group_name(self.run_id)
        # Live events and the heartbeat's reads of the log send in turn, so ids stay in order.
        self.sending = asyncio.Lock()
        # Join before reading the log: an event is in the log before it is published, so it is
        # either in what we read or among what we receive.
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.send_headers(status=200, headers=HEADERS)
        self.streaming = True
        await self.send_body(b": stream\n\n", more_body=True)
        await self.catch_up()
        if not self.closed:
            self.heartbeat = asyncio.create_task(self.beat())

    async def http_request(self, message: dict[str, Any]) -> None:
        # The base class ends the consumer when handle() returns; a stream has to outlive it.
        if "body" in message:
            self.body.append(message["body"])
        if not message.get("more_body"):
            await self.handle(b"".join(self.body))
            if self.closed:
                raise StopConsumer()

    async def not_found(self) -> None:
        await self.send_response(
            404, b"Not found", headers=[(b"Content-Type", b"text/plain; charset=utf-8")]
        )
        raise StopConsumer()

    async def catch_up(self) -> None:
        meta, entries = await replay.call(replay.read_after, self.run_id, self.last)
        if meta is None:
            # The log went away under the stream (Redis restarted empty): nothing more comes
            # through it. End with the answer as the API has it.
            log.warning("The log of run %s is gone; ending its stream from the API", self.run_id)
            final = await final_from_the_api(
                self.conversation.pk, self.conversation.thread_id, self.run_id
            )
            await self.send_final(final or "")
            await self.close()
            return
        for entry in entries:
            await self.emit(entry.seq, entry.event, entry.data)
            if self.closed:
                return

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Live events touch no database: skip the base class's close_old_connections, a thread
        # hop per event, which was a tenth of the server's CPU with 200 answers streaming.
        if message["type"] == "run.event":
            await self.run_event(message)
        else:
            await super().dispatch(message)

    async def run_event(self, message: dict[str, Any]) -> None:
        """A live event from the relay, through the channel layer."""
        self.heard = True
        async with self.sending:
            if not self.closed and message["seq"] > self.last + 1:
                await self.catch_up()
            if not self.closed and message["seq"] > self.last:
                await self.emit(message["seq"], message["event"], message["data"])
        if self.closed:
            raise StopConsumer()

    async def emit(self, seq: int, event: str, data: str) -> None:
        self.last = seq
        if event == "end":
            await self.send_body(sse_event(seq, event, data), more_body=False)
            await self.close()
            return
        await self.send_body(sse_event(seq, event, data), more_body=True)

    async def send_final(self, final: str) -> None:
        """The answer as a last update, then the end, numbered after what the page has."""
        body = sse_event(self.last + 1, "update", final) + sse_event(self.last + 2, "end", "")
        self.last += 2
        await self.send_body(body, more_body=False)
        self.closed = True

    async def end_stream(self) -> None:
        """End a started response early; daphne then tells this consumer it disconnected."""
        self.closed = True
        with contextlib.suppress(Exception):
            await self.send_body(b"", more_body=False)

    async def close(self) -> None:
        self.closed = True
        await self.leave()

    async def beat(self) -> None:
        """While the live events are quiet, look in the log, and keep the connection open.

        The channel layer can lose an event (Redis pub/sub keeps nothing for a process while its
        connection is re-established; the in-memory layer drops what a full queue cannot
        take); catch_up fills any hole, and finds a last event that never came live.
        """
        while not self.closed:
            self.heard = False
            await asyncio.sleep(HEARTBEAT_SECONDS)
            if self.closed or self.heard:
                continue
            try:
                async with self.sending:
                    await self.catch_up()
            except Exception:
                # The log is out of reach (Redis went away): live events are not coming either,
                # since both travel through Redis. End the stream; EventSource comes back.
                log.exception("Reading the log of run %s failed; ending its stream", self.run_id)
                await self.end_stream()
                return
            if not self.closed:
                await self.send_body(b": keep-alive\n\n", more_body=True)

    async def leave(self) -> None:
        if self.heartbeat is not None and self.heartbeat is not asyncio.current_task():
            self.heartbeat.cancel()
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)
            self.group = None

    async def disconnect(self) -> None:
        self.closed = True
        await self.leave()

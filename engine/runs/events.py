"""In-process fan-out of a run's stream events to the HTTP responses that follow it.

Runs execute on the worker's event loop (`engine.runs.worker`); responses are served on the
server's. A `Subscription` bridges the two: the worker appends from its thread, the response
awaits on its own loop, waking only when it has drained everything, and sends what piled up as
one write, in which the text deltas of one message that piled up go as one delta. A stream only
ever follows a run started or continued by the same process, so nothing here needs to cross
processes.

Waking a reader on another loop costs a write to that loop's self-pipe and a read on the other
side: with a few hundred answers streaming, a wake per token was a sixth of the process's CPU.
So wakes for one loop are gathered: the first push that finds a reader asleep asks its loop to
wake every reader waiting there, and pushes until that loop gets to it only join the list.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

DONE = "done"
KEEPALIVE_SECONDS = 5.0
KEEPALIVE = b": keep-alive\n\n"
MESSAGE_DELTA = "thread.message.delta"
# A text delta's JSON, encoded by hand: it goes out once per token, and only the text varies.
DELTA_PREFIX = (
    '{"id":"%s","object":"thread.message.delta","delta":{"content":'
    '[{"index":0,"type":"text","text":{"value":'
)
DELTA_SUFFIX = ',"annotations":[]}}]}}'


@dataclass(frozen=True, slots=True)
class MessageText:
    """The data of a `thread.message.delta` that adds text, kept as text until it is sent."""

    message_id: str
    text: str


_lock = threading.Lock()
_subscriptions: dict[str, set[Subscription]] = {}
# Readers to wake, per loop, gathered until that loop runs `_wake`; guarded by `_lock`.
_to_wake: dict[asyncio.AbstractEventLoop, list[asyncio.Event]] = {}


class Subscription:
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._events: list[tuple[str, Any]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiter: asyncio.Event | None = None
        # True while the reader sleeps: only then does a push need a (costly) cross-thread wake.
        self._sleeping = False

    def push(self, event: str, data: Any) -> None:
        with _lock:
            self._events.append((event, data))
            if not self._sleeping:
                return
            self._sleeping = False
            assert self._loop is not None and self._waiter is not None
            waiting = _to_wake.setdefault(self._loop, [])
            waiting.append(self._waiter)
            if len(waiting) > 1:
                return  # the loop is already asked to wake its readers
            loop = self._loop
        try:
            loop.call_soon_threadsafe(_wake, loop)
        except RuntimeError:  # the reader's loop is closed: nobody is left to wake
            with _lock:
                _to_wake.pop(loop, None)

    async def batches(
        self, quiet_after: float | None = None
    ) -> AsyncIterator[list[tuple[str, Any]]]:
        """Everything pushed since the last batch, until the `done` event; an empty batch
        after each `quiet_after` seconds in which nothing was pushed."""
        self._loop = asyncio.get_running_loop()
        self._waiter = asyncio.Event()
        try:
            while True:
                with _lock:
                    batch, self._events = self._events, []
                    if not batch:
                        self._waiter.clear()
                        self._sleeping = True
                if not batch:
                    try:
                        await asyncio.wait_for(self._waiter.wait(), quiet_after)
                    except TimeoutError:
                        yield []
                    continue
                done = [i for i, (event, _) in enumerate(batch) if event == DONE]
                if done:
                    yield batch[: done[0] + 1]
                    return
                yield batch
        finally:
            self.close()

    def close(self) -> None:
        with _lock:
            subscribers = _subscriptions.get(self.run_id)
            if subscribers is not None:
                subscribers.discard(self)
                if not subscribers:
                    del _subscriptions[self.run_id]


def _wake(loop: asyncio.AbstractEventLoop) -> None:
    with _lock:
        waiters = _to_wake.pop(loop, [])
    for waiter in waiters:
        waiter.set()


def subscribe(run_id: str) -> Subscription:
    """Follow a run's events from now on; subscribe before starting the run to miss none."""
    subscription = Subscription(run_id)
    with _lock:
        _subscriptions.setdefault(run_id, set()).add(subscription)
    return subscription


def publish(run_id: str, event: str, data: Any) -> None:
    with _lock:
        subscribers = list(_subscriptions.get(run_id, ()))
    for subscription in subscribers:
        subscription.push(event, data)


def sse_frame(event: str, data: Any) -> bytes:
    """One server-sent event; `data` is JSON-encoded unless it is already a string."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"event: {event}\ndata: {payload}\n\n".encode()


def text_of(item: tuple[str, Any]) -> str | None:
    """The message id of a text delta, else None: what `encode` groups a batch by."""
    data = item[1]
    return data.message_id if isinstance(data, MessageText) else None


def encode(batch: list[tuple[str, Any]]) -> bytes:
    """A batch as server-sent events; consecutive text deltas of one message become one."""
    frames: list[bytes] = []
    for message_id, items in itertools.groupby(batch, key=text_of):
        if message_id is None:
            frames.extend(sse_frame(event, data) for event, data in items)
        else:
            text = json.dumps("".join(data.text for _, data in items))
            frames.append(sse_frame(MESSAGE_DELTA, DELTA_PREFIX % message_id + text + DELTA_SUFFIX))
    return b"".join(frames)


async def sse_stream(
    subscription: Subscription, first: list[tuple[str, Any]] | None = None
) -> AsyncIterator[bytes]:
    """The run's events as server-sent events, after `first`; a comment while it is quiet,
    so that a proxy does not take a long wait (a run waiting for its files) for a dead
    connection: nginx gives up after 60 s by default."""
    try:
        if first:
            yield encode(first)
        async for batch in subscription.batches(quiet_after=KEEPALIVE_SECONDS):
            yield encode(batch) if batch else KEEPALIVE
    finally:
        subscription.close()

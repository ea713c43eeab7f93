"""In-process fan-out of a run's stream events to the HTTP responses that follow it.

Runs execute on the worker's event loop (`engine.worker`); responses are served on the server's.
A `Subscription` bridges the two: the worker appends from its thread, the response awaits on its
own loop, waking only when it has drained everything, and sends what piled up as one write. A
stream only ever follows a run started or continued by the same process, so nothing here needs
to cross processes.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from typing import Any

DONE = "done"

_lock = threading.Lock()
_subscriptions: dict[str, set[Subscription]] = {}


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
            wake = self._sleeping
            self._sleeping = False
        if wake:
            assert self._loop is not None and self._waiter is not None
            self._loop.call_soon_threadsafe(self._waiter.set)

    async def batches(self) -> AsyncIterator[list[tuple[str, Any]]]:
        """Everything pushed since the last batch, until the `done` event."""
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
                    await self._waiter.wait()
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


async def sse_stream(subscription: Subscription) -> AsyncIterator[bytes]:
    try:
        async for batch in subscription.batches():
            yield b"".join(sse_frame(event, data) for event, data in batch)
    finally:
        subscription.close()

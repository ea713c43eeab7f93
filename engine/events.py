"""In-process fan-out of a run's stream events to the HTTP responses that follow it.

Runs execute on the worker's event loop (`engine.worker`); responses are served on the server's.
A `Subscription` bridges the two: the worker appends from its thread, the response awaits on its
own loop. A stream only ever follows a run started or continued by the same process, so nothing
here needs to cross processes.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

DONE = "done"

_lock = threading.Lock()
_subscriptions: dict[str, set[Subscription]] = {}


class Subscription:
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._events: deque[tuple[str, Any]] = deque()
        self._waiter: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def push(self, event: str, data: Any) -> None:
        with _lock:
            self._events.append((event, data))
            loop, waiter = self._loop, self._waiter
        if loop is not None and waiter is not None:
            loop.call_soon_threadsafe(waiter.set)

    async def __aiter__(self) -> AsyncIterator[tuple[str, Any]]:
        with _lock:
            self._loop = asyncio.get_running_loop()
            self._waiter = asyncio.Event()
        try:
            while True:
                with _lock:
                    batch = list(self._events)
                    self._events.clear()
                    if not batch:
                        self._waiter.clear()
                if not batch:
                    await self._waiter.wait()
                    continue
                for event, data in batch:
                    yield event, data
                    if event == DONE:
                        return
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


def has_subscribers(run_id: str) -> bool:
    with _lock:
        return bool(_subscriptions.get(run_id))


def sse_frame(event: str, data: Any) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"event: {event}\ndata: {payload}\n\n".encode()


async def sse_stream(subscription: Subscription) -> AsyncIterator[bytes]:
    try:
        async for event, data in subscription:
            yield sse_frame(event, data)
    finally:
        subscription.close()

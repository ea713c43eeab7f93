"""The process's run worker: an event loop on its own thread that executes runs.

Runs never execute inside the request that started them: a view hands the run to `start()` and
returns. The loop lives for the whole process, so a client that goes away stops nothing. Every few
seconds a ticker does what it was given to do on each tick (the run lifecycle settles the runs and
files that crashed or restarted processes lost), then reports the runs executing here through
`heartbeat`, which answers with those that were asked, through another process, to cancel.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings

log = logging.getLogger(__name__)

Params = ParamSpec("Params")
Result = TypeVar("Result")


def db(function: Callable[Params, Result]) -> Callable[Params, Awaitable[Result]]:
    """`function`, awaitable from the worker loop: it runs on asgiref's one thread for sync work,
    where all of the process's database work runs."""
    return sync_to_async(function, thread_sensitive=True)


class Worker:
    """One per process (the run lifecycle's `worker`), started with the server process
    (`lifecycle.start_upkeep`), or on first use where no server runs (management commands)."""

    def __init__(
        self, *, on_tick: Callable[[], None], heartbeat: Callable[[list[str]], list[str]]
    ) -> None:
        self.on_tick = on_tick
        self.heartbeat = heartbeat
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        # The runs executing here, readable from any thread (requests settling lost runs).
        self._executing: frozenset[str] = frozenset()
        self._ticker: asyncio.Task[None] | None = None

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                ready = threading.Event()
                new_loop = asyncio.new_event_loop()

                def serve() -> None:
                    asyncio.set_event_loop(new_loop)
                    new_loop.call_soon(ready.set)
                    self._ticker = new_loop.create_task(self._tick_forever())
                    new_loop.run_forever()

                threading.Thread(target=serve, name="threadline-runs", daemon=True).start()
                ready.wait()
                self._loop = new_loop
            return self._loop

    def start(
        self,
        run_id: str,
        work: Callable[[], Coroutine[Any, Any, None]],
        unstarted: Callable[[], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        """Execute `work()` for a run on the worker loop; returns at once. A task cancelled
        before its first step never enters `work()`, so nothing there can settle the run:
        `unstarted()` runs then instead."""

        def schedule() -> None:
            task = asyncio.get_running_loop().create_task(work(), name=run_id)
            self._tasks[run_id] = task
            self._executing = frozenset(self._tasks)
            task.add_done_callback(lambda done: self._finished(run_id, done, unstarted))

        # A fresh context: the caller's (a request's) must not follow the run, or asgiref would
        # route the run's database work to the request's thread, which is gone by then.
        self.loop().call_soon_threadsafe(schedule, context=contextvars.Context())

    def _finished(
        self,
        run_id: str,
        task: asyncio.Task[None],
        unstarted: Callable[[], Coroutine[Any, Any, None]] | None,
    ) -> None:
        if self._tasks.get(run_id) is task:
            del self._tasks[run_id]
            self._executing = frozenset(self._tasks)
        if task.cancelled() and unstarted is not None:
            # The work handles a cancel itself once it runs; cancelled, the task never did.
            asyncio.get_running_loop().create_task(unstarted(), name=f"{run_id}-settle")
        if not task.cancelled() and task.exception() is not None:
            log.error("Run %s crashed", run_id, exc_info=task.exception())

    def cancel(self, run_id: str) -> bool:
        """Cancel a run executing in this process; False when it executes elsewhere (or nowhere)."""
        if run_id not in self._tasks:
            return False

        def cancel_task() -> None:
            task = self._tasks.get(run_id)
            if task is not None:
                task.cancel()

        self.loop().call_soon_threadsafe(cancel_task)
        return True

    def active_runs(self) -> list[str]:
        return list(self._tasks)

    def executing(self) -> frozenset[str]:
        """The runs executing in this process, from any thread: a frozen set, swapped whole."""
        return self._executing

    async def _tick_forever(self) -> None:
        interval = max(1.0, settings.RUN_STALE_SECONDS / 3)
        while True:
            try:
                await db(self.on_tick)()
                cancelled = await db(self.heartbeat)(self.active_runs())
                for run_id in cancelled:
                    task = self._tasks.get(run_id)
                    if task is not None:
                        task.cancel()
            except Exception:
                log.exception("Run ticker failed; trying again")
            await asyncio.sleep(interval)

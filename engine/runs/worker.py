"""The process's run worker: an event loop on its own thread that executes runs.

Runs never execute inside the request that started them: a view hands the run to `start()` and
returns. The loop lives for the whole process, so a client that goes away stops nothing. Every few
seconds a ticker records a heartbeat for the runs executing here, notices cancellations asked for
through other processes, and settles runs that were lost by a crashed or restarted process.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings

log = logging.getLogger(__name__)

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_tasks: dict[str, asyncio.Task[None]] = {}
_ticker: asyncio.Task[None] | None = None


def loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None:
            ready = threading.Event()
            new_loop = asyncio.new_event_loop()

            def serve() -> None:
                global _ticker
                asyncio.set_event_loop(new_loop)
                new_loop.call_soon(ready.set)
                _ticker = new_loop.create_task(_tick_forever())
                new_loop.run_forever()

            threading.Thread(target=serve, name="threadline-runs", daemon=True).start()
            ready.wait()
            _loop = new_loop
        return _loop


def start(run_id: str, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Execute `work()` for a run on the worker loop; returns at once."""

    def schedule() -> None:
        task = asyncio.get_running_loop().create_task(work(), name=run_id)
        _tasks[run_id] = task
        task.add_done_callback(lambda done: _finished(run_id, done))

    # A fresh context: the caller's (a request's) must not follow the run, or asgiref would
    # route the run's database work to the request's thread, which is gone by then.
    loop().call_soon_threadsafe(schedule, context=contextvars.Context())


def _finished(run_id: str, task: asyncio.Task[None]) -> None:
    if _tasks.get(run_id) is task:
        del _tasks[run_id]
    if not task.cancelled() and task.exception() is not None:
        log.error("Run %s crashed", run_id, exc_info=task.exception())


def cancel(run_id: str) -> bool:
    """Cancel a run executing in this process; False when it executes elsewhere (or nowhere)."""
    if run_id not in _tasks:
        return False

    def cancel_task() -> None:
        task = _tasks.get(run_id)
        if task is not None:
            task.cancel()

    loop().call_soon_threadsafe(cancel_task)
    return True


def active_runs() -> list[str]:
    return list(_tasks)


async def _tick_forever() -> None:
    from engine.knowledge import ingest
    from engine.runs import lifecycle as runs

    interval = max(1.0, settings.RUN_STALE_SECONDS / 3)
    while True:
        try:
            await sync_to_async(runs.settle_lost_runs, thread_sensitive=True)()
            await sync_to_async(ingest.resume_stale, thread_sensitive=True)()
            cancelled = await sync_to_async(runs.heartbeat, thread_sensitive=True)(active_runs())
            for run_id in cancelled:
                task = _tasks.get(run_id)
                if task is not None:
                    task.cancel()
        except Exception:
            log.exception("Run ticker failed; trying again")
        await asyncio.sleep(interval)

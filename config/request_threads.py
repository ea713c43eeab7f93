"""Request threads kept from one request to the next, each with its database connection.

Django's ASGI handler gives every request a thread of its own for its synchronous parts (the
middleware chain, the view, the signals): a new single-thread executor per request, whose
thread opens a new database connection, and a second thread that joins the first at the end.
Under 200 sends at once, starting and joining those threads and opening and closing those
connections were about a tenth of the server's CPU (py-spy, `bench/run_starts.py --profile`).

`PooledASGIHandler` keeps the rule (one thread per request in flight, so a slow request holds
no other) but takes the thread from a pool of idle ones and gives it back when the request is
done, with its connection open: a connection opened on a pooled thread is kept across requests
(and checked before each request's first query, as CONN_HEALTH_CHECKS does), unless an error or
an unfinished transaction leaves it unfit, when Django closes it as usual. So is the connection
of asgiref's one shared thread (`keep_connection_of_the_shared_thread`). Connections opened
anywhere else keep DATABASE_CONN_MAX_AGE.

A thread goes back to the pool only after everything its request queued on it has run: a
request whose client went away can leave work behind, and the next request must not wait for
it unseen. At most THREADLINE_IDLE_REQUEST_THREADS idle threads are kept (32 by default); the
others end, closing their connections.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import django
from asgiref.sync import SyncToAsync, ThreadSensitiveContext
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created

THREAD_PREFIX = "threadline-request"
T = TypeVar("T")


class RequestThread(ThreadPoolExecutor):
    """One thread, which counts the work submitted to it that has not finished yet."""

    def __init__(self) -> None:
        super().__init__(max_workers=1, thread_name_prefix=THREAD_PREFIX)
        self.lock = threading.Lock()
        self.unfinished = 0
        self.submit(mark_pooled)

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        with self.lock:
            self.unfinished += 1
        return super().submit(self.counted, fn, *args, **kwargs)

    def counted(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        finally:
            with self.lock:
                self.unfinished -= 1


_idle: list[RequestThread] = []
_pooled = threading.local()  # .pooled is True on a pooled request thread


def take() -> RequestThread:
    try:
        return _idle.pop()
    except IndexError:
        return RequestThread()


def give_back(thread: RequestThread) -> None:
    with thread.lock:
        done = thread.unfinished == 0
    if done and len(_idle) < settings.IDLE_REQUEST_THREADS:
        _idle.append(thread)
    else:
        # Queued behind whatever the request left on the thread: it runs when that has run.
        thread.submit(rejoin, thread)


def mark_pooled() -> None:
    _pooled.pooled = True


def rejoin(thread: RequestThread) -> None:
    """On the pooled thread itself, once its request's work is done."""
    if len(_idle) < settings.IDLE_REQUEST_THREADS:
        _idle.append(thread)
        return
    connections.close_all()
    thread.shutdown(wait=False)


def keep_connection_open(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    """A connection opened on a pooled thread lives as long as the thread (see the module)."""
    if getattr(_pooled, "pooled", False):
        connection.close_at = None
        connection.health_check_enabled = True  # type: ignore[attr-defined]  # Django sets it too


connection_created.connect(keep_connection_open)


class PooledThreadContext(ThreadSensitiveContext):
    """asgiref's per-request context, with its executor from the pool rather than new."""

    executor: RequestThread | None = None

    async def __aenter__(self) -> PooledThreadContext:
        await super().__aenter__()
        if self.token is not None:  # the outermost context: this request's own thread
            self.executor = take()
            SyncToAsync.context_to_thread_executor[self] = self.executor
        return self

    async def __aexit__(self, exc: Any, value: Any, tb: Any) -> None:
        if self.executor is not None:
            # Taken out first, so that asgiref does not shut the thread down.
            SyncToAsync.context_to_thread_executor.pop(self, None)
            give_back(self.executor)
            self.executor = None
        await super().__aexit__(exc, value, tb)


class PooledASGIHandler(ASGIHandler):
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        async with PooledThreadContext():
            await self.handle(scope, receive, send)


def get_asgi_application() -> PooledASGIHandler:
    """As django.core.asgi.get_asgi_application, with pooled request threads."""
    django.setup(set_prefix=False)
    keep_connection_of_the_shared_thread()
    return PooledASGIHandler()


def keep_connection_of_the_shared_thread() -> None:
    """asgiref's one shared thread runs the sync work of everything outside a request (the
    chat's relays, Channels' consumers such as the live answer's stream): its connection is
    kept as well. Channels closes old connections around each of its calls, which with
    DATABASE_CONN_MAX_AGE=0 opened a new connection for every one of them."""
    SyncToAsync.single_thread_executor.submit(mark_pooled).result()

"""Request threads and their database connections are kept from one request to the next
(config/request_threads.py)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import SyncToAsync
from django.core.handlers.asgi import ASGIHandler
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.backends.signals import connection_created

from config import request_threads
from config.request_threads import PooledASGIHandler


@pytest.fixture(autouse=True)
def own_pool(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A pool for each test; its threads' connections closed after it."""
    monkeypatch.setattr(request_threads, "_idle", [])
    yield
    for thread in request_threads._idle:
        thread.submit(connections.close_all).result()
        thread.shutdown()


@pytest.fixture
def opened() -> Iterator[list[int]]:
    """The threads on which database connections were opened, one entry per connection."""
    threads: list[int] = []

    def note(sender: Any, connection: Any, **kwargs: Any) -> None:
        threads.append(threading.get_ident())

    connection_created.connect(note)
    yield threads
    connection_created.disconnect(note)


async def get(handler: ASGIHandler, path: str) -> int:
    """One GET through the handler as daphne would hand it over; the response's status."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        # A key no one has: the engine looks it up in the database, then refuses it.
        "headers": [(b"host", b"127.0.0.1"), (b"authorization", b"Bearer sk-nobody")],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    sent: list[dict[str, Any]] = []
    received = False

    async def receive() -> dict[str, Any]:
        nonlocal received
        if not received:
            received = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # no disconnect while the response is sent
        return {}

    async def send(message: Any) -> None:
        sent.append(message)

    await handler(scope, receive, send)
    return int(sent[0]["status"])


async def one_after_another(handler: ASGIHandler, count: int) -> list[int]:
    return [await get(handler, "/v1/models") for _ in range(count)]


@pytest.mark.django_db(transaction=True)
def test_requests_one_after_another_share_a_thread_and_its_connection(
    opened: list[int],
) -> None:
    statuses = asyncio.run(one_after_another(PooledASGIHandler(), 3))
    assert statuses == [401, 401, 401]
    assert len(opened) == 1, opened  # one connection, opened once, used by all three


@pytest.mark.django_db(transaction=True)
def test_django_alone_would_open_a_connection_per_request(opened: list[int]) -> None:
    statuses = asyncio.run(one_after_another(ASGIHandler(), 3))
    assert statuses == [401, 401, 401]
    assert len(opened) == 3, opened
    assert connection.settings_dict["CONN_MAX_AGE"] == 0  # everywhere but on pooled threads


def wait_until(condition: Any, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def test_a_thread_returns_to_the_pool_only_when_its_requests_work_is_done() -> None:
    executor = request_threads.take()
    left_behind = threading.Event()
    executor.submit(left_behind.wait)  # say, the work of a request whose client went away
    request_threads.give_back(executor)
    time.sleep(0.1)
    assert executor not in request_threads._idle
    left_behind.set()
    assert wait_until(lambda: executor in request_threads._idle)
    assert request_threads.take() is executor
    request_threads.give_back(executor)


def test_threads_beyond_the_idle_limit_end(settings: Any) -> None:
    settings.IDLE_REQUEST_THREADS = 2
    executors = [request_threads.take() for _ in range(4)]
    for executor in executors:
        request_threads.give_back(executor)
    assert wait_until(lambda: len(request_threads._idle) == 2)
    ended = [e for e in executors if e not in request_threads._idle]
    assert len(ended) == 2
    assert wait_until(lambda: all(shut_down(e) for e in ended))


def shut_down(executor: request_threads.RequestThread) -> bool:
    try:
        executor.submit(int)
    except RuntimeError:  # it takes no more work
        return True
    return False


@pytest.mark.django_db(transaction=True)
def test_the_shared_threads_connections_are_kept() -> None:
    """Channels' consumers and the chat's relays run on asgiref's shared thread: a connection
    it opens is not due to close (Channels closes old connections around each of its calls)."""
    shared = SyncToAsync.single_thread_executor
    request_threads.keep_connection_of_the_shared_thread()
    try:
        assert shared.submit(closes_at_of_a_new_connection).result() is None
    finally:
        shared.submit(setattr, request_threads._pooled, "pooled", False).result()
    # Anywhere else, DATABASE_CONN_MAX_AGE (0): due to close at the end of its request.
    assert shared.submit(closes_at_of_a_new_connection).result() is not None


def closes_at_of_a_new_connection() -> float | None:
    """Open a new connection on this thread; when Django will close it."""
    wrapper = connections.create_connection(DEFAULT_DB_ALIAS)
    try:
        wrapper.connect()
        return wrapper.close_at
    finally:
        wrapper.close()

"""Python functions the deployment registers, and running one off the event loop with a timeout.

Register with the decorator in a `functions` module of any installed app (the chat imports those
when it starts), or list dotted paths in `THREADLINE_PYTHON_FUNCTIONS`. A function is found by
the registry entry's name. It is called as `function(arguments, context)` and returns text, or
anything JSON can encode; a coroutine function is awaited.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from django.conf import settings
from django.db import close_old_connections
from django.utils.module_loading import autodiscover_modules, import_string

if TYPE_CHECKING:  # the app's ready() imports this module before the auth models are
    from django.contrib.auth.models import User

Callee = TypeVar("Callee", bound=Callable[..., Any])

# Threads of their own: a function that hangs keeps its thread (Python cannot stop a thread), and
# must not take one the server needs. Past the timeout its call has failed, whatever it does.
WORKERS = 8
_executor = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="threadline-function")
_registered: dict[str, Callable[..., Any]] = {}


@dataclass(frozen=True)
class CallContext:
    """Who a call runs for, and where it comes from."""

    user: User
    conversation_id: int
    assistant_name: str
    run_id: str
    thread_id: str
    call_id: str


def function(name: str | None = None) -> Callable[[Callee], Callee]:
    """Offer the decorated callable as the registry's function `name` (default: its own name)::

    @function("get_weather")
    def get_weather(arguments: dict, context: CallContext) -> dict: ...
    """

    def register(callee: Callee) -> Callee:
        _registered[name or callee.__name__] = callee
        return callee

    return register


@functools.cache
def discover() -> None:
    """Import every installed app's `functions` module and the setting's dotted paths, once."""
    autodiscover_modules("functions")
    for path in settings.PYTHON_FUNCTIONS:
        _registered.setdefault(path.rpartition(".")[2], import_string(path))


def registered(name: str) -> Callable[..., Any] | None:
    discover()
    return _registered.get(name)


def names() -> list[str]:
    discover()
    return sorted(_registered)


class Unavailable(Exception):
    """No callable is registered under the function's name."""


async def call(name: str, arguments: dict[str, Any], context: CallContext) -> Any:
    """What the function returns; its own exceptions pass through. The caller sets the timeout."""
    callee = registered(name)
    if callee is None:
        raise Unavailable(f"No Python function is registered as {name} on this server.")
    if inspect.iscoroutinefunction(callee):
        return await callee(arguments, context)
    loop = asyncio.get_running_loop()
    # A fresh context: the relay's (an async task's) must not follow it into the thread.
    runner = functools.partial(in_thread, callee, arguments, context)
    return await loop.run_in_executor(_executor, contextvars.Context().run, runner)


def in_thread(callee: Callable[..., Any], arguments: dict[str, Any], context: CallContext) -> Any:
    # Functions may use the ORM: this thread's connection is closed again when it is done.
    close_old_connections()
    try:
        return callee(arguments, context)
    finally:
        close_old_connections()

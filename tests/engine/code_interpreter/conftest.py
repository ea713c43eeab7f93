"""Real sandboxes (bubblewrap, the project's sandbox environment) started by each test."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable

import pytest

from engine.tools.code_interpreter.limits import MB, Limits
from engine.tools.code_interpreter.sessions import Sessions


@pytest.fixture
def anyio_backend() -> str:
    # Sessions live on an asyncio loop, as on the engine's run worker.
    return "asyncio"


@pytest.fixture
def limits() -> Limits:
    """The settings' limits, with short clocks and small disks so bad input fails fast."""
    return dataclasses.replace(
        Limits.from_settings(),
        timeout_seconds=5,
        interrupt_grace_seconds=2,
        disk_bytes=32 * MB,
        output_bytes=64 * 1024,
        warm_sessions=0,
    )


@pytest.fixture
async def sessions(limits: Limits) -> AsyncIterator[Sessions]:
    manager = Sessions(limits, mode="auto")
    assert manager.status().available, manager.status()
    yield manager
    await manager.aclose()


@pytest.fixture
async def make_sessions() -> AsyncIterator[Callable[[Limits], Sessions]]:
    """For tests that need limits of their own."""
    made: list[Sessions] = []

    def make(limits: Limits) -> Sessions:
        made.append(Sessions(limits, mode="auto"))
        return made[-1]

    yield make
    for manager in made:
        await manager.aclose()

"""A request crosses between the event loop and a thread a few times, not at every middleware
hook (config/middleware_mode.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref import sync
from django.test import AsyncClient


def crossings_of_one_request(monkeypatch: pytest.MonkeyPatch, path: str) -> list[str]:
    """What one request ran on a thread, each crossing from the event loop named."""
    crossings: list[str] = []
    original = sync.SyncToAsync.__call__

    async def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        crossings.append(getattr(self.func, "__qualname__", repr(self.func)))
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(sync.SyncToAsync, "__call__", counting)
    response = asyncio.run(AsyncClient().get(path))
    assert response.status_code == 200
    return crossings


def hooks(crossings: list[str]) -> list[str]:
    return [c for c in crossings if ".process_request" in c or ".process_response" in c]


def test_no_middleware_hook_crosses_to_a_thread_of_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    crossings = crossings_of_one_request(monkeypatch, "/accounts/login/")
    # Left: the request signal, the chain itself, CSRF's view check, the view, its rendering and
    # the response's close.
    assert hooks(crossings) == [], crossings
    assert len(crossings) <= 6, crossings


def test_without_the_one_mode_middleware_every_hook_would_cross(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if not m.endswith("one_mode_chain")]
    crossings = crossings_of_one_request(monkeypatch, "/accounts/login/")
    assert len(hooks(crossings)) >= 8, crossings

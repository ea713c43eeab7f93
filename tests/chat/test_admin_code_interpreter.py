"""The assistant admin says whether the engine can run code, and why not."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client

from chat.admin.assistants import CODE_STATUS_KEY
from tests.chat.conftest import forget_sync_client, point_at
from tests.servers import ThreadlineServer

pytestmark = pytest.mark.django_db(transaction=True)

ADD = "/admin/chat/assistantprofile/add/"


@pytest.fixture(scope="module")
def engine_without_code() -> Iterator[ThreadlineServer]:
    # An engine whose sandbox cannot start: its environment is missing (as bubblewrap or user
    # namespaces could be); the admin must say so in words.
    server = ThreadlineServer(env={"THREADLINE_CODE_INTERPRETER_ENV": "/nonexistent/sandbox"})
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def fresh_status() -> Iterator[None]:
    cache.delete(CODE_STATUS_KEY)
    yield
    cache.delete(CODE_STATUS_KEY)
    forget_sync_client()


def test_the_admin_says_why_code_cannot_run(
    admin_client: Client, engine_without_code: ThreadlineServer, settings: Any
) -> None:
    point_at(settings, engine_without_code.api_url)
    page = admin_client.get(ADD).content.decode()
    assert "Code interpreter on the server" in page
    assert (
        "Unavailable: the sandbox&#x27;s Python environment is missing at /nonexistent/sandbox"
        in (page)
    )
    assert "get an error output saying so" in page


def test_the_admin_says_code_can_run(
    admin_client: Client, offline_engine: ThreadlineServer, settings: Any
) -> None:
    point_at(settings, offline_engine.api_url)
    page = admin_client.get(ADD).content.decode()
    assert "Available: bubblewrap" in page

"""Shared fixtures: the scripted model server and live Threadline servers.

The engine is always exercised over real HTTP through the official SDK. Two servers run for the
whole session: one with no model API (the offline model) and one whose model API is the scripted
fake. Tests that kill or reconfigure a server start their own.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.fake_model import FakeModelServer
from tests.servers import ThreadlineServer, model_env, sdk

# The SDK marks the whole Assistants API deprecated; it is the API this project serves.
warnings.filterwarnings("ignore", category=DeprecationWarning, module="openai")


def pytest_configure(config: pytest.Config) -> None:
    from django.conf import settings

    # In-process requests (Django's test client) need no collected static files: plain storage,
    # and a static root for WhiteNoise to look at. Live test servers collect them like make run.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    Path(settings.STATIC_ROOT).mkdir(parents=True, exist_ok=True)


@pytest.fixture(scope="session")
def model_server() -> Iterator[FakeModelServer]:
    server = FakeModelServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def offline_engine() -> Iterator[ThreadlineServer]:
    """The engine with no model API configured: the offline retrieval-only model answers."""
    server = ThreadlineServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def model_engine(model_server: FakeModelServer) -> Iterator[ThreadlineServer]:
    """The engine calling the scripted model server as its model API."""
    server = ThreadlineServer(env=model_env(model_server)).start()
    yield server
    server.stop()


@pytest.fixture
def client(model_engine: ThreadlineServer) -> Iterator[openai.OpenAI]:
    with sdk(model_engine) as client:
        yield client


@pytest.fixture
def offline_client(offline_engine: ThreadlineServer) -> Iterator[openai.OpenAI]:
    with sdk(offline_engine) as client:
        yield client

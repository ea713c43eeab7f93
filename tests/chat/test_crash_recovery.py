"""After the server dies mid-answer and comes back, the thread says what is going on and is
usable again."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.chat.conftest import PASSWORD, ChatClient, text_of
from tests.fake_model import FakeModelServer, Reply
from tests.servers import ThreadlineServer, model_env, shell, start_chat_server

# Long enough to outlast a restart here (several seconds on a busy machine).
STALE_SECONDS = 30
SETUP = f"""
import json
from django.contrib.auth.models import User
from chat.models import AssistantProfile
User.objects.create_user("owner", password={PASSWORD!r})
print(json.dumps(AssistantProfile.objects.create(
    name="Crash", model="crash-model", published=True
).pk))
"""


@pytest.fixture
def server(chat_model: FakeModelServer) -> Iterator[ThreadlineServer]:
    env = {**model_env(chat_model), "THREADLINE_RUN_STALE_SECONDS": str(STALE_SECONDS)}
    server = start_chat_server(env)
    try:
        yield server
    finally:
        server.stop()


def test_sending_while_a_crashed_answer_is_settled_says_when_the_thread_is_free(
    server: ThreadlineServer, chat_model: FakeModelServer
) -> None:
    profile = shell(server, SETUP)
    chat_model.script("crash-model", [Reply("slow " * 400, chunk_delay=0.05)])
    owner = ChatClient(server.url)
    try:
        owner.login("owner")
        sent = owner.send("Take your time", assistant=profile)
        assert sent.events_url and sent.conversation_id
        owner.events(sent.events_url, stop_after=4)
        server.kill()  # the relay and the run's worker die with it
        server.start()
        page = owner.get(f"/c/{sent.conversation_id}/").text
        assert "sse-connect" not in page

        chat_model.script("crash-model", [Reply("Back again.")])
        refused = owner.send("Are you there?", conversation_id=sent.conversation_id)
        said = text_of(refused.response.text)
        stop_shown = 'class="secondary stop"' in refused.response.text
        # Never "press Stop" with no Stop to press.
        assert stop_shown or "press Stop" not in said, said
        assert "interrupted" in said and f"within {STALE_SECONDS} seconds" in said, said

        deadline = time.monotonic() + STALE_SECONDS + 10
        while True:
            again = owner.send("Are you there?", conversation_id=sent.conversation_id)
            if again.events_url or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert again.events_url, text_of(again.response.text)
        _, events = owner.events(again.events_url)
        assert "Back again." in events[-2].data
    finally:
        owner.close()

"""When the Assistants API is down or too slow: a clear message, the text kept, nothing saved.

Each server here points the chat at an Assistants API that is not there: a closed port (down)
or a socket that accepts and never answers (slow). The product's own engine is not involved.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.chat.conftest import PASSWORD, ChatClient
from tests.servers import ThreadlineServer, free_port, shell, start_chat_server

SETUP = f"""
import json
from django.contrib.auth.models import User
from chat.models import AssistantProfile, Conversation
owner = User.objects.create_user("owner", password={PASSWORD!r})
profile = AssistantProfile.objects.create(name="Any", model="any", published=True)
# A thread from before the API went away.
old = Conversation.objects.create(
    owner=owner, thread_id="thread_old", assistant=profile, title="Old"
)
print(json.dumps([profile.pk, old.pk]))
"""


class Silent:
    """A server that accepts connections and never says a word."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self.accept, daemon=True)
        self.thread.start()

    def accept(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(connection)

    def close(self) -> None:
        self.sock.close()
        for connection in self.held:
            connection.close()
        self.thread.join(timeout=5)


@pytest.fixture(scope="module", params=["down", "slow"])
def unavailable(request: pytest.FixtureRequest) -> Iterator[tuple[ThreadlineServer, list[int]]]:
    silent = Silent() if request.param == "slow" else None
    port = silent.port if silent else free_port()
    server = start_chat_server(
        {
            "THREADLINE_ASSISTANTS_URL": f"http://127.0.0.1:{port}/v1",
            "THREADLINE_ASSISTANTS_TIMEOUT_SECONDS": "1",
        }
    )
    try:
        yield server, shell(server, SETUP)
    finally:
        server.stop()
        if silent:
            silent.close()


@pytest.fixture
def person(unavailable: tuple[ThreadlineServer, list[int]]) -> Iterator[ChatClient]:
    client = ChatClient(unavailable[0].url)
    client.login("owner")
    yield client
    client.close()


def test_sending_says_so_keeps_the_text_and_saves_nothing(
    person: ChatClient, unavailable: tuple[ThreadlineServer, list[int]]
) -> None:
    profile_id, _ = unavailable[1]
    start = time.monotonic()
    sent = person.send("Are you there?", assistant=profile_id)
    assert time.monotonic() - start < 10
    assert sent.response.status_code == 200
    assert "assistant service isn&#x27;t answering right now" in sent.response.text
    assert "Are you there?</textarea>" in sent.response.text
    assert sent.response.headers.get("HX-Push-Url") is None
    assert person.get("/").text.count('href="/c/') == 1  # only the old thread


def test_an_existing_thread_explains_instead_of_failing(
    person: ChatClient, unavailable: tuple[ThreadlineServer, list[int]]
) -> None:
    _, old = unavailable[1]
    page = person.get(f"/c/{old}/")
    assert page.status_code == 503
    assert "The messages cannot be shown right now" in page.text
    assert 'aria-label="Message"' in page.text  # the box is still there
    sent = person.send("Still there?", conversation_id=old)
    assert "isn&#x27;t answering" in sent.response.text
    assert "Still there?</textarea>" in sent.response.text
    deleted = person.post(f"/c/{old}/delete")
    assert deleted.headers["HX-Retarget"] == "#alerts"
    assert "isn&#x27;t answering" in deleted.text
    assert person.get(f"/c/{old}/").status_code == 503  # not deleted: the remote thread stays

"""Function calls when time runs out or a process dies, on servers of their own (a short run
expiry; one killed and started again)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from tests.chat.conftest import FUNCTIONS_ENV, PASSWORD, SETUP, ChatClient, Scripted, text_of
from tests.chat.functions_setup import (
    WEBHOOK_SECRET,
    action_url,
    give_functions,
    read_until_waiting,
    tool_outputs,
    unique,
)
from tests.fake_model import FakeModelServer, Reply, ToolCall
from tests.servers import ThreadlineServer, model_env, shell, start_chat_server
from tests.webhook_receiver import WebhookReceiver

EXPIRES_SECONDS = 8
# A run outlives its process's restart: a loaded machine (CI's four workers) has taken over 30 s
# to restart, recover and answer, and a run past its expiry is stopped, not answered.
LASTING_SECONDS = 600


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver(WEBHOOK_SECRET).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def server(
    chat_model: FakeModelServer, request: pytest.FixtureRequest
) -> Iterator[tuple[ThreadlineServer, Iterator[int]]]:
    """A server whose runs expire after `request.param` seconds (each test names it)."""
    env = {
        **model_env(chat_model),
        **FUNCTIONS_ENV,
        "THREADLINE_RUN_EXPIRES_SECONDS": str(request.param),
        "THREADLINE_RUN_STALE_SECONDS": "3",
    }
    started = start_chat_server(env)
    try:
        ids = shell(started, SETUP.format(password=PASSWORD, pool=4))
        yield started, iter(ids)
    finally:
        started.stop()


@pytest.fixture
def scripted(
    server: tuple[ThreadlineServer, Iterator[int]], chat_model: FakeModelServer
) -> Scripted:
    # The pool's profiles are named "scripted-<i>" like the shared server's: models of their own.
    profile_id = next(server[1])
    return Scripted(profile_id, f"recovery-{profile_id}", chat_model)


@pytest.fixture
def person(server: tuple[ThreadlineServer, Iterator[int]]) -> Iterator[ChatClient]:
    client = ChatClient(server[0].url)
    client.login("owner")
    yield client
    client.close()


def use_model(server: ThreadlineServer, scripted: Scripted) -> None:
    shell(
        server,
        "import json\nfrom chat.models import AssistantProfile\n"
        f"p = AssistantProfile.objects.get(pk={scripted.profile_id})\n"
        f"p.model = {scripted.model!r}\np.save()\nprint(json.dumps(1))",
    )


@pytest.mark.parametrize("server", [EXPIRES_SECONDS], indirect=True)
def test_approval_never_given_expires_and_the_thread_takes_a_new_message(
    server: tuple[ThreadlineServer, Iterator[int]],
    person: ChatClient,
    scripted: Scripted,
    receiver: WebhookReceiver,
) -> None:
    threadline = server[0]
    use_model(threadline, scripted)
    name = unique("risky")
    url = receiver.url(f"/ok?{name}")
    give_functions(
        threadline,
        scripted.profile_id,
        registry=[{"name": name, "kind": "webhook", "url": url, "approval": True}],
    )
    scripted.script(Reply(tool_calls=[ToolCall(name, '{"city": "Bern"}')]))
    sent = person.send("Do it", assistant=scripted.profile_id)
    assert sent.events_url
    events = read_until_waiting(person, sent.events_url)
    _, rest = person.events(sent.events_url, last_event_id=events[-1].id, timeout=30)
    assert rest[-1].event == "end"
    assert "No answer came in time" in rest[-2].data
    assert f"{name} was not answered" in rest[-2].data
    late = person.post(action_url(events[-1].data), {"action": "allow"})
    assert "stopped waiting" in late.text
    assert receiver.received(f"/ok?{name}") == [], "an expired approval never runs"

    scripted.script(Reply("Fresh start."))
    more = person.send("Hello again", conversation_id=sent.conversation_id)
    assert more.events_url
    _, after = person.events(more.events_url)
    assert "Fresh start." in after[-2].data


@pytest.mark.parametrize("server", [LASTING_SECONDS], indirect=True)
def test_a_call_in_flight_when_its_process_died_reports_an_error_and_never_runs_twice(
    server: tuple[ThreadlineServer, Iterator[int]],
    person: ChatClient,
    scripted: Scripted,
    receiver: WebhookReceiver,
    chat_model: FakeModelServer,
) -> None:
    threadline = server[0]
    use_model(threadline, scripted)
    name = unique("charge")
    path = f"/hang?{name}"
    give_functions(
        threadline,
        scripted.profile_id,
        registry=[{"name": name, "kind": "webhook", "url": receiver.url(path)}],
    )
    scripted.script(
        Reply(tool_calls=[ToolCall(name, '{"city": "Kyiv"}')]), Reply("I could not tell.")
    )
    sent = person.send("Charge it", assistant=scripted.profile_id)
    deadline = time.monotonic() + 20
    while not receiver.received(path) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(receiver.received(path)) == 1

    threadline.kill()  # the webhook is in flight: its process dies
    threadline.start()
    # The first request after the restart takes the calls over; the answer goes on (a loaded
    # machine has taken over 30 s).
    deadline = time.monotonic() + 120
    page = ""
    while time.monotonic() < deadline:
        page = person.get(f"/c/{sent.conversation_id}/").text
        if "I could not tell." in page:
            break
        time.sleep(0.5)
    assert "I could not tell." in page, text_of(page)
    assert f"{name} was interrupted" in text_of(page)
    (output,) = tool_outputs(chat_model.requests, scripted.model)
    assert "may or may not have taken effect" in json.loads(output)["error"]
    receiver.release.set()
    time.sleep(0.5)
    assert len(receiver.received(path)) == 1, "the webhook never runs twice"

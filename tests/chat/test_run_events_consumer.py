"""The stream consumer's replay logic, with Channels' test communicator (no server).

The replay log and the channel layer are filled by hand here, as the relay would fill them, so
each case (catch up, follow live, fill a gap, skip a repeat, end, someone else's run) is exact.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import ApplicationCommunicator
from django.contrib.auth.models import User

from chat.live import consumers, replay
from chat.live.consumers import RunEventsConsumer
from chat.live.relay import group_name
from chat.models import Conversation

pytestmark = [pytest.mark.anyio, pytest.mark.django_db(transaction=True)]
RUN = "run_test"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def people() -> AsyncIterator[tuple[User, User, Conversation]]:
    """The owner of a conversation with a run, and someone else."""

    def make() -> tuple[User, User, Conversation]:
        owner = User.objects.create_user("owner")
        stranger = User.objects.create_user("stranger")
        conversation = Conversation.objects.create(owner=owner, thread_id="thread_x", title="t")
        return owner, stranger, conversation

    owner, stranger, conversation = await sync_to_async(make)()
    replay.open_log(RUN, conversation.pk)
    yield owner, stranger, conversation
    replay.rebase(RUN, replay.Entry(10_000, "update", ""))


def log(*entries: tuple[int, str, str]) -> None:
    replay.append(RUN, [replay.Entry(*entry) for entry in entries])


async def publish(seq: int, event: str, data: str) -> None:
    await get_channel_layer().group_send(
        group_name(RUN), {"type": "run.event", "seq": seq, "event": event, "data": data}
    )


def connect(user: Any, conversation: Conversation, last_event_id: int | None = None) -> Any:
    headers = [] if last_event_id is None else [(b"last-event-id", str(last_event_id).encode())]
    scope = {
        "type": "http",
        "method": "GET",
        "path": f"/c/{conversation.pk}/runs/{RUN}/events",
        "headers": headers,
        "user": user,
        "url_route": {"kwargs": {"conversation_id": conversation.pk, "run_id": RUN}},
    }
    return ApplicationCommunicator(RunEventsConsumer.as_asgi(), scope)


async def start(communicator: Any) -> int:
    await communicator.send_input({"type": "http.request", "body": b""})
    head = await communicator.receive_output(2)
    return head["status"]


async def read_ids(communicator: Any, count: int) -> list[int]:
    ids = []
    while len(ids) < count:
        body = (await communicator.receive_output(2))["body"].decode()
        ids += [int(line[4:]) for line in body.splitlines() if line.startswith("id: ")]
    return ids


async def test_catches_up_then_follows_live_without_gaps_or_repeats(people: Any) -> None:
    owner, _, conversation = people
    log((1, "update", "<p>one</p>"), (2, "update", "<p>two</p>"))
    communicator = connect(owner, conversation)
    assert await start(communicator) == 200
    assert await read_ids(communicator, 2) == [1, 2]

    log((3, "update", "three"))
    await publish(3, "update", "three")
    await publish(3, "update", "three")  # a repeat: dropped
    log((4, "update", "four"), (5, "update", "five"))
    await publish(5, "update", "five")  # 4 never came live: read from the log first
    assert await read_ids(communicator, 3) == [3, 4, 5]

    log((6, "end", ""))
    await publish(6, "end", "")
    last = await communicator.receive_output(2)
    assert last["body"].startswith(b"id: 6\nevent: end\n") and last["more_body"] is False
    await communicator.wait(2)


async def test_a_last_event_the_channel_layer_lost_is_found_in_the_log(
    people: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consumers, "HEARTBEAT_SECONDS", 0.05)
    owner, _, conversation = people
    log((1, "update", "one"))
    communicator = connect(owner, conversation)
    assert await start(communicator) == 200
    assert await read_ids(communicator, 1) == [1]

    # The relay logs its last events; the channel layer delivers neither (nothing is published).
    log((2, "update", "final"), (3, "end", ""))
    # Keep-alive comments go on meanwhile: without the log, this would wait for ever.
    assert await asyncio.wait_for(read_ids(communicator, 2), 5) == [2, 3]
    await communicator.send_input({"type": "http.disconnect"})
    await communicator.wait(2)


async def test_reconnect_resumes_after_last_event_id(people: Any) -> None:
    owner, _, conversation = people
    log((1, "update", "a"), (2, "update", "b"), (3, "update", "c"))
    communicator = connect(owner, conversation, last_event_id=2)
    assert await start(communicator) == 200
    assert await read_ids(communicator, 1) == [3]
    await communicator.send_input({"type": "http.disconnect"})
    await communicator.wait(2)


async def test_behind_the_base_snapshot_starts_from_it(people: Any) -> None:
    owner, _, conversation = people
    log((1, "update", "s1"), (2, "update", "x"), (3, "update", "snapshot"), (4, "update", "y"))
    replay.rebase(RUN, replay.Entry(3, "update", "snapshot"))
    communicator = connect(owner, conversation, last_event_id=1)
    assert await start(communicator) == 200
    assert await read_ids(communicator, 2) == [3, 4]
    await communicator.send_input({"type": "http.disconnect"})
    await communicator.wait(2)


async def test_all_seen_is_204_so_the_browser_stops_reconnecting(people: Any) -> None:
    owner, _, conversation = people
    log((1, "update", "final"), (2, "end", ""))
    replay.rebase(RUN, replay.Entry(1, "update", "final"), end=2)
    communicator = connect(owner, conversation, last_event_id=2)
    assert await start(communicator) == 204


async def test_someone_elses_conversation_is_404(people: Any) -> None:
    _, stranger, conversation = people
    log((1, "update", "secret"))
    communicator = connect(stranger, conversation)
    assert await start(communicator) == 404
    body = await communicator.receive_output(2)
    assert b"secret" not in body["body"]


async def test_a_run_of_another_conversation_is_404(people: Any) -> None:
    owner, _, _ = people

    def other_conversation() -> Conversation:
        return Conversation.objects.create(owner=owner, thread_id="thread_y", title="y")

    mine_too = await sync_to_async(other_conversation)()
    communicator = connect(owner, mine_too)
    assert await start(communicator) == 404

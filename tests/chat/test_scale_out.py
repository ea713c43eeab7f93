"""Scaling out: two server processes on one database and one real Redis, over real HTTP.

Process A and process B share a data directory (the SQLite database, the secrets) and a
REDIS_URL, as two daphne processes behind one proxy would. A person signs in and sends on A;
the answer streams from whichever process their next request reaches. A's relay publishes on
the Redis channel layer and writes the replay log to the Redis cache; B reads both.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import openai
import pytest

from tests.chat.conftest import (
    PASSWORD,
    ChatClient,
    Event,
    Scripted,
    text_of,
)
from tests.chat.functions_setup import (
    QUIZ,
    QUIZ_ARGUMENTS,
    action_url,
    give_functions,
    read_until_waiting,
)
from tests.fake_model import FakeModelServer, Hang, Reply, ToolCall
from tests.servers import REDIS_SERVER, RedisServer, ThreadlineServer, model_env, sdk, shell

pytestmark = pytest.mark.redis

PROFILES = 16
THREAD_OF = """
import json
from chat.models import Conversation
print(json.dumps(Conversation.objects.get(pk={conversation}).thread_id))
"""
SETUP = """
import json
from django.contrib.auth.models import User
from chat.models import AssistantProfile
User.objects.create_user("owner", password={password!r})
ids = [
    AssistantProfile.objects.create(name=f"Scale {{i}}", model=f"scale-{{i}}", published=True).pk
    for i in range({count})
]
print(json.dumps(ids))
"""


@dataclass
class Pair:
    a: ThreadlineServer
    b: ThreadlineServer
    redis: RedisServer
    profiles: Iterator[tuple[int, str]]


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    if not REDIS_SERVER.exists():
        from tests.chat.conftest import NO_REDIS

        pytest.skip(NO_REDIS)
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pair(redis: RedisServer, chat_model: FakeModelServer) -> Iterator[Pair]:
    env = {
        **model_env(chat_model),
        "REDIS_URL": redis.url,
        # A Stop that reaches B cancels a run executing on A: A's worker notices it on its next
        # heartbeat, every third of this.
        "THREADLINE_RUN_STALE_SECONDS": "6",
        # Patient with the scripted model's pauses.
        "THREADLINE_MODEL_TIMEOUT_SECONDS": "20",
    }
    a = ThreadlineServer(env=env, name="a")
    # B uses A's database: its SQLite file in the shared data directory, or on PostgreSQL, A's.
    shared_db = {"DATABASE_URL": a.env["DATABASE_URL"]} if "DATABASE_URL" in a.env else {}
    b = ThreadlineServer(env={**env, **shared_db}, data_dir=a.data_dir, name="b")
    a.migrate()
    a.manage("collectstatic", "--noinput", "-v0")
    b.migrated = True
    ids = shell(a, SETUP.format(password=PASSWORD, count=PROFILES))
    try:
        a.start()
        b.start()
        yield Pair(a, b, redis, ((pk, f"scale-{i}") for i, pk in enumerate(ids)))
    finally:
        a.stop()
        b.stop()


@pytest.fixture
def scripted(pair: Pair, chat_model: FakeModelServer) -> Scripted:
    profile_id, model = next(pair.profiles)
    return Scripted(profile_id, model, chat_model)


@pytest.fixture
def on_a(pair: Pair) -> Iterator[ChatClient]:
    """The owner, signed in on process A."""
    client = ChatClient(pair.a.url)
    client.login("owner")
    yield client
    client.close()


@pytest.fixture
def on_b(pair: Pair, on_a: ChatClient) -> Iterator[ChatClient]:
    """The same person, with the same session cookie, whose requests reach process B."""
    client = ChatClient(pair.b.url)
    client.http.cookies.update(on_a.http.cookies)
    yield client
    client.close()


def tokens(count: int) -> str:
    return " ".join(f"w{i}" for i in range(count))


def streamed(events: list[Event]) -> str:
    """The answer's text as it streamed: the escaped pieces appended to the reply's tail."""
    return "".join(
        m.group(1)
        for e in events
        if "-tail" in e.data and "beforeend" in e.data
        for m in re.finditer(r'-tail">(.*?)</span>', e.data, re.S)
    )


def assert_whole_once(events: list[Event], words: str) -> None:
    ids = [e.id for e in events]
    assert ids == list(range(1, ids[-1] + 1)), "no gap and no repeat"
    assert events[-1].event == "end"
    assert streamed(events).split() == words.split(), "every word streamed, once, in order"
    final = text_of(events[-2].data).split()
    assert all(final.count(word) == 1 for word in words.split()), "the final answer is whole"


def test_signed_in_on_one_process_is_signed_in_on_the_other(
    on_a: ChatClient, on_b: ChatClient
) -> None:
    assert on_b.get("/").status_code == 200
    # Signing out on B ends the session on A too: A's cached copy of it is the same Redis key.
    on_b.post("/accounts/logout/")
    assert on_a.get("/").status_code == 302


def test_answer_sent_on_one_process_streams_live_and_whole_from_both(
    on_a: ChatClient, on_b: ChatClient, scripted: Scripted
) -> None:
    words = tokens(60)
    scripted.script(Reply(words, chunk_delay=0.03))
    sent = on_a.send("Count slowly", assistant=scripted.profile_id)
    assert sent.events_url
    # Two tabs: one reads from A, where the relay runs; one from B, through Redis.
    with ThreadPoolExecutor(2) as pool:
        tab_b = pool.submit(on_b.events, sent.events_url)
        tab_a = pool.submit(on_a.events, sent.events_url)
        (status_b, from_b), (status_a, from_a) = tab_b.result(), tab_a.result()
    assert status_a == status_b == 200
    assert_whole_once(from_b, words)
    assert [(e.id, e.event, e.data) for e in from_b] == [(e.id, e.event, e.data) for e in from_a]
    pieces = [e for e in from_b if "-tail" in e.data]
    assert pieces[-1].at - pieces[0].at > 0.5, "B followed the answer live, not all at the end"


def test_reader_resumes_on_the_other_process_from_last_event_id(
    on_a: ChatClient, on_b: ChatClient, scripted: Scripted
) -> None:
    words = tokens(80)
    scripted.script(Reply(words, chunk_delay=0.03))
    sent = on_a.send("Count slowly", assistant=scripted.profile_id)
    assert sent.events_url
    _, first = on_a.events(sent.events_url, stop_after=4)
    # The connection drops; EventSource reconnects with Last-Event-ID and reaches B.
    status, rest = on_b.events(sent.events_url, last_event_id=first[-1].id)
    assert status == 200
    # Every streamed word arrives, so B resumed while A still relayed: once the answer has
    # ended, the log keeps only the final snapshot.
    assert_whole_once(first + rest, words)

    # Back to A from the middle, after the end: the final snapshot, then the end.
    _, tail = on_a.events(sent.events_url, last_event_id=rest[len(rest) // 2].id)
    assert [e.id for e in tail] == [e.id for e in rest[-2:]]
    # A tab opened later on B sees the whole answer from the final snapshot.
    _, late = on_b.events(sent.events_url)
    assert late[-1].event == "end"
    assert text_of(late[-2].data).split().count("w79") == 1
    # Whoever has seen everything is told not to come back, by either process.
    assert on_a.events(sent.events_url, last_event_id=rest[-1].id)[0] == 204
    assert on_b.events(sent.events_url, last_event_id=rest[-1].id)[0] == 204


def test_page_reloaded_on_the_other_process_follows_the_live_answer(
    on_a: ChatClient, on_b: ChatClient, scripted: Scripted
) -> None:
    scripted.script(Reply(tokens(400), chunk_delay=0.05))
    sent = on_a.send("Count slowly", assistant=scripted.profile_id)
    assert sent.events_url
    page = on_b.get(f"/c/{sent.conversation_id}/")
    assert page.status_code == 200
    # B finds the live answer's log, so it shows the live section rather than ending the run.
    assert f'sse-connect="{sent.events_url}"' in page.text
    # The page's stream, from the start, follows the answer.
    _, events = on_b.events(sent.events_url, stop_after=5)
    assert [e.id for e in events] == [1, 2, 3, 4, 5]
    assert on_b.post(f"/c/{sent.conversation_id}/stop").status_code == 204
    _, rest = on_b.events(sent.events_url, last_event_id=5)
    assert rest[-1].event == "end"
    after = on_b.get(f"/c/{sent.conversation_id}/")
    assert "sse-connect" not in after.text


def test_stop_on_the_other_process_ends_the_answer_streaming_from_the_first(
    on_a: ChatClient, on_b: ChatClient, scripted: Scripted
) -> None:
    scripted.script(Reply(tokens(400), chunk_delay=0.05))
    sent = on_a.send("Count forever", assistant=scripted.profile_id)
    assert sent.events_url
    _, first = on_b.events(sent.events_url, stop_after=3)
    stopped_at = time.monotonic()
    assert on_b.post(f"/c/{sent.conversation_id}/stop").status_code == 204
    _, rest = on_b.events(sent.events_url, last_event_id=first[-1].id)
    assert rest[-1].event == "end"
    assert "Stopped." in rest[-2].data
    assert time.monotonic() - stopped_at < 10
    assert "w399" not in streamed(first + rest)


def test_a_pause_in_the_answer_longer_than_a_redis_wait_keeps_the_stream(
    on_a: ChatClient, on_b: ChatClient, scripted: Scripted
) -> None:
    # The Redis channel layer waits for messages 5 seconds at a time: the reader's process hears
    # nothing for longer than that while the model thinks, and the stream must go on.
    # The model API sends nothing for 6 seconds, then drops the connection; the engine retries.
    scripted.script(Hang(6), Reply("after a pause"))
    sent = on_a.send("Think first", assistant=scripted.profile_id)
    assert sent.events_url
    status, events = on_b.events(sent.events_url, timeout=30)
    assert status == 200
    assert_whole_once(events, "after a pause")


def test_run_started_through_one_process_is_polled_through_the_other(
    pair: Pair, chat_model: FakeModelServer
) -> None:
    words = tokens(30)
    chat_model.script("scale-engine", [Reply(words, chunk_delay=0.03)])
    with sdk(pair.a) as via_a, sdk(pair.b) as via_b:
        assistant = via_a.beta.assistants.create(model="scale-engine")
        thread = via_a.beta.threads.create(messages=[{"role": "user", "content": "Count"}])
        run = via_a.beta.threads.runs.create(thread.id, assistant_id=assistant.id)
        seen = via_b.beta.threads.runs.retrieve(run.id, thread_id=thread.id)
        assert seen.status in ("queued", "in_progress")
        done = via_b.beta.threads.runs.poll(run.id, thread_id=thread.id, poll_interval_ms=50)
        assert done.status == "completed"
        (message,) = via_b.beta.threads.messages.list(thread.id, run_id=run.id)
        assert message.content[0].text.value.split() == words.split()  # type: ignore[union-attr]


def test_many_tabs_on_the_other_process_each_get_the_whole_answer(
    pair: Pair, on_a: ChatClient, scripted: Scripted
) -> None:
    # One answer, read in many tabs at once: each event the relay publishes reaches them all.
    tabs = 150
    words = tokens(40)
    scripted.script(Reply(words, chunk_delay=0.05))
    sent = on_a.send("Count slowly", assistant=scripted.profile_id)
    assert sent.events_url
    url = sent.events_url

    def tab(_: int) -> tuple[int, list[Event]]:
        client = ChatClient(pair.b.url)
        client.http.cookies.update(on_a.http.cookies)
        try:
            return client.events(url, timeout=60)
        finally:
            client.close()

    with ThreadPoolExecutor(tabs) as pool:
        results = list(pool.map(tab, range(tabs)))
    assert [status for status, _ in results] == [200] * tabs
    for _, events in results:
        assert events[-1].event == "end"
        final = text_of(events[-2].data).split()
        assert all(final.count(word) == 1 for word in words.split())


LAYER_LOAD = """
import asyncio
from channels.layers import get_channel_layer

async def main(count):
    layer = get_channel_layer()
    readers = [await layer.new_channel() for _ in range(count)]
    await asyncio.gather(*(layer.group_add(f"load.{i}", c) for i, c in enumerate(readers)))
    await asyncio.gather(
        *(layer.group_send(f"load.{i}", {"type": "run.event", "seq": i}) for i in range(count))
    )
    got = await asyncio.wait_for(asyncio.gather(*(layer.receive(c) for c in readers)), 30)
    print(sorted(m["seq"] for m in got) == list(range(count)))

asyncio.run(main(300))
"""


def test_a_function_call_answered_on_the_other_process_goes_on_in_the_same_answer(
    pair: Pair, on_a: ChatClient, on_b: ChatClient, scripted: Scripted
) -> None:
    give_functions(pair.a, scripted.profile_id, raw=[QUIZ])
    scripted.script(
        Reply(tool_calls=[ToolCall("display_quiz", json.dumps(QUIZ_ARGUMENTS))]),
        Reply("Answered from B, relayed by A."),
    )
    sent = on_a.send("Quiz me", assistant=scripted.profile_id)
    assert sent.events_url
    # B shows the pending form (the replay log in Redis), and takes the answer; A's relay,
    # told through Redis, submits it, and the answer goes on in the same stream.
    events = read_until_waiting(on_b, sent.events_url)
    assert "sse-connect" in on_b.get(f"/c/{sent.conversation_id}/").text
    answered = on_b.post(
        action_url(events[-1].data), {"action": "answer", "q-0": "3/4", "q-1": "Quarters."}
    )
    assert "You answered" in text_of(answered.text)
    _, rest = on_b.events(sent.events_url, last_event_id=events[-1].id)
    assert rest[-1].event == "end"
    assert "Answered from B, relayed by A." in rest[-2].data


def test_channel_layer_takes_hundreds_of_answers_publishing_at_once(pair: Pair) -> None:
    # The settings' Redis channel layer, in a process of its own: a publish per live answer,
    # all at once, each to a reader in one process. redis-py's pool allowed 100 commands in
    # flight (and the list-based layer we used before kept 100 messages per process).
    out = pair.a.manage("shell", "--no-imports", "-c", LAYER_LOAD)
    assert out.strip().splitlines()[-1] == "True"


LIMITED = """
import json
from django.contrib.auth.models import User
from chat.models import UsageLimits
from engine.models import ApiKey, Project
person = User.objects.create_user("limited", password={password!r})
UsageLimits.objects.create(user=person, messages_per_hour=3)
print(json.dumps(ApiKey.issue(Project.default(), "a script", "4/hour")[1]))
"""


def test_limits_count_across_processes(pair: Pair, scripted: Scripted) -> None:
    """A person's limits live in the database, a key's request counts in Redis: sends and
    requests at once, spread over both processes, let exactly the limit through."""
    key = shell(pair.a, LIMITED.format(password=PASSWORD))
    scripted.script(*(Reply(f"Answer {i}.") for i in range(8)))
    on_a = ChatClient(pair.a.url)
    on_a.login("limited")
    clients = [on_a]
    for index in range(1, 8):
        client = ChatClient((pair.a if index % 2 == 0 else pair.b).url)
        client.http.cookies.update(on_a.http.cookies)
        clients.append(client)
    try:
        with ThreadPoolExecutor(len(clients)) as pool:
            sends = list(
                pool.map(lambda c: c.send("At once", assistant=scripted.profile_id), clients)
            )
        accepted = [(c, s) for c, s in zip(clients, sends, strict=True) if s.events_url]
        assert len(accepted) == 3
        for client, sent in zip(clients, sends, strict=True):
            if sent.events_url:
                assert client.events(sent.events_url)[1][-1].event == "end"
            else:
                assert "limit of 3 messages an hour" in sent.response.text
    finally:
        for client in clients:
            client.close()

    def request(server: ThreadlineServer) -> int:
        with sdk(server, key=key) as client:
            try:
                client.models.list()
            except openai.RateLimitError:
                return 429
            return 200

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(request, [pair.a, pair.b] * 5))
    assert statuses.count(200) == 4 and statuses.count(429) == 6


def test_redis_going_away_mid_answer_ends_the_stream_rather_than_hanging(
    pair: Pair, on_a: ChatClient, on_b: ChatClient, scripted: Scripted
) -> None:
    # Near the end of this module: Redis comes back empty. Sessions are in the database too;
    # the replay logs of the answers before are gone.
    scripted.script(Reply(tokens(400), chunk_delay=0.05))
    sent = on_a.send("Count forever", assistant=scripted.profile_id)
    assert sent.events_url
    with ThreadPoolExecutor(1) as pool:
        reading = pool.submit(on_b.events, sent.events_url, timeout=60)
        time.sleep(1)
        pair.redis.stop()
        stopped = time.monotonic()
        status, events = reading.result()
    let_go = time.monotonic() - stopped
    pair.redis.start()
    assert status == 200 and events and events[-1].event != "end"
    # The stream ends, so EventSource reconnects; it is not kept open with no answer coming.
    assert let_go < 20, let_go


def test_redis_restarted_mid_answer_ends_readers_and_the_next_answers_arrive(
    pair: Pair, on_a: ChatClient, on_b: ChatClient, scripted: Scripted
) -> None:
    # Redis comes back at once, empty: the replay log of the answer in flight is gone.
    scripted.script(Reply(tokens(300), chunk_delay=0.05))
    sent = on_a.send("Count on", assistant=scripted.profile_id)
    assert sent.events_url
    with ThreadPoolExecutor(1) as pool:
        reading = pool.submit(on_b.events, sent.events_url, timeout=40)
        time.sleep(1)
        pair.redis.stop()
        pair.redis.start()
        restarted = time.monotonic()
        status, events = reading.result()
    # The reader's stream ends (its log is gone) rather than sending keep-alives for ever...
    assert status == 200 and events
    assert time.monotonic() - restarted < 20
    # ...and the page, reconnecting, gets the answer so far from the API, and an end.
    _, after = on_b.events(sent.events_url, last_event_id=events[-1].id, timeout=40)
    assert after and after[-1].event == "end", [e.event for e in after]
    shown = text_of(after[-2].data)
    assert "w0 w1 w2" in shown
    assert "w299" in shown or "Reload the page in a moment" in shown
    deadline = time.monotonic() + 30
    while "w299" not in text_of(on_b.get(f"/c/{sent.conversation_id}/").text):
        assert time.monotonic() < deadline, "the whole answer, once written"
        time.sleep(0.5)

    # The next answer each process relays reaches the page: no dead pooled connection.
    for sender, reader in ((on_a, on_b), (on_b, on_a)):
        scripted.script(Reply("After the restart."))
        again = sender.send("Still there?", conversation_id=sent.conversation_id)
        assert again.events_url, again.response.text
        status, answer = reader.events(again.events_url, timeout=30)
        assert status == 200 and answer and answer[-1].event == "end", answer
        assert "After the restart." in answer[-2].data


def test_a_process_that_relayed_before_redis_restarted_relays_the_next_answer_whole(
    pair: Pair, on_b: ChatClient, scripted: Scripted
) -> None:
    # B relays an answer, so its channel layer keeps a connection to Redis; Redis restarts and
    # that connection is dead. B's next answer went out empty: its first publish failed and
    # the relay gave the answer up, though the run completed.
    first, second = tokens(20), " ".join(f"again{i}" for i in range(40))
    scripted.script(Reply(first, chunk_delay=0.03), Reply(second, chunk_delay=0.03))
    sent = on_b.send("Before", assistant=scripted.profile_id)
    assert sent.events_url
    assert_whole_once(on_b.events(sent.events_url)[1], first)
    pair.redis.stop()
    pair.redis.start()
    again = on_b.send("After", conversation_id=sent.conversation_id)
    assert again.events_url
    status, events = on_b.events(again.events_url)
    assert status == 200
    assert_whole_once(events, second)


def test_a_process_that_dies_mid_answer_leaves_the_thread_to_the_other(
    pair: Pair, on_a: ChatClient, on_b: ChatClient, scripted: Scripted
) -> None:
    # Last in this module: process A is killed.
    scripted.script(Reply(tokens(400), chunk_delay=0.05))
    sent = on_a.send("Count forever", assistant=scripted.profile_id)
    assert sent.events_url
    on_b.events(sent.events_url, stop_after=3)
    run_id = sent.events_url.split("/")[-2]
    thread_id = shell(pair.b, THREAD_OF.format(conversation=sent.conversation_id))
    with sdk(pair.b) as via_b:
        # Part of the answer is in the database (the engine writes it every half second).
        deadline = time.monotonic() + 30
        while not partial_answer(via_b, thread_id) and time.monotonic() < deadline:
            time.sleep(0.1)
        pair.a.kill()  # its relay and the run it executed die with it
        # B's engine settles the lost run (THREADLINE_RUN_STALE_SECONDS); the replay log, in
        # Redis, still says the answer is live.
        run = via_b.beta.threads.runs.poll(run_id, thread_id=thread_id, poll_interval_ms=200)
    assert run.status == "failed"
    page = on_b.get(f"/c/{sent.conversation_id}/")
    assert "sse-connect" not in page.text, "a reload shows the thread, not a live answer"
    assert "The answer stopped here." in text_of(page.text)
    # And the conversation goes on, on B.
    scripted.script(Reply("Here again."))
    again = on_b.send("Still there?", conversation_id=sent.conversation_id)
    assert again.events_url
    _, events = on_b.events(again.events_url)
    assert events[-1].event == "end" and "Here again." in events[-2].data, events[-2].data


def partial_answer(client: Any, thread_id: str) -> str:
    messages = client.beta.threads.messages.list(thread_id).data
    return "".join(
        part.text.value
        for message in messages
        if message.role == "assistant"
        for part in message.content
        if part.type == "text"
    )


def test_a_form_pending_when_its_process_died_is_answered_on_the_other(
    pair: Pair, chat_model: FakeModelServer
) -> None:
    # After the process-death test: A is started again, and killed again.
    if pair.a.process is None or pair.a.process.poll() is not None:
        pair.a.start()
    profile_id, model = next(pair.profiles)
    scripted = Scripted(profile_id, model, chat_model)
    give_functions(pair.b, scripted.profile_id, raw=[QUIZ])
    scripted.script(
        Reply(tool_calls=[ToolCall("display_quiz", json.dumps(QUIZ_ARGUMENTS))]),
        Reply("B took it over."),
    )
    on_a, on_b = ChatClient(pair.a.url), ChatClient(pair.b.url)
    on_a.login("owner")
    on_b.http.cookies.update(on_a.http.cookies)
    try:
        sent = on_a.send("Quiz me", assistant=scripted.profile_id)
        assert sent.events_url
        events = read_until_waiting(on_b, sent.events_url)
        pair.a.kill()  # the relay waiting for the answer dies
        answered = on_b.post(
            action_url(events[-1].data), {"action": "answer", "q-0": "3/4", "q-1": "Quarters."}
        )
        assert "You answered" in text_of(answered.text)
        # B takes the round over once A's lease is stale (THREADLINE_RUN_STALE_SECONDS), and
        # goes on with the same replay log.
        _, rest = on_b.events(sent.events_url, last_event_id=events[-1].id, timeout=40)
        assert rest[-1].event == "end"
        assert "B took it over." in rest[-2].data
    finally:
        on_a.close()
        on_b.close()

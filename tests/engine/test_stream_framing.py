"""What a stream and a poll tell a client besides the run's own events: the new thread first in a
create-and-run stream, comments while a stream is quiet, how soon to poll again."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx2 as httpx
import openai
import pytest

from tests.engine.test_runs import unique_model
from tests.fake_model import FakeModelServer, Reply
from tests.servers import ENGINE_KEY, ThreadlineServer, model_env, sdk


def test_a_create_and_run_stream_starts_with_the_new_thread(
    client: openai.OpenAI, model_server: FakeModelServer
) -> None:
    model = unique_model()
    model_server.script(model, [Reply("Hello there")])
    assistant = client.beta.assistants.create(model=model)
    with client.beta.threads.create_and_run(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": "Hi"}]},
        stream=True,
    ) as stream:
        events = list(stream)
    assert [e.event for e in events[:2]] == ["thread.created", "thread.run.created"]
    thread = events[0].data
    assert thread.id.startswith("thread_")
    assert events[1].data.thread_id == thread.id
    assert events[-1].event == "thread.run.completed"


def test_run_retrieves_say_how_soon_to_poll_again(
    client: openai.OpenAI, model_server: FakeModelServer
) -> None:
    model = unique_model()
    model_server.script(model, [Reply("Done.")])
    assistant = client.beta.assistants.create(model=model)
    run = client.beta.threads.create_and_run(
        assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": "Hi"}]}
    )
    raw = client.beta.threads.runs.with_raw_response.retrieve(run.id, thread_id=run.thread_id)
    assert raw.headers["openai-poll-after-ms"] == "500"
    assert raw.headers["x-request-id"].startswith("req_")
    # The SDK's helper reads the header instead of its default second between polls.
    done = client.beta.threads.runs.poll(run.id, thread_id=run.thread_id)
    assert done.status == "completed"


@pytest.fixture(scope="module")
def patient_engine(model_server: FakeModelServer) -> Iterator[ThreadlineServer]:
    """An engine that waits longer than a keep-alive interval for the model's next chunk."""
    env = {**model_env(model_server), "THREADLINE_MODEL_TIMEOUT_SECONDS": "30"}
    server = ThreadlineServer(env=env).start()
    yield server
    server.stop()


def test_a_quiet_stream_sends_a_comment_every_5_seconds(
    patient_engine: ThreadlineServer, model_server: FakeModelServer
) -> None:
    model = unique_model()
    # The model's two chunks (the role, then the end) come 5.5 s apart: two quiet stretches.
    model_server.script(model, [Reply("", chunk_delay=5.5)])
    with sdk(patient_engine) as client:
        assistant = client.beta.assistants.create(model=model)
        thread = client.beta.threads.create(messages=[{"role": "user", "content": "Hi"}])
    body = {"assistant_id": assistant.id, "stream": True}
    url = f"{patient_engine.api_url}/threads/{thread.id}/runs"
    lines: list[tuple[float, str]] = []
    start = time.monotonic()
    with httpx.stream(
        "POST", url, json=body, headers={"Authorization": f"Bearer {ENGINE_KEY}"}, timeout=30
    ) as response:
        for line in response.iter_lines():
            lines.append((time.monotonic() - start, line))
    said = [(at, line) for at, line in lines if line]
    quiet = [at - said[i - 1][0] for i, (at, line) in enumerate(said) if line == ": keep-alive"]
    assert len(quiet) >= 2, lines
    assert all(4.5 < seconds < 6.5 for seconds in quiet), quiet  # 5 s, and a loaded loop
    assert said[-1][1] == "data: [DONE]"

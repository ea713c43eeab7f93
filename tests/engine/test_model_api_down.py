"""A model API that is down, or out of credit, is reported as what it is, and said once."""

from __future__ import annotations

import time

import openai

from tests.engine.test_runs import sent_to, unique_model, wait_for
from tests.fake_model import Fail, FakeModelServer, Reply
from tests.servers import ThreadlineServer, free_port, sdk

QUOTA = "You exceeded your current quota, please check your plan and billing details."


def test_an_exhausted_quota_is_not_retried_and_says_so(
    client: openai.OpenAI, model_server: FakeModelServer
) -> None:
    model = unique_model()
    model_server.script(
        model, [Fail(429, message=QUOTA, code="insufficient_quota"), Reply("never sent")]
    )
    assistant = client.beta.assistants.create(model=model)
    run = client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": "hi"}]},
        poll_interval_ms=50,
    )
    assert run.status == "failed"
    assert run.last_error is not None
    assert run.last_error.code == "rate_limit_exceeded"  # OpenAI's code for it
    assert "out of credit" in run.last_error.message
    assert QUOTA in run.last_error.message  # the provider's own words
    assert "Try again in a minute" not in run.last_error.message
    assert len(sent_to(model_server, model)) == 1


def test_a_refused_connection_is_not_reported_as_slow_nor_names_the_address() -> None:
    port = free_port()  # nothing listens there
    env = {
        "OPENAI_API_KEY": "sk-anything",
        "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1",
        "THREADLINE_MODEL_MAX_RETRIES": "1",
        "THREADLINE_MODEL_TIMEOUT_SECONDS": "30",
    }
    server = ThreadlineServer(env=env).start()
    try:
        with sdk(server) as client:
            assistant = client.beta.assistants.create(model="gpt-4o-mini")
            thread = client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
            started = time.monotonic()
            run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
            failed = wait_for(client, run, ("failed",), timeout=20)
            assert time.monotonic() - started < 10  # not the 30-second timeout, twice
            assert failed.last_error is not None
            message = failed.last_error.message
            assert "Could not connect to the model API (connection refused)" in message
            assert "did not answer" not in message
            assert str(port) not in message and "127.0.0.1" not in message
        assert f"127.0.0.1:{port}" in server.log()  # the address is for the admin's log
    finally:
        server.stop()

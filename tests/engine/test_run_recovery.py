"""Runs never stay active forever: lost workers and parked runs end in a terminal state."""

import time

import openai

from tests.conftest import model_env, sdk
from tests.engine.test_runs import WEATHER_TOOL, unique_model, wait_for
from tests.fake_model import FakeModelServer, Reply, ToolCall
from tests.servers import ThreadlineServer


def test_run_in_flight_when_the_server_dies_fails_after_restart(
    model_server: FakeModelServer,
) -> None:
    env = {**model_env(model_server), "THREADLINE_RUN_STALE_SECONDS": "2"}
    server = ThreadlineServer(env=env).start()
    try:
        model = unique_model()
        model_server.script(model, [Reply("slow " * 500, chunk_delay=0.05)])
        with sdk(server) as client:
            assistant = client.beta.assistants.create(model=model)
            thread = client.beta.threads.create(messages=[{"role": "user", "content": "go"}])
            run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
            wait_for(client, run, ("in_progress",))
            time.sleep(0.8)

        server.kill()
        server.start()  # same data directory and database, a new process
        with sdk(server) as client:
            failed = wait_for(client, run, ("failed",), timeout=20)
            assert failed.last_error.code == "server_error"
            assert "restarted" in failed.last_error.message
            answer = client.beta.threads.messages.list(thread_id=thread.id, run_id=run.id).data[0]
            assert answer.status == "incomplete"
            assert answer.incomplete_details.reason == "run_failed"

            model_server.script(model, [Reply("back again")])
            again = client.beta.threads.runs.create_and_poll(
                thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=50
            )
            assert again.status == "completed"
    finally:
        server.stop()


def test_run_waiting_for_tool_outputs_expires(model_server: FakeModelServer) -> None:
    env = {**model_env(model_server), "THREADLINE_RUN_EXPIRES_SECONDS": "2"}
    server = ThreadlineServer(env=env).start()
    try:
        model = unique_model()
        model_server.script(model, [Reply(tool_calls=[ToolCall("get_weather", "{}")])])
        with sdk(server) as client:
            assistant = client.beta.assistants.create(model=model, tools=[WEATHER_TOOL])
            thread = client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
            run = client.beta.threads.runs.create_and_poll(
                thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=50
            )
            assert run.status == "requires_action"
            assert run.expires_at is not None
            expired = wait_for(client, run, ("expired",), timeout=10)
            assert expired.required_action is None
            step = client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id).data[0]
            assert step.status == "expired"
            try:
                client.beta.threads.runs.submit_tool_outputs(
                    thread_id=thread.id,
                    run_id=run.id,
                    tool_outputs=[{"tool_call_id": "x", "output": ""}],
                )
                raise AssertionError("an expired run must refuse tool outputs")
            except openai.BadRequestError as error:
                assert "expired" in error.body["message"]
    finally:
        server.stop()

"""A cancel that arrives together with tool outputs is never lost: it wins, or it is a 400."""

from __future__ import annotations

import contextlib
import threading

import openai

from tests.engine.test_runs import WEATHER_TOOL, unique_model, wait_for
from tests.fake_model import FakeModelServer, Reply, ToolCall
from tests.servers import ThreadlineServer, sdk

TRIES = 8


def test_cancel_sent_with_tool_outputs_wins_or_is_refused(
    model_engine: ThreadlineServer, model_server: FakeModelServer
) -> None:
    with sdk(model_engine) as client:
        outcomes = []
        for _ in range(TRIES):
            # A model per try: a cancelled try leaves its second turn unused.
            model = unique_model()
            model_server.script(
                model,
                [Reply(tool_calls=[ToolCall("get_weather", '{"city": "Oslo"}')]), Reply("Sunny.")],
            )
            assistant = client.beta.assistants.create(model=model, tools=[WEATHER_TOOL])
            thread = client.beta.threads.create(messages=[{"role": "user", "content": "Oslo?"}])
            run = client.beta.threads.runs.create_and_poll(
                thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=50
            )
            assert run.status == "requires_action"
            assert run.required_action is not None
            call_id = run.required_action.submit_tool_outputs.tool_calls[0].id
            outcomes.append(race(model_engine, thread.id, run.id, call_id))
    for cancel, final in outcomes:
        if cancel == 400:
            # Refused: the run had already moved on and answers as if no cancel was sent.
            assert final == "completed", outcomes
        else:
            # Accepted: the run stops, whatever the tool outputs did meanwhile.
            assert cancel in ("cancelling", "cancelled"), outcomes
            assert final == "cancelled", outcomes


def race(server: ThreadlineServer, thread_id: str, run_id: str, call_id: str) -> tuple[object, str]:
    """Cancel and submit at the same moment; (cancel's status or 400, the run's final status)."""
    ready = threading.Barrier(2)
    result: dict[str, object] = {}

    def cancel() -> None:
        with sdk(server) as client:
            ready.wait()
            try:
                run = client.beta.threads.runs.cancel(run_id, thread_id=thread_id)
                result["cancel"] = run.status
            except openai.BadRequestError:
                result["cancel"] = 400

    def submit() -> None:
        with sdk(server) as client:
            ready.wait()
            # A 400 when the cancel came first: nothing is waiting for outputs then.
            with contextlib.suppress(openai.BadRequestError):
                client.beta.threads.runs.submit_tool_outputs(
                    run_id,
                    thread_id=thread_id,
                    tool_outputs=[{"tool_call_id": call_id, "output": "sunny"}],
                )

    threads = [threading.Thread(target=cancel), threading.Thread(target=submit)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with sdk(server) as client:
        run = client.beta.threads.runs.retrieve(run_id, thread_id=thread_id)
        final = wait_for(client, run, ("completed", "cancelled", "failed", "expired"))
    return result["cancel"], final.status

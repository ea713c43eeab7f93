"""Runs through the official SDK against the live engine, with the scripted model API."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import openai
import pytest
from openai import AssistantEventHandler
from openai.types.beta.threads import Run

from tests.fake_model import Cut, Fail, FakeModelServer, Hang, Reply, ToolCall
from tests.servers import ENGINE_KEY, ThreadlineServer

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def unique_model() -> str:
    """A model name of the test's own, so scripted turns never leak between tests."""
    return f"scripted-{uuid.uuid4().hex[:8]}"


def wait_for(
    client: openai.OpenAI, run: Run, statuses: tuple[str, ...], timeout: float = 15
) -> Run:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.beta.threads.runs.retrieve(run.id, thread_id=run.thread_id)
        if run.status in statuses:
            return run
        time.sleep(0.05)
    raise AssertionError(f"run stayed {run.status}, wanted one of {statuses}")


def sent_to(model_server: FakeModelServer, model: str) -> list[dict]:
    """The chat completion requests the engine sent for `model`, oldest first."""
    return [r["body"] for r in model_server.requests if (r["body"] or {}).get("model") == model]


class Recorder(AssistantEventHandler):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []
        self.deltas: list[str] = []
        self.tool_calls: list[str] = []

    def on_event(self, event) -> None:  # type: ignore[no-untyped-def]
        self.events.append(event.event)

    def on_text_delta(self, delta, snapshot) -> None:  # type: ignore[no-untyped-def]
        self.deltas.append(delta.value)

    def on_tool_call_created(self, tool_call) -> None:  # type: ignore[no-untyped-def]
        self.tool_calls.append(tool_call.function.name)


def test_math_tutor_create_and_poll(client: openai.OpenAI, model_server: FakeModelServer) -> None:
    model = unique_model()
    model_server.script(model, [Reply("The answer is x = 1.", usage=None)])
    tutor = client.beta.assistants.create(
        name="Math Tutor",
        instructions="You are a personal math tutor. Answer briefly.",
        model=model,
    )
    thread = client.beta.threads.create()
    client.beta.threads.messages.create(
        thread_id=thread.id, role="user", content="I need to solve `3x + 11 = 14`. Can you help?"
    )
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=tutor.id, poll_interval_ms=50
    )
    assert run.status == "completed"
    assert run.usage is not None and run.usage.completion_tokens == 6
    assert run.usage.total_tokens == run.usage.prompt_tokens + 6

    messages = client.beta.threads.messages.list(thread_id=thread.id, order="asc")
    assert [m.role for m in messages] == ["user", "assistant"]
    answer = messages.data[1]
    assert answer.content[0].text.value == "The answer is x = 1."
    assert (answer.run_id, answer.assistant_id, answer.status) == (run.id, tutor.id, "completed")

    sent = sent_to(model_server, model)[-1]
    assert sent["messages"][0] == {
        "role": "system",
        "content": "You are a personal math tutor. Answer briefly.",
    }
    assert sent["messages"][-1]["content"] == "I need to solve `3x + 11 = 14`. Can you help?"

    steps = client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id)
    assert [s.type for s in steps] == ["message_creation"]
    assert steps.data[0].step_details.message_creation.message_id == answer.id


def streamed(
    client: openai.OpenAI, model_server: FakeModelServer, reply: Reply
) -> tuple[Recorder, Any]:
    """One answer streamed with `runs.stream` and an event handler, to the end."""
    model = unique_model()
    model_server.script(model, [reply])
    assistant = client.beta.assistants.create(model=model)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "count"}])
    handler = Recorder()
    with client.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=assistant.id, event_handler=handler
    ) as stream:
        stream.until_done()
    return handler, stream


def test_stream_with_event_handler_emits_events_in_spec_order(
    client: openai.OpenAI, model_server: FakeModelServer
) -> None:
    # Paced like a real model: each token is its own delta (tokens that pile up merge; below).
    handler, stream = streamed(
        client, model_server, Reply("one two three four five", chunk_delay=0.02)
    )

    assert handler.deltas == ["one", " two", " three", " four", " five"]
    assert handler.events == [
        "thread.run.created",
        "thread.run.queued",
        "thread.run.in_progress",
        "thread.run.step.created",
        "thread.run.step.in_progress",
        "thread.message.created",
        "thread.message.in_progress",
        *["thread.message.delta"] * 5,
        "thread.message.completed",
        "thread.run.step.completed",
        "thread.run.completed",
    ]
    assert stream.get_final_run().status == "completed"
    assert stream.get_final_messages()[0].content[0].text.value == "one two three four five"


def test_tokens_that_pile_up_go_out_as_one_delta(
    client: openai.OpenAI, model_server: FakeModelServer
) -> None:
    # The fake sends 16 chunks per write at full speed: they reach the engine together, and a
    # reader that is behind gets them as fewer, longer deltas, with nothing lost or reordered.
    text = " ".join(f"w{i}" for i in range(400))
    handler, stream = streamed(client, model_server, Reply(text))

    assert "".join(handler.deltas) == text
    assert 1 <= len(handler.deltas) < 400
    assert stream.get_final_messages()[0].content[0].text.value == text


def test_create_and_run_creates_thread_and_answers(
    client: openai.OpenAI, model_server: FakeModelServer
) -> None:
    model = unique_model()
    model_server.script(model, [Reply("Bonjour")])
    assistant = client.beta.assistants.create(model=model)
    run = client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": "Say hello in French"}]},
        poll_interval_ms=50,
    )
    assert run.status == "completed"
    messages = client.beta.threads.messages.list(thread_id=run.thread_id)
    assert messages.data[0].content[0].text.value == "Bonjour"


def test_three_concurrent_threads(client: openai.OpenAI) -> None:
    assistant = client.beta.assistants.create(model="echo-model")
    runs = []
    for question in ("first", "second", "third"):
        thread = client.beta.threads.create(messages=[{"role": "user", "content": question}])
        runs.append(client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id))
    for run, question in zip(runs, ("first", "second", "third"), strict=True):
        done = wait_for(client, run, ("completed",))
        text = client.beta.threads.messages.list(thread_id=done.thread_id).data[0]
        assert text.content[0].text.value == f"Echo: {question}"


def test_function_calling_requires_action_then_streams_the_answer(
    client: openai.OpenAI, model_server: FakeModelServer
) -> None:
    model = unique_model()
    model_server.script(
        model,
        [
            Reply(
                tool_calls=[
                    ToolCall("get_weather", '{"city": "Paris"}', id="call_paris"),
                    ToolCall("get_weather", '{"city": "Oslo"}', id="call_oslo"),
                ]
            ),
            Reply("Paris is sunny and Oslo is cold."),
        ],
    )
    assistant = client.beta.assistants.create(model=model, tools=[WEATHER_TOOL])
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": "Weather in Paris and Oslo?"}]
    )
    handler = Recorder()
    with client.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=assistant.id, event_handler=handler
    ) as stream:
        stream.until_done()
    run = stream.current_run
    assert run is not None and run.status == "requires_action"
    assert handler.tool_calls == ["get_weather", "get_weather"]
    calls = run.required_action.submit_tool_outputs.tool_calls
    assert [(c.id, json.loads(c.function.arguments)) for c in calls] == [
        ("call_paris", {"city": "Paris"}),
        ("call_oslo", {"city": "Oslo"}),
    ]

    after = Recorder()
    with client.beta.threads.runs.submit_tool_outputs_stream(
        thread_id=thread.id,
        run_id=run.id,
        tool_outputs=[
            {"tool_call_id": "call_paris", "output": "22C sunny"},
            {"tool_call_id": "call_oslo", "output": "-3C snow"},
        ],
        event_handler=after,
    ) as stream:
        stream.until_done()
    assert "".join(after.deltas) == "Paris is sunny and Oslo is cold."
    assert after.events[-1] == "thread.run.completed"

    # The model saw its own calls and our outputs, in Chat Completions form.
    second = sent_to(model_server, model)[-1]
    tool_messages = [m for m in second["messages"] if m["role"] == "tool"]
    assert [(m["tool_call_id"], m["content"]) for m in tool_messages] == [
        ("call_paris", "22C sunny"),
        ("call_oslo", "-3C snow"),
    ]
    steps = client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id, order="asc")
    function_step = steps.data[0]
    assert function_step.status == "completed"
    recorded = function_step.step_details.tool_calls
    assert [(c.function.arguments, c.function.output) for c in recorded] == [
        ('{"city": "Paris"}', "22C sunny"),
        ('{"city": "Oslo"}', "-3C snow"),
    ]


def test_submit_tool_outputs_and_poll_with_wrong_ids_is_400(
    client: openai.OpenAI, model_server: FakeModelServer
) -> None:
    model = unique_model()
    model_server.script(
        model, [Reply(tool_calls=[ToolCall("get_weather", "{}", id="call_1")]), Reply("ok")]
    )
    assistant = client.beta.assistants.create(model=model, tools=[WEATHER_TOOL])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=50
    )
    assert run.status == "requires_action"
    with pytest.raises(openai.BadRequestError):
        client.beta.threads.runs.submit_tool_outputs(
            thread_id=thread.id,
            run_id=run.id,
            tool_outputs=[{"tool_call_id": "nope", "output": ""}],
        )
    done = client.beta.threads.runs.submit_tool_outputs_and_poll(
        thread_id=thread.id,
        run_id=run.id,
        tool_outputs=[{"tool_call_id": "call_1", "output": "sunny"}],
        poll_interval_ms=50,
    )
    assert done.status == "completed"


def test_one_active_run_per_thread(client: openai.OpenAI, model_server: FakeModelServer) -> None:
    model = unique_model()
    model_server.script(model, [Reply("slow " * 40, chunk_delay=0.05)])
    assistant = client.beta.assistants.create(model=model)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)

    with pytest.raises(openai.BadRequestError) as second_run:
        client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    assert second_run.value.body["message"] == (
        f"Thread {thread.id} already has an active run {run.id}."
    )
    with pytest.raises(openai.BadRequestError) as new_message:
        client.beta.threads.messages.create(thread_id=thread.id, role="user", content="more")
    assert new_message.value.body["message"] == (
        f"Can't add messages to {thread.id} while a run {run.id} is active."
    )
    wait_for(client, run, ("completed",))
    client.beta.threads.messages.create(thread_id=thread.id, role="user", content="more")


def test_cancel_keeps_partial_answer(client: openai.OpenAI, model_server: FakeModelServer) -> None:
    model = unique_model()
    model_server.script(model, [Reply("word " * 200, chunk_delay=0.02)])
    assistant = client.beta.assistants.create(model=model)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "talk"}])
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    deadline = time.monotonic() + 10
    while not client.beta.threads.messages.list(thread_id=thread.id, run_id=run.id).data:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.6)  # past one flush, so part of the answer is stored

    cancelling = client.beta.threads.runs.cancel(run_id=run.id, thread_id=thread.id)
    assert cancelling.status in ("cancelling", "cancelled")
    cancelled = wait_for(client, run, ("cancelled",))
    assert cancelled.cancelled_at is not None

    answer = client.beta.threads.messages.list(thread_id=thread.id, run_id=run.id).data[0]
    assert answer.status == "incomplete"
    assert answer.incomplete_details.reason == "run_cancelled"
    assert answer.content[0].text.value.startswith("word word")
    with pytest.raises(openai.BadRequestError):
        client.beta.threads.runs.cancel(run_id=run.id, thread_id=thread.id)


def test_cancel_while_waiting_for_tool_outputs(
    client: openai.OpenAI, model_server: FakeModelServer
) -> None:
    model = unique_model()
    model_server.script(model, [Reply(tool_calls=[ToolCall("get_weather", "{}")])])
    assistant = client.beta.assistants.create(model=model, tools=[WEATHER_TOOL])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=50
    )
    assert run.status == "requires_action"
    assert client.beta.threads.runs.cancel(run_id=run.id, thread_id=thread.id).status == "cancelled"
    step = client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id).data[0]
    assert step.status == "cancelled"


def test_stream_closed_early_does_not_stop_the_run(
    client: openai.OpenAI, model_server: FakeModelServer
) -> None:
    model = unique_model()
    model_server.script(model, [Reply("a b c d e f g h i j", chunk_delay=0.05)])
    assistant = client.beta.assistants.create(model=model)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "go"}])
    with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as stream:
        for event in stream:
            if event.event == "thread.message.delta":
                break
    run = client.beta.threads.runs.list(thread_id=thread.id).data[0]
    done = wait_for(client, run, ("completed",))
    answer = client.beta.threads.messages.list(thread_id=thread.id, run_id=done.id).data[0]
    assert answer.content[0].text.value == "a b c d e f g h i j"


def test_polling_sees_progress_while_streaming(
    client: openai.OpenAI, model_server: FakeModelServer
) -> None:
    model = unique_model()
    model_server.script(model, [Reply("tick " * 60, chunk_delay=0.03)])
    assistant = client.beta.assistants.create(model=model)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "go"}])
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    assert wait_for(client, run, ("in_progress",)).started_at is not None
    time.sleep(1.2)
    partial = client.beta.threads.messages.list(thread_id=thread.id, run_id=run.id).data[0]
    assert partial.status == "in_progress"
    assert 0 < len(partial.content[0].text.value) < len("tick " * 60)
    wait_for(client, run, ("completed",))


@pytest.mark.parametrize(
    ("turns", "code", "needle"),
    [
        ([Fail(429, retry_after=0)] * 3, "rate_limit_exceeded", "rate-limiting"),
        ([Fail(503)] * 3, "server_error", "503"),
        ([Fail(401, code="invalid_api_key")], "server_error", "OPENAI_API_KEY"),
        ([Fail(400, message="context too long")], "invalid_prompt", "context too long"),
        ([Cut(after_tokens=3, text="one two three four five")], "server_error", "broke off"),
        ([Hang(10)] * 3, "server_error", "did not answer"),
    ],
)
def test_model_api_failures_fail_the_run_with_an_actionable_error(
    client: openai.OpenAI, model_server: FakeModelServer, turns: list, code: str, needle: str
) -> None:
    model = unique_model()
    model_server.script(model, turns)
    assistant = client.beta.assistants.create(model=model)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    failed = wait_for(client, run, ("failed",), timeout=30)
    assert failed.last_error.code == code
    assert needle in failed.last_error.message
    assert failed.failed_at is not None
    # The thread is usable again.
    client.beta.threads.messages.create(thread_id=thread.id, role="user", content="again")


def test_missing_model_fails_naming_the_model(client: openai.OpenAI) -> None:
    assistant = client.beta.assistants.create(model="missing-model")
    run = client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": "hi"}]},
        poll_interval_ms=50,
    )
    assert run.status == "failed"
    assert "missing-model" in run.last_error.message


def test_rate_limit_is_retried_then_succeeds(
    client: openai.OpenAI, model_server: FakeModelServer
) -> None:
    model = unique_model()
    model_server.script(model, [Fail(429, retry_after=1), Reply("made it")])
    assistant = client.beta.assistants.create(model=model)
    run = client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": "hi"}]},
        poll_interval_ms=50,
    )
    assert run.status == "completed"


def test_max_completion_tokens_ends_incomplete(
    client: openai.OpenAI, model_server: FakeModelServer
) -> None:
    assistant = client.beta.assistants.create(model="tokens-500")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id,
        assistant_id=assistant.id,
        max_completion_tokens=20,
        poll_interval_ms=50,
    )
    assert run.status == "incomplete"
    assert run.incomplete_details.reason == "max_completion_tokens"
    sent = sent_to(model_server, "tokens-500")[-1]
    assert sent.get("max_tokens") == 20
    answer = client.beta.threads.messages.list(thread_id=thread.id).data[0]
    assert answer.status == "incomplete"


def test_max_prompt_tokens_ends_incomplete_when_the_question_cannot_fit(
    client: openai.OpenAI,
) -> None:
    assistant = client.beta.assistants.create(model="echo-model")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "word " * 2000}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, max_prompt_tokens=256, poll_interval_ms=50
    )
    assert run.status == "incomplete"
    assert run.incomplete_details.reason == "max_prompt_tokens"


def test_truncation_strategy_last_messages_and_overrides(
    client: openai.OpenAI, model_server: FakeModelServer
) -> None:
    model = unique_model()
    model_server.script(model, [Reply("ok")])
    assistant = client.beta.assistants.create(model="echo-model", instructions="Base.")
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": f"message {i}"} for i in range(6)]
    )
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id,
        assistant_id=assistant.id,
        model=model,
        additional_instructions="Be terse.",
        additional_messages=[{"role": "user", "content": "last one"}],
        truncation_strategy={"type": "last_messages", "last_messages": 2},
        temperature=0.3,
        metadata={"source": "test"},
        poll_interval_ms=50,
    )
    assert run.status == "completed"
    assert (run.model, run.instructions, run.metadata) == (
        model,
        "Base.\n\nBe terse.",
        {"source": "test"},
    )
    sent = sent_to(model_server, model)[-1]
    assert [m["content"] for m in sent["messages"]] == [
        "Base.\n\nBe terse.",
        "message 5",
        "last one",
    ]
    assert sent["temperature"] == 0.3


def test_parallel_async_streams(model_engine: ThreadlineServer) -> None:
    async def one(client: openai.AsyncOpenAI, assistant_id: str, n: int) -> str:
        thread = await client.beta.threads.create(
            messages=[{"role": "user", "content": f"question {n}"}]
        )
        text = []
        async with client.beta.threads.runs.stream(
            thread_id=thread.id, assistant_id=assistant_id
        ) as stream:
            async for delta in stream.text_deltas:
                text.append(delta)
        return "".join(text)

    async def main() -> list[str]:
        async with openai.AsyncOpenAI(
            api_key=ENGINE_KEY, base_url=model_engine.api_url, max_retries=0
        ) as client:
            assistant = await client.beta.assistants.create(model="echo-model")
            return await asyncio.gather(*(one(client, assistant.id, n) for n in range(20)))

    answers = asyncio.run(main())
    assert answers == [f"Echo: question {n}" for n in range(20)]


def test_run_list_retrieve_modify_and_steps(client: openai.OpenAI) -> None:
    assistant = client.beta.assistants.create(model="echo-model")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=50
    )
    updated = client.beta.threads.runs.update(run.id, thread_id=thread.id, metadata={"k": "v"})
    assert updated.metadata == {"k": "v"}
    assert [r.id for r in client.beta.threads.runs.list(thread_id=thread.id)] == [run.id]
    step = client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id).data[0]
    again = client.beta.threads.runs.steps.retrieve(
        step.id,
        thread_id=thread.id,
        run_id=run.id,
        include=["step_details.tool_calls[*].file_search.results[*].content"],
    )
    assert again.id == step.id
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.runs.retrieve("run_missing", thread_id=thread.id)


def test_cancel_mid_stream_ends_the_message_incomplete_in_the_stream(
    client: openai.OpenAI, model_server: FakeModelServer
) -> None:
    model = unique_model()
    # A minute of words: under CI's load the cancel lands long before the answer could end.
    model_server.script(model, [Reply("word " * 3000, chunk_delay=0.02)])
    assistant = client.beta.assistants.create(model=model)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "talk"}])
    events = []
    with client.beta.threads.runs.create(
        thread_id=thread.id, assistant_id=assistant.id, stream=True
    ) as stream:
        for event in stream:
            events.append(event.event)
            if event.event == "thread.run.created":
                run_id = event.data.id
            if event.event == "thread.message.delta" and events.count(event.event) == 3:
                client.beta.threads.runs.cancel(run_id=run_id, thread_id=thread.id)
    assert events[-2:] == ["thread.message.incomplete", "thread.run.cancelled"]

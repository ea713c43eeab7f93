"""The fake model server, exercised through the official openai SDK over real HTTP."""

from __future__ import annotations

import asyncio
import http.client
import json
import time
from collections import Counter
from collections.abc import Iterator

import openai
import pytest
from openai import AsyncOpenAI, AzureOpenAI, OpenAI
from openai.types.chat import ChatCompletionChunk

from tests.fake_model import Cut, Fail, FakeModelServer, Hang, Reply, ToolCall

MESSAGES = [{"role": "user", "content": "What is the weather like?"}]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeModelServer]:
    with FakeModelServer() as server:
        yield server


@pytest.fixture(autouse=True)
def fresh_server(server: FakeModelServer) -> None:
    server.clear()


@pytest.fixture
def client(server: FakeModelServer) -> Iterator[OpenAI]:
    # No retries: scripted failures must surface, not be consumed by the SDK's retry loop.
    with OpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=0) as client:
        yield client


def stream(client: OpenAI, model: str, **kwargs: object) -> list[ChatCompletionChunk]:
    return list(
        client.chat.completions.create(model=model, messages=MESSAGES, stream=True, **kwargs)
    )


def test_streamed_text_arrives_in_chunks_and_joins_to_the_script(
    client: OpenAI, server: FakeModelServer
) -> None:
    server.script("model-a", [Reply(text="Hello there,  how are\nyou?")])

    chunks = stream(client, "model-a")

    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content]
    assert pieces == ["Hello", " there,", "  how", " are", "\nyou?"]
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert len({c.id for c in chunks}) == 1
    request = server.requests[-1]
    assert request["path"] == "/v1/chat/completions"
    assert request["body"]["messages"] == MESSAGES
    assert request["headers"]["authorization"] == f"Bearer {server.api_key}"


def test_an_exhausted_script_falls_back_to_echo(client: OpenAI, server: FakeModelServer) -> None:
    server.script("model-a", [Reply(text="Scripted")])

    first = client.chat.completions.create(model="model-a", messages=MESSAGES)
    second = client.chat.completions.create(model="model-a", messages=MESSAGES)

    assert first.choices[0].message.content == "Scripted"
    assert second.choices[0].message.content == "Echo: What is the weather like?"


def test_parallel_tool_calls_accumulate(client: OpenAI, server: FakeModelServer) -> None:
    calls = [ToolCall("get_weather", '{"city": "Paris"}'), ToolCall("get_time", '{"tz": "CET"}')]
    server.script("model-a", [Reply(tool_calls=calls)])

    chunks = stream(client, "model-a")

    accumulated: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for call in chunk.choices[0].delta.tool_calls or ():
            entry = accumulated.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
            entry["id"] += call.id or ""
            entry["name"] += call.function.name or ""
            entry["arguments"] += call.function.arguments or ""
    assert [(c["name"], c["arguments"]) for c in accumulated.values()] == [
        ("get_weather", '{"city": "Paris"}'),
        ("get_time", '{"tz": "CET"}'),
    ]
    assert all(c["id"].startswith("call_") for c in accumulated.values())
    deltas = [call for chunk in chunks for call in chunk.choices[0].delta.tool_calls or ()]
    assert min(Counter(call.index for call in deltas).values()) > 2  # arguments come in pieces
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_non_streaming_reply_has_tool_calls_and_usage(
    client: OpenAI, server: FakeModelServer
) -> None:
    reply = Reply(text="Let me check.", tool_calls=[ToolCall("get_weather", '{"city": "Oslo"}')])
    server.script("model-a", [reply])

    completion = client.chat.completions.create(model="model-a", messages=MESSAGES)

    assert completion.object == "chat.completion"
    message = completion.choices[0].message
    assert message.content == "Let me check."
    assert [(c.function.name, c.function.arguments) for c in message.tool_calls] == [
        ("get_weather", '{"city": "Oslo"}')
    ]
    assert completion.choices[0].finish_reason == "tool_calls"
    usage = completion.usage
    assert usage.prompt_tokens == len(MESSAGES[0]["content"]) // 4
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_usage_chunk_only_with_include_usage(client: OpenAI, server: FakeModelServer) -> None:
    with_usage = stream(client, "tokens-7", stream_options={"include_usage": True})
    without_usage = stream(client, "tokens-7")

    last = with_usage[-1]
    assert last.choices == []
    assert (last.usage.completion_tokens, last.usage.prompt_tokens) == (7, 6)
    assert last.usage.total_tokens == 13
    assert all(c.usage is None for c in with_usage[:-1])
    assert all(c.choices and c.usage is None for c in without_usage)


def test_scripted_usage_overrides_the_counts(client: OpenAI, server: FakeModelServer) -> None:
    server.script("model-a", [Reply("Hi", usage={"prompt_tokens": 100, "completion_tokens": 5})])

    chunks = stream(client, "model-a", stream_options={"include_usage": True})

    assert chunks[-1].usage.model_dump(include={"prompt_tokens", "total_tokens"}) == {
        "prompt_tokens": 100,
        "total_tokens": 105,
    }


def test_rate_limit_surfaces_with_retry_after(client: OpenAI, server: FakeModelServer) -> None:
    server.script("model-a", [Fail(429, retry_after=1)])

    with pytest.raises(openai.RateLimitError) as caught:
        stream(client, "model-a")

    assert caught.value.response.headers["retry-after"] == "1"
    assert caught.value.code == "rate_limit_exceeded"


def test_server_error(client: OpenAI, server: FakeModelServer) -> None:
    server.script("model-a", [Fail(500, message="boom")])

    with pytest.raises(openai.InternalServerError, match="boom"):
        client.chat.completions.create(model="model-a", messages=MESSAGES)


def test_cut_stream_raises_after_the_tokens_it_sent(
    client: OpenAI, server: FakeModelServer
) -> None:
    server.script("model-a", [Cut(after_tokens=3)])
    received = []

    with pytest.raises(openai.APIConnectionError):
        for chunk in client.chat.completions.create(
            model="model-a", messages=MESSAGES, stream=True
        ):
            received.append(chunk.choices[0].delta.content)

    assert "".join(filter(None, received)) == " tok0 tok1 tok2"


def test_cut_non_streaming_request_gets_no_response(
    client: OpenAI, server: FakeModelServer
) -> None:
    server.script("model-a", [Cut(after_tokens=3)])

    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="model-a", messages=MESSAGES)


def test_hang_trips_the_client_timeout(client: OpenAI, server: FakeModelServer) -> None:
    server.script("model-a", [Hang(5)])

    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.3).chat.completions.create(model="model-a", messages=MESSAGES)

    assert time.monotonic() - started < 2


def test_chunk_delay_slows_the_stream(client: OpenAI, server: FakeModelServer) -> None:
    server.script("model-a", [Reply("a b c", chunk_delay=0.05)])

    started = time.monotonic()
    stream(client, "model-a")

    assert time.monotonic() - started >= 0.2  # four gaps between role, 3 tokens and finish


def test_wrong_key_is_rejected(server: FakeModelServer) -> None:
    client = OpenAI(base_url=server.base_url, api_key="wrong-key", max_retries=0)

    with client, pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(model="model-a", messages=MESSAGES)

    assert caught.value.code == "invalid_api_key"


def test_missing_model_is_not_found(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="does not exist") as caught:
        stream(client, "missing-model")

    assert caught.value.code == "model_not_found"


def test_azure_deployment_path(server: FakeModelServer) -> None:
    server.script("my-deployment", [Reply("From Azure")])
    azure = AzureOpenAI(
        azure_endpoint=server.root_url,
        api_key=server.api_key,
        api_version="2024-10-21",
        max_retries=0,
    )

    with azure:
        chunks = list(
            azure.chat.completions.create(model="my-deployment", messages=MESSAGES, stream=True)
        )

    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "From Azure"
    assert chunks[0].model == "my-deployment"
    request = server.requests[-1]
    assert request["path"] == "/openai/deployments/my-deployment/chat/completions"
    assert request["headers"]["api-key"] == server.api_key


def test_azure_wrong_key_is_rejected(server: FakeModelServer) -> None:
    azure = AzureOpenAI(
        azure_endpoint=server.root_url, api_key="wrong", api_version="2024-10-21", max_retries=0
    )

    with azure, pytest.raises(openai.AuthenticationError):
        azure.chat.completions.create(model="my-deployment", messages=MESSAGES)


def test_max_tokens_stops_with_length(client: OpenAI) -> None:
    chunks = stream(client, "tokens-1000", max_tokens=5)
    completion = client.chat.completions.create(
        model="tokens-1000", messages=MESSAGES, max_completion_tokens=3
    )

    assert "".join(c.choices[0].delta.content or "" for c in chunks) == " tok0 tok1 tok2 tok3 tok4"
    assert chunks[-1].choices[0].finish_reason == "length"
    assert completion.choices[0].message.content == " tok0 tok1 tok2"
    assert completion.choices[0].finish_reason == "length"


def test_models_list_has_scripted_and_default_models(
    client: OpenAI, server: FakeModelServer
) -> None:
    server.script("model-a", [])

    ids = [model.id for model in client.models.list()]

    assert ids[0] == "model-a"
    assert {"gpt-4o-mini", "tokens-1000"} <= set(ids)


def test_raw_wire_format_keep_alive_and_unknown_route(server: FakeModelServer) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port)
    headers = {"Authorization": f"Bearer {server.api_key}", "Content-Type": "application/json"}
    body = json.dumps({"model": "tokens-2", "messages": MESSAGES, "stream": True})

    connection.request("POST", "/v1/chat/completions", body, headers)
    response = connection.getresponse()
    events = response.read().decode().split("\n\n")
    connection.request("GET", "/v1/nothing-here", headers=headers)  # same connection
    missing = connection.getresponse()
    error = json.loads(missing.read())
    connection.close()

    assert response.getheader("Content-Type").startswith("text/event-stream")
    assert response.getheader("Transfer-Encoding") == "chunked"
    assert events[-2:] == ["data: [DONE]", ""]
    assert all(event.startswith("data: {") for event in events[:-2])
    assert len(events[:-2]) == 4  # role, two tokens, finish
    assert missing.status == 404
    assert set(error["error"]) == {"message", "type", "param", "code"}


def test_concurrent_streams_all_complete(server: FakeModelServer) -> None:
    async def run() -> list[int]:
        async with AsyncOpenAI(base_url=server.base_url, api_key=server.api_key) as client:

            async def count_tokens() -> int:
                response = await client.chat.completions.create(
                    model="tokens-1000", messages=MESSAGES, stream=True
                )
                return sum([bool(c.choices[0].delta.content) async for c in response])

            return await asyncio.gather(*(count_tokens() for _ in range(50)))

    assert asyncio.run(run()) == [1000] * 50


def test_embeddings_are_deterministic_and_alike_for_shared_words(client: OpenAI) -> None:
    texts = ["the lighthouse keeper", "lighthouse keeper notes", "tide tables"]
    first = client.embeddings.create(model="text-embedding-3-small", input=texts)
    again = client.embeddings.create(model="text-embedding-3-small", input=texts[0])
    vectors = [item.embedding for item in first.data]
    assert [item.index for item in first.data] == [0, 1, 2]
    assert again.data[0].embedding == vectors[0]

    def dot(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert dot(vectors[0], vectors[1]) > dot(vectors[0], vectors[2])


def test_broken_embeddings_model_fails_like_an_overloaded_api(client: OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        client.embeddings.create(model="broken-embeddings", input="anything")
    assert caught.value.status_code == 503

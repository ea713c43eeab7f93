"""The one module that calls a model API: OpenAI-compatible Chat Completions, streamed."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx2
import openai
from django.conf import settings
from openai.types.chat import ChatCompletionMessageParam

from engine.providers.interface import (
    ModelError,
    ModelEvent,
    ModelRequest,
    TextDelta,
    ToolCallRequest,
    TurnEnd,
)

log = logging.getLogger(__name__)


def model_api_configured() -> bool:
    return bool(settings.OPENAI_API_KEY or settings.AZURE_OPENAI_ENDPOINT)


def make_client() -> openai.AsyncOpenAI:
    timeout = openai.Timeout(settings.MODEL_TIMEOUT_SECONDS, connect=10.0)
    # The SDK's aiohttp transport: httpx's default one re-arms the socket in epoll on every
    # read, a sixth of the process's CPU with 200 model streams (bench/chat_stream.py).
    http_client = openai.DefaultAioHttpClient()
    if settings.AZURE_OPENAI_ENDPOINT:
        return openai.AsyncAzureOpenAI(**azure_options(), timeout=timeout, http_client=http_client)
    return openai.AsyncOpenAI(**openai_options(), timeout=timeout, http_client=http_client)


def sync_client() -> openai.OpenAI:
    """A blocking client for the rare sync call (listing models); runs never use it."""
    timeout = openai.Timeout(10.0, connect=5.0)
    if settings.AZURE_OPENAI_ENDPOINT:
        return openai.AzureOpenAI(**{**azure_options(), "max_retries": 0}, timeout=timeout)
    return openai.OpenAI(**{**openai_options(), "max_retries": 0}, timeout=timeout)


def azure_options() -> dict[str, Any]:
    return {
        "azure_endpoint": settings.AZURE_OPENAI_ENDPOINT,
        "api_key": settings.AZURE_OPENAI_API_KEY or settings.OPENAI_API_KEY,
        "api_version": settings.OPENAI_API_VERSION,
        "max_retries": settings.MODEL_MAX_RETRIES,
    }


def openai_options() -> dict[str, Any]:
    return {
        "api_key": settings.OPENAI_API_KEY,
        "base_url": settings.OPENAI_BASE_URL or None,
        "max_retries": settings.MODEL_MAX_RETRIES,
    }


def available_models() -> list[str]:
    """The model API's models (empty when none is configured or it does not answer)."""
    if not model_api_configured():
        return []
    try:
        with sync_client() as client:
            return sorted(model.id for model in client.models.list())
    except openai.OpenAIError as error:
        log.warning("Could not list the model API's models: %s", error)
        return []


def model_api_name() -> str:
    return settings.AZURE_OPENAI_ENDPOINT or settings.OPENAI_BASE_URL or "https://api.openai.com/v1"


class ChatCompletionsProvider:
    """Chat Completions with streaming and tool calls: what every OpenAI-compatible server speaks.

    The SDK retries refused or failed requests (429 with Retry-After, 5xx, timeouts, lost
    connections) with backoff, `MODEL_MAX_RETRIES` times. A stream that breaks before any text
    is retried here too; one that breaks mid-answer fails the run rather than repeat text.
    """

    def __init__(self) -> None:
        self.client = make_client()

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        attempts = settings.MODEL_MAX_RETRIES + 1
        for attempt in range(1, attempts + 1):
            sent_any = False
            try:
                async for event in self._stream_once(request):
                    sent_any = True
                    yield event
                return
            except openai.APIStatusError as error:
                raise status_error(error, request.model) from None
            except openai.APITimeoutError:
                raise ModelError(
                    "server_error",
                    f"The model API at {model_api_name()} did not answer within "
                    f"{settings.MODEL_TIMEOUT_SECONDS} seconds. Check that it is running and "
                    "not overloaded, then try again.",
                ) from None
            except (openai.APIConnectionError, openai.APIError) as error:
                if not sent_any and attempt < attempts:
                    log.warning("Model stream broke before any output; retrying: %s", error)
                    continue
                if sent_any:
                    raise ModelError(
                        "server_error",
                        "The model API's stream broke off mid-answer; the partial answer was "
                        "kept. Try again.",
                    ) from None
                raise ModelError(
                    "server_error",
                    f"Could not reach the model API at {model_api_name()}: {error}. Check "
                    "OPENAI_BASE_URL and that the server is running.",
                ) from None

    async def _stream_once(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        options: dict[str, Any] = {}
        if request.tools:
            options["tools"] = request.tools
            options["parallel_tool_calls"] = request.parallel_tool_calls
            if request.tool_choice is not None:
                options["tool_choice"] = request.tool_choice
        for name in ("temperature", "top_p", "max_tokens", "response_format"):
            value = getattr(request, name)
            if value is not None:
                options[name] = value
        # The raw stream, parsed as plain JSON: the SDK's typed chunk objects cost six times
        # the CPU of everything else on this path. The SDK still does auth, retries, errors.
        async with self.client.chat.completions.with_streaming_response.create(
            model=request.model,
            # The prompt is built as plain dicts in Chat Completions' shape.
            messages=cast("list[ChatCompletionMessageParam]", request.messages),
            stream=True,
            stream_options={"include_usage": True},
            **options,
        ) as response:
            turn = TurnBuilder()
            try:
                async for line in response.iter_lines():
                    text = turn.feed(line)
                    if text:
                        yield TextDelta(text)
                    if turn.done:
                        break
            except httpx2.TimeoutException:
                raise openai.APITimeoutError(request=response.http_response.request) from None
            except httpx2.TransportError as error:
                raise openai.APIConnectionError(
                    message=str(error), request=response.http_response.request
                ) from None
            if not turn.done:
                raise openai.APIConnectionError(
                    message="the stream ended without [DONE]",
                    request=response.http_response.request,
                )
        yield turn.end()


class TurnBuilder:
    """Accumulates one streamed Chat Completions answer from its `data:` lines."""

    def __init__(self) -> None:
        self.done = False
        self.finish_reason = "stop"
        self.usage: dict[str, int] = {}
        self.calls: dict[int, dict[str, str]] = {}

    def feed(self, line: str) -> str:
        if not line.startswith("data:"):
            return ""
        data = line[5:].strip()
        if data == "[DONE]":
            self.done = True
            return ""
        try:
            chunk = json.loads(data)
        except ValueError:
            raise ModelError(
                "server_error", "The model API sent a malformed stream; try again."
            ) from None
        if chunk.get("error"):
            message = chunk["error"].get("message") or "the model API reported an error"
            raise ModelError("server_error", f"The model API failed mid-answer: {message}")
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        text = ""
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            text += delta.get("content") or ""
            for call in delta.get("tool_calls") or ():
                slot = self.calls.setdefault(call["index"], {"id": "", "name": "", "arguments": ""})
                slot["id"] = call.get("id") or slot["id"]
                function = call.get("function") or {}
                slot["name"] += function.get("name") or ""
                slot["arguments"] += function.get("arguments") or ""
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return text

    def end(self) -> TurnEnd:
        calls = [
            ToolCallRequest(slot["id"] or f"call_{index}", slot["name"], slot["arguments"])
            for index, slot in sorted(self.calls.items())
        ]
        finish = "tool_calls" if calls and self.finish_reason == "stop" else self.finish_reason
        return TurnEnd(
            finish_reason=finish,
            tool_calls=calls,
            prompt_tokens=self.usage.get("prompt_tokens") or 0,
            completion_tokens=self.usage.get("completion_tokens") or 0,
        )


def status_error(error: openai.APIStatusError, model: str) -> ModelError:
    detail = api_error_message(error)
    status = error.status_code
    if status == 401:
        return ModelError(
            "server_error",
            f"The model API refused the configured key (401): {detail} Check OPENAI_API_KEY "
            "(or AZURE_OPENAI_API_KEY).",
        )
    if status == 404:
        return ModelError(
            "invalid_prompt",
            f"The model API does not serve the model '{model}' (404): {detail} Choose a model "
            "it serves in the assistant's settings.",
        )
    if status == 429:
        return ModelError(
            "rate_limit_exceeded",
            f"The model API is rate-limiting requests (429) and still was after "
            f"{settings.MODEL_MAX_RETRIES} retries: {detail} Try again in a minute.",
        )
    if status in (400, 413, 422):
        return ModelError(
            "invalid_prompt", f"The model API rejected the request ({status}): {detail}"
        )
    return ModelError(
        "server_error",
        f"The model API failed (HTTP {status}) after {settings.MODEL_MAX_RETRIES} retries: "
        f"{detail} Try again later.",
    )


def api_error_message(error: openai.APIStatusError) -> str:
    body = error.body
    if isinstance(body, dict):
        message = body.get("message") or (body.get("error") or {}).get("message")
        if isinstance(message, str) and message:
            return message.rstrip(".") + "."
    return str(error.message).rstrip(".") + "."

"""The one module that calls a model API: OpenAI-compatible Chat Completions, streamed, and
embeddings (for THREADLINE_EMBEDDINGS=api:<model>)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
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
    ToolCallDelta,
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
    # Retries are the provider's (see ChatCompletionsProvider), not the SDK's: the SDK retries
    # every 429, an exhausted quota too.
    options = {"max_retries": 0, "timeout": timeout, "http_client": http_client}
    if settings.AZURE_OPENAI_ENDPOINT:
        return openai.AsyncAzureOpenAI(**{**azure_options(), **options})
    return openai.AsyncOpenAI(**{**openai_options(), **options})


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


def embed(texts: list[str], model: str) -> list[list[float]]:
    """The model API's embeddings of `texts`, in order (a blocking call, off the worker loop)."""
    if not model_api_configured():
        raise ModelError(
            "server_error",
            f"THREADLINE_EMBEDDINGS asks for api:{model}, but no model API is configured: "
            "set OPENAI_API_KEY (and OPENAI_BASE_URL) or the Azure variables.",
        )
    timeout = openai.Timeout(settings.MODEL_TIMEOUT_SECONDS, connect=10.0)
    options = azure_options() if settings.AZURE_OPENAI_ENDPOINT else openai_options()
    factory = openai.AzureOpenAI if settings.AZURE_OPENAI_ENDPOINT else openai.OpenAI
    try:
        with factory(**options, timeout=timeout) as client:
            response = client.embeddings.create(model=model, input=texts, encoding_format="float")
    except openai.OpenAIError as error:
        raise ModelError(
            "server_error", f"The model API at {model_api_name()} could not embed: {error}"
        ) from None
    data = sorted(response.data, key=lambda item: item.index)
    return [list(item.embedding) for item in data]


def model_api_name() -> str:
    return settings.AZURE_OPENAI_ENDPOINT or settings.OPENAI_BASE_URL or "https://api.openai.com/v1"


class ChatCompletionsProvider:
    """Chat Completions with streaming and tool calls: what every OpenAI-compatible server speaks.

    Refused or failed requests (429 with Retry-After, 5xx, timeouts, refused or lost
    connections) are tried again with backoff, `MODEL_MAX_RETRIES` times, as the SDK would; an
    exhausted quota is not (trying again cannot help). A stream that breaks before any text is
    tried again too; one that breaks mid-answer fails the run rather than repeat text.
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
            except openai.APIError as error:
                failure = classify(error, request.model, retries=attempt - 1, sent_any=sent_any)
                # The model API's address is for the log, which admins read; a run's error
                # reaches whoever reads the thread.
                log.warning("Model API at %s: %s", model_api_name(), failure.error.message)
                if failure.retry_after is not None and not sent_any and attempt < attempts:
                    await asyncio.sleep(failure.retry_after or backoff(attempt))
                    continue
                raise failure.error from None

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
                    if turn.call_deltas:
                        for piece in turn.call_deltas:
                            yield piece
                        turn.call_deltas = []
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
        # The pieces of tool calls in the last line fed, for whoever shows calls as they come.
        self.call_deltas: list[ToolCallDelta] = []

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
                self.call_deltas.append(
                    ToolCallDelta(
                        call["index"],
                        call.get("id") or "",
                        function.get("name") or "",
                        function.get("arguments") or "",
                    )
                )
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


@dataclass
class Failure:
    """What one failed attempt means: the run's error, and whether (and when) to try again."""

    error: ModelError
    retry_after: float | None = None  # None: do not try again; 0: after the usual backoff


RETRIED_STATUSES = {408, 409, 429}


def classify(error: openai.APIError, model: str, *, retries: int, sent_any: bool) -> Failure:
    if isinstance(error, openai.APIStatusError):
        return status_failure(error, model, retries)
    if sent_any:
        return Failure(
            ModelError(
                "server_error",
                "The model API's stream broke off mid-answer; the partial answer was kept. "
                "Try again.",
            )
        )
    refused = connection_failure(error)
    if refused is not None:
        return Failure(
            ModelError(
                "server_error",
                f"Could not connect to the model API ({refused}). Check that it is running and "
                f"that {model_api_setting()} points at it.",
            ),
            retry_after=0,
        )
    if isinstance(error, openai.APITimeoutError):
        return Failure(
            ModelError(
                "server_error",
                f"The model API did not answer within {settings.MODEL_TIMEOUT_SECONDS} seconds. "
                "Check that it is running and not overloaded, then try again.",
            ),
            retry_after=0,
        )
    return Failure(
        ModelError(
            "server_error",
            f"The connection to the model API failed ({error.message.rstrip('.')}). Check that "
            f"it is running and that {model_api_setting()} points at it.",
        ),
        retry_after=0,
    )


def connection_failure(error: BaseException) -> str | None:
    """Why the connection failed, if it did: refused, reset, no such host.

    The SDK's aiohttp transport reports every failure to connect as a timeout; the operating
    system's error underneath tells the two apart (a timeout is an OSError too).
    """
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, OSError) and not isinstance(cause, TimeoutError):
            # The system's words for the error number: asyncio's own text names the address.
            words = os.strerror(cause.errno) if cause.errno else type(cause).__name__
            return words.lower()
        cause = cause.__cause__ or cause.__context__
    return None


def status_failure(error: openai.APIStatusError, model: str, retries: int) -> Failure:
    detail = api_error_message(error)
    status = error.status_code
    if status == 429 and error_code(error) == "insufficient_quota":
        # OpenAI's run error for it was rate_limit_exceeded too; the words say which.
        return Failure(
            ModelError(
                "rate_limit_exceeded",
                f"The model API's account is out of credit (insufficient_quota): {detail} Add "
                "credit or raise the spending limit with the provider; trying again will not "
                "help until then.",
            )
        )
    retry_after = None
    if status in RETRIED_STATUSES or status >= 500:
        retry_after = retry_after_seconds(error)
    if status == 401:
        return Failure(
            ModelError(
                "server_error",
                f"The model API refused the configured key (401): {detail} Check OPENAI_API_KEY "
                "(or AZURE_OPENAI_API_KEY).",
            )
        )
    if status == 404:
        return Failure(
            ModelError(
                "invalid_prompt",
                f"The model API does not serve the model '{model}' (404): {detail} Choose a "
                "model it serves in the assistant's settings.",
            )
        )
    if status == 429:
        return Failure(
            ModelError(
                "rate_limit_exceeded",
                f"The model API is rate-limiting requests (429) and still was after {retries} "
                f"retries: {detail} Try again in a minute.",
            ),
            retry_after,
        )
    if status in (400, 413, 422):
        return Failure(
            ModelError("invalid_prompt", f"The model API rejected the request ({status}): {detail}")
        )
    return Failure(
        ModelError(
            "server_error",
            f"The model API failed (HTTP {status}) after {retries} retries: {detail} Try again "
            "later.",
        ),
        retry_after,
    )


def error_code(error: openai.APIStatusError) -> str | None:
    body = error.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            code = inner.get("code") or inner.get("type")
            return code if isinstance(code, str) else None
    return None


def retry_after_seconds(error: openai.APIStatusError) -> float:
    """The server's Retry-After (up to a minute, as the SDK honours it), else 0: the backoff."""
    raw = error.response.headers.get("retry-after-ms")
    scale = 1000.0
    if raw is None:
        raw, scale = error.response.headers.get("retry-after"), 1.0
    try:
        seconds = float(raw) / scale if raw is not None else 0.0
    except ValueError:
        return 0.0
    return seconds if 0 < seconds <= 60 else 0.0


def backoff(attempt: int) -> float:
    """The SDK's own: half a second, doubling, at most 8, less up to a quarter at random."""
    return float(min(0.5 * 2 ** (attempt - 1), 8.0) * (1 - 0.25 * random.random()))


def model_api_setting() -> str:
    return "AZURE_OPENAI_ENDPOINT" if settings.AZURE_OPENAI_ENDPOINT else "OPENAI_BASE_URL"


def api_error_message(error: openai.APIStatusError) -> str:
    body = error.body
    if isinstance(body, dict):
        message = body.get("message") or (body.get("error") or {}).get("message")
        if isinstance(message, str) and message:
            return message.rstrip(".") + "."
    return str(error.message).rstrip(".") + "."

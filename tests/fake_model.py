"""A fast, local, OpenAI-compatible Chat Completions server: the project's only fake.

It stands in for an external model API (OpenAI, Azure OpenAI, Ollama, vLLM) and is called over
real HTTP by the official ``openai`` SDK, so the code under test exercises its real client path.
Standard library only: one asyncio loop, a minimal HTTP/1.1 server with keep-alive, and chunked
``text/event-stream`` answers in OpenAI's exact chunk format.

    server = FakeModelServer()
    server.start()
    server.script("model-a", [Reply("Hello there"), Fail(429, retry_after=1)])
    client = OpenAI(base_url=server.base_url, api_key=server.api_key)
    ...
    server.stop()

Unscripted models: ``tokens-N`` streams N tokens (" tok0", " tok1", ...), ``missing-model`` is a
404, anything else echoes the last user message. Requests whose system message holds a text given
to ``script_instructions`` (a product's own side requests, such as asking for a title) are
answered from that text's turns instead, whatever their model, so they never take a turn
scripted for the conversation. ``/v1/embeddings`` answers every model with deterministic vectors
(hashed words, so texts that share words are alike), except ``broken-embeddings``, which fails
with a 503. Standalone, for benchmarks and manual runs:
``python -m tests.fake_model --port 8765``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import logging
import multiprocessing
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import urlsplit

DEFAULT_API_KEY = "test-model-key"
DEFAULT_MODELS = ("gpt-4o-mini", "gpt-4o", "tokens-1000")

TOKEN_RE = re.compile(r"\s*\S+")  # one token = a word with its leading whitespace
TOKENS_MODEL_RE = re.compile(r"tokens-(\d+)")
AZURE_PATH_RE = re.compile(r"/openai/deployments/([^/]+)/chat/completions")
ARGUMENT_PIECE = 4  # characters of tool-call arguments per chunk, about one real token
FLUSH_EVERY = 16  # SSE events per socket write at full speed: fewer syscalls, still incremental
FINGERPRINT = "fp_fake_model"

logger = logging.getLogger(__name__)
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_PHRASES = {status.value: status.phrase for status in HTTPStatus}


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: str = "{}"
    id: str | None = None  # None: a fresh "call_<random>" per request


@dataclass(frozen=True)
class Reply:
    """Stream ``text`` token by token, then ``tool_calls`` (several = parallel tool calls)."""

    text: str = ""
    tool_calls: Sequence[ToolCall] = ()
    finish_reason: str | None = None  # None: "tool_calls" if there are any, else "stop"
    chunk_delay: float = 0.0  # seconds between chunks, for slow streams
    usage: dict[str, int] | None = None  # overrides the computed usage counts


@dataclass(frozen=True)
class Fail:
    """Answer an HTTP error in OpenAI's error shape."""

    status: int
    message: str | None = None
    code: str | None = None
    retry_after: float | None = None  # sent as the Retry-After header


@dataclass(frozen=True)
class Cut:
    """Stream ``after_tokens`` tokens, then drop the connection without ``[DONE]``."""

    after_tokens: int
    text: str = ""  # "": " tok0 tok1 ..."


@dataclass(frozen=True)
class Hang:
    """Accept the request, send nothing for ``seconds``, then drop the connection."""

    seconds: float


Turn = Reply | Fail | Cut | Hang


@dataclass
class _Plan:
    """A turn resolved against one request: what to stream and how it ends."""

    # One chunk and one token each, streamed after the role chunk: text tokens, then tool-call
    # deltas. Text stays plain strings: 1,000-token plans for hundreds of streams add up.
    tokens: list[str]
    tool_deltas: list[dict[str, Any]]
    finish_reason: str | None  # None: the stream is cut
    usage: dict[str, int]
    delay: float


class FakeModelServer:
    """The server, run on its own asyncio loop in a daemon thread so sync tests can use it."""

    def __init__(
        self, api_key: str = DEFAULT_API_KEY, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.api_key = api_key
        self.host = host
        self.port = port
        self._lock = threading.Lock()  # guards _scripts and _requests across the two threads
        self._scripts: dict[str, deque[Turn]] = {}
        self._instruction_scripts: dict[str, deque[Turn]] = {}
        self._requests: list[dict[str, Any]] = []
        self._connections: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None

    # -- public API -------------------------------------------------------------------------

    @property
    def root_url(self) -> str:
        """Origin without a path: what ``AzureOpenAI(azure_endpoint=...)`` wants."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Snapshot of received requests: ``{"method", "path", "headers", "body"}`` each."""
        with self._lock:
            return list(self._requests)

    def script(self, model: str, turns: Sequence[Turn]) -> None:
        """Queue ``turns`` for ``model``, replacing any queued ones; one is used per request."""
        with self._lock:
            self._scripts[model] = deque(turns)

    def script_instructions(self, marker: str, turns: Sequence[Turn] = ()) -> None:
        """Answer requests whose system message contains ``marker`` from ``turns``, then (when
        they run out) with the last user message, unprefixed, on one line."""
        with self._lock:
            self._instruction_scripts[marker] = deque(turns)

    def clear(self) -> None:
        """Forget recorded requests and scripted turns."""
        with self._lock:
            self._requests.clear()
            self._scripts.clear()
            self._instruction_scripts.clear()

    def start(self) -> FakeModelServer:
        """Start listening; returns once the port is bound (``self.port`` is then real)."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="fake-model", daemon=True
        )
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result()
        except BaseException:  # e.g. the port is taken: leave no loop thread behind
            self._stop_loop()
            raise
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result()
        self._stop_loop()

    def __enter__(self) -> FakeModelServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- lifecycle --------------------------------------------------------------------------

    def _stop_loop(self) -> None:
        assert self._loop is not None and self._thread is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
        self._loop = self._thread = None

    async def _listen(self) -> None:
        # A deep backlog: benchmarks open a few hundred connections at once.
        self._server = await asyncio.start_server(
            self._serve_connection, self.host, self.port, backlog=1024
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        assert self._server is not None
        self._server.close()
        # Python 3.11's Server.close() leaves accepted connections open (e.g. a Hang in progress).
        connections = list(self._connections)
        for task in connections:
            task.cancel()
        await asyncio.gather(*connections, return_exceptions=True)
        await self._server.wait_closed()

    # -- HTTP -------------------------------------------------------------------------------

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while await self._serve_request(reader, writer):
                pass
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass  # the client went away (or sent garbage): there is nobody to answer
        except Exception:
            # A bug here, or a request this fake does not understand: say so, then hang up.
            logger.exception("fake model server failed on a request")
        finally:
            self._connections.discard(task)
            writer.close()

    async def _serve_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Answer one request; returns whether the connection may carry another."""
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        request_line, *header_lines = head.split("\r\n")
        method, target, version = request_line.split(" ", 2)
        headers = {}
        for line in header_lines:
            name, colon, value = line.partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        keep_alive = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        if "transfer-encoding" in headers:
            # Only Content-Length bodies are supported; the unread body would poison keep-alive.
            writer.write(_error_response(411, "Send a Content-Length body.", keep_alive=False))
            return False
        raw = await reader.readexactly(int(headers.get("content-length", 0)))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        path = urlsplit(target).path
        with self._lock:
            self._requests.append(
                {"method": method, "path": path, "headers": headers, "body": body}
            )
        reusable = await self._handle(writer, method, path, headers, body, keep_alive)
        await writer.drain()
        return reusable and keep_alive

    async def _handle(
        self,
        writer: asyncio.StreamWriter,
        method: str,
        path: str,
        headers: dict[str, str],
        body: Any,
        keep_alive: bool,
    ) -> bool:
        """Route and answer one request; returns False when the connection must be dropped."""
        if not self._authorized(headers):
            writer.write(_unauthorized(headers, keep_alive))
            return True
        if method == "GET" and path == "/v1/models":
            writer.write(_json_response(200, self._model_list(), keep_alive))
            return True
        if method == "POST" and path == "/v1/embeddings":
            writer.write(_embeddings_response(body, keep_alive))
            return True
        if method == "POST" and path == "/v1/chat/completions":
            model = body.get("model") if isinstance(body, dict) else None
        elif method == "POST" and (azure := AZURE_PATH_RE.fullmatch(path)):
            model = azure[1]  # on Azure the deployment is the model
        else:
            message = f"Invalid URL ({method} {path})"
            writer.write(_error_response(404, message, keep_alive=keep_alive))
            return True
        if not isinstance(body, dict) or not isinstance(model, str):
            message = "We could not parse the JSON body of your request, or it has no model."
            writer.write(_error_response(400, message, param="model", keep_alive=keep_alive))
            return True

        turn = self._next_turn(model, body)
        if isinstance(turn, Fail):
            writer.write(_fail_response(turn, keep_alive))
            return True
        if isinstance(turn, Hang):
            await asyncio.sleep(turn.seconds)
            return False
        plan = _plan(turn, body)
        if body.get("stream"):
            return await _stream(writer, plan, body, model, keep_alive)
        await asyncio.sleep(plan.delay * (len(plan.tokens) + len(plan.tool_deltas)))  # as a stream
        if plan.finish_reason is None:
            return False  # a cut non-streaming request: no response at all
        writer.write(_json_response(200, _completion(plan, model), keep_alive))
        return True

    def _authorized(self, headers: dict[str, str]) -> bool:
        # OpenAI-style clients send a bearer token, Azure-style ones an api-key header.
        bearer = headers.get("authorization", "").removeprefix("Bearer ")
        return self.api_key in (bearer, headers.get("api-key"))

    def _model_list(self) -> dict[str, Any]:
        with self._lock:
            scripted = list(self._scripts)
        ids = dict.fromkeys([*scripted, *DEFAULT_MODELS])  # ordered and de-duplicated
        data = [{"id": i, "object": "model", "created": 0, "owned_by": "fake-model"} for i in ids]
        return {"object": "list", "data": data}

    def _next_turn(self, model: str, body: dict[str, Any]) -> Turn:
        users = [m for m in body.get("messages", []) if m.get("role") == "user"]
        last_user = _text(users[-1].get("content")) if users else ""
        system = " ".join(
            _text(m.get("content")) for m in body.get("messages", []) if m.get("role") == "system"
        )
        with self._lock:
            for marker, turns in self._instruction_scripts.items():
                if marker in system:
                    return turns.popleft() if turns else Reply(" ".join(last_user.split()))
            queue = self._scripts.get(model)
            if queue:
                return queue.popleft()
        if model == "missing-model":
            message = f"The model `{model}` does not exist or you do not have access to it."
            return Fail(404, message, code="model_not_found")
        if tokens := TOKENS_MODEL_RE.fullmatch(model):
            return Reply("".join(f" tok{i}" for i in range(int(tokens[1]))))
        return Reply("Echo: " + last_user)


# -- turns into chunks -----------------------------------------------------------------------


def _plan(turn: Reply | Cut, body: dict[str, Any]) -> _Plan:
    if isinstance(turn, Cut):
        text = turn.text or "".join(f" tok{i}" for i in range(turn.after_tokens))
        return _Plan(TOKEN_RE.findall(text)[: turn.after_tokens], [], None, {}, 0.0)

    tokens = TOKEN_RE.findall(turn.text)
    tool_deltas: list[dict[str, Any]] = []
    for index, call in enumerate(turn.tool_calls):
        # Like OpenAI: a first chunk with id and name, then the arguments in small pieces.
        call_id = call.id or f"call_{secrets.token_hex(12)}"
        function = {"name": call.name, "arguments": ""}
        header = {"index": index, "id": call_id, "type": "function", "function": function}
        tool_deltas.append({"tool_calls": [header]})
        for start in range(0, len(call.arguments), ARGUMENT_PIECE):
            piece = call.arguments[start : start + ARGUMENT_PIECE]
            tool_deltas.append({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    finish_reason = turn.finish_reason or ("tool_calls" if turn.tool_calls else "stop")
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if limit is not None and len(tokens) + len(tool_deltas) > limit:
        tokens, tool_deltas = tokens[:limit], tool_deltas[: max(0, limit - len(tokens))]
        finish_reason = "length"

    prompt_chars = sum(len(_text(m.get("content"))) for m in body.get("messages", []))
    completion_tokens = len(tokens) + len(tool_deltas)
    usage = {"prompt_tokens": max(1, prompt_chars // 4), "completion_tokens": completion_tokens}
    usage |= turn.usage or {}
    usage.setdefault("total_tokens", usage["prompt_tokens"] + usage["completion_tokens"])
    return _Plan(tokens, tool_deltas, finish_reason, usage, turn.chunk_delay)


async def _stream(
    writer: asyncio.StreamWriter,
    plan: _Plan,
    body: dict[str, Any],
    model: str,
    keep_alive: bool,
) -> bool:
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    envelope = {
        "id": f"chatcmpl-{secrets.token_hex(12)}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": FINGERPRINT,
    }
    # The envelope is encoded once per stream; json-encoding whole chunks is the hot path.
    prefix = "data: " + _dumps(envelope)[:-1]
    usage_null = ',"usage":null' if include_usage else ""  # OpenAI's shape when usage comes last

    def event(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = f'{{"index":0,"delta":{_dumps(delta)},"logprobs":null,"finish_reason":'
        return f'{prefix},"choices":[{choice}{_dumps(finish_reason)}}}]{usage_null}}}\n\n'.encode()

    ending: list[bytes] = []
    if plan.finish_reason is not None:
        ending.append(event({}, plan.finish_reason))
        if include_usage:
            ending.append(f'{prefix},"choices":[],"usage":{_dumps(plan.usage)}}}\n\n'.encode())
        ending.append(b"data: [DONE]\n\n")
    # Like OpenAI: the role comes first, with null content when the reply is only tool calls.
    role = {"role": "assistant", "content": None if plan.tool_deltas and not plan.tokens else ""}
    # Encoded lazily, batch by batch: 200 streams of 1,000 chunks would otherwise sit in memory.
    events = itertools.chain(
        [event(role)],
        (event({"content": token}) for token in plan.tokens),
        map(event, plan.tool_deltas),
        ending,
    )

    headers = {
        "Content-Type": "text/event-stream; charset=utf-8",
        "Transfer-Encoding": "chunked",
        "Cache-Control": "no-cache",
    }
    writer.write(_head(200, headers, keep_alive))
    step = 1 if plan.delay else FLUSH_EVERY
    batch = list(itertools.islice(events, step))
    while batch:
        data = b"".join(batch)
        writer.write(b"%x\r\n%s\r\n" % (len(data), data))
        await writer.drain()
        if batch := list(itertools.islice(events, step)):
            # Even with no delay, yield so concurrent streams interleave like a real server's.
            await asyncio.sleep(plan.delay)
    if plan.finish_reason is None:
        return False  # cut: no terminating chunk, so the client sees a truncated body
    writer.write(b"0\r\n\r\n")
    return True


def _completion(plan: _Plan, model: str) -> dict[str, Any]:
    """The non-streaming answer: the plan's deltas accumulated, as a client would."""
    content = "".join(plan.tokens)
    tool_calls: list[dict[str, Any]] = []
    for delta in plan.tool_deltas:
        for piece in delta["tool_calls"]:
            if "id" in piece:
                tool_calls.append({**piece, "function": dict(piece["function"])})
            else:
                function = tool_calls[piece["index"]]["function"]
                function["arguments"] += piece["function"]["arguments"]
    for call in tool_calls:
        del call["index"]  # a streaming-only field
    message = {"role": "assistant", "content": content or None, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": f"chatcmpl-{secrets.token_hex(12)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": FINGERPRINT,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": plan.finish_reason}
        ],
        "usage": plan.usage,
    }


EMBEDDING_DIMENSIONS = 64
BROKEN_EMBEDDINGS = "broken-embeddings"


def _embedding(text: str) -> list[float]:
    """A bag of hashed words: the same text always gets the same vector."""
    vector = [0.0] * EMBEDDING_DIMENSIONS
    for word in re.findall(r"\w+", text.lower()):
        digest = hashlib.blake2b(word.encode(), digest_size=4).digest()
        slot = int.from_bytes(digest[:2], "little") % EMBEDDING_DIMENSIONS
        vector[slot] += 1.0 if digest[2] % 2 else -1.0
    return vector


def _embeddings_response(body: Any, keep_alive: bool) -> bytes:
    texts = body.get("input") if isinstance(body, dict) else None
    texts = [texts] if isinstance(texts, str) else texts
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        message = "'input' must be a string or a list of strings."
        return _error_response(400, message, param="input", keep_alive=keep_alive)
    model = body.get("model", "")
    if model == BROKEN_EMBEDDINGS:
        return _error_response(503, "The embedding model is overloaded.", keep_alive=keep_alive)
    data = [
        {"object": "embedding", "index": i, "embedding": _embedding(text)}
        for i, text in enumerate(texts)
    ]
    words = sum(len(text.split()) for text in texts)
    usage = {"prompt_tokens": words, "total_tokens": words}
    return _json_response(
        200, {"object": "list", "data": data, "model": model, "usage": usage}, keep_alive
    )


def _text(content: Any) -> str:
    """Message content is a string or a list of parts; only text parts count."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


# -- responses -------------------------------------------------------------------------------


def _head(status: int, headers: dict[str, str], keep_alive: bool) -> bytes:
    lines = [
        f"HTTP/1.1 {status} {_PHRASES.get(status, 'Error')}",
        *(f"{name}: {value}" for name, value in headers.items()),
        f"x-request-id: req_{secrets.token_hex(16)}",
        f"Connection: {'keep-alive' if keep_alive else 'close'}",
        "\r\n",
    ]
    return "\r\n".join(lines).encode("latin-1")


def _json_response(
    status: int, payload: dict[str, Any], keep_alive: bool, headers: dict[str, str] | None = None
) -> bytes:
    data = _dumps(payload).encode()
    head = {"Content-Type": "application/json", "Content-Length": str(len(data)), **(headers or {})}
    return _head(status, head, keep_alive) + data


def _error_response(
    status: int,
    message: str,
    *,
    code: str | None = None,
    param: str | None = None,
    keep_alive: bool,
    headers: dict[str, str] | None = None,
) -> bytes:
    # OpenAI's error types: rate limits are "requests", 5xx "server_error", the rest this one.
    kind = "requests" if status == 429 else "server_error" if status >= 500 else None
    error = {
        "message": message,
        "type": kind or "invalid_request_error",
        "param": param,
        "code": code,
    }
    return _json_response(status, {"error": error}, keep_alive, headers)


def _fail_response(fail: Fail, keep_alive: bool) -> bytes:
    defaults = {
        429: ("Rate limit reached for requests.", "rate_limit_exceeded"),
        500: ("The server had an error while processing your request. Sorry about that!", None),
    }
    message, code = defaults.get(fail.status, (_PHRASES.get(fail.status, "Error"), None))
    headers = {} if fail.retry_after is None else {"Retry-After": f"{fail.retry_after:g}"}
    return _error_response(
        fail.status,
        fail.message or message,
        code=fail.code or code,
        keep_alive=keep_alive,
        headers=headers,
    )


def _unauthorized(headers: dict[str, str], keep_alive: bool) -> bytes:
    presented = headers.get("authorization", "").removeprefix("Bearer ") or headers.get("api-key")
    if presented:
        message = f"Incorrect API key provided: {presented[:3]}***{presented[-4:]}."
    else:
        message = "You didn't provide an API key (Authorization: Bearer KEY, or api-key: KEY)."
    return _error_response(401, message, code="invalid_api_key", keep_alive=keep_alive)


class FakeModelProcess(FakeModelServer):
    """The same server in a child process, scripted over a pipe.

    For benchmarks: there the fake streams to hundreds of clients at once, and in the measuring
    process it would compete with the clients for one interpreter lock. Only ``script`` and
    ``script_instructions`` reach the child; ``requests`` stays empty here.
    """

    def start(self) -> FakeModelProcess:
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self._process = context.Process(
            target=_serve_scripted, args=(child, self.api_key, self.host), daemon=True
        )
        self._process.start()
        self.port = self._pipe.recv()
        return self

    def script(self, model: str, turns: Sequence[Turn]) -> None:
        self._pipe.send(("script", model, list(turns)))
        self._pipe.recv()  # applied: the next request sees it

    def script_instructions(self, marker: str, turns: Sequence[Turn] = ()) -> None:
        self._pipe.send(("script_instructions", marker, list(turns)))
        self._pipe.recv()

    def stop(self) -> None:
        if getattr(self, "_process", None) is None:
            return
        self._pipe.send(None)
        self._process.join(10)
        self._process = None


def _serve_scripted(pipe: Connection, api_key: str, host: str) -> None:
    server = FakeModelServer(api_key=api_key, host=host).start()
    pipe.send(server.port)
    while (message := pipe.recv()) is not None:
        method, key, turns = message
        getattr(server, method)(key, turns)
        pipe.send(True)
    server.stop()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake OpenAI-compatible Chat Completions API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    args = parser.parse_args(argv)
    server = FakeModelServer(api_key=args.api_key, host=args.host, port=args.port)
    server.start()
    try:
        print(f"Fake model API at {server.base_url} (api key {server.api_key!r})", flush=True)
        threading.Event().wait()
    except KeyboardInterrupt:
        pass  # Ctrl-C is the way to stop it
    finally:
        server.stop()


if __name__ == "__main__":
    main()

"""Every call the chat makes to the Assistants API, through the official SDK, and nothing else.

The rest of `chat/` sees plain dicts and ids, and one exception, `AssistantsError`, whose message
is fit to show to a person. Clients come from `settings.ASSISTANTS_URL` / `ASSISTANTS_KEY`:
`OpenAI` for the few sync views, `AsyncOpenAI` (one per event loop) for everything async.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import IO, Any, NamedTuple, ParamSpec, TypeVar

import openai
from django.conf import settings
from openai.types.beta.thread_create_and_run_params import ThreadMessage
from openai.types.beta.threads.message_create_params import Attachment
from openai.types.beta.threads.run_create_params import AdditionalMessage
from openai.types.beta.threads.run_submit_tool_outputs_params import ToolOutput

# How long a streaming run may stay silent (a model thinking, a slow tool) before we give up on it.
STREAM_READ_SECONDS = 900.0
ACTIVE_STATUSES = frozenset({"queued", "in_progress", "requires_action", "cancelling"})
FILE_SEARCH_INCLUDE = "step_details.tool_calls[*].file_search.results[*].content"

P = ParamSpec("P")
T = TypeVar("T")


class AssistantsError(Exception):
    """The Assistants API did not do what was asked; `str(error)` says why, for a person."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Unreachable(AssistantsError):
    """The API did not answer at all (down, or too slow)."""


class NotFound(AssistantsError):
    pass


UNREACHABLE = (
    "The assistant service isn't answering right now. Nothing was sent; try again in a moment."
)


def explain(error: openai.OpenAIError) -> AssistantsError:
    if isinstance(error, openai.APITimeoutError):
        return Unreachable(UNREACHABLE)
    if isinstance(error, openai.APIConnectionError):
        return Unreachable(UNREACHABLE)
    if isinstance(error, openai.NotFoundError):
        return NotFound(api_message(error), status=404)
    if isinstance(error, openai.APIStatusError):
        if error.status_code == 507:  # out of space: the API says what that means here
            return AssistantsError(api_message(error), status=507)
        if error.status_code >= 500:
            return Unreachable(UNREACHABLE, status=error.status_code)
        return AssistantsError(api_message(error), status=error.status_code)
    return AssistantsError(str(error))


def api_message(error: openai.APIStatusError) -> str:
    body = error.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return inner["message"]
    return error.message


def translated(function: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    @functools.wraps(function)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await function(*args, **kwargs)
        except openai.OpenAIError as error:
            raise explain(error) from error

    return wrapper


def translated_sync(function: Callable[P, T]) -> Callable[P, T]:
    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return function(*args, **kwargs)
        except openai.OpenAIError as error:
            raise explain(error) from error

    return wrapper


# --- Clients --------------------------------------------------------------------------------------


@functools.cache
def sync_client() -> openai.OpenAI:
    return openai.OpenAI(
        base_url=settings.ASSISTANTS_URL,
        api_key=settings.ASSISTANTS_KEY or "missing-key",
        timeout=settings.ASSISTANTS_TIMEOUT_SECONDS,
        # A retried create could add a message twice; the person retries instead, knowingly.
        max_retries=0,
    )


_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, openai.AsyncOpenAI] = (
    weakref.WeakKeyDictionary()
)


def async_client() -> openai.AsyncOpenAI:
    """The running loop's client: an async connection pool belongs to the loop that made it."""
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        client = openai.AsyncOpenAI(
            base_url=settings.ASSISTANTS_URL,
            api_key=settings.ASSISTANTS_KEY or "missing-key",
            timeout=settings.ASSISTANTS_TIMEOUT_SECONDS,
            max_retries=0,
            # aiohttp reads a stream without re-arming the socket per read, as httpx does.
            http_client=openai.DefaultAioHttpClient(),
        )
        _async_clients[loop] = client
    return client


async def close_async_client() -> None:
    """Close the running loop's client (tests and short-lived loops; servers keep theirs)."""
    client = _async_clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.close()


# --- Assistants -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AssistantFields:
    name: str
    description: str
    model: str
    instructions: str
    file_search: bool
    code_interpreter: bool = False
    # Function definitions ({"name", "description", "parameters"}); None leaves the remote
    # assistant's function tools as they are.
    functions: list[dict[str, Any]] | None = None
    # Definitions of the registry's functions the assistant was given (chat.tools), offered as
    # well; a raw definition of the same name gives way to them.
    registry: list[dict[str, Any]] = field(default_factory=list)
    temperature: float | None = None
    top_p: float | None = None
    response_format: str = "auto"
    metadata: dict[str, str] | None = None
    vector_store_id: str = ""


def assistant_params(fields: AssistantFields, current_tools: list[Any]) -> dict[str, Any]:
    """The create/update body; `current_tools` are the remote assistant's tools, as dicts."""
    tools: list[dict[str, Any]] = []
    if fields.code_interpreter:
        tools.append({"type": "code_interpreter"})
    registry = {f["name"] for f in fields.registry}
    if fields.functions is None:
        tools.extend(
            t
            for t in current_tools
            if t.get("type") == "function" and t["function"].get("name") not in registry
        )
    else:
        tools.extend(
            {"type": "function", "function": f}
            for f in fields.functions
            if f.get("name") not in registry
        )
    tools.extend({"type": "function", "function": f} for f in fields.registry)
    if fields.file_search:
        tools.append({"type": "file_search"})
    params: dict[str, Any] = {
        "name": fields.name,
        "description": fields.description,
        "model": fields.model,
        "instructions": fields.instructions,
        "tools": tools,
        "response_format": (
            "auto" if fields.response_format == "auto" else {"type": fields.response_format}
        ),
        "temperature": fields.temperature if fields.temperature is not None else openai.omit,
        "top_p": fields.top_p if fields.top_p is not None else openai.omit,
        "metadata": fields.metadata if fields.metadata is not None else openai.omit,
    }
    if fields.vector_store_id and fields.file_search:
        params["tool_resources"] = {"file_search": {"vector_store_ids": [fields.vector_store_id]}}
    return params


@translated_sync
def create_assistant(fields: AssistantFields) -> str:
    return sync_client().beta.assistants.create(**assistant_params(fields, [])).id


@translated_sync
def update_assistant(assistant_id: str, fields: AssistantFields) -> None:
    """Bring the remote assistant in line; function tools stay as they are unless managed.
    NotFound if the API has no such assistant (deleted on its side)."""
    client = sync_client()
    current = client.beta.assistants.retrieve(assistant_id)
    current_tools = [t.to_dict() for t in current.tools]
    client.beta.assistants.update(assistant_id, **assistant_params(fields, current_tools))


@translated_sync
def remote_assistants() -> list[dict[str, Any]]:
    """Every assistant the API holds for our key, oldest first."""
    return [a.to_dict() for a in sync_client().beta.assistants.list(order="asc", limit=100)]


@translated_sync
def remote_assistant(assistant_id: str) -> dict[str, Any]:
    return sync_client().beta.assistants.retrieve(assistant_id).to_dict()


@translated_sync
def remove_assistant(assistant_id: str) -> None:
    with contextlib.suppress(openai.NotFoundError):  # already gone: that is what was asked
        sync_client().beta.assistants.delete(assistant_id)


@dataclass(frozen=True)
class Model:
    id: str
    owned_by: str


@translated_sync
def model_catalog() -> list[Model]:
    """The models the Assistants API lists, with who serves each: Threadline's engine lists a
    configured model API's models, and its own offline model as owned by "threadline"."""
    return [Model(model.id, model.owned_by) for model in sync_client().models.list()]


def code_interpreter_status() -> tuple[bool, str] | None:
    """Whether the Assistants API's server can run code, and if not why; None when it does not
    say (an extra path of Threadline's engine: other servers answer 404)."""
    try:
        found = sync_client().get("/threadline/code_interpreter", cast_to=object)
    except openai.OpenAIError:
        return None
    if not isinstance(found, dict) or not isinstance(found.get("available"), bool):
        return None
    return found["available"], str(found.get("detail") or "")


# --- Threads and messages -------------------------------------------------------------------------


@translated
async def create_thread() -> str:
    thread = await async_client().beta.threads.create()
    return thread.id


@translated
async def delete_thread(thread_id: str) -> None:
    """Delete the thread, and the vector stores of its own (what its attachments went into)."""
    client = async_client()
    try:
        thread = await client.beta.threads.retrieve(thread_id)
    except openai.NotFoundError:
        return  # already gone: that is what was asked
    resources = thread.tool_resources
    store_ids = (
        resources.file_search.vector_store_ids or []
        if resources is not None and resources.file_search is not None
        else []
    )
    with contextlib.suppress(openai.NotFoundError):
        await client.beta.threads.delete(thread_id)
    for store_id in store_ids:
        with contextlib.suppress(openai.NotFoundError):
            await client.vector_stores.delete(store_id)


@translated
async def create_message(thread_id: str, text: str, files: dict[str, list[str]]) -> dict[str, Any]:
    """Add a person's message; `files` maps each attached file's id to the tools that read it
    (`file_search`, `code_interpreter`)."""
    attachments: list[Attachment] = [
        {"file_id": file_id, "tools": [{"type": tool} for tool in tools]}  # type: ignore[misc]
        for file_id, tools in files.items()
    ]
    message = await async_client().beta.threads.messages.create(
        thread_id, role="user", content=text, attachments=attachments or openai.omit
    )
    return message.to_dict()


@translated
async def delete_message(thread_id: str, message_id: str) -> None:
    with contextlib.suppress(openai.NotFoundError):  # already gone: that is what was asked
        await async_client().beta.threads.messages.delete(message_id, thread_id=thread_id)


@translated
async def recent_messages(thread_id: str, limit: int = 20) -> list[dict[str, Any]]:
    """The thread's newest messages, newest first."""
    page = await async_client().beta.threads.messages.list(thread_id, order="desc", limit=limit)
    return [m.to_dict() for m in page.data]


@translated
async def retrieve_message(thread_id: str, message_id: str) -> dict[str, Any]:
    message = await async_client().beta.threads.messages.retrieve(message_id, thread_id=thread_id)
    return message.to_dict()


@translated
async def messages_after(thread_id: str, message_id: str) -> list[dict[str, Any]]:
    """Every message newer than this one, oldest first."""
    page = async_client().beta.threads.messages.list(
        thread_id, order="asc", after=message_id, limit=100
    )
    return [m.to_dict() async for m in page]


@dataclass
class MessagePage:
    """Messages newest first, as the API pages them; `older` is the cursor for the next page."""

    messages: list[dict[str, Any]]
    older: str | None


@translated_sync
def list_messages(thread_id: str, *, older_than: str | None = None, limit: int = 20) -> MessagePage:
    page = sync_client().beta.threads.messages.list(
        thread_id, order="desc", limit=limit, after=older_than or openai.omit
    )
    messages = [m.to_dict() for m in page.data]
    # The list's last id, which the SDK's page does not declare: the cursor of the next page.
    return MessagePage(messages, page.data[-1].id if page.has_more and page.data else None)


@translated
async def run_messages(thread_id: str, run_id: str) -> list[dict[str, Any]]:
    """The messages a run wrote, oldest first."""
    page = async_client().beta.threads.messages.list(
        thread_id, run_id=run_id, order="asc", limit=100
    )
    return [m.to_dict() async for m in page]


@translated
async def thread_cites_file(thread_id: str, file_id: str) -> bool:
    """Whether a message of the thread cites the file, has it attached, shows it (an image) or
    links it (a file its code wrote); or whether its code showed it."""
    async for message in async_client().beta.threads.messages.list(thread_id, limit=100):
        if any(a.file_id == file_id for a in message.attachments or []):
            return True
        for part in message.content:
            if part.type == "image_file" and part.image_file.file_id == file_id:
                return True
            if part.type != "text":
                continue
            for annotation in part.text.annotations:
                if annotation.type == "file_citation" and (
                    annotation.file_citation.file_id == file_id
                ):
                    return True
                if annotation.type == "file_path" and annotation.file_path.file_id == file_id:
                    return True
    return await code_showed_file(thread_id, file_id)


async def code_showed_file(thread_id: str, file_id: str) -> bool:
    """Whether code of one of the thread's recent runs showed the file (a figure in a run
    step, shown live before the answer that holds it is written)."""
    client = async_client()
    runs = await client.beta.threads.runs.list(thread_id, limit=20)
    for run in runs.data:
        steps = await client.beta.threads.runs.steps.list(run.id, thread_id=thread_id, limit=100)
        for step in steps.data:
            if step.step_details.type != "tool_calls":
                continue
            for call in step.step_details.tool_calls:
                if call.type != "code_interpreter":
                    continue
                for output in call.code_interpreter.outputs:
                    if output.type == "image" and output.image.file_id == file_id:
                        return True
    return False


# --- Runs -----------------------------------------------------------------------------------------


class RunEvent(NamedTuple):
    """One event of a streaming run, as plain data: the API object's dict.

    Text deltas, the hot path, come as `{"message_id", "text"}` alone.
    """

    name: str
    data: dict[str, Any]


@dataclass
class Started:
    thread_id: str
    run_id: str
    events: AsyncIterator[RunEvent]


@translated
async def start_run(
    thread_id: str | None,
    assistant_id: str,
    text: str | None = None,
    file_ids: list[str] | None = None,
    metadata: dict[str, str] | None = None,
) -> Started:
    """Start a streaming run, adding the person's `text` (with the files `file_ids`, for
    file_search, and the message's `metadata`) first if given, in the same request; with no
    `thread_id`, on a new thread. Returns once the API has created the run."""
    stream_timeout = openai.Timeout(settings.ASSISTANTS_TIMEOUT_SECONDS, read=STREAM_READ_SECONDS)
    client = async_client()
    opening: AbstractAsyncContextManager[Any]
    if thread_id is None:
        messages: list[ThreadMessage] = []
        if text is not None:
            messages.append({"role": "user", "content": text})
            if metadata:
                messages[0]["metadata"] = metadata
        opening = client.beta.threads.with_streaming_response.create_and_run(
            assistant_id=assistant_id,
            thread={"messages": messages},
            stream=True,
            timeout=stream_timeout,
        )
    else:
        additional: list[AdditionalMessage] = []
        if text is not None:
            additional.append({"role": "user", "content": text})
            if metadata:
                additional[0]["metadata"] = metadata
            if file_ids:
                additional[0]["attachments"] = [
                    {"file_id": f, "tools": [{"type": "file_search"}]} for f in file_ids
                ]
        opening = client.beta.threads.runs.with_streaming_response.create(
            thread_id,
            assistant_id=assistant_id,
            additional_messages=additional or openai.omit,
            stream=True,
            timeout=stream_timeout,
        )
    events = run_events(opening)
    try:
        first = await anext(events)
        # A create-and-run stream opens with the new thread, as the spec's does.
        if first.name == "thread.created":
            first = await anext(events)
    except BaseException:
        await events.aclose()
        raise
    if first.name != "thread.run.created":
        await events.aclose()
        raise AssistantsError(f"The run did not start (it sent {first.name!r} first).")
    return Started(first.data["thread_id"], first.data["id"], events)


@translated
async def submit_tool_outputs(
    thread_id: str, run_id: str, outputs: list[dict[str, str]]
) -> AsyncIterator[RunEvent]:
    """Give a waiting run its tool outputs, all at once; the run's events from there on.
    Returns once the API has taken them (AssistantsError if it refused)."""
    stream_timeout = openai.Timeout(settings.ASSISTANTS_TIMEOUT_SECONDS, read=STREAM_READ_SECONDS)
    tool_outputs: list[ToolOutput] = [
        {"tool_call_id": output["tool_call_id"], "output": output["output"]} for output in outputs
    ]
    opening = async_client().beta.threads.runs.with_streaming_response.submit_tool_outputs(
        run_id,
        thread_id=thread_id,
        tool_outputs=tool_outputs,
        stream=True,
        timeout=stream_timeout,
    )
    events = run_events(opening)
    try:
        first = await anext(events)
    except BaseException:
        await events.aclose()
        raise
    return prepend(first, events)


async def prepend(first: RunEvent, rest: AsyncGenerator[RunEvent]) -> AsyncGenerator[RunEvent]:
    try:
        yield first
        async for event in rest:
            yield event
    finally:
        await rest.aclose()


@translated
async def run_steps(thread_id: str, run_id: str) -> list[dict[str, Any]]:
    """A run's steps, oldest first."""
    page = async_client().beta.threads.runs.steps.list(
        run_id, thread_id=thread_id, order="asc", limit=100
    )
    return [step.to_dict() async for step in page]


@translated_sync
def function_steps(thread_id: str, run_id: str) -> list[dict[str, Any]]:
    """A run's steps, oldest first, for pages that show its tool calls."""
    page = sync_client().beta.threads.runs.steps.list(
        run_id, thread_id=thread_id, order="asc", limit=100
    )
    return [step.to_dict() for step in page]


async def run_events(opening: AbstractAsyncContextManager[Any]) -> AsyncGenerator[RunEvent]:
    """The run's server-sent events, parsed here rather than into the SDK's models.

    The SDK's streaming response gives the raw lines; building a pydantic model for every
    token cost more CPU than everything else the chat does per token (bench/chat_stream.py).
    """
    try:
        async with opening as response:
            event, data = "", []
            async for line in response.iter_lines():
                if line:
                    field, _, value = line.partition(":")
                    if field == "event":
                        event = value.strip()
                    elif field == "data":
                        data.append(value.removeprefix(" "))
                    continue
                if not event or not data:
                    event, data = "", []
                    continue
                parsed = run_event(event, "\n".join(data))
                event, data = "", []
                if parsed is None:
                    return
                yield parsed
    except openai.OpenAIError as error:
        raise explain(error) from error
    except (OSError, ValueError) as error:  # the connection broke, or the API sent garbage
        raise Unreachable(UNREACHABLE) from error


def run_event(event: str, data: str) -> RunEvent | None:
    """One event; None at the stream's end."""
    if event == "done" or data == "[DONE]":
        return None
    payload = json.loads(data)
    if event == "error":
        error = payload.get("error", payload) if isinstance(payload, dict) else {}
        raise AssistantsError(str(error.get("message") or "The run's stream failed."))
    if event == "thread.message.delta":
        text = "".join(
            (part.get("text") or {}).get("value") or ""
            for part in payload["delta"].get("content") or []
            if part.get("type") == "text"
        )
        return RunEvent(event, {"message_id": payload["id"], "text": text})
    return RunEvent(event, payload)


@translated
async def one_off_answer(
    assistant_id: str,
    instructions: str,
    messages: list[dict[str, str]],
    max_tokens: int,
) -> str:
    """What the assistant's model answers to `messages` under `instructions`, with no tools, on
    a thread of its own that is deleted afterwards (a title for a conversation, say)."""
    client = async_client()
    thread_messages: list[ThreadMessage] = [
        {"role": "assistant" if m["role"] == "assistant" else "user", "content": m["content"]}
        for m in messages
    ]
    run = await client.beta.threads.create_and_run_poll(
        assistant_id=assistant_id,
        thread={"messages": thread_messages},
        instructions=instructions,
        tools=[],
        max_completion_tokens=max_tokens,
        poll_interval_ms=250,
    )
    try:
        if run.status not in ("completed", "incomplete"):
            error = run.last_error.message if run.last_error else run.status
            raise AssistantsError(f"The answer did not complete: {error}")
        page = await client.beta.threads.messages.list(
            run.thread_id, run_id=run.id, order="asc", limit=10
        )
        return "".join(
            part.text.value
            for message in page.data
            for part in message.content
            if part.type == "text"
        )
    finally:
        with contextlib.suppress(openai.OpenAIError):
            await client.beta.threads.delete(run.thread_id)


@translated_sync
def last_run(thread_id: str) -> dict[str, Any] | None:
    page = sync_client().beta.threads.runs.list(thread_id, limit=1, order="desc")
    return page.data[0].to_dict() if page.data else None


@translated
async def retrieve_run(thread_id: str, run_id: str) -> dict[str, Any]:
    run = await async_client().beta.threads.runs.retrieve(run_id, thread_id=thread_id)
    return run.to_dict()


@translated
async def cancel_run(thread_id: str, run_id: str) -> None:
    # A run that ended meanwhile is a 400: there is nothing left to stop.
    with contextlib.suppress(openai.BadRequestError):
        await async_client().beta.threads.runs.cancel(run_id, thread_id=thread_id)


@translated
async def active_run_id(thread_id: str) -> str | None:
    page = await async_client().beta.threads.runs.list(thread_id, limit=1, order="desc")
    for run in page.data:
        if run.status in ACTIVE_STATUSES:
            return run.id
    return None


@translated
async def search_step(thread_id: str, run_id: str, step_id: str) -> dict[str, Any]:
    """A run step with its file_search results listed (their text is not needed)."""
    step = await async_client().beta.threads.runs.steps.retrieve(
        step_id, thread_id=thread_id, run_id=run_id
    )
    return step.to_dict()


# --- Files and vector stores ----------------------------------------------------------------------


# Uploads take an open file, which the SDK sends in 64 KB chunks as it reads them; a path or
# bytes it would hold whole in memory (bench/upload_memory.py measures both).


@translated
async def upload_file(name: str, content: IO[bytes], content_type: str) -> str:
    uploaded = await async_client().files.create(
        file=(name, content, content_type), purpose="assistants"
    )
    return uploaded.id


@translated
async def delete_file(file_id: str) -> None:
    with contextlib.suppress(openai.NotFoundError):
        await async_client().files.delete(file_id)


@translated
async def file_info(file_id: str) -> dict[str, Any]:
    return (await async_client().files.retrieve(file_id)).to_dict()


@translated_sync
def file_names(file_ids: set[str]) -> dict[str, str]:
    names = {}
    for file_id in file_ids:
        try:
            names[file_id] = sync_client().files.retrieve(file_id).filename
        except openai.NotFoundError:
            names[file_id] = "deleted file"
    return names


async def file_content(file_id: str, chunk_bytes: int = 64 * 1024) -> AsyncGenerator[bytes]:
    """The file's bytes, streamed from the API as they arrive."""
    try:
        async with async_client().files.with_streaming_response.content(file_id) as response:
            async for chunk in response.iter_bytes(chunk_bytes):
                yield chunk
    except openai.OpenAIError as error:
        raise explain(error) from error


@translated
async def searchable_file_count(thread_id: str, assistant_id: str) -> int | None:
    """How many files file_search looks through for this thread, or None if that is unknown."""
    client = async_client()
    thread = await client.beta.threads.retrieve(thread_id)
    assistant = await client.beta.assistants.retrieve(assistant_id)
    store_ids: set[str] = set()
    for resources in (thread.tool_resources, assistant.tool_resources):
        if resources is not None and resources.file_search is not None:
            store_ids.update(resources.file_search.vector_store_ids or [])
    total = 0
    for store_id in store_ids:
        store = await client.vector_stores.retrieve(store_id)
        total += store.file_counts.completed
    return total


@translated
async def wait_for_ingestion(
    thread_id: str, file_ids: list[str], timeout: float, poll: float = 0.25
) -> dict[str, str]:
    """Wait until the thread's vector store has read the files; returns those it could not read.

    OpenAI asked clients to do this before starting a run, so that file_search sees the files.
    After `timeout` it returns what it knows: files still being read are not reported.
    """
    client = async_client()
    thread = await client.beta.threads.retrieve(thread_id)
    resources = thread.tool_resources
    store_ids = (
        resources.file_search.vector_store_ids or []
        if resources is not None and resources.file_search is not None
        else []
    )
    pending = {(store_id, file_id) for store_id in store_ids for file_id in file_ids}
    failed: dict[str, str] = {}
    deadline = asyncio.get_running_loop().time() + timeout
    while pending:
        for store_id, file_id in sorted(pending):
            try:
                entry = await client.vector_stores.files.retrieve(file_id, vector_store_id=store_id)
            except openai.NotFoundError:
                pending.discard((store_id, file_id))
                continue
            if entry.status == "in_progress":
                continue
            pending.discard((store_id, file_id))
            if entry.status == "failed":
                error = entry.last_error
                failed[file_id] = error.message if error is not None else "It could not be read."
        if pending:
            if asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(poll)
    return failed


@translated
async def failed_files(thread_id: str, file_ids: list[str]) -> dict[str, str]:
    """The files among `file_ids` that the thread's vector store could not read, with why."""
    client = async_client()
    thread = await client.beta.threads.retrieve(thread_id)
    resources = thread.tool_resources
    if resources is None or resources.file_search is None:
        return {}
    failed = {}
    for store_id in resources.file_search.vector_store_ids or []:
        for file_id in file_ids:
            try:
                entry = await client.vector_stores.files.retrieve(file_id, vector_store_id=store_id)
            except openai.NotFoundError:
                continue
            if entry.status == "failed":
                error = entry.last_error
                failed[file_id] = error.message if error is not None else "It could not be read."
    return failed


# --- Knowledge (an assistant's vector store), for the admin ---------------------------------------


@translated_sync
def create_vector_store(name: str) -> str:
    return sync_client().vector_stores.create(name=name[:256]).id


@translated_sync
def remove_vector_store(vector_store_id: str) -> None:
    with contextlib.suppress(openai.NotFoundError):
        sync_client().vector_stores.delete(vector_store_id)


@dataclass(frozen=True)
class Ingestion:
    status: str  # in_progress, completed, failed, cancelled; "gone" if the store lost it
    last_error: str
    usage_bytes: int | None
    # Threadline's engine also says what it indexed; other servers may not.
    pages: int | None = None
    chunks: int | None = None


@dataclass(frozen=True)
class StoredFile:
    file_id: str
    name: str
    size: int
    ingestion: Ingestion


@translated_sync
def vector_store_files(vector_store_id: str) -> list[StoredFile]:
    """The files of a vector store, with their names and ingestion states."""
    client = sync_client()
    stored = []
    for entry in client.vector_stores.files.list(vector_store_id, limit=100):
        try:
            file = client.files.retrieve(entry.id)
        except openai.NotFoundError:
            continue
        stored.append(StoredFile(entry.id, file.filename, file.bytes, ingestion_of(entry)))
    return stored


@translated_sync
def add_knowledge(vector_store_id: str, name: str, content: IO[bytes], content_type: str) -> str:
    """Upload a file and put it in the vector store (ingestion goes on in the background).

    If adding it to the store fails, the uploaded file is removed again.
    """
    client = sync_client()
    file_id = client.files.create(file=(name, content, content_type), purpose="assistants").id
    try:
        client.vector_stores.files.create(vector_store_id, file_id=file_id)
    except openai.OpenAIError:
        with contextlib.suppress(openai.OpenAIError):
            client.files.delete(file_id)
        raise
    return file_id


@translated_sync
def ingestion(vector_store_id: str, file_id: str) -> Ingestion:
    try:
        entry = sync_client().vector_stores.files.retrieve(file_id, vector_store_id=vector_store_id)
    except openai.NotFoundError:
        return Ingestion("gone", "The vector store no longer holds this file.", None)
    return ingestion_of(entry)


def ingestion_of(entry: Any) -> Ingestion:
    """A vector store file's state (`VectorStoreFile`), with what our engine adds to it."""
    error = entry.last_error.message if entry.last_error is not None else ""
    extra = entry.model_extra or {}
    return Ingestion(
        entry.status, error, entry.usage_bytes, extra.get("pages"), extra.get("chunks")
    )


@translated_sync
def reindex_knowledge(vector_store_id: str, file_id: str) -> None:
    """Read the file again: take it out of the store and put it back in."""
    client = sync_client()
    with contextlib.suppress(openai.NotFoundError):
        client.vector_stores.files.delete(file_id, vector_store_id=vector_store_id)
    client.vector_stores.files.create(vector_store_id, file_id=file_id)


@translated_sync
def remove_knowledge(vector_store_id: str, file_id: str) -> None:
    client = sync_client()
    if vector_store_id:
        with contextlib.suppress(openai.NotFoundError):
            client.vector_stores.files.delete(file_id, vector_store_id=vector_store_id)
    with contextlib.suppress(openai.NotFoundError):
        client.files.delete(file_id)


# --- Runs, for the admin's read-only view of threads ----------------------------------------------


@translated_sync
def thread_runs(thread_id: str, limit: int = 100) -> list[dict[str, Any]]:
    """The thread's runs, newest first."""
    page = sync_client().beta.threads.runs.list(thread_id, limit=limit, order="desc")
    return [r.to_dict() for r in page.data]

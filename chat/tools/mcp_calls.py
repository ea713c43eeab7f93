"""Calling an MCP server's tool for a function call, and turning its answer into an output.

Text content is the output; structured content is the output as JSON; images are kept as files
of the Assistants API (`CallFile`), shown on the call's card, and the model reads that the person
sees them; `isError` is an error output. A question the server asks on the way (elicitation)
waits for the person (`chat.tools.elicitation`) with the call's clock stopped. A server that
cannot be reached is marked unavailable in the admin; the next call that reaches it marks it
available again.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
from typing import Any

import mcp_types as types
from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone
from mcp.client.context import ClientRequestContext

from chat import assistants_api as api
from chat.tools import elicitation, mcp_catalog, mcp_client
from chat.tools.mcp_client import McpFailure
from chat.tools.mcp_models import CallFile, McpServer
from chat.tools.models import Function, FunctionCall
from chat.tools.python import CallContext

IMAGE_TYPES = {"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif", "image/webp": "webp"}


class Clock:
    """A call's time, stopped while the person answers the server's question."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.loop = asyncio.get_running_loop()
        self.started = self.loop.time()
        self.paused_for = 0.0
        self.paused_at: float | None = None

    def pause(self) -> None:
        self.paused_at = self.loop.time()

    def resume(self) -> None:
        if self.paused_at is not None:
            self.paused_for += self.loop.time() - self.paused_at
            self.paused_at = None

    def left(self) -> float:
        now = self.paused_at if self.paused_at is not None else self.loop.time()
        return self.limit - (now - self.started - self.paused_for)


async def within(clock: Clock, work: asyncio.Task[Any]) -> Any:
    """`work`'s result, or TimeoutError once the clock runs out (it is cancelled then)."""
    while not work.done():
        paused = clock.paused_at is not None
        await asyncio.wait([work], timeout=1.0 if paused else max(clock.left(), 0.01))
        if not work.done() and clock.paused_at is None and clock.left() <= 0:
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)
            raise TimeoutError
    return work.result()


def prepare(function: Function, context: CallContext) -> tuple[McpServer, mcp_client.Target, int]:
    server = function.mcp_server
    if server is None:
        raise McpFailure(f"{function.name} has no MCP server any more.")
    if server.listed(function.mcp_tool) is None and server.refreshed_at is not None:
        raise McpFailure(
            f"{server.name} no longer offers the tool {function.mcp_tool} (at its last refresh)."
        )
    target = mcp_catalog.target_for(server, context.user, function.timeout_seconds)
    call_pk = FunctionCall.objects.values_list("pk", flat=True).get(
        run_id=context.run_id, call_id=context.call_id
    )
    return server, target, call_pk


async def run_mcp(function: Function, arguments: dict[str, Any], who: CallContext) -> Any:
    server, target, call_pk = await sync_to_async(prepare)(function, who)
    clock = Clock(function.timeout_seconds)

    async def elicit(
        context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult | types.ErrorData:
        if not isinstance(params, types.ElicitRequestFormParams):
            return types.ElicitResult(action="decline")  # the chat opens no links for servers
        clock.pause()
        try:
            action, content = await elicitation.ask(
                call_pk, who.run_id, params.message, dict(params.requested_schema)
            )
        finally:
            clock.resume()
        return types.ElicitResult(action=action, content=content)

    work = asyncio.ensure_future(mcp_client.call_tool(target, function.mcp_tool, arguments, elicit))
    try:
        result = await within(clock, work)
    except McpFailure as failure:
        if failure.unreachable:
            await sync_to_async(mark)(server, available=False, problem=str(failure))
        raise
    if not server.available:
        await sync_to_async(mark)(server, available=True, problem="")
    return await output_of(result, call_pk, function.name)


def mark(server: McpServer, available: bool, problem: str) -> None:
    McpServer.objects.filter(pk=server.pk).update(
        available=available, problem=problem, checked_at=timezone.now()
    )


async def output_of(result: types.CallToolResult, call_pk: int, name: str) -> str:
    texts: list[str] = []
    images = 0
    for item in result.content:
        if isinstance(item, types.TextContent):
            texts.append(item.text)
        elif isinstance(item, types.ImageContent):
            images += 1
            texts.append(await keep_image(item, call_pk, name, images))
        elif isinstance(item, types.EmbeddedResource):
            resource = item.resource
            if isinstance(resource, types.TextResourceContents):
                texts.append(resource.text)
            else:
                texts.append(f"[a binary resource, {resource.uri}, not shown]")
        elif isinstance(item, types.ResourceLink):
            texts.append(f"[a link to {item.uri}]")
        else:
            texts.append(f"[{getattr(item, 'type', 'content')} content, not shown]")
    text = "\n\n".join(texts)
    if result.is_error:
        raise McpFailure(f"the tool reported an error: {text[:2000] or 'no details'}")
    if result.structured_content is not None:
        return json.dumps(result.structured_content, ensure_ascii=False)
    return text


async def keep_image(item: types.ImageContent, call_pk: int, name: str, number: int) -> str:
    """Keep the image as a file the chat shows; what the model reads about it."""
    suffix = IMAGE_TYPES.get(item.mime_type)
    if suffix is None:
        return f"[an image of type {item.mime_type[:40]}, which the chat does not show]"
    try:
        data = base64.b64decode(item.data, validate=True)
    except (binascii.Error, ValueError):
        return "[an image that was not valid base64, not shown]"
    if len(data) > settings.FUNCTION_MAX_OUTPUT_BYTES:
        return (
            f"[an image larger than {settings.FUNCTION_MAX_OUTPUT_BYTES:,} bytes, the limit; "
            "not shown]"
        )
    filename = f"{name[:60]}-{number}.{suffix}"
    try:
        file_id = await api.upload_file(filename, io.BytesIO(data), item.mime_type)
    except api.AssistantsError as error:
        return f"[an image that could not be kept: {error}]"
    await CallFile.objects.acreate(
        call_id=call_pk,
        file_id=file_id,
        name=filename,
        content_type=item.mime_type,
        position=number,
    )
    return f"[image {filename}: shown to the user]"

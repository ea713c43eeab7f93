"""Talking to an MCP server through the official `mcp` SDK: listing its tools, calling one.

One connection per listing or call, through `mcp_http` (the webhooks' address rules), with the
headers that say who asks: the deployment's or the person's secret in the server's header, and
the person's id in `X-Threadline-User-Id`. Whatever goes wrong comes out as `McpFailure`, a
sentence a person and the model can read.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx2
import mcp_types as types
from django.conf import settings
from mcp import Client
from mcp.client.session import ElicitationFnT
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from chat.tools import mcp_http

USER_HEADER = "X-Threadline-User-Id"
# A listing that pages on and on is cut here.
MAX_PAGES = 20


class McpFailure(Exception):
    """The server gave no usable answer; the message says why, in words."""

    def __init__(self, message: str, unreachable: bool = False) -> None:
        super().__init__(message)
        # The server itself could not be reached (as opposed to a tool that failed).
        self.unreachable = unreachable


@dataclass(frozen=True)
class Target:
    """Where to connect and with which headers; built from an `McpServer` by `mcp_calls`."""

    name: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = 30


def read_timeout(target: Target) -> float:
    """How long an event stream may stay quiet: a server waiting on the person's answer to its
    question (in the protocol's older versions) keeps the stream open the whole time."""
    return target.timeout + settings.RUN_EXPIRES_SECONDS


def answer_limit() -> int:
    """The most an answer's HTTP body may hold: images travel in base64."""
    return 2 * settings.FUNCTION_MAX_OUTPUT_BYTES + 64 * 1024


@contextlib.asynccontextmanager
async def connected(target: Target, elicit: ElicitationFnT | None = None) -> AsyncIterator[Client]:
    http = mcp_http.client(target.headers, target.timeout, read_timeout(target), answer_limit())
    transport = streamable_http_client(
        target.url, http_client=http, max_sse_event_size=answer_limit()
    )
    try:
        async with http, Client(transport, elicitation_callback=elicit, cache=None) as client:
            yield client
    except McpFailure:
        raise
    except BaseException as error:
        failure = explained(target, error)
        if failure is None:
            raise
        raise failure from None


def explained(target: Target, error: BaseException) -> McpFailure | None:
    """The failure inside `error` (the SDK's task groups wrap them), in words; None for
    anything that is not a failure to pass on (a cancellation)."""
    while isinstance(error, BaseExceptionGroup):
        inner = [e for e in error.exceptions if not isinstance(e, BaseExceptionGroup)]
        error = (inner or list(error.exceptions))[0]
    name = target.name
    if isinstance(error, McpFailure):
        return error
    if isinstance(error, mcp_http.Refused):
        return McpFailure(f"{name} may not be reached: {error}", unreachable=True)
    if isinstance(error, mcp_http.TooLarge):
        return McpFailure(
            f"{name} answered with more than {answer_limit():,} bytes, the limit; "
            "none of it was used."
        )
    if isinstance(error, httpx2.TimeoutException):
        return McpFailure(f"{name} did not answer in time.", unreachable=True)
    if isinstance(error, httpx2.HTTPStatusError):
        status = error.response.status_code
        hint = " (check its secret)" if status in (401, 403) else ""
        return McpFailure(f"{name} answered HTTP {status}{hint}.", unreachable=status >= 500)
    if isinstance(error, httpx2.TransportError):
        return McpFailure(f"{name} could not be reached: {error}", unreachable=True)
    if isinstance(error, MCPError):
        return McpFailure(f"{name} answered with an error: {error.error.message}")
    if isinstance(error, Exception):
        detail = str(error) or type(error).__name__
        return McpFailure(f"{name} failed: {detail[:300]}")
    return None


async def list_tools(target: Target) -> list[dict[str, Any]]:
    """The server's tools: name, description, input schema and annotations (kept to show,
    never to decide anything)."""
    tools: list[dict[str, Any]] = []
    async with connected(target) as client:
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            page = await client.list_tools(cursor=cursor)
            tools.extend(listed(tool) for tool in page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
    return tools


def listed(tool: types.Tool) -> dict[str, Any]:
    annotations = (
        tool.annotations.model_dump(by_alias=True, exclude_none=True) if tool.annotations else {}
    )
    return {
        "name": tool.name,
        "description": tool.description or "",
        "input_schema": tool.input_schema,
        "annotations": annotations,
    }


async def call_tool(
    target: Target, tool: str, arguments: dict[str, Any], elicit: ElicitationFnT | None
) -> types.CallToolResult:
    async with connected(target, elicit) as client:
        return await client.call_tool(tool, arguments)

"""A real MCP server for the tests: the `mcp` SDK's own MCPServer (what was FastMCP) over
Streamable HTTP on 127.0.0.1, in a subprocess of its own.

Its tools: `add` (structured content), `whoami` (the headers that say who asks), `chart` (an
image), `order` (asks the person how many, through elicitation), `broken` (isError), `slow`
(sleeps), `huge` (3 MB of text) and a tool whose name is too long to be a function's as is.
Each call is appended to a JSON-lines log the tests read.

    python -m tests.mcp_server PORT LOG
"""

# No `from __future__ import annotations`: MCPServer reads the tools' annotations at runtime,
# and `order`'s names a function local to `build`.
import asyncio
import json
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Annotated, Any

from mcp.server.mcpserver import Context, Elicit, ElicitationResult, Image, MCPServer, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field

from tests.servers import free_port, stop_process, wait_for_port

HUGE_BYTES = 3 * 1024 * 1024
LONG_TOOL = "summarise_the_quarterly_sales_figures_for_every_region_in_the_company"


def png(width: int, height: int) -> bytes:
    """A real PNG: a blue-to-green gradient, written by hand (no imaging library needed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(
        b"\x00"
        + b"".join(
            bytes((40, 90 + 160 * x // width, 220 - 120 * y // height)) for x in range(width)
        )
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


class Order(BaseModel):
    quantity: int = Field(title="How many", description="Boxes of pens, 1 to 20", ge=1, le=20)
    colour: str = Field(title="Colour", json_schema_extra={"enum": ["blue", "black", "red"]})
    gift_wrap: bool = Field(default=False, title="Gift wrap")


def build(log: Path) -> MCPServer:
    server = MCPServer("threadline-test-tools")

    def note(tool: str, ctx: Context | None = None, **extra: Any) -> None:
        headers = (
            dict(ctx.request_context.request.headers) if ctx and ctx.request_context.request else {}
        )
        entry = {
            "tool": tool,
            "user": headers.get("x-threadline-user-id"),
            "authorization": headers.get("authorization"),
            **extra,
        }
        with log.open("a") as out:
            out.write(json.dumps(entry) + "\n")

    @server.tool(annotations=ToolAnnotations(readOnlyHint=True))
    def add(a: int, b: int, ctx: Context) -> int:
        """Add two numbers."""
        note("add", ctx, a=a, b=b)
        return a + b

    @server.tool(structured_output=False)  # text content only
    def whoami(ctx: Context) -> str:
        """Say who is asking, as the server sees it."""
        note("whoami", ctx)
        request = ctx.request_context.request
        headers = request.headers if request is not None else {}
        return f"user {headers.get('x-threadline-user-id')} with {headers.get('authorization')}"

    @server.tool(structured_output=False)
    def chart(ctx: Context) -> list[Any]:
        """Draw this quarter's sales chart."""
        note("chart", ctx)
        return ["Sales rose 12% this quarter.", Image(data=png(240, 120), format="png")]

    def how_many(item: str) -> Elicit[Order]:
        return Elicit(f"How many boxes of {item} should I order?", Order)

    # The server calls it destructive; only the admin's setting decides approval.
    @server.tool(annotations=ToolAnnotations(destructiveHint=True, readOnlyHint=False))
    def order(
        item: str, answer: Annotated[ElicitationResult[Order], Resolve(how_many)], ctx: Context
    ) -> str:
        """Order office supplies; asks the person how many."""
        data = answer.data.model_dump() if answer.action == "accept" else None
        note("order", ctx, item=item, action=answer.action, data=data)
        if answer.action != "accept":
            return f"Nothing ordered: the person chose {answer.action}."
        return f"Ordered {data['quantity']} {data['colour']} {item}" + (
            ", gift-wrapped." if data["gift_wrap"] else "."
        )

    @server.tool()
    def broken(ctx: Context) -> str:
        """Always fails."""
        note("broken", ctx)
        raise ToolError("the printer is on fire")

    @server.tool()
    async def slow(seconds: float, ctx: Context) -> str:
        """Take its time."""
        note("slow", ctx, seconds=seconds)
        await asyncio.sleep(seconds)
        return "finally"

    @server.tool()
    def huge(ctx: Context) -> str:
        """Answer with far too much."""
        note("huge", ctx)
        return "x" * HUGE_BYTES

    @server.tool(name=LONG_TOOL)
    def long_named(ctx: Context) -> str:
        """A tool whose name is long."""
        note(LONG_TOOL, ctx)
        return "sales summarised"

    return server


class McpTestServer:
    """The server above in a subprocess on a free port; `calls()` reads its log."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.log = directory / f"mcp-calls-{self.port}.jsonl"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def start(self) -> "McpTestServer":
        self.log.touch()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.mcp_server", str(self.port), str(self.log)],
            cwd=Path(__file__).resolve().parent.parent,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, self.process)
        return self

    def stop(self) -> None:
        stop_process(self.process)

    def calls(self, tool: str | None = None) -> list[dict[str, Any]]:
        entries = [json.loads(line) for line in self.log.read_text().splitlines() if line]
        return [entry for entry in entries if tool is None or entry["tool"] == tool]

    def wait_for_call(self, tool: str, count: int = 1, timeout: float = 20) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.calls(tool)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"{tool} was not called {count} times within {timeout}s")


if __name__ == "__main__":
    port, log = int(sys.argv[1]), Path(sys.argv[2])
    build(log).run("streamable-http", host="127.0.0.1", port=port)

"""MCP call overhead: what a tool call costs through the chat's client (one connection per call,
through the checked HTTP client) against one SDK session kept open for every call, side by side
in one run, against the tests' real MCP server (`tests.mcp_server`, a subprocess of its own).

The chat opens a connection per call so that each call carries its own person's headers and a
restarted server is simply reached again; this measures what that choice costs per call.

    .venv/bin/python bench/mcp_calls.py [--calls 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("THREADLINE_WEBHOOK_ALLOWED_HOSTS", "127.0.0.1")

import django

django.setup()

from mcp import Client  # noqa: E402

from chat.tools import mcp_client  # noqa: E402
from tests.mcp_server import McpTestServer  # noqa: E402


async def per_call(url: str, calls: int) -> list[float]:
    target = mcp_client.Target("bench", url, {"X-Threadline-User-Id": "1"}, 30)
    times = []
    for number in range(calls):
        start = time.perf_counter()
        await mcp_client.call_tool(target, "add", {"a": number, "b": 1}, None)
        times.append(time.perf_counter() - start)
    return times


async def one_session(url: str, calls: int) -> list[float]:
    times = []
    async with Client(url) as client:
        for number in range(calls):
            start = time.perf_counter()
            await client.call_tool("add", {"a": number, "b": 1})
            times.append(time.perf_counter() - start)
    return times


def row(name: str, times: list[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return f"| {name} | {statistics.median(ms):.1f} | {p99:.1f} | {len(ms) / sum(times):.0f} |"


async def main(calls: int) -> None:
    server = McpTestServer(Path(tempfile.mkdtemp(prefix="mcp-bench-"))).start()
    try:
        await per_call(server.url, 10)  # warm both sides up
        await one_session(server.url, 10)
        fresh, kept = [], []
        for _ in range(4):  # interleaved, so that load on the machine falls on both
            fresh += await per_call(server.url, calls // 4)
            kept += await one_session(server.url, calls // 4)
    finally:
        server.stop()
    print("| client | p50 ms | p99 ms | calls/s |")
    print("| --- | --- | --- | --- |")
    print(row("chat: a connection per call (checked)", fresh))
    print(row("SDK: one session for all calls", kept))
    print(f"\nratio of p50s: {statistics.median(fresh) / statistics.median(kept):.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    asyncio.run(main(parser.parse_args().calls))

"""Request floor: the server CPU one request costs, from daphne alone up to a chat send.

Issue 18 asks 200 sends at once on one core to give their first tokens within 2 s (p99): at most
10 ms of CPU per send, all of it. This bench measures what the stack costs before any of
Threadline's code runs, and what Threadline's lightest requests cost, side by side in one run:

- daphne serving a bare ASGI application (bench/floor_apps.py: `bare`);
- Django's handler with no middleware and one async view (`django_bare`);
- the engine's API: `threads.retrieve` through the official SDK (the whole middleware chain, the
  key's lookup, the thread's);
- the chat: a signed-in htmx GET of a conversation's title (the chain, the session, the user);
- a chat send, read through its stream to the end of a one-token answer (what run_starts.py
  measures: the send, the engine's run, the relay, the browser's stream).

Each kind runs `--count` requests over `--concurrency` keep-alive connections at once. CPU is the
daphne process's user+sys time from /proc.

    .venv/bin/python bench/request_floor.py [--count 2000] [--concurrency 50] [--sends 100]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx2  # noqa: E402

from bench.chat_stream import (  # noqa: E402
    LIMITS,
    SETUP_CONCURRENCY,
    TIMEOUT,
    Browser,
    Engine,
    cpu_seconds,
    gather_limited,
    prepare,
)
from bench.report import table  # noqa: E402
from tests.fake_model import FakeModelProcess  # noqa: E402
from tests.servers import ThreadlineServer, model_env  # noqa: E402

SEND_BUDGET_MS = 10.0  # 200 sends' first tokens within 2 s on one core


async def burst(
    server: ThreadlineServer, request: Callable[[], Awaitable[bool]], count: int, concurrency: int
) -> tuple[float, float, int]:
    """CPU ms per request, requests per second, and how many failed."""
    await gather_limited([request] * concurrency, concurrency)  # connections opened, warm
    cpu = cpu_seconds([server])
    started = time.perf_counter()
    results = await gather_limited([request] * count, concurrency)
    wall = time.perf_counter() - started
    cpu = cpu_seconds([server]) - cpu
    return cpu / count * 1000, count / wall, count - sum(results)


async def minimal(application: str, args: argparse.Namespace) -> tuple[float, float, int]:
    server = ThreadlineServer(application=application)
    server.migrated = True  # no database
    server.start()
    http = httpx2.AsyncClient(base_url=server.url, timeout=TIMEOUT, limits=LIMITS)

    async def get() -> bool:
        return (await http.get("/")).status_code == 200

    try:
        return await burst(server, get, args.count, args.concurrency)
    finally:
        await http.aclose()
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)


async def threadline(args: argparse.Namespace) -> list[tuple[str, tuple[float, float, int]]]:
    model = "tokens-1"
    model_server = FakeModelProcess().start()
    server = ThreadlineServer(env=model_env(model_server))
    profiles = prepare(server, [model])
    server.start()
    engine, browser = Engine(server), Browser(server)
    measured = []
    try:
        await browser.login("bench")
        thread_id = await engine.thread()

        async def retrieve() -> bool:
            return (await engine.client.beta.threads.retrieve(thread_id)).id == thread_id

        measured.append(
            (
                "engine API: threads.retrieve (SDK)",
                await burst(server, retrieve, args.count, args.concurrency),
            )
        )
        conversation = await browser.new_conversation(profiles[model])

        async def title() -> bool:
            url = f"/c/{conversation}/title"
            return (await browser.http.get(url, headers=browser.headers())).status_code == 200

        measured.append(
            (
                "chat: signed-in htmx GET of a title",
                await burst(server, title, args.count, args.concurrency),
            )
        )
        made = [lambda: browser.new_conversation(profiles[model])] * args.sends
        conversations = iter(await gather_limited(made, SETUP_CONCURRENCY))
        await asyncio.sleep(1.0)  # the setup's relays end

        async def send() -> bool:
            return (await browser.stream(next(conversations), 1)).ok

        cpu = cpu_seconds([server])
        started = time.perf_counter()
        sent = await gather_limited([send] * args.sends, args.sends)
        wall = time.perf_counter() - started
        await asyncio.sleep(1.0)  # the relays' ends and titles, which each send costs too
        cpu = cpu_seconds([server]) - cpu
        measured.append(
            (
                f"chat send, 1-token answer, {args.sends} at once",
                (cpu / args.sends * 1000, args.sends / wall, args.sends - sum(sent)),
            )
        )
    finally:
        await browser.http.aclose()
        await engine.client.close()
        server.stop()
        model_server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)
    return measured


async def measure(args: argparse.Namespace) -> None:
    rows = []
    for name, application in (
        ("daphne, bare ASGI app", "bench.floor_apps:bare"),
        ("Django, no middleware, async view", "bench.floor_apps:django_bare"),
    ):
        rows.append((name, await minimal(application, args)))
    rows.extend(await threadline(args))
    print()
    print(
        f"{args.count} requests over {args.concurrency} connections each (sends as said), "
        f"one daphne process; a send's budget for the issue's goal: {SEND_BUDGET_MS:.0f} ms"
    )
    header = ["request", "CPU ms / request", "requests / s", "of the budget", "failed"]
    print(
        table(
            header,
            [
                [
                    name,
                    f"{cpu:.2f}",
                    f"{rate:.0f}",
                    f"{cpu / SEND_BUDGET_MS:.0%}",
                    str(failed),
                ]
                for name, (cpu, rate, failed) in rows
            ],
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--sends", type=int, default=100)
    asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()

"""Scale-out benchmark: concurrent chat streams on two server processes sharing a real Redis,
against the same streams on one process with the in-memory channel layer, side by side.

The clients, the scripted model and the measurement are `bench/chat_stream.py`'s. What differs:

- one process: one daphne (`REDIS_URL` unset: in-memory channel layer, local-memory cache);
  each stream is sent and read on it.
- two processes + Redis: two daphne processes on one database and one `redis-server` (started
  here, in memory only). Every stream crosses processes: it is sent on one (whose relay then
  reads the run and publishes its events) and read on the other (through the Redis channel
  layer and the replay log in the Redis cache); sends alternate between the two.

Per configuration, `--concurrency` paced answers of 100 tokens at once (after one untimed
exchange per conversation), then the same figures as chat_stream's bursts: errors (a stream
that did not end, or missed or repeated a token), inter-token delay and TTFT p50/p99, CPU
seconds per 1,000 streamed tokens (all server processes; Redis on its own line).

Caveats: two shared cores run the clients, the fake model, the servers and Redis, so a second
process buys no parallelism here: this measures what the Redis path costs, not what a second
machine gains. Compare the ratio column, not absolute numbers across runs.

    .venv/bin/python bench/scale_out.py [--concurrency 200] [--pace 0.02]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from bench.chat_stream import (  # noqa: E402
    TOKENS_PACED,
    Browser,
    Phase,
    Sample,
    cpu_seconds,
    gather_limited,
    paced,
    prepare,
    process_cpu_seconds,
)
from bench.report import percentile, print_problems, table  # noqa: E402
from tests.fake_model import FakeModelServer  # noqa: E402
from tests.servers import RedisServer, ThreadlineServer, model_env  # noqa: E402

HEADER = ["scenario", "metric", "1 process, in-memory", "2 processes + Redis", "ratio (2 / 1)"]
MODEL = "paced"


@dataclass
class Setup:
    """Where streams are sent and read: pairs of (sender, reader) browsers, used in turn."""

    servers: list[ThreadlineServer]
    routes: list[tuple[Browser, Browser]]
    profile: int
    redis: RedisServer | None = None


@dataclass
class Result:
    phase: Phase
    redis_cpu: float = 0.0
    redis_connections: int = 0  # new connections to Redis during the burst


def redis_cpu_seconds(setup: Setup) -> float:
    if setup.redis is None or setup.redis.process is None:
        return 0.0
    return process_cpu_seconds(setup.redis.process.pid)


async def burst(setup: Setup, model_server: FakeModelServer, count: int, pace: float) -> Result:
    senders = [sender for sender, _ in setup.routes]
    paced(model_server, MODEL, TOKENS_PACED, 0.0, count)
    conversations = await gather_limited(
        [
            lambda i=i: senders[i % len(senders)].new_conversation(setup.profile)
            for i in range(count)
        ],
        20,
    )
    paced(model_server, MODEL, TOKENS_PACED, pace, count)

    def stream(i: int, conversation: int) -> asyncio.Future[Sample]:
        sender, reader = setup.routes[i % len(setup.routes)]
        return asyncio.ensure_future(sender.stream(conversation, TOKENS_PACED, reader=reader))

    stats = redis.Redis.from_url(setup.redis.url) if setup.redis else None
    connections = stats.info("stats")["total_connections_received"] if stats else 0
    cpu = cpu_seconds(setup.servers)
    redis_cpu = redis_cpu_seconds(setup)
    start = time.perf_counter()
    samples = await asyncio.gather(*(stream(i, c) for i, c in enumerate(conversations)))
    wall = time.perf_counter() - start
    result = Result(Phase(list(samples), wall, cpu_seconds(setup.servers) - cpu))
    if stats is not None:
        result.redis_cpu = redis_cpu_seconds(setup) - redis_cpu
        result.redis_connections = stats.info("stats")["total_connections_received"] - connections
        stats.close()
    return result


async def measure_one(model_server: FakeModelServer, args: argparse.Namespace) -> Result:
    server = ThreadlineServer(env=model_env(model_server), name="one")
    profiles = prepare(server, [MODEL])
    server.start()
    browser = Browser(server)
    try:
        await browser.login("bench")
        setup = Setup([server], [(browser, browser)], profiles[MODEL])
        return await burst(setup, model_server, args.concurrency, args.pace)
    finally:
        await browser.http.aclose()
        server.stop()
        if not args.keep:
            shutil.rmtree(server.data_dir, ignore_errors=True)


async def measure_two(model_server: FakeModelServer, args: argparse.Namespace) -> Result:
    store = RedisServer().start()
    env = {**model_env(model_server), "REDIS_URL": store.url}
    a = ThreadlineServer(env=env, name="a")
    shared_db = {"DATABASE_URL": a.env["DATABASE_URL"]} if "DATABASE_URL" in a.env else {}
    b = ThreadlineServer(env={**env, **shared_db}, data_dir=a.data_dir, name="b")
    profiles = prepare(a, [MODEL])
    b.migrated = True
    a.start()
    b.start()
    on_a, on_b = Browser(a), Browser(b)
    try:
        await on_a.login("bench")
        on_b.http.cookies.update(on_a.http.cookies)  # one session, served by either process
        setup = Setup([a, b], [(on_a, on_b), (on_b, on_a)], profiles[MODEL], store)
        return await burst(setup, model_server, args.concurrency, args.pace)
    finally:
        await on_a.http.aclose()
        await on_b.http.aclose()
        a.stop()
        b.stop()
        store.stop()
        if not args.keep:
            shutil.rmtree(a.data_dir, ignore_errors=True)


def ratio(one: float, two: float) -> str:
    return f"{two / one:.2f}x" if one else "-"


def rows_for(count: int, one: Result, two: Result) -> list[list[str]]:
    scenario = f"{count} concurrent"
    o, t = one.phase, two.phase
    rows = [[scenario, "errors", str(len(o.errors)), str(len(t.errors)), ""]]
    for label, values in (("inter-token delay", Phase.gaps_ms), ("TTFT", Phase.ttfts_ms)):
        for p in (50, 99):
            vo, vt = percentile(values(o), p), percentile(values(t), p)
            rows.append([scenario, f"{label} p{p} (ms)", f"{vo:.1f}", f"{vt:.1f}", ratio(vo, vt)])
    rows.append(
        [
            scenario,
            "tokens per event (mean)",
            f"{o.tokens_per_event():.2f}",
            f"{t.tokens_per_event():.2f}",
            ratio(o.tokens_per_event(), t.tokens_per_event()),
        ]
    )
    per_k_o = o.cpu / max(o.tokens(), 1) * 1000
    per_k_t = t.cpu / max(t.tokens(), 1) * 1000
    rows.append(
        [
            scenario,
            "server CPU s / 1,000 tokens",
            f"{per_k_o:.3f}",
            f"{per_k_t:.3f}",
            ratio(per_k_o, per_k_t),
        ]
    )
    rows.append(
        [
            scenario,
            "  Redis CPU s / 1,000 tokens",
            "-",
            f"{two.redis_cpu / max(t.tokens(), 1) * 1000:.3f}",
            "",
        ]
    )
    rows.append([scenario, "  new Redis connections", "-", str(two.redis_connections), ""])
    rows.append(
        [scenario, "burst wall time (s)", f"{o.wall:.1f}", f"{t.wall:.1f}", ratio(o.wall, t.wall)]
    )
    return rows


async def measure(args: argparse.Namespace) -> None:
    model_server = FakeModelServer()
    model_server.start()
    try:
        print(f"{args.concurrency} concurrent streams on one process ...", flush=True)
        one = await measure_one(model_server, args)
        print(f"{args.concurrency} concurrent streams on two processes + Redis ...", flush=True)
        two = await measure_two(model_server, args)
    finally:
        model_server.stop()
    print()
    print(f"Scale-out benchmark on {os.cpu_count()} shared cores: clients, fake model, servers and")
    print("Redis compete for them, so two processes add no parallelism here (see the docstring).")
    print()
    print(table(HEADER, rows_for(args.concurrency, one, two)))
    problems = [
        s.error or f"ended_ok={s.ended_ok} tokens={s.tokens}/{s.expected}"
        for result in (one, two)
        for s in result.phase.errors
    ]
    print_problems(problems)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--pace", type=float, default=0.02, help="seconds between model chunks")
    parser.add_argument("--keep", action="store_true", help="keep the servers' data directory")
    asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()

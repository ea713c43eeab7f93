"""Streaming benchmark: the engine (/v1 Assistants runs) against the model API it wraps.

The model is the project's fake (`tests.fake_model.FakeModelServer`, in this process) streaming
1,000 tokens as fast as it can. The engine is the real product: a daphne process with its own
SQLite database (`tests.servers.ThreadlineServer`) whose model API is that fake. The same async
`openai` SDK client code reads both:

- direct: `chat.completions.create(stream=True)` against the fake model;
- engine: `beta.threads.runs.create(stream=True)` on a fresh thread (created beforehand, untimed,
  with one user message) for an assistant on model `tokens-1000`.

What is measured, direct and engine side by side in one run:

1. Time to first token (TTFT): from sending the request to the first non-empty content delta
   (direct) or the first `thread.message.delta` event (engine). `--runs` sequential samples
   each, after a warm-up, interleaved direct/engine with the order alternating, so drift and
   noise hit both alike. Reported as p50/p99 and the added TTFT (engine - direct).
2. Single-stream throughput, from the same samples: tokens after the first one, divided by the
   time from the first to the last token (the streaming rate, TTFT excluded). Median.
3. For each `--concurrency` level: that many streams at once (one thread per engine run, one
   engine process), direct burst then engine burst back to back. Aggregate throughput is all
   tokens received divided by the wall time of the burst; TTFT p50/p99 under load.
   An error is any exception, or a stream that did not end normally with exactly 1,000 tokens
   (direct: finish_reason "stop"; engine: `thread.run.completed` and 1,000 deltas).

The engine process's CPU time (from /proc) is read around each engine phase: CPU per run and how
busy the process was (100% = one core, which is all one Python process can use).

Caveats: a 2-core, shared machine. The client, the fake model and the engine compete for those
2 cores, and under load the client's own event loop adds to TTFT (connections queue behind busy
streams), for direct and engine alike. The direct rate is bounded by the client itself: the SDK
builds typed objects for every chunk, which costs more CPU than the fake model spends making it.
Compare ratios within one run, not absolute numbers across runs.

    .venv/bin/python bench/engine_stream.py [--runs 30] [--concurrency 50,200]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import signal
import statistics
import sys
import time
import warnings
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx2  # noqa: E402  (the HTTP library under this openai SDK)
import openai  # noqa: E402

from bench.report import percentile, table, verdict  # noqa: E402
from tests.fake_model import FakeModelServer  # noqa: E402
from tests.servers import ENGINE_KEY, ThreadlineServer  # noqa: E402

HEADER = ["scenario", "metric", "direct", "engine", "ratio or delta", "target (issue)"]

# The SDK marks the whole Assistants API deprecated; it is the API the engine serves.
warnings.filterwarnings("ignore", category=DeprecationWarning)

TOKENS = 1000
MODEL = f"tokens-{TOKENS}"
MESSAGES = [{"role": "user", "content": "Count for me."}]
WARMUP_RUNS = 2
THREAD_SETUP_CONCURRENCY = 16  # untimed thread creation before a burst
# Generous: a per-read timeout long enough for a starved stream, short enough not to hang.
TIMEOUT = httpx2.Timeout(120.0, connect=30.0, pool=120.0)
# More connections than any burst, all kept alive: the client pool is never what waits.
LIMITS = httpx2.Limits(max_connections=1000, max_keepalive_connections=1000)

TARGET_ADDED_TTFT_MS = 10.0
TARGET_THROUGHPUT_RATIO = 0.80
TARGET_ERROR_FREE_CONCURRENCY = 200


# --- One stream -----------------------------------------------------------------------------------


@dataclass
class Sample:
    """One stream, timed from the moment its request was sent."""

    tokens: int = 0
    ttft: float | None = None  # seconds to the first token
    last: float | None = None  # seconds to the last token
    ended_ok: bool = False  # the stream ended the normal way (see module docstring)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.ended_ok and self.tokens == TOKENS

    @property
    def problem(self) -> str:
        if self.error is not None:
            return self.error
        return f"ended_ok={self.ended_ok}, tokens={self.tokens}"

    def token(self, now: float) -> None:
        self.tokens += 1
        if self.ttft is None:
            self.ttft = now
        self.last = now


def make_client(api_key: str, base_url: str) -> openai.AsyncOpenAI:
    http_client = openai.DefaultAsyncHttpxClient(limits=LIMITS, timeout=TIMEOUT)
    # No retries: a retried request would hide an error and distort its timing.
    return openai.AsyncOpenAI(
        api_key=api_key,
        base_url=base_url,
        max_retries=0,
        timeout=TIMEOUT,
        http_client=http_client,
    )


async def direct_stream(client: openai.AsyncOpenAI) -> Sample:
    sample = Sample()
    start = time.perf_counter()
    try:
        stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
        async with stream:
            async for chunk in stream:
                for choice in chunk.choices:
                    if choice.delta.content:
                        sample.token(time.perf_counter() - start)
                    if choice.finish_reason is not None:
                        sample.ended_ok = choice.finish_reason == "stop"
    except Exception as error:
        sample.error = f"{type(error).__name__}: {error}"
    return sample


async def engine_stream(client: openai.AsyncOpenAI, assistant_id: str, thread_id: str) -> Sample:
    sample = Sample()
    start = time.perf_counter()
    try:
        stream = await client.beta.threads.runs.create(
            thread_id=thread_id, assistant_id=assistant_id, stream=True
        )
        async with stream:
            async for event in stream:
                if event.event == "thread.message.delta":
                    sample.token(time.perf_counter() - start)
                elif event.event == "thread.run.completed":
                    sample.ended_ok = True
    except Exception as error:
        sample.error = f"{type(error).__name__}: {error}"
    return sample


# --- The engine's side ----------------------------------------------------------------------------


class Engine:
    """The engine under test: a client, an assistant on the token model, threads to run on."""

    def __init__(self, server: ThreadlineServer) -> None:
        self.server = server
        self.client = make_client(ENGINE_KEY, server.api_url)
        self.assistant_id = ""

    async def setup(self) -> None:
        assistant = await self.client.beta.assistants.create(model=MODEL, name="bench")
        self.assistant_id = assistant.id

    async def new_threads(self, count: int) -> list[str]:
        """Threads with one user message each; one active run per thread, so one per run."""
        gate = asyncio.Semaphore(THREAD_SETUP_CONCURRENCY)

        async def one() -> str:
            async with gate:
                thread = await self.client.beta.threads.create(messages=MESSAGES)
                return thread.id

        return list(await asyncio.gather(*(one() for _ in range(count))))

    async def stream(self, thread_id: str) -> Sample:
        return await engine_stream(self.client, self.assistant_id, thread_id)

    def cpu_seconds(self) -> float:
        """User + system CPU time of the daphne process so far (all its threads)."""
        assert self.server.process is not None
        fields = Path(f"/proc/{self.server.process.pid}/stat").read_text().rsplit(")", 1)[1]
        utime, stime = fields.split()[11:13]
        return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")


# --- Scenarios ------------------------------------------------------------------------------------


@dataclass
class Phase:
    """Samples of one kind (direct or engine) in one scenario, with the phase's wall time."""

    samples: list[Sample]
    wall: float
    engine_cpu: float | None = None  # seconds of engine CPU during the phase

    @property
    def errors(self) -> list[Sample]:
        return [s for s in self.samples if not s.ok]

    def ttfts_ms(self) -> list[float]:
        return [s.ttft * 1000 for s in self.samples if s.ok and s.ttft is not None]

    def stream_rate(self) -> float:
        """Median single-stream rate: tokens after the first over first-to-last token time."""
        rates = [
            (s.tokens - 1) / (s.last - s.ttft)
            for s in self.samples
            if s.ok and s.ttft is not None and s.last is not None and s.last > s.ttft
        ]
        return statistics.median(rates) if rates else math.nan

    def aggregate_rate(self) -> float:
        return sum(s.tokens for s in self.samples) / self.wall


async def timed(run: Callable[[], Awaitable[Sample]], engine: Engine | None = None) -> Phase:
    return await timed_burst([run], engine)


async def timed_burst(runs: list[Callable[[], Awaitable[Sample]]], engine: Engine | None) -> Phase:
    cpu_before = engine.cpu_seconds() if engine else 0.0
    start = time.perf_counter()
    samples = await asyncio.gather(*(run() for run in runs))
    wall = time.perf_counter() - start
    cpu = engine.cpu_seconds() - cpu_before if engine else None
    return Phase(list(samples), wall, cpu)


def merge(phases: list[Phase]) -> Phase:
    cpus = [p.engine_cpu for p in phases if p.engine_cpu is not None]
    return Phase(
        [s for p in phases for s in p.samples],
        sum(p.wall for p in phases),
        sum(cpus) if cpus else None,
    )


async def sequential(direct: openai.AsyncOpenAI, engine: Engine, runs: int) -> tuple[Phase, Phase]:
    """Warm up, then `runs` single streams each, interleaved, alternating which goes first."""
    threads = await engine.new_threads(runs + WARMUP_RUNS)
    for thread_id in threads[:WARMUP_RUNS]:
        await direct_stream(direct)
        await engine.stream(thread_id)
    direct_phases, engine_phases = [], []
    for index, thread_id in enumerate(threads[WARMUP_RUNS:]):
        steps = [
            (direct_phases, lambda: direct_stream(direct), None),
            (engine_phases, lambda t=thread_id: engine.stream(t), engine),
        ]
        for phases, run, cpu_of in steps if index % 2 == 0 else reversed(steps):
            phases.append(await timed(run, cpu_of))
    return merge(direct_phases), merge(engine_phases)


async def concurrent(direct: openai.AsyncOpenAI, engine: Engine, count: int) -> tuple[Phase, Phase]:
    """`count` streams at once: direct, then engine, back to back."""
    threads = await engine.new_threads(count)
    direct_phase = await timed_burst([lambda: direct_stream(direct)] * count, None)
    engine_runs = [lambda t=thread_id: engine.stream(t) for thread_id in threads]
    engine_phase = await timed_burst(engine_runs, engine)
    return direct_phase, engine_phase


# --- Report ---------------------------------------------------------------------------------------


def ttft_rows(scenario: str, direct: Phase, engine: Phase, target: bool) -> list[list[str]]:
    rows = []
    for p in (50, 99):
        d, e = percentile(direct.ttfts_ms(), p), percentile(engine.ttfts_ms(), p)
        goal = ""
        if target and p == 50:
            goal = f"added <= {TARGET_ADDED_TTFT_MS:g} ms: {verdict(e - d <= TARGET_ADDED_TTFT_MS)}"
        rows.append([scenario, f"TTFT p{p} (ms)", f"{d:.1f}", f"{e:.1f}", f"{e - d:+.1f} ms", goal])
    return rows


def rate_row(scenario: str, metric: str, direct: float, engine: float) -> list[str]:
    ratio = engine / direct if direct else math.nan
    passed = ratio >= TARGET_THROUGHPUT_RATIO
    goal = f">= {TARGET_THROUGHPUT_RATIO:.0%} of direct: {verdict(passed)}"
    return [scenario, metric, f"{direct:,.0f}", f"{engine:,.0f}", f"{ratio:.0%}", goal]


def cpu_rows(scenario: str, engine: Phase) -> list[list[str]]:
    if engine.engine_cpu is None:
        return []
    per_run = engine.engine_cpu / len(engine.samples) * 1000
    busy = engine.engine_cpu / engine.wall
    return [
        [scenario, "engine CPU per run (ms)", "-", f"{per_run:.0f}", "", ""],
        [scenario, "engine CPU busy (1 core=100%)", "-", f"{busy:.0%}", "", ""],
    ]


def error_row(scenario: str, direct: Phase, engine: Phase, count: int) -> list[str]:
    d, e = len(direct.errors), len(engine.errors)
    goal = ""
    if count >= TARGET_ERROR_FREE_CONCURRENCY:
        goal = f"no errors at {TARGET_ERROR_FREE_CONCURRENCY}: {verdict(d == 0 and e == 0)}"
    return [scenario, f"errors (of {count})", str(d), str(e), "", goal]


def single_rows(direct: Phase, engine: Phase) -> list[list[str]]:
    scenario = f"1 stream x{len(direct.samples)}"
    return [
        *ttft_rows(scenario, direct, engine, target=True),
        rate_row(scenario, "stream tokens/s (median)", direct.stream_rate(), engine.stream_rate()),
        *cpu_rows(scenario, engine),
        error_row(scenario, direct, engine, len(direct.samples)),
    ]


def burst_rows(count: int, direct: Phase, engine: Phase) -> list[list[str]]:
    scenario = f"{count} concurrent"
    return [
        rate_row(scenario, "aggregate tokens/s", direct.aggregate_rate(), engine.aggregate_rate()),
        [scenario, "burst wall time (s)", f"{direct.wall:.1f}", f"{engine.wall:.1f}", "", ""],
        *ttft_rows(scenario, direct, engine, target=False),
        *cpu_rows(scenario, engine),
        error_row(scenario, direct, engine, count),
    ]


def error_summary(label: str, phase: Phase) -> list[str]:
    counts = Counter(s.problem for s in phase.errors)
    return [f"  {label}: {n} x {problem[:200]}" for problem, n in counts.most_common(5)]


def header(args: argparse.Namespace) -> str:
    levels = " and ".join(str(c) for c in args.concurrency)
    return "\n".join(
        [
            f"Engine streaming benchmark: the model streams {TOKENS:,} tokens as fast as it can.",
            f"NOISY MACHINE: {os.cpu_count()} shared cores for the client and the fake model (this",
            "process) and the engine (daphne + SQLite). Numbers move between runs: read ratios.",
            f"Same run, direct and engine: {args.runs} sequential samples each, interleaved;",
            f"then {levels} concurrent streams, back to back. TTFT under load includes the",
            "client's own queueing (its event loop is busy with the streams already running).",
        ]
    )


# --- Main -----------------------------------------------------------------------------------------


async def measure(
    args: argparse.Namespace, direct: openai.AsyncOpenAI, engine: Engine
) -> tuple[list[list[str]], list[tuple[str, Phase]]]:
    """Every scenario: the table's rows, and each phase by name (for its errors)."""
    await engine.setup()
    print(f"sequential: {args.runs} samples each ...", flush=True)
    single = await sequential(direct, engine, args.runs)
    rows = single_rows(*single)
    phases = [("1 stream direct", single[0]), ("1 stream engine", single[1])]
    for count in args.concurrency:
        print(f"{count} concurrent ...", flush=True)
        burst = await concurrent(direct, engine, count)
        rows += burst_rows(count, *burst)
        phases += [(f"{count} direct", burst[0]), (f"{count} engine", burst[1])]
    return rows, phases


def report(
    args: argparse.Namespace,
    rows: list[list[str]],
    phases: list[tuple[str, Phase]],
    server: ThreadlineServer,
) -> None:
    print(f"\n{header(args)}\n\n{table(HEADER, rows)}\n")
    notes = [
        "p99 is nearest-rank: with under 100 samples, the slowest one.",
        "stream tokens/s: tokens after the first / first-to-last-token time, for one stream.",
        "aggregate tokens/s: all tokens of the burst / its wall time.",
        "engine CPU: daphne's user+sys time from /proc, all threads; one Python process with",
        "its GIL can use about one core.",
    ]
    print(*notes, sep="\n")
    problems = [line for label, phase in phases for line in error_summary(label, phase)]
    if problems:
        print("\nErrors:", *problems, sep="\n")
        print("Engine log (tail):", *server.log().splitlines()[-10:], sep="\n  ")


async def benchmark(
    args: argparse.Namespace, model: FakeModelServer, server: ThreadlineServer
) -> None:
    direct = make_client(model.api_key, model.base_url)
    engine = Engine(server)
    try:
        rows, phases = await measure(args, direct, engine)
    finally:
        # Closed before the servers stop, so no connection is cut mid-request.
        await direct.close()
        await engine.client.close()
    report(args, rows, phases, server)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=30, help="sequential samples each (30)")
    parser.add_argument(
        "--concurrency",
        type=lambda text: [int(part) for part in text.split(",") if part],
        default=[50, 200],
        help="comma-separated concurrent-run levels (50,200)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # A plain `kill` ends the run like Ctrl-C: through the `finally` that stops the servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    model = FakeModelServer()
    server: ThreadlineServer | None = None
    try:
        model.start()
        env = {"OPENAI_API_KEY": model.api_key, "OPENAI_BASE_URL": model.base_url}
        server = ThreadlineServer(env=env)
        server.start()
        asyncio.run(benchmark(args, model, server))
    except KeyboardInterrupt:
        sys.exit("interrupted; servers stopped")
    finally:
        if server is not None:
            server.stop()
            shutil.rmtree(server.data_dir, ignore_errors=True)
        model.stop()


if __name__ == "__main__":
    main()

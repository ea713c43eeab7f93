"""Chat streaming benchmark: the answer as a browser sees it (the chat's SSE endpoint) against the
same answer read from the engine directly, side by side in one run, on one server process.

The model is the project's fake (`tests.fake_model`, in a child process of its own). The server
is the real product, chat and engine in one daphne process (`tests.servers.ThreadlineServer`),
with the fake as its model API; with `--split`, the chat is served by a second daphne process
that reaches the first one's engine over HTTP (one database), as an operator with more than one
core would run it. Two clients, both async, both in this process:

- engine: the official SDK, as any API client would send a message and stream the answer:
  `messages.create` then `runs.create(stream=True)`, timed from the first request. The events
  are read as raw lines, as the chat's relay reads them (the SDK's pydantic model per event
  would make this client the bottleneck at 200 streams).
- chat: a signed-in browser-like client (session cookie, CSRF, htmx headers): POST the message
  to the conversation's send URL, read the live section's SSE URL from the response, GET it,
  read the events until `end`; timed from the POST. This includes what a browser waits for:
  the POST's own work (the same two API calls, over loopback HTTP) and the second request.

What is measured (a paced model sends a chunk every `--pace` seconds, like a real one):

1. TTFT, `--runs` paced answers each, interleaved, alternating which side goes first: from the
   first request to the first answer text (engine: first `thread.message.delta`; chat: first
   SSE event with answer text). p50/p99 and the added TTFT (chat - engine).
2. Inter-token delay, `--paced-runs` paced answers of 100 tokens: the gap between consecutive
   text arrivals, p50/p99. The chat sends what piles up while it publishes as one event.
3. A flood: `--flood-runs` unpaced answers of 1,000 tokens (the fake model as fast as it can):
   TTFT under that load and server CPU seconds per 1,000 streamed tokens (from /proc; the
   chat's figure includes the engine's work, which runs in the same process).
4. 100 and 200 concurrent streams (paced, `--concurrent-tokens` each), engine then chat, each
   on a thread / conversation of its own: errors, TTFT p50/p99, server CPU busy, and the
   inter-token delay twice: while every stream is streaming (from the last first token to the
   first last token), and over the whole burst, which includes the seconds in which the
   server is still starting the other runs.
5. First page load of a conversation: bytes on the wire (Accept-Encoding: br, gzip) and
   requests, the page and each asset it loads.

Caveats: a 2-core shared machine; the clients, the fake model and the server compete for it.
Compare ratios within one run, not absolute numbers across runs.

    .venv/bin/python bench/chat_stream.py [--runs 20] [--concurrency 100,200] [--split]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import os
import re
import shutil
import sys
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx2  # noqa: E402
import openai  # noqa: E402

from bench.report import percentile, print_problems, table, verdict  # noqa: E402
from tests.fake_model import FakeModelProcess, FakeModelServer, Reply  # noqa: E402
from tests.servers import ENGINE_KEY, ThreadlineServer, model_env, shell  # noqa: E402

HEADER = ["scenario", "metric", "engine", "chat (SSE)", "delta", "target (issue)"]

warnings.filterwarnings("ignore", category=DeprecationWarning)

PASSWORD = "bench-password-123"  # noqa: S105 (a throwaway account)
TIMEOUT = httpx2.Timeout(300.0, connect=60.0, pool=300.0)
LIMITS = httpx2.Limits(max_connections=2000, max_keepalive_connections=2000)
TARGET_ADDED_TTFT_MS = 10.0
TARGET_P99_GAP_MS = 100.0
TARGET_FIRST_LOAD_KB = 60.0
SETUP_CONCURRENCY = 20


# --- Samples --------------------------------------------------------------------------------------


TOKEN = re.compile(r"\bt(?:ok)?\d+\b")  # the fake model's tokens: "tok17", or "t17" (paced)


@dataclass
class Sample:
    """One streamed answer, timed from its first request.

    A token arrives when it is first seen: in a streamed piece, or in a snapshot or checkpoint
    that renders the text so far (a token seen again there is not counted twice).
    """

    ttft: float | None = None
    started: float = 0.0  # time.perf_counter() at the first request
    arrivals: list[tuple[float, int]] = field(default_factory=list)  # (seconds, new tokens)
    seen: set[str] = field(default_factory=set)
    ended_ok: bool = False
    error: str | None = None
    expected: int = 0

    @property
    def tokens(self) -> int:
        return len(self.seen)

    @property
    def ok(self) -> bool:
        return self.error is None and self.ended_ok and self.tokens == self.expected

    def got(self, now: float, text: str) -> None:
        new = set(TOKEN.findall(text)) - self.seen
        if not new:
            return
        self.seen |= new
        if self.ttft is None:
            self.ttft = now
        self.arrivals.append((now, len(new)))

    def event_gaps(self) -> list[float]:
        times = [t for t, _ in self.arrivals]
        return [b - a for a, b in itertools.pairwise(times)]

    def gaps_between(self, start: float, end: float) -> list[float]:
        """Gaps between arrivals that both fall in [start, end] (perf_counter seconds)."""
        times = [self.started + t for t, _ in self.arrivals]
        inside = [t for t in times if start <= t <= end]
        return [b - a for a, b in itertools.pairwise(inside)]

    def token_gaps(self) -> list[float]:
        gaps = []
        for (a, _), (b, n) in itertools.pairwise(self.arrivals):
            gaps.append(b - a)
            gaps.extend([0.0] * (n - 1))
        return gaps


# --- The two clients ------------------------------------------------------------------------------


async def read_run_stream(opening: Any, sample: Sample, start: float) -> None:
    """Read an engine run's event stream (the SDK's raw streaming response) into `sample`."""
    async with opening as response:
        async for event, data in sse_events(response.iter_lines()):
            if event == "thread.message.delta":
                sample.got(time.perf_counter() - start, data)
            elif event == "thread.run.completed":
                sample.ended_ok = True


class Engine:
    def __init__(self, server: ThreadlineServer) -> None:
        self.client = openai.AsyncOpenAI(
            api_key=ENGINE_KEY,
            base_url=server.api_url,
            max_retries=0,
            timeout=TIMEOUT,
            http_client=openai.DefaultAsyncHttpxClient(limits=LIMITS, timeout=TIMEOUT),
        )
        self.assistants: dict[str, str] = {}

    async def assistant(self, model: str) -> str:
        if model not in self.assistants:
            self.assistants[model] = (await self.client.beta.assistants.create(model=model)).id
        return self.assistants[model]

    async def thread(self) -> str:
        return (await self.client.beta.threads.create()).id

    async def stream(self, thread_id: str, model: str, expected: int) -> Sample:
        sample = Sample(expected=expected)
        assistant_id = await self.assistant(model)
        start = sample.started = time.perf_counter()
        try:
            await self.client.beta.threads.messages.create(
                thread_id, role="user", content="Count for me."
            )
            # The SDK sends the request; its events are read raw, as the chat's relay reads
            # them: building the SDK's pydantic model per event made this client, not the
            # engine, the bottleneck at 200 streams.
            opening = self.client.beta.threads.runs.with_streaming_response.create(
                thread_id, assistant_id=assistant_id, stream=True
            )
            await read_run_stream(opening, sample, start)
        except Exception as error:
            sample.error = f"{type(error).__name__}: {error}"
        return sample


SSE_URL = re.compile(r'sse-connect="([^"]+)"')


class Browser:
    """A signed-in browser: session cookie, CSRF header, htmx requests, SSE streams."""

    def __init__(self, server: ThreadlineServer) -> None:
        self.http = httpx2.AsyncClient(base_url=server.url, timeout=TIMEOUT, limits=LIMITS)

    async def login(self, username: str) -> None:
        await self.http.get("/accounts/login/")
        response = await self.http.post(
            "/accounts/login/",
            data={
                "username": username,
                "password": PASSWORD,
                "csrfmiddlewaretoken": self.http.cookies["csrftoken"],
            },
        )
        assert response.status_code == 302, response.text[:500]
        await self.http.get("/")

    def headers(self) -> dict[str, str]:
        return {"X-CSRFToken": self.http.cookies["csrftoken"], "HX-Request": "true"}

    async def new_conversation(self, profile_id: int) -> int:
        """A conversation with one quick exchange (untimed setup)."""
        response = await self.http.post(
            "/c/new/send",
            data={"text": "Hello", "assistant": str(profile_id)},
            headers=self.headers(),
        )
        conversation_id = int(response.headers["HX-Push-Url"].split("/")[2])
        url = SSE_URL.search(response.text)
        assert url, response.text[:2000]
        await self.read(url.group(1), Sample(), time.perf_counter())
        return conversation_id

    async def stream(
        self, conversation_id: int, expected: int, reader: Browser | None = None
    ) -> Sample:
        """Send, then read the answer's stream with `reader` (another process's, say) or self."""
        sample = Sample(expected=expected)
        start = sample.started = time.perf_counter()
        try:
            response = await self.http.post(
                f"/c/{conversation_id}/send",
                data={"text": "Count for me."},
                headers=self.headers(),
            )
            url = SSE_URL.search(response.text)
            if not url:
                raise RuntimeError(f"no live answer in the response: {response.text[:300]}")
            await (reader or self).read(url.group(1), sample, start)
        except Exception as error:
            sample.error = f"{type(error).__name__}: {error}"
        return sample

    async def read(self, url: str, sample: Sample, start: float) -> None:
        async with self.http.stream("GET", url, headers={"Accept": "text/event-stream"}) as r:
            if r.status_code != 200:
                raise RuntimeError(f"SSE status {r.status_code}")
            async for event, data in sse_events(r.aiter_lines()):
                if event == "end":
                    sample.ended_ok = True
                    return
                sample.got(time.perf_counter() - start, data)


async def sse_events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, str]]:
    """(event, data) for each server-sent event; the data is left as text."""
    event, data = "", []
    async for line in lines:
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data.append(line[6:])
        elif line == "" and event:
            yield event, "\n".join(data)
            event, data = "", []


# --- Server CPU -----------------------------------------------------------------------------------


def cpu_seconds(servers: list[ThreadlineServer]) -> float:
    total = 0.0
    for server in servers:
        assert server.process is not None
        total += process_cpu_seconds(server.process.pid)
    return total


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all its threads, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1]
    utime, stime = fields.split()[11:13]
    return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")


@dataclass
class Phase:
    samples: list[Sample]
    wall: float
    cpu: float

    @property
    def errors(self) -> list[Sample]:
        return [s for s in self.samples if not s.ok]

    def ttfts_ms(self) -> list[float]:
        return [s.ttft * 1000 for s in self.samples if s.ok and s.ttft is not None]

    def gaps_ms(self, per_token: bool = False) -> list[float]:
        gaps = []
        for s in self.samples:
            if s.ok:
                gaps += s.token_gaps() if per_token else s.event_gaps()
        return [g * 1000 for g in gaps]

    def tokens(self) -> int:
        return sum(s.tokens for s in self.samples if s.ok)

    def all_streaming(self) -> tuple[float, float]:
        """The window in which every stream was streaming: from the last first token to the
        first last token (empty when the starts took longer than the answers)."""
        ok = [s for s in self.samples if s.ok and s.arrivals]
        if not ok:
            return 0.0, 0.0
        start = max(s.started + s.arrivals[0][0] for s in ok)
        end = min(s.started + s.arrivals[-1][0] for s in ok)
        return start, end

    def steady_gaps_ms(self) -> list[float]:
        start, end = self.all_streaming()
        return [g * 1000 for s in self.samples if s.ok for g in s.gaps_between(start, end)]

    def tokens_per_event(self) -> float:
        events = sum(len(s.arrivals) for s in self.samples if s.ok)
        return self.tokens() / events if events else math.nan


async def timed(
    servers: list[ThreadlineServer], runs: list[Callable[[], Awaitable[Sample]]]
) -> Phase:
    cpu = cpu_seconds(servers)
    start = time.perf_counter()
    samples = await asyncio.gather(*(run() for run in runs))
    return Phase(list(samples), time.perf_counter() - start, cpu_seconds(servers) - cpu)


def merge(phases: list[Phase]) -> Phase:
    return Phase(
        [s for p in phases for s in p.samples],
        sum(p.wall for p in phases),
        sum(p.cpu for p in phases),
    )


# --- Setup ----------------------------------------------------------------------------------------


def start_chat_apart(engine: ThreadlineServer, model_server: FakeModelServer) -> ThreadlineServer:
    """The chat in a process of its own, reaching the engine's over HTTP (same database), as
    `make run` splits on two cores."""
    chat_env = {**model_env(model_server), "THREADLINE_ASSISTANTS_URL": engine.api_url}
    chat_server = ThreadlineServer(env=chat_env, data_dir=engine.data_dir)
    chat_server.log_path = engine.data_dir / "chat-server.log"
    chat_server.migrated = True
    return chat_server.start()


def prepare(server: ThreadlineServer, models: list[str]) -> dict[str, int]:
    server.migrate()
    server.manage("collectstatic", "--noinput", "-v0")
    code = (
        "import json\n"
        "from django.contrib.auth.models import User\n"
        "from chat.models import AssistantProfile\n"
        f"User.objects.create_user('bench', password={PASSWORD!r})\n"
        f"ids = {{m: AssistantProfile.objects.create(name=m, model=m, published=True).pk"
        f" for m in {models!r}}}\n"
        "print(json.dumps(ids))\n"
    )
    return shell(server, code)


def paced(model_server: FakeModelServer, model: str, tokens: int, pace: float, count: int) -> None:
    text = " ".join(f"t{i}" for i in range(tokens))
    model_server.script(model, [Reply(text, chunk_delay=pace)] * count)


async def gather_limited(calls: list[Callable[[], Awaitable[int]]], limit: int) -> list[int]:
    gate = asyncio.Semaphore(limit)

    async def one(call: Callable[[], Awaitable[int]]) -> int:
        async with gate:
            return await call()

    return list(await asyncio.gather(*(one(c) for c in calls)))


# --- Scenarios ------------------------------------------------------------------------------------


async def sequential(
    servers: list[ThreadlineServer],
    engine: Engine,
    browser: Browser,
    profile: int,
    model: str,
    runs: int,
) -> tuple[Phase, Phase]:
    thread = await engine.thread()
    conversation = await browser.new_conversation(profile)
    for _ in range(2):  # warm-up
        await engine.stream(thread, model, TOKENS_FAST)
        await browser.stream(conversation, TOKENS_FAST)
    engine_phases, chat_phases = [], []
    for index in range(runs):
        steps = [
            (engine_phases, lambda: engine.stream(thread, model, TOKENS_FAST)),
            (chat_phases, lambda: browser.stream(conversation, TOKENS_FAST)),
        ]
        for phases, run in steps if index % 2 == 0 else reversed(steps):
            phases.append(await timed(servers, [run]))
    return merge(engine_phases), merge(chat_phases)


TOKENS_FAST = 1000
TOKENS_PACED = 100


async def paced_pair(
    servers: list[ThreadlineServer],
    engine: Engine,
    browser: Browser,
    model_server: FakeModelServer,
    profile: int,
    model: str,
    runs: int,
    pace: float,
    tokens: int,
) -> tuple[Phase, Phase]:
    """`runs` paced answers each, interleaved, alternating which side goes first."""
    thread = await engine.thread()
    paced(model_server, model, tokens, 0.0, 1)
    conversation = await browser.new_conversation(profile)
    engine_phases: list[Phase] = []
    chat_phases: list[Phase] = []
    for index in range(runs):
        steps = [
            (engine_phases, lambda: engine.stream(thread, model, tokens)),
            (chat_phases, lambda: browser.stream(conversation, tokens)),
        ]
        for phases, run in steps if index % 2 == 0 else reversed(steps):
            paced(model_server, model, tokens, pace, 1)
            phases.append(await timed(servers, [run]))
    return merge(engine_phases), merge(chat_phases)


async def concurrent(
    servers: list[ThreadlineServer],
    browser: Browser,
    model_server: FakeModelServer,
    profile: int,
    model: str,
    count: int,
    pace: float,
    tokens: int,
) -> Phase:
    paced(model_server, model, tokens, 0.0, count)
    conversations = await gather_limited(
        [lambda: browser.new_conversation(profile)] * count, SETUP_CONCURRENCY
    )
    paced(model_server, model, tokens, pace, count)
    print(f"  chat: {count} streams", flush=True)
    return await timed(servers, [lambda c=c: browser.stream(c, tokens) for c in conversations])


async def engine_concurrent(
    servers: list[ThreadlineServer],
    engine: Engine,
    model_server: FakeModelServer,
    model: str,
    count: int,
    pace: float,
    tokens: int,
) -> Phase:
    threads = await gather_limited([engine.thread] * count, SETUP_CONCURRENCY)
    paced(model_server, model, tokens, pace, count)
    print(f"  engine: {count} streams", flush=True)
    return await timed(servers, [lambda t=t: engine.stream(t, model, tokens) for t in threads])


async def first_load(browser: Browser, conversation_id: int) -> list[tuple[str, int, int]]:
    """(url, bytes on the wire, uncompressed bytes) for the page and each asset it loads."""
    encoding = {"Accept-Encoding": "br, gzip"}
    rows = []
    async with browser.http.stream("GET", f"/c/{conversation_id}/", headers=encoding) as r:
        wire = sum([len(chunk) async for chunk in r.aiter_raw()])
    page = (await browser.http.get(f"/c/{conversation_id}/")).text
    rows.append((f"/c/{conversation_id}/ (HTML)", wire, len(page.encode())))
    assets = re.findall(r'<(?:script|link)[^>]+(?:src|href)="(/static/[^"]+)"', page)
    for url in assets:
        async with browser.http.stream("GET", url, headers=encoding) as r:
            wire = sum([len(chunk) async for chunk in r.aiter_raw()])
        plain = len((await browser.http.get(url, headers={"Accept-Encoding": "identity"})).content)
        rows.append((url, wire, plain))
    return rows


# --- Report ---------------------------------------------------------------------------------------


def row(
    scenario: str, metric: str, engine: str, chat: str, delta: str = "", goal: str = ""
) -> list[str]:
    return [scenario, metric, engine, chat, delta, goal]


def ms(value: float) -> str:
    return f"{value:.1f}"


def burst_rows(count: int, e: Phase, c: Phase) -> list[list[str]]:
    scenario = f"{count} concurrent"
    target = count >= 200
    rows = [
        row(
            scenario,
            "errors",
            str(len(e.errors)),
            str(len(c.errors)),
            "",
            f"no errors: {verdict(not c.errors)}" if target else "",
        )
    ]
    (es, ee), (cs, ce) = e.all_streaming(), c.all_streaming()
    rows.append(
        row(
            scenario,
            "all streaming at once for (s)",
            f"{max(ee - es, 0):.1f}",
            f"{max(ce - cs, 0):.1f}",
        )
    )
    for label, gaps in (
        ("while all stream", Phase.steady_gaps_ms),
        ("whole burst, starts too", Phase.gaps_ms),
    ):
        for p in (50, 99):
            de, dc = percentile(gaps(e), p), percentile(gaps(c), p)
            goal = f"p99 < {TARGET_P99_GAP_MS:g} ms: {verdict(dc < TARGET_P99_GAP_MS)}"
            rows.append(
                row(
                    scenario,
                    f"inter-token delay p{p}, {label} (ms)",
                    ms(de),
                    ms(dc),
                    f"{dc - de:+.1f} ms",
                    goal if target and p == 99 else "",
                )
            )
    for p in (50, 99):
        de, dc = percentile(e.ttfts_ms(), p), percentile(c.ttfts_ms(), p)
        rows.append(row(scenario, f"TTFT p{p} (ms)", ms(de), ms(dc), f"{dc - de:+.1f} ms"))
    rows += [
        row(
            scenario,
            "tokens per event (mean)",
            f"{e.tokens_per_event():.2f}",
            f"{c.tokens_per_event():.2f}",
        ),
        row(
            scenario,
            "server CPU busy (1 core=100%)",
            f"{e.cpu / e.wall:.0%}",
            f"{c.cpu / c.wall:.0%}",
        ),
        row(scenario, "burst wall time (s)", f"{e.wall:.1f}", f"{c.wall:.1f}"),
    ]
    return rows


def title_instructions() -> str:
    """What the chat tells the model when it asks for a conversation's title."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from chat import titles

    return titles.INSTRUCTIONS


async def measure(args: argparse.Namespace) -> None:
    model_server = FakeModelProcess().start()
    # Titles are answered apart (with the message itself): asked for after a first answer, they
    # would otherwise take turns scripted for the streams, which then answered with no tokens.
    model_server.script_instructions(title_instructions())
    server = ThreadlineServer(env=model_env(model_server))
    fast, slow = f"tokens-{TOKENS_FAST}", "paced"
    profiles = prepare(server, [fast, slow])
    server.start()
    servers = [server, start_chat_apart(server, model_server)] if args.split else [server]
    engine = Engine(server)
    browser = Browser(servers[-1])
    rows: list[list[str]] = []
    problems: list[str] = []
    try:
        await browser.login("bench")

        print(f"TTFT: {args.runs} paced answers each ...", flush=True)
        e, c = await paced_pair(
            servers, engine, browser, model_server, profiles[slow], slow, args.runs, args.pace, 20
        )
        scenario = f"1 stream, paced x{args.runs}"
        for p in (50, 99):
            de, dc = percentile(e.ttfts_ms(), p), percentile(c.ttfts_ms(), p)
            goal = ""
            if p == 50:
                passed = dc - de <= TARGET_ADDED_TTFT_MS
                goal = f"added <= {TARGET_ADDED_TTFT_MS:g} ms: {verdict(passed)}"
            rows.append(
                row(scenario, f"TTFT p{p} (ms)", ms(de), ms(dc), f"{dc - de:+.1f} ms", goal)
            )
        rows.append(row(scenario, "errors", str(len(e.errors)), str(len(c.errors))))
        problems += [s.error or "" for s in e.errors + c.errors]

        print(f"inter-token delay: {args.paced_runs} paced answers each ...", flush=True)
        e, c = await paced_pair(
            servers,
            engine,
            browser,
            model_server,
            profiles[slow],
            slow,
            args.paced_runs,
            args.pace,
            TOKENS_PACED,
        )
        scenario = f"1 stream, paced x{args.paced_runs}"
        for p in (50, 99):
            de, dc = percentile(e.gaps_ms(), p), percentile(c.gaps_ms(), p)
            rows.append(
                row(scenario, f"inter-token delay p{p} (ms)", ms(de), ms(dc), f"{dc - de:+.1f} ms")
            )
        rows.append(
            row(
                scenario,
                "tokens per event (mean)",
                f"{e.tokens_per_event():.2f}",
                f"{c.tokens_per_event():.2f}",
            )
        )
        rows.append(row(scenario, "errors", str(len(e.errors)), str(len(c.errors))))
        problems += [s.error or "" for s in e.errors + c.errors]

        print(
            f"flood: {args.flood_runs} unpaced answers of {TOKENS_FAST} tokens each ...", flush=True
        )
        e, c = await sequential(servers, engine, browser, profiles[fast], fast, args.flood_runs)
        scenario = f"1 stream, unpaced x{args.flood_runs}"
        for p in (50, 99):
            de, dc = percentile(e.ttfts_ms(), p), percentile(c.ttfts_ms(), p)
            rows.append(row(scenario, f"TTFT p{p} (ms)", ms(de), ms(dc), f"{dc - de:+.1f} ms"))
        per_k_e = e.cpu / max(e.tokens(), 1) * 1000
        per_k_c = c.cpu / max(c.tokens(), 1) * 1000
        rows.append(
            row(
                scenario,
                "server CPU s / 1,000 tokens",
                f"{per_k_e:.3f}",
                f"{per_k_c:.3f}",
                f"{per_k_c - per_k_e:+.3f} s",
                "(chat includes the engine)",
            )
        )
        rows.append(
            row(
                scenario,
                "tokens per event (mean)",
                f"{e.tokens_per_event():.1f}",
                f"{c.tokens_per_event():.1f}",
            )
        )
        rows.append(row(scenario, "errors", str(len(e.errors)), str(len(c.errors))))
        problems += [s.error or "" for s in e.errors + c.errors]

        for count in args.concurrency:
            print(f"{count} concurrent streams: engine, then chat ...", flush=True)
            tokens = args.concurrent_tokens
            e = await engine_concurrent(
                servers, engine, model_server, slow, count, args.pace, tokens
            )
            c = await concurrent(
                servers, browser, model_server, profiles[slow], slow, count, args.pace, tokens
            )
            rows += burst_rows(count, e, c)
            problems += [s.error or f"ended_ok={s.ended_ok} tokens={s.tokens}" for s in c.errors]
            problems += [s.error or f"ended_ok={s.ended_ok} tokens={s.tokens}" for s in e.errors]

        print("first page load ...", flush=True)
        conversation = await browser.new_conversation(profiles[fast])
        loads = await first_load(browser, conversation)
        wire = sum(w for _, w, _ in loads) / 1024
        plain = sum(p for _, _, p in loads) / 1024
        rows.append(row("first page load", "requests", "-", str(len(loads))))
        for url, w, p in loads:
            rows.append(
                row(
                    "first page load",
                    f"  {url}",
                    "-",
                    f"{w / 1024:.1f} KB",
                    f"{p / 1024:.1f} KB raw",
                )
            )
        rows.append(
            row(
                "first page load",
                "total on the wire",
                "-",
                f"{wire:.1f} KB",
                f"{plain:.1f} KB raw",
                f"<= {TARGET_FIRST_LOAD_KB:g} KB: {verdict(wire <= TARGET_FIRST_LOAD_KB)}",
            )
        )
    finally:
        await browser.http.aclose()
        await engine.client.close()
        for running in servers:
            running.stop()
        model_server.stop()
        if not args.keep:
            shutil.rmtree(server.data_dir, ignore_errors=True)

    print()
    print(
        f"Chat streaming benchmark on {os.cpu_count()} shared cores: the clients and the fake model"
    )
    print("(this process) and the server (daphne: chat + engine + SQLite) compete for them.")
    print()
    print(table(HEADER, rows))
    print()
    print(
        "TTFT: from the first request (engine: messages.create; chat: the send POST) to the first"
    )
    print("answer text (chat: over the SSE stream the POST's response points at).")
    print("Inter-token delay: gap between consecutive text arrivals. The chat sends what piles up")
    print("while it publishes as one event; tokens inside one event arrive together.")
    print("p99 is nearest-rank. CPU: the daphne process's user+sys time from /proc, all threads.")
    print_problems(problems)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--paced-runs", type=int, default=5)
    parser.add_argument("--flood-runs", type=int, default=10)
    parser.add_argument("--pace", type=float, default=0.02, help="seconds between model chunks")
    parser.add_argument(
        "--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[100, 200]
    )
    parser.add_argument(
        "--concurrent-tokens",
        type=int,
        default=600,
        help="tokens per answer in the concurrent scenarios: long enough that every stream is "
        "still streaming when the last one starts",
    )
    parser.add_argument(
        "--split",
        action="store_true",
        help="serve the chat from a second process that reaches the engine's over HTTP",
    )
    parser.add_argument("--keep", action="store_true", help="keep the server's data directory")
    asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()

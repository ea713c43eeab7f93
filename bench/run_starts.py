"""Run-start benchmark: the server CPU one answer's start costs, the engine and the chat apart.

`--count` answers are started at once, each on a thread (engine) or conversation (chat) of its
own, made beforehand and untimed; each answer is one token long (the fake model's `tokens-1`;
`--tokens N` for longer ones), so the figure is almost all start: the engine's `runs.create`
stream with the person's message in it (the request the chat sends), read to the run's end; the
chat's send POST, read through the SSE stream its response points at to the end (the chat's
figure includes the engine's work: one process). CPU is the daphne process's user+sys time from
/proc. With `--profile DIR`, py-spy samples the server during each burst and the top functions
are printed (and the raw stacks kept in DIR for a flame graph): `pip install py-spy` first, a dev
tool only.

    .venv/bin/python bench/run_starts.py [--count 50] [--rounds 2] [--tokens 1] [--pace 0]
        [--profile /tmp/prof] [--split]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.chat_stream import (  # noqa: E402
    SETUP_CONCURRENCY,
    Browser,
    Engine,
    Sample,
    cpu_seconds,
    gather_limited,
    paced,
    prepare,
    read_run_stream,
    start_chat_apart,
)
from bench.report import percentile, table  # noqa: E402
from tests.fake_model import FakeModelProcess  # noqa: E402
from tests.servers import ThreadlineServer, model_env  # noqa: E402


async def engine_start(engine: Engine, thread_id: str, model: str, tokens: int) -> Sample:
    """The request the chat sends: the message and the run in one `runs.create` stream."""
    sample = Sample(expected=tokens)
    assistant_id = await engine.assistant(model)
    start = sample.started = time.perf_counter()
    try:
        opening = engine.client.beta.threads.runs.with_streaming_response.create(
            thread_id,
            assistant_id=assistant_id,
            additional_messages=[{"role": "user", "content": "Count for me."}],
            stream=True,
        )
        await read_run_stream(opening, sample, start)
    except Exception as error:
        sample.error = f"{type(error).__name__}: {error}"
    return sample


class Profiler:
    """py-spy sampling one process, all its threads, while a burst runs."""

    def __init__(self, directory: Path | None, pid: int) -> None:
        self.directory = directory
        self.pid = pid
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, name: str) -> None:
        if self.directory is None:
            return
        self.path = self.directory / f"{name}.txt"
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        self.process = subprocess.Popen(
            [
                *(spy, "record", "--pid", str(self.pid), "--rate", "250", "--format", "raw"),
                *("--gil", "--nonblocking", "--output", str(self.path)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)  # py-spy attaches

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=60)
        self.process = None
        print_top(self.path)


def print_top(path: Path, count: int = 30) -> None:
    """The functions the samples were in (inclusive) and at the top of (self), in percent."""
    inclusive: collections.Counter[str] = collections.Counter()
    leaf: collections.Counter[str] = collections.Counter()
    ours: collections.Counter[str] = collections.Counter()  # the innermost frame of our code
    total = 0
    for line in path.read_text().splitlines():
        stack, _, weight = line.rpartition(" ")
        n = int(weight)
        frames = [f for f in stack.split(";") if f]
        if not frames or "(idle)" in stack:
            continue
        total += n
        leaf[short(frames[-1])] += n
        own = [f for f in frames if OUR_CODE.search(f)]
        ours[short(own[-1]) if own else "(no frame of ours)"] += n
        for frame in set(map(short, frames)):
            inclusive[frame] += n
    print(f"\n{path.name}: {total} busy samples")
    for title, counter in (("inclusive", inclusive), ("self", leaf), ("ours", ours)):
        print(f"-- top {count}, {title} --")
        for frame, n in counter.most_common(count):
            print(f"{100 * n / max(total, 1):5.1f}%  {frame}")


OUR_CODE = re.compile(r"\((chat|engine|config)/")


def short(frame: str) -> str:
    """`function (path/to/file.py:12)` as `function (file.py)`, so lines of one function add up."""
    name, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0].rstrip(")")
    parts = Path(file).parts
    return f"{name} ({'/'.join(parts[-2:])})"


def pid(server: ThreadlineServer) -> int:
    assert server.process is not None
    return server.process.pid


async def measure(args: argparse.Namespace) -> None:
    model = "paced" if args.pace else f"tokens-{args.tokens}"
    model_server = FakeModelProcess().start()
    server = ThreadlineServer(env=model_env(model_server))
    profiles = prepare(server, [model])
    server.start()
    servers = [server, start_chat_apart(server, model_server)] if args.split else [server]
    engine, browser = Engine(server), Browser(servers[-1])
    # With --split, a chat burst is profiled in the chat's process.
    profilers = {
        "engine": Profiler(args.profile, pid(server)),
        "chat": Profiler(args.profile, pid(servers[-1])),
    }
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        await browser.login("bench")
        await engine.assistant(model)
        for round_ in range(args.rounds):
            for side in ("engine", "chat"):
                if side == "engine":
                    threads = await gather_limited([engine.thread] * args.count, SETUP_CONCURRENCY)
                    runs = [
                        lambda t=t: engine_start(engine, t, model, args.tokens) for t in threads
                    ]
                else:
                    if args.pace:  # the setup's answers at full speed
                        paced(model_server, model, args.tokens, 0.0, args.count)
                    made = [lambda: browser.new_conversation(profiles[model])] * args.count
                    conversations = await gather_limited(made, SETUP_CONCURRENCY)
                    runs = [lambda c=c: browser.stream(c, args.tokens) for c in conversations]
                await asyncio.sleep(1.0)  # the setup's relays end
                if args.pace:
                    paced(model_server, model, args.tokens, args.pace, args.count)
                profilers[side].start(f"{side}-{round_}")
                cpu = cpu_seconds(servers)
                chat_cpu = cpu_seconds(servers[1:])
                started = time.perf_counter()
                samples = await asyncio.gather(*(run() for run in runs))
                wall = time.perf_counter() - started
                cpu = cpu_seconds(servers) - cpu
                chat_cpu = cpu_seconds(servers[1:]) - chat_cpu
                profilers[side].stop()
                ok = [s for s in samples if s.ok]
                ttfts = [s.ttft * 1000 for s in ok if s.ttft is not None]
                rows.append(
                    [
                        f"{side} #{round_ + 1}",
                        str(args.count - len(ok)),
                        f"{cpu / args.count * 1000:.1f}",
                        f"{chat_cpu / args.count * 1000:.1f}" if args.split else "-",
                        f"{percentile(ttfts, 50):.0f}",
                        f"{percentile(ttfts, 99):.0f}",
                        f"{wall:.2f}",
                    ]
                )
                for sample in samples:
                    if not sample.ok:
                        print("problem:", sample.error or f"tokens={sample.tokens}")
                        break
    finally:
        await browser.http.aclose()
        await engine.client.close()
        for each in servers:
            each.stop()
        model_server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)
    print()
    layout = (
        "two daphne processes (the chat's, reaching the engine's over HTTP, as `make run` "
        "splits on two cores)"
        if args.split
        else "one daphne process (chat + engine; the chat reaches the engine over HTTP)"
    )
    print(f"{args.count} answers of {args.tokens} token(s) started at once, {layout}")
    header = [
        "burst",
        "errors",
        "CPU ms / start",
        "of which the chat process",
        "TTFT p50 ms",
        "TTFT p99 ms",
        "wall s",
    ]
    print(table(header, rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=1, help="tokens per answer")
    parser.add_argument(
        "--pace", type=float, default=0.0, help="seconds between the model's tokens (0: at once)"
    )
    parser.add_argument("--profile", type=Path, default=None, help="py-spy the server into DIR")
    parser.add_argument(
        "--split", action="store_true", help="the chat in a second process, as make run splits"
    )
    asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()

"""Code interpreter: what the sandbox costs beyond the code it runs.

- Warm execution: `print(1)` in a thread's running session, through `Sessions.execute`, against
  the time the sandbox's shell itself took to run it (reported by the runner). The difference is
  the sandbox's overhead: frames over the pipes, the output's end marker, the /mnt/data scan.
- Cold start: a new sandbox until its runner is ready (bubblewrap, Python, IPython, numpy,
  pandas and matplotlib loaded); and a new thread's first execution when a warm session waits.
- Memory per idle session: RSS and PSS (shared pages divided fairly) of a sandbox's processes,
  just started and after a typical execution (a DataFrame and a chart).

Run: `python bench/code_interpreter.py [samples]` (after `make .venv-sandbox/.installed`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import percentile, table, verdict  # noqa: E402

WARM_TARGET_MS = 50.0
COLD_TARGET_S = 2.0
TYPICAL = (
    "import pandas as pd, matplotlib.pyplot as plt\n"
    "df = pd.DataFrame({'x': range(1000), 'y': [v * v for v in range(1000)]})\n"
    "df.plot(x='x', y='y')\n"
    "df.describe()"
)


async def measure(samples: int) -> list[list[str]]:
    from engine.tools.code_interpreter.kernel import Kernel
    from engine.tools.code_interpreter.limits import Limits
    from engine.tools.code_interpreter.sessions import Sessions

    limits = dataclasses.replace(Limits.from_settings(), warm_sessions=0)
    sessions = Sessions(limits, mode="auto")
    print(f"sandbox: {sessions.status()}", file=sys.stderr)
    rows: list[list[str]] = []
    try:
        await sessions.execute("thread_warm", "print(0)")
        total, own = [], []
        for _ in range(samples * 20):
            started = time.perf_counter()
            result = await sessions.execute("thread_warm", "print(1)")
            total.append((time.perf_counter() - started) * 1000)
            own.append(result.run_seconds * 1000)
        added = [t - o for t, o in zip(total, own, strict=True)]
        warm = f"p50 <= {WARM_TARGET_MS:g} ms"
        rows += [
            timed("warm print(1)", "execute, total", total, ms),
            timed("warm print(1)", "the shell's own", own, ms),
            timed("warm print(1)", "added by the sandbox", added, ms, warm, WARM_TARGET_MS),
        ]

        starts = []
        for _ in range(samples):
            started = time.perf_counter()
            kernel = await Kernel.start(limits)
            starts.append(time.perf_counter() - started)
            idle = kernel.memory()
            await kernel.close()
        cold = f"p50 <= {COLD_TARGET_S:g} s"
        rows.append(timed("cold start", "new sandbox until ready", starts, s, cold, COLD_TARGET_S))

        pooled = Sessions(dataclasses.replace(limits, warm_sessions=1), mode="auto")
        firsts = []
        try:
            for number in range(samples):
                await wait_for_pool(pooled)
                started = time.perf_counter()
                await pooled.execute(f"thread_new_{number}", "print(1)")
                firsts.append(time.perf_counter() - started)
        finally:
            await pooled.aclose()
        rows.append(timed("cold start", "new thread, warm pool", firsts, s, cold, COLD_TARGET_S))

        await sessions.execute("thread_warm", TYPICAL)
        busy = sessions.threads["thread_warm"].kernel
        assert busy is not None
        used = busy.memory()
        rows += [
            ["memory", "idle session, just started", mb(idle[0]), mb(idle[1]), "", ""],
            ["memory", "after a DataFrame and a chart", mb(used[0]), mb(used[1]), "", ""],
        ]
    finally:
        await sessions.aclose()
    return rows


async def wait_for_pool(sessions: object) -> None:
    from engine.tools.code_interpreter.sessions import Sessions

    assert isinstance(sessions, Sessions)
    sessions.start_background()
    for _ in range(1200):
        if sessions.pool:
            return
        await asyncio.sleep(0.05)
    raise RuntimeError("no warm session started within 60 s")


def timed(
    case: str,
    measure: str,
    values: list[float],
    unit: Callable[[float], str],
    target: str = "",
    limit: float | None = None,
) -> list[str]:
    p50 = percentile(values, 50)
    result = verdict(p50 <= limit) if limit is not None else ""
    return [case, measure, unit(p50), unit(percentile(values, 95)), target, result]


def ms(value: float) -> str:
    return f"{value:.1f} ms"


def s(value: float) -> str:
    return f"{value:.2f} s"


def mb(value: int) -> str:
    return f"{value / 2**20:.0f} MB"


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    samples = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    rows = asyncio.run(measure(samples))
    print(f"Code interpreter sandbox ({samples * 20} warm executions, {samples} starts)")
    print("(memory rows: RSS under p50, PSS under p95)")
    print(table(["case", "measure", "p50", "p95", "target", "result"], rows))


if __name__ == "__main__":
    main()

"""Code that runs away: stopped by the sandbox's limits, said in words, the host unharmed."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from django.conf import settings

from engine.tools.code_interpreter.kernel import descendants
from engine.tools.code_interpreter.limits import Limits
from engine.tools.code_interpreter.sessions import InputFile, Sessions

pytestmark = pytest.mark.anyio


async def test_an_endless_loop_is_interrupted_and_the_session_goes_on(sessions: Sessions) -> None:
    await sessions.execute("thread_loop", "x = 41")
    result = await sessions.execute("thread_loop", "while True:\n    x = x")
    assert result.timed_out
    assert result.error == "The execution reached its time limit and was interrupted."
    assert "KeyboardInterrupt" in result.logs
    assert "still running after 5 s (the time limit)" in result.logs
    assert "variables and files are kept" in result.logs

    after = await sessions.execute("thread_loop", "print(x + 1)")
    assert after.logs == "42" and not after.reset


async def test_a_loop_that_ignores_interrupts_is_killed_and_the_session_restarted(
    sessions: Sessions,
) -> None:
    await sessions.execute("thread_stubborn", "x = 1")
    result = await sessions.execute(
        "thread_stubborn",
        "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass",
    )
    assert result.timed_out
    assert result.error == (
        "The Python session was ended because the code was still running after 5 s "
        "(the time limit) and did not stop when interrupted."
    )
    assert "The next execution starts a new session" in result.logs
    assert sessions.threads["thread_stubborn"].kernel is None

    after = await sessions.execute("thread_stubborn", "print('x' in globals())")
    assert after.reset
    assert after.logs.splitlines()[0].startswith(
        "Note: this is a new Python session; the previous one was ended because the code was "
        "still running after 5 s"
    )
    assert after.logs.splitlines()[-1] == "False"


async def test_100_mb_of_output_is_capped(sessions: Sessions) -> None:
    streamed: list[str] = []

    async def on_output(text: str) -> None:
        streamed.append(text)

    result = await sessions.execute(
        "thread_loud",
        "print('x' * 50_000_000)\nfor _ in range(50):\n    print('y' * 1_000_000)",
        on_output=on_output,
    )
    cap = sessions.limits.output_bytes
    kept, note = result.logs.rsplit("\n", 1)
    assert kept == "x" * cap
    assert note.startswith("Note: ") and note.endswith(" more bytes of output were not kept.")
    assert int(note.split()[1]) > 99_000_000
    assert "".join(streamed) == kept
    assert (await sessions.execute("thread_loud", "print('still here')")).logs == "still here"


async def test_a_16_gb_allocation_fails_with_memory_error(sessions: Sessions) -> None:
    result = await sessions.execute(
        "thread_hungry",
        "import numpy as np\n"
        "try:\n"
        "    big = bytearray(16 * 2**30)\n"
        "except MemoryError:\n"
        "    print('bytearray: MemoryError')\n"
        "big = np.ones(2 * 2**30)",
    )
    assert result.logs.startswith("bytearray: MemoryError")
    assert result.error is not None and result.error.startswith("MemoryError: Unable to allocate")
    assert (await sessions.execute("thread_hungry", "print(1)")).logs == "1"


@pytest.mark.parametrize("cgroups", [True, False], ids=["cgroups", "rlimits-only"])
async def test_memory_spread_over_processes_stays_capped(
    make_sessions: Callable[[Limits], Sessions], limits: Limits, cgroups: bool
) -> None:
    """Processes that each stay under the per-process cap, together far over the sandbox's."""
    # Room for the sandbox's own start (Python, numpy, matplotlib): at 256 MB, on a busy
    # machine, its cgroup could run out while mapping matplotlib's libraries, before the test.
    memory = 384 * 2**20
    sessions = make_sessions(
        # Room on the clock: twelve interpreters start on a loaded two-core machine.
        dataclasses.replace(
            limits, memory_bytes=memory, processes=8, cgroups=cgroups, timeout_seconds=30
        )
    )
    result = await sessions.execute(
        "thread_spread",
        "import subprocess, sys\n"
        "code = 'b = b\"x\" * (200 * 2**20); import time; time.sleep(3)'\n"
        "children = []\n"
        "try:\n"
        "    for _ in range(12):\n"
        "        children.append(subprocess.Popen([sys.executable, '-c', code]))\n"
        "except OSError as error:\n"
        "    print('refused:', type(error).__name__)\n"
        "print([child.wait() for child in children])",
    )
    # Each child holds 200 MB: the host never gives the sandbox 12 x 200 MB. With cgroups the
    # sandbox holds ~550 MB at most (memory, /mnt/data, /tmp) and the kernel's OOM killer ends
    # what goes over (children, or the session itself), or a child fails its own allocation;
    # with rlimits alone at most `processes` processes run and the rest are refused.
    if cgroups:
        # The children's exit codes, if the session lived to print them (under that pressure
        # the session's own Python may fail after them, e.g. loading its figure hook).
        printed = [line for line in result.logs.splitlines() if line.startswith("[")]
        codes = eval(printed[-1]) if printed else []  # noqa: S307
        assert (result.error is not None and "ran out of memory" in result.error) or any(
            code != 0 for code in codes
        ), result.logs
    else:
        assert result.logs.splitlines()[0] == "refused: BlockingIOError"


@pytest.mark.parametrize("cgroups", [True, False], ids=["cgroups", "rlimits-only"])
async def test_a_fork_bomb_is_contained(
    make_sessions: Callable[[Limits], Sessions], limits: Limits, cgroups: bool
) -> None:
    # Every forked copy formats its own traceback: that takes a while on a busy machine.
    sessions = make_sessions(
        dataclasses.replace(limits, processes=32, cgroups=cgroups, timeout_seconds=30)
    )
    await sessions.execute("thread_bomb", "x = 1")
    kernel = sessions.threads["thread_bomb"].kernel
    assert kernel is not None
    task = asyncio.ensure_future(
        sessions.execute(
            "thread_bomb", "import os, time\nwhile True:\n    os.fork()\n    time.sleep(0.01)"
        )
    )
    for _ in range(20):
        await asyncio.sleep(0.1)
        # The sandbox holds at most its limit, plus bubblewrap's two processes outside it.
        assert len(descendants(kernel.process.pid)) <= 32 + 2
        # The host forks on.
        assert subprocess.run(["true"], check=False).returncode == 0
    result = await task
    assert result.error is not None and result.error.startswith("BlockingIOError")
    # Each forked copy fails the same way and ends (the session's Python does not reap them:
    # their slots stay taken until the session ends); the session goes on with its state.
    for _ in range(50):
        if all(running(pid) is False for pid in descendants(kernel.process.pid)[3:]):
            break
        await asyncio.sleep(0.1)
    assert all(running(pid) is False for pid in descendants(kernel.process.pid)[3:])
    assert (await sessions.execute("thread_bomb", "print(x)")).logs == "1"


def running(pid: int) -> bool | None:
    """False for a zombie, None for a process that is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def test_cpu_time_is_capped_per_process(
    make_sessions: Callable[[Limits], Sessions], limits: Limits
) -> None:
    # Above what the session's Python spends starting; a child starts from zero.
    sessions = make_sessions(dataclasses.replace(limits, cpu_seconds=3, timeout_seconds=20))
    result = await sessions.execute(
        "thread_cpu",
        "import subprocess, sys\n"
        "print(subprocess.run([sys.executable, '-c', 'while True: pass']).returncode)",
    )
    assert result.logs == str(-signal.SIGXCPU)


async def test_a_kernel_killed_mid_run_is_reported_and_replaced(sessions: Sessions) -> None:
    await sessions.execute("thread_killed", "x = 1")
    kernel = sessions.threads["thread_killed"].kernel
    assert kernel is not None
    task = asyncio.ensure_future(
        sessions.execute(
            "thread_killed", "import time\nprint('working', flush=True)\ntime.sleep(30)"
        )
    )
    await asyncio.sleep(1)
    # The deepest process is the session's Python (under bubblewrap and its init).
    os.kill(descendants(kernel.process.pid)[-1], signal.SIGKILL)
    result = await task
    assert result.logs.startswith("working\n")
    assert (
        result.error
        == "The Python session was ended because the Python process was killed (SIGKILL)."
    )
    assert not result.timed_out

    after = await sessions.execute("thread_killed", "print('x' in globals())")
    assert after.reset
    assert (
        "the previous one was ended because the Python process was killed (SIGKILL)" in after.logs
    )
    assert after.logs.endswith("False")


async def test_a_kernel_that_kills_itself_is_reported(sessions: Sessions) -> None:
    result = await sessions.execute("thread_suicide", "import os\nos.kill(os.getpid(), 9)")
    assert (
        result.error
        == "The Python session was ended because the Python process was killed (SIGKILL)."
    )
    assert (await sessions.execute("thread_suicide", "print(1)")).reset


async def test_a_500_mb_csv_is_refused_with_a_clear_note(
    sessions: Sessions, tmp_path: Path
) -> None:
    big = tmp_path / "big.csv"
    with big.open("wb") as file:
        file.truncate(500 * 2**20)  # sparse: the test writes nothing to disk
    small = tmp_path / "small.csv"
    small.write_text("a\n1\n")
    result = await sessions.execute(
        "thread_big",
        "import os\nprint(sorted(os.listdir('/mnt/data')))",
        files=[InputFile("file-big", "big.csv", big), InputFile("file-small", "small.csv", small)],
    )
    assert result.logs.splitlines() == [
        "Note: big.csv was not copied to /mnt/data/big.csv: it is 500 MB and /mnt/data holds "
        "at most 32 MB.",
        "['small.csv']",
    ]
    # Said once; the file is not tried again on every execution.
    assert (await sessions.execute("thread_big", "print(1)", files=[])).logs == "1"


SERVER = """
import asyncio, os, sys
import django
django.setup()
from engine.tools.code_interpreter.kernel import descendants
from engine.tools.code_interpreter.sessions import Sessions

async def main():
    sessions = Sessions()
    task = asyncio.ensure_future(sessions.execute("thread_left", "while True:\\n    pass"))
    while not sessions.kernels():
        await asyncio.sleep(0.1)
    await asyncio.sleep(1)
    print(descendants(sessions.kernels()[0].process.pid), flush=True)
    await task

asyncio.run(main())
"""


def test_a_sandbox_is_gone_with_its_server() -> None:
    """A server that dies mid-execution (SIGKILL: no clean-up) takes its sandboxes along."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER], stdout=subprocess.PIPE, env=env, cwd=settings.BASE_DIR
    )
    with server, server.stdout as said:  # type: ignore[union-attr]
        pids = [int(pid) for pid in said.readline().strip(b"[]\n").split(b",")]
        assert len(pids) == 3 and all(running(pid) for pid in pids)
        server.kill()
    for _ in range(50):
        if not any(running(pid) for pid in pids):
            break
        time.sleep(0.1)
    assert not any(running(pid) for pid in pids)

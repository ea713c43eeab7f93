"""A thread's session: state that lasts, figures and files out, input files in, resets said."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.tools.code_interpreter.limits import Limits
from engine.tools.code_interpreter.sessions import (
    InputFile,
    Sessions,
    Unavailable,
    sandbox_names,
)

pytestmark = pytest.mark.anyio

PNG = b"\x89PNG\r\n\x1a\n"


async def test_state_persists_within_a_thread_and_not_across_threads(sessions: Sessions) -> None:
    first = await sessions.execute("thread_a", "x = 2**100\nx")
    assert first.logs == "1267650600228229401496703205376"
    assert first.error is None and not first.reset

    again = await sessions.execute("thread_a", "print(x + 1)")
    assert again.logs == "1267650600228229401496703205377"

    other = await sessions.execute("thread_b", "print(x)")
    assert other.error == "NameError: name 'x' is not defined"
    assert "NameError" in other.logs


async def test_a_chart_gives_png_bytes(sessions: Sessions) -> None:
    shown = await sessions.execute(
        "thread_chart",
        "import matplotlib.pyplot as plt\n"
        "x = list(range(-10, 11))\n"
        "plt.plot(x, [2 * v + 5 for v in x])\n"
        "plt.show()",
    )
    assert len(shown.images) == 1 and shown.images[0].startswith(PNG)

    # A figure left open at the end of an execution is shown too, as in Jupyter; then closed.
    left_open = await sessions.execute(
        "thread_chart", "fig, ax = plt.subplots()\nax.bar([1, 2], [3, 4]);"
    )
    assert len(left_open.images) == 1 and left_open.images[0].startswith(PNG)
    assert (await sessions.execute("thread_chart", "print(1)")).images == []


async def test_files_written_to_mnt_data_come_back(sessions: Sessions) -> None:
    result = await sessions.execute(
        "thread_files",
        "import pandas as pd, os\n"
        "pd.DataFrame({'a': [1, 2]}).to_csv('/mnt/data/out.csv', index=False)\n"
        "os.makedirs('/mnt/data/sub', exist_ok=True)\n"
        "open('/mnt/data/sub/note.txt', 'w').write('hi')\n"
        "open('/tmp/scratch.txt', 'w').write('not collected')",
    )
    assert {(f.path, f.data) for f in result.files} == {
        ("/mnt/data/out.csv", b"a\n1\n2\n"),
        ("/mnt/data/sub/note.txt", b"hi"),
    }
    # Unchanged files are not reported again; changed ones are.
    result = await sessions.execute(
        "thread_files", "open('/mnt/data/sub/note.txt', 'a').write('!')"
    )
    assert [(f.path, f.data) for f in result.files] == [("/mnt/data/sub/note.txt", b"hi!")]


async def test_staged_files_are_readable_under_their_names(
    sessions: Sessions, tmp_path: Path
) -> None:
    (tmp_path / "a").write_text("x,y\n1,2\n3,4\n")
    (tmp_path / "b").write_text("other")
    files = [
        InputFile("file-aaa", "data.csv", tmp_path / "a"),
        InputFile("file-bbb", "../../etc/data.csv", tmp_path / "b"),
    ]
    result = await sessions.execute(
        "thread_staged",
        "import pandas as pd, os\n"
        "print(pd.read_csv('/mnt/data/data.csv')['y'].sum())\n"
        "print(open('/mnt/data/data-file-bbb.csv').read())\n"
        "print(sorted(os.listdir('/mnt/data')))",
        files=files,
    )
    assert result.logs == "6\nother\n['data-file-bbb.csv', 'data.csv']"
    # Staged files are inputs, not outputs.
    assert result.files == []


def test_names_in_mnt_data_are_safe_and_stable() -> None:
    def file(file_id: str, name: str) -> InputFile:
        return InputFile(file_id, name, Path("/nonexistent"))

    first = [file("file-1", "report.xlsx"), file("file-2", "report.xlsx"), file("file-3", "")]
    assert sandbox_names(first) == {
        "file-1": "report.xlsx",
        "file-2": "report-file-2.xlsx",
        "file-3": "file-3",
    }
    # Adding files never renames the earlier ones.
    more = [*first, file("file-4", "C:\\Users\\me\\.hidden\x00name"), file("file-5", "..")]
    names = sandbox_names(more)
    assert {k: names[k] for k in ("file-1", "file-2", "file-3")} == sandbox_names(first)
    assert names["file-4"] == "hiddenname"
    assert names["file-5"] == "file-5"


async def test_output_streams_while_the_code_runs(sessions: Sessions) -> None:
    arrived: list[tuple[float, str]] = []

    async def on_output(text: str) -> None:
        arrived.append((time.monotonic(), text))

    result = await sessions.execute(
        "thread_stream",
        "import time\nprint('first', flush=True)\ntime.sleep(1.5)\nprint('second')",
        on_output=on_output,
    )
    ended = time.monotonic()
    assert result.logs == "first\nsecond"
    assert arrived[0][1] == "first\n"
    assert ended - arrived[0][0] > 1.0


async def test_an_idle_session_ends_and_the_next_one_says_state_was_reset(
    make_sessions: Callable[[Limits], Sessions], limits: Limits, tmp_path: Path
) -> None:
    sessions = make_sessions(dataclasses.replace(limits, idle_seconds=1))
    (tmp_path / "in").write_text("kept")
    files = [InputFile("file-in", "in.txt", tmp_path / "in")]
    await sessions.execute(
        "thread_idle", "x = 1\nopen('/mnt/data/made.txt', 'w').write('gone')", files
    )
    await asyncio.sleep(2)

    result = await sessions.execute(
        "thread_idle",
        "import os\nprint(sorted(os.listdir('/mnt/data')))\nprint('x' in globals())",
        files,
    )
    assert result.reset
    assert result.logs.splitlines()[0].startswith(
        "Note: this is a new Python session; the previous one was ended after 1 s without use."
    )
    assert result.logs.splitlines()[1:] == ["['in.txt']", "False"]


async def test_a_session_past_its_lifetime_is_replaced(
    make_sessions: Callable[[Limits], Sessions], limits: Limits
) -> None:
    # Long enough that a busy machine runs two executions well within it.
    sessions = make_sessions(dataclasses.replace(limits, lifetime_seconds=10))
    await sessions.execute("thread_old", "x = 1")
    kernel = sessions.threads["thread_old"].kernel
    assert kernel is not None
    assert not (await sessions.execute("thread_old", "print(x)")).reset
    await asyncio.sleep(kernel.started_at + 10.2 - time.monotonic())
    result = await sessions.execute("thread_old", "print('x' in globals())")
    assert result.reset and "reached its lifetime of 10 s" in result.logs
    assert result.logs.endswith("False")


async def test_state_expected_from_elsewhere_counts_as_a_reset(sessions: Sessions) -> None:
    result = await sessions.execute("thread_moved", "print(1)", after="call_elsewhere")
    assert result.reset
    assert "ran in another server process or before a restart" in result.logs


async def test_a_session_left_behind_by_code_run_elsewhere_is_replaced(
    sessions: Sessions,
) -> None:
    await sessions.execute("thread_away", "x = 1", call_id="call_1")
    # The thread's next call ran here: the session goes on.
    kept = await sessions.execute("thread_away", "print(x)", after="call_1", call_id="call_2")
    assert kept.logs == "1" and not kept.reset
    # call_3 ran in another process: this session missed it, so it is not resumed.
    behind = await sessions.execute(
        "thread_away", "print('x' in globals())", after="call_3", call_id="call_4"
    )
    assert behind.reset and behind.logs.endswith("False")
    assert "the thread's code ran in another server process since" in behind.logs


async def test_a_warm_session_serves_a_new_thread(
    make_sessions: Callable[[Limits], Sessions], limits: Limits
) -> None:
    sessions = make_sessions(dataclasses.replace(limits, warm_sessions=1))
    await sessions.execute("thread_one", "print(1)")
    for _ in range(100):
        if sessions.pool:
            break
        await asyncio.sleep(0.1)
    warm = sessions.pool[0]
    assert (await sessions.execute("thread_two", "print(2)")).logs == "2"
    assert sessions.threads["thread_two"].kernel is warm


async def test_without_a_sandbox_code_never_runs(limits: Limits, tmp_path: Path) -> None:
    missing = Sessions(dataclasses.replace(limits, env=tmp_path / "no-env"), mode="auto")
    assert not missing.status().available
    assert str(missing.status()).startswith(
        "unavailable: the sandbox's Python environment is missing"
    )
    with pytest.raises(Unavailable, match="environment is missing"):
        await missing.execute("thread_x", "open('/tmp/ran', 'w')")

    off = Sessions(limits, mode="off")
    assert str(off.status()) == "unavailable: turned off (THREADLINE_CODE_INTERPRETER=off)"
    with pytest.raises(Unavailable):
        await off.execute("thread_x", "print(1)")


async def test_a_run_stopped_while_code_runs_ends_the_session(sessions: Sessions) -> None:
    await sessions.execute("thread_stop", "x = 1")
    task = asyncio.ensure_future(sessions.execute("thread_stop", "import time\ntime.sleep(30)"))
    await asyncio.sleep(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The code does not run on into the next execution, which says the state is gone.
    result = await sessions.execute("thread_stop", "print('x' in globals())")
    assert result.reset and "its run was stopped while code ran" in result.logs
    assert result.logs.endswith("False")

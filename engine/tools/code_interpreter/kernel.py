"""One running sandbox and the runner inside it, seen from the server.

Everything the runner sends is untrusted (model-written code runs in the same process): frames
are read by one task into a queue, with every size checked against the limits before a byte is
read, paths confined to /mnt/data, images checked to be PNG. A runner that breaks the protocol
is killed like one that hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import posixpath
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.tools.code_interpreter import cgroups, sandbox
from engine.tools.code_interpreter.limits import Limits

log = logging.getLogger(__name__)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IMAGE_BYTES = 16 * 1024 * 1024
CHUNK = 1024 * 1024
DATA = "/mnt/data"

OnOutput = Callable[[str], Awaitable[None]]


class KernelError(Exception):
    """The sandbox did not start, or the runner broke the protocol."""


@dataclass(frozen=True)
class OutputFile:
    # Where the code wrote it, e.g. "/mnt/data/chart.csv".
    path: str
    data: bytes


@dataclass
class Outcome:
    """What one execution produced, before the session adds its own notes."""

    logs: list[str] = field(default_factory=list)
    logged_bytes: int = 0
    dropped_bytes: int = 0
    images: list[bytes] = field(default_factory=list)
    files: list[OutputFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # {"name": "ZeroDivisionError", "value": "division by zero"} from the code, if it raised.
    error: dict[str, str] | None = None
    timed_out: bool = False
    # How long the shell itself took to run the code, as the runner measured it.
    run_seconds: float = 0.0
    # Set when the runner is gone: why, in words.
    died: str | None = None


class Kernel:
    def __init__(
        self, started: sandbox.Started, cgroup: cgroups.Cgroup | None, limits: Limits
    ) -> None:
        self.started = started
        self.process = started.process
        self.cgroup = cgroup
        self.limits = limits
        self.started_at = time.monotonic()
        self.last_used = self.started_at
        self.frames: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.closed = False
        self.closing: asyncio.Task[None] | None = None
        self.reader = asyncio.get_running_loop().create_task(self.read_frames())

    @classmethod
    async def start(cls, limits: Limits) -> Kernel:
        cgroup = await asyncio.to_thread(make_cgroup, limits)
        try:
            started = await sandbox.spawn(limits, cgroup)
        except BaseException:
            if cgroup is not None:
                await asyncio.to_thread(cgroup.remove)
            raise
        kernel = cls(started, cgroup, limits)
        try:
            ready = await asyncio.wait_for(kernel.frames.get(), limits.start_seconds)
        except TimeoutError:
            ready = {"t": "eof"}
        except BaseException:
            # Cancelled (the server or the pool closing): no sandbox is left behind.
            await kernel.close()
            raise
        if ready.get("t") != "ready":
            stderr = await kernel.stderr_tail()
            await kernel.close()
            raise KernelError(f"the sandbox did not start: {stderr or 'no message'}")
        return kernel

    @property
    def alive(self) -> bool:
        return not self.closed and self.process.returncode is None

    async def read_frames(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        try:
            while True:
                line = await stdout.readline()
                if not line:
                    break
                header = json.loads(line)
                if not isinstance(header, dict):
                    raise KernelError("a frame that is not an object")
                size = header.get("size", 0)
                if not isinstance(size, int) or not 0 <= size <= self.payload_cap(header):
                    raise KernelError(f"a {header.get('t')!r} frame of {size!r} bytes")
                if size:
                    header["data"] = await stdout.readexactly(size)
                await self.frames.put(header)
        except (ValueError, KernelError, asyncio.IncompleteReadError) as error:
            # ValueError covers bad JSON and a line over the stream's limit.
            log.warning("Code interpreter runner broke the protocol (%s); killing it", error)
            self.kill()
        await self.frames.put({"t": "eof"})

    def payload_cap(self, header: dict[str, Any]) -> int:
        return {"image": IMAGE_BYTES, "file": self.limits.file_bytes}.get(str(header.get("t")), 0)

    def send(self, header: dict[str, Any], payload: bytes = b"") -> None:
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(json.dumps(header).encode() + b"\n" + payload)

    async def put(self, name: str, source: Path) -> str | None:
        """Copy a file into /mnt/data; an error in words, or None."""
        stdin = self.process.stdin
        assert stdin is not None
        with source.open("rb") as file:
            size = source.stat().st_size
            self.send({"op": "put", "name": name, "size": size})
            left = size
            while left:
                chunk = file.read(min(CHUNK, left))
                if not chunk:
                    chunk = b"\0" * min(CHUNK, left)  # the file shrank meanwhile
                stdin.write(chunk)
                left -= len(chunk)
                await stdin.drain()
        while True:
            frame = await self.frames.get()
            if frame.get("t") == "eof":
                raise KernelError("the sandbox ended while a file was copied in")
            if frame.get("t") == "put":
                error = frame.get("error")
                return str(error) if error else None
            # Anything else is late output of code that ran before (a thread, a subprocess).

    async def execute(self, code: str, on_output: OnOutput | None = None) -> Outcome:
        self.last_used = time.monotonic()
        outcome = Outcome()
        self.send({"op": "exec", "code": code})
        try:
            await asyncio.wait_for(self.collect(outcome, on_output), self.limits.timeout_seconds)
        except TimeoutError:
            outcome.timed_out = True
            await self.stop(outcome, on_output)
        self.last_used = time.monotonic()
        return outcome

    async def stop(self, outcome: Outcome, on_output: OnOutput | None) -> None:
        """Past the time limit: interrupt, and if that does not stop the code, kill."""
        seconds = f"{self.limits.timeout_seconds:g}"
        self.send({"op": "interrupt"})
        try:
            await asyncio.wait_for(
                self.collect(outcome, on_output), self.limits.interrupt_grace_seconds
            )
        except TimeoutError:
            await self.close()
            outcome.died = (
                f"the code was still running after {seconds} s (the time limit) and did not "
                "stop when interrupted"
            )
            return
        if outcome.died is None:
            outcome.notes.append(
                f"Execution interrupted: still running after {seconds} s (the time limit). "
                "The session goes on: variables and files are kept."
            )

    async def collect(self, outcome: Outcome, on_output: OnOutput | None) -> None:
        while True:
            frame = await self.frames.get()
            kind = frame.get("t")
            if kind == "out":
                await self.log(outcome, str(frame.get("text", "")), on_output)
            elif kind == "image":
                data = frame.get("data", b"")
                if data.startswith(PNG_SIGNATURE) and len(outcome.images) < 20:
                    outcome.images.append(data)
            elif kind == "file":
                self.add_file(outcome, frame)
            elif kind == "done":
                seconds = frame.get("seconds", 0.0)
                outcome.run_seconds = float(seconds) if isinstance(seconds, int | float) else 0.0
                dropped = frame.get("dropped", 0)
                outcome.dropped_bytes += dropped if isinstance(dropped, int) else 0
                error = frame.get("error")
                if isinstance(error, dict):
                    outcome.error = {
                        "name": str(error.get("name")),
                        "value": str(error.get("value")),
                    }
                return
            elif kind == "eof":
                outcome.died = await self.death()
                await self.close()
                return

    async def log(self, outcome: Outcome, text: str, on_output: OnOutput | None) -> None:
        data = text.encode()
        room = self.limits.output_bytes - outcome.logged_bytes
        if len(data) > room:
            outcome.dropped_bytes += len(data) - max(room, 0)
            text = data[: max(room, 0)].decode("utf-8", "ignore")
        if not text:
            return
        outcome.logged_bytes += len(text.encode())
        outcome.logs.append(text)
        if on_output is not None:
            await on_output(text)

    def add_file(self, outcome: Outcome, frame: dict[str, Any]) -> None:
        path = frame.get("path")
        if not isinstance(path, str) or not path or "\0" in path:
            return
        full = posixpath.normpath(posixpath.join(DATA, path))
        if not full.startswith(DATA + "/"):
            return
        skipped = frame.get("skipped")
        if skipped:
            outcome.notes.append(f"{full} {skipped}")
        elif len(outcome.files) < 20:
            outcome.files.append(OutputFile(full, frame.get("data", b"")))

    async def death(self) -> str:
        """Why the runner is gone, from its exit status and the cgroup."""
        try:
            status = await asyncio.wait_for(self.process.wait(), 5)
        except TimeoutError:
            return "the Python process stopped answering"
        if self.cgroup is not None and self.cgroup.out_of_memory():
            return "the Python process ran out of memory and was killed"
        # bwrap reports a command killed by a signal as 128 + the signal's number.
        number = -status if status < 0 else status - 128 if status > 128 else 0
        if number == signal.SIGXCPU:
            return "the Python process used up its CPU time and was stopped"
        if number:
            return f"the Python process was killed ({signal.Signals(number).name})"
        return f"the Python process exited (status {status})"

    async def stderr_tail(self) -> str:
        stderr = self.process.stderr
        if stderr is None:
            return ""
        with contextlib.suppress(TimeoutError):
            data = await asyncio.wait_for(stderr.read(8192), 5)
            return data.decode(errors="replace").strip()
        return ""

    def kill(self) -> None:
        self.started.kill()

    async def end(self) -> None:
        """Kill the sandbox's init, which takes every process in it along; bwrap then exits."""
        self.started.kill_init()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.process.wait(), 2)
            return
        self.started.kill()

    async def close(self) -> None:
        """End the sandbox and release its pipes; a caller cancelled meanwhile does not cut
        that short, and a second call waits for the first to finish."""
        self.closed = True
        if self.closing is None:
            self.closing = asyncio.get_running_loop().create_task(self.release())
        await asyncio.shield(self.closing)

    async def release(self) -> None:
        try:
            await self.end()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), 5)
            # The reader ends at the end of stdout; a runner that died mid-frame may not get
            # there, so it is stopped rather than left waiting on a closed pipe.
            await asyncio.wait({self.reader}, timeout=5)
        finally:
            self.reader.cancel()
            # Every path ends here, a cancelled one too: no pipe, transport or pidfd is left
            # for the garbage collector (which would warn, on a loop that may be gone).
            self.started.release()
            if self.cgroup is not None:
                await asyncio.to_thread(self.cgroup.remove)

    def memory(self) -> tuple[int, int]:
        """(RSS, PSS) in bytes of the sandbox's processes; PSS shares libraries fairly."""
        rss = pss = 0
        for pid in descendants(self.process.pid):
            try:
                rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
            except OSError:
                continue
            for line in rollup.splitlines():
                name, _, value = line.partition(":")
                if name in ("Rss", "Pss"):
                    kb = int(value.split()[0]) * 1024
                    rss += kb if name == "Rss" else 0
                    pss += kb if name == "Pss" else 0
        return rss, pss


def descendants(pid: int) -> list[int]:
    found, waiting = [], [pid]
    while waiting:
        current = waiting.pop()
        found.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                waiting += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def make_cgroup(limits: Limits) -> cgroups.Cgroup | None:
    if not limits.cgroups or not cgroups.available():
        return None
    cgroups.sweep()
    # A few over the sandbox's own limit: bwrap's processes are in the group too.
    return cgroups.Cgroup(limits.cgroup_memory_bytes, limits.processes + 4)

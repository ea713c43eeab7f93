"""Code interpreter sessions: a sandbox per thread, kept between executions while it is used.

A thread's variables and files live as long as its session: until it has been idle for
`idle_seconds` or alive for `lifetime_seconds`, until it is killed (time limit, out of memory,
a crash) or made room for, or until this server process ends. The next execution then gets a
new session with the thread's input files copied in again, and its log opens with a note that
says the state was reset and why, for the model to read. A few sessions wait started and empty
(`warm_sessions`), so a thread's first execution does not wait for a sandbox to start.

All of it runs on one event loop (the run worker's): create `Sessions` there and call it there.
"""

from __future__ import annotations

import asyncio
import logging
import posixpath
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from engine.tools.code_interpreter import sandbox
from engine.tools.code_interpreter.kernel import Kernel, KernelError, OnOutput, Outcome, OutputFile
from engine.tools.code_interpreter.limits import MB, Limits
from engine.tools.code_interpreter.sandbox import Availability

log = logging.getLogger(__name__)

DATA = "/mnt/data"
# Threads remembered without a session (their files and that they had state), oldest dropped.
MAX_REMEMBERED_THREADS = 10_000
MAX_NAME_BYTES = 200

__all__ = ["Execution", "InputFile", "OutputFile", "Sessions", "Unavailable", "sandbox_names"]


class Unavailable(Exception):
    """Code cannot run here; the message says why. Code never runs outside the sandbox."""


@dataclass(frozen=True)
class InputFile:
    file_id: str
    # The name the file was uploaded with; its name in /mnt/data is made from it.
    filename: str
    # Where its bytes are on this server.
    path: Path


@dataclass(frozen=True)
class Execution:
    # stdout, stderr and tracebacks as they came, capped, with notes (reset, time limit, files
    # not collected) on lines of their own: what the model reads.
    logs: str
    # PNG bytes of the figures shown or left open.
    images: list[bytes]
    # Files in /mnt/data that the execution created or changed.
    files: list[OutputFile]
    timed_out: bool = False
    # The code ran in a new session although the thread had one: earlier state is gone.
    reset: bool = False
    # Why the execution failed, in words ("ZeroDivisionError: division by zero"), or None.
    error: str | None = None
    # The time the code itself ran in the sandbox's shell (the rest is the sandbox's overhead).
    run_seconds: float = 0.0


@dataclass
class ThreadSession:
    files: list[InputFile] = field(default_factory=list)
    kernel: Kernel | None = None
    staged: set[str] = field(default_factory=set)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    had_kernel: bool = False
    # Why the thread's last session ended, for the note that opens the next one's first log.
    ended: str | None = None
    # The id of the last code call the session ran, to tell whether it is behind the thread.
    last_call: str | None = None


class Sessions:
    def __init__(self, limits: Limits | None = None, mode: str | None = None) -> None:
        self.limits = limits or Limits.from_settings()
        self.mode = mode or settings.CODE_INTERPRETER
        self.threads: OrderedDict[str, ThreadSession] = OrderedDict()
        self.pool: list[Kernel] = []
        # Every sandbox started and not yet closed, wherever it is (a thread, the pool, closing).
        self.every: set[Kernel] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.filling = False
        self.reaping = False
        self.closed = False

    def status(self) -> Availability:
        """Whether code can run, and if not why: for the admin and for runs. Blocks briefly the
        first time (a trial sandbox)."""
        if self.mode == "off":
            return Availability(False, "turned off (THREADLINE_CODE_INTERPRETER=off)")
        return sandbox.availability(self.limits)

    def kernels(self) -> list[Kernel]:
        return [state.kernel for state in self.threads.values() if state.kernel is not None]

    async def execute(
        self,
        thread_id: str,
        code: str,
        files: Sequence[InputFile] = (),
        on_output: OnOutput | None = None,
        after: str | None = None,
        call_id: str | None = None,
    ) -> Execution:
        """Run `code` in the thread's session, after copying new `files` into /mnt/data.

        `on_output` receives the log as it arrives. `after` names the thread's code call before
        this one, wherever it ran (`call_id` names this one): when this process's session did
        not run it, the thread's code ran elsewhere since (another process, before a restart),
        so the session here is behind: it ends, and the new one counts as a reset. Raises
        `Unavailable` when no sandbox can start.
        """
        status = await asyncio.to_thread(self.status)
        if not status.available:
            raise Unavailable(status.detail)
        self.start_background()
        state = self.thread(thread_id)
        async with state.lock:
            notes: list[str] = []
            reset = False
            if state.kernel is not None:
                why = self.expired(state.kernel)
                if why is None and after is not None and state.last_call != after:
                    why = "was left behind: the thread's code ran in another server process since"
                if why is not None:
                    await self.end(state, why)
            for file in files:
                if all(known.file_id != file.file_id for known in state.files):
                    state.files.append(file)
            if state.kernel is None:
                reset = state.had_kernel or after is not None
                if reset:
                    why = state.ended or "ran in another server process or before a restart"
                    notes.append(
                        f"Note: this is a new Python session; the previous one {why}. "
                        "Variables and imports are gone, and so are files the code wrote; "
                        "the input files are in /mnt/data again."
                    )
                try:
                    state.kernel = await self.claim()
                except (KernelError, OSError) as error:
                    return Execution(
                        "\n".join([*notes, f"The code did not run: {error}"]),
                        [],
                        [],
                        reset=reset,
                        error=str(error),
                    )
                state.had_kernel = True
                state.staged = set()
            kernel = state.kernel
            try:
                notes += await self.stage(state, kernel)
                outcome = await kernel.execute(code, on_output)
            except KernelError as error:
                outcome = Outcome(died=str(error))
            except asyncio.CancelledError:
                # The run stopped while code ran: the code must not run on into the next one.
                await self.end(state, "was ended because its run was stopped while code ran")
                raise
            state.last_call = call_id
            if outcome.died is not None:
                await self.end(state, f"was ended because {outcome.died}")
            return execution(outcome, notes, reset)

    def thread(self, thread_id: str) -> ThreadSession:
        state = self.threads.get(thread_id)
        if state is None:
            state = self.threads[thread_id] = ThreadSession()
            for old_id, old in list(self.threads.items()):
                if len(self.threads) <= MAX_REMEMBERED_THREADS:
                    break
                if old.kernel is None and not old.lock.locked():
                    del self.threads[old_id]
        self.threads.move_to_end(thread_id)
        return state

    async def stage(self, state: ThreadSession, kernel: Kernel) -> list[str]:
        """Copy the thread's files not yet in this session into /mnt/data; notes on failures."""
        notes = []
        names = sandbox_names(state.files)
        for file in state.files:
            if file.file_id in state.staged:
                continue
            state.staged.add(file.file_id)
            where = f"{DATA}/{names[file.file_id]}"
            try:
                size = file.path.stat().st_size
            except OSError:
                notes.append(f"Note: {file.filename} ({file.file_id}) is missing on the server.")
                continue
            if size > self.limits.disk_bytes:
                notes.append(
                    f"Note: {file.filename} was not copied to {where}: it is {size / MB:.0f} MB "
                    f"and /mnt/data holds at most {self.limits.disk_bytes / MB:.0f} MB."
                )
                continue
            error = await kernel.put(names[file.file_id], file.path)
            if error is not None:
                notes.append(f"Note: {file.filename} was not copied to {where}: {error}.")
        return notes

    async def claim(self) -> Kernel:
        """A started session for a thread: from the warm pool, or a new one."""
        while self.pool:
            kernel = self.pool.pop(0)
            if kernel.alive and self.expired(kernel) is None:
                self.fill_pool()
                return kernel
            await kernel.close()
            self.every.discard(kernel)
        await self.make_room()
        kernel = await Kernel.start(self.limits)
        self.every.add(kernel)
        self.fill_pool()
        return kernel

    async def make_room(self) -> None:
        """Past `sessions` sessions, the least recently used idle one ends."""
        while len(self.kernels()) >= self.limits.sessions:
            for state in self.threads.values():
                if state.kernel is not None and not state.lock.locked():
                    await self.end(state, "was ended to make room for other threads' sessions")
                    break
            else:
                raise KernelError(
                    f"all {self.limits.sessions} code interpreter sessions of this server are "
                    "busy; try again in a moment"
                )

    def expired(self, kernel: Kernel) -> str | None:
        now = time.monotonic()
        if not kernel.alive:
            return "had ended"
        if now - kernel.last_used > self.limits.idle_seconds:
            return f"was ended after {duration(self.limits.idle_seconds)} without use"
        if now - kernel.started_at > self.limits.lifetime_seconds:
            return f"reached its lifetime of {duration(self.limits.lifetime_seconds)}"
        return None

    async def end(self, state: ThreadSession, why: str) -> None:
        kernel, state.kernel = state.kernel, None
        state.ended = why
        if kernel is not None:
            await kernel.close()
            self.every.discard(kernel)

    async def close(self, thread_id: str) -> None:
        """End a thread's session and forget the thread (it was deleted)."""
        state = self.threads.pop(thread_id, None)
        if state is not None:
            async with state.lock:
                await self.end(state, "was closed")

    async def aclose(self) -> None:
        self.closed = True
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            # A cancelled start still closes what it started (up to ~15 s on a busy machine);
            # bounded, so that a stuck one cannot keep the sessions below from ending.
            await asyncio.wait(tasks, timeout=60)
        for state in self.threads.values():
            await self.end(state, "was closed")
        self.pool.clear()
        for kernel in list(self.every):
            await kernel.close()
        self.every.clear()

    # --- Background work on the loop: the warm pool and the expiry of idle sessions -----------

    def start_background(self) -> None:
        if not self.reaping and not self.closed:
            self.reaping = True
            self.spawn(self.reap_forever())
        self.fill_pool()

    def spawn(self, work: object) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(work)  # type: ignore[arg-type]
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def fill_pool(self) -> None:
        if not self.filling and not self.closed and len(self.pool) < self.limits.warm_sessions:
            self.filling = True
            self.spawn(self.fill())

    async def fill(self) -> None:
        try:
            while len(self.pool) < self.limits.warm_sessions and not self.closed:
                kernel = await Kernel.start(self.limits)
                self.every.add(kernel)
                self.pool.append(kernel)
        except (KernelError, OSError):
            # The next execution starts its own session and reports what fails.
            log.warning("A warm code interpreter session did not start", exc_info=True)
        finally:
            self.filling = False

    async def reap_forever(self) -> None:
        every = max(0.2, min(30.0, self.limits.idle_seconds / 4, self.limits.lifetime_seconds / 4))
        while True:
            await asyncio.sleep(every)
            for state in list(self.threads.values()):
                if state.kernel is None or state.lock.locked():
                    continue
                why = self.expired(state.kernel)
                if why is not None:
                    await self.end(state, why)
            for kernel in list(self.pool):
                if (
                    not kernel.alive
                    or time.monotonic() - kernel.started_at > self.limits.lifetime_seconds
                ):
                    self.pool.remove(kernel)
                    await kernel.close()
                    self.every.discard(kernel)
            self.fill_pool()


def execution(outcome: Outcome, notes: list[str], reset: bool) -> Execution:
    lines = list(notes)
    logs = "".join(outcome.logs)
    if logs:
        lines.append(logs.rstrip("\n"))
    if outcome.dropped_bytes:
        lines.append(f"Note: {outcome.dropped_bytes} more bytes of output were not kept.")
    lines += [f"Note: {note}" for note in outcome.notes]
    error = None
    if outcome.died is not None:
        lines.append(
            f"Note: the Python session was ended because {outcome.died}. The next execution "
            "starts a new session: variables are gone; input files are copied in again."
        )
        error = f"The Python session was ended because {outcome.died}."
    elif outcome.timed_out:
        error = "The execution reached its time limit and was interrupted."
    elif outcome.error is not None:
        name, value = outcome.error["name"], outcome.error["value"]
        error = f"{name}: {value}" if value else name
    return Execution(
        logs="\n".join(lines),
        images=outcome.images,
        files=outcome.files,
        timed_out=outcome.timed_out,
        reset=reset,
        error=error,
        run_seconds=outcome.run_seconds,
    )


def sandbox_names(files: Sequence[InputFile]) -> dict[str, str]:
    """Each input file's name in /mnt/data: its own file name, made safe; when an earlier file
    has that name, the file id goes before the extension (`data-file-abc123.csv`). First come,
    first named, so adding files never renames the earlier ones."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    for file in files:
        name = safe_name(file.filename) or file.file_id
        if name in taken:
            stem, dot, suffix = name.rpartition(".")
            name = f"{stem}-{file.file_id}.{suffix}" if dot and stem else f"{name}-{file.file_id}"
        names[file.file_id] = name
        taken.add(name)
    return names


def safe_name(filename: str) -> str:
    name = posixpath.basename(filename.replace("\\", "/"))
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip().lstrip(".")
    while len(name.encode()) > MAX_NAME_BYTES:
        stem, dot, suffix = name.rpartition(".")
        name = f"{stem[:-1]}.{suffix}" if dot and stem and len(suffix) < 16 else name[:-1]
    return name


def duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"

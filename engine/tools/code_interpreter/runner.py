"""The program inside the sandbox: an IPython shell that executes what the server sends.

It runs under the sandbox's own Python (.venv-sandbox), never the server's, and imports nothing
from Threadline. Model-written code runs in this very process, so nothing here is trusted by the
server: it checks every size and path again (kernel.py).

Frames go both ways over the process's original stdin and stdout: a JSON header line, then
`size` raw bytes when the header has a size. Server to runner: `put` (a file for /mnt/data),
`exec` (code), `interrupt`. Runner to server: `ready`, `put` (stored or an error), `out` (output
as it arrives), `image` (PNG bytes), `file` (a file created or changed in /mnt/data), `done`.
The code's stdout and stderr, its subprocesses' included, share one pipe, so the log keeps their
order; a marker written after each execution tells where its output ends.
"""

from __future__ import annotations

import base64
import codecs
import contextlib
import io
import json
import os
import queue
import resource
import secrets
import signal
import stat
import sys
import threading
import time
from typing import Any

# The sandbox's environment has IPython; the server never imports this module.
from IPython.core.displayhook import DisplayHook
from IPython.core.displaypub import DisplayPublisher
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

DATA = "/mnt/data"
CHUNK = 64 * 1024
# Bounds on collecting /mnt/data, so a million tiny files cannot stall an execution.
MAX_WALK_ENTRIES = 10_000
MAX_FILES = 20
MAX_IMAGES = 20


class Channel:
    """The frames to and from the server, on the descriptors saved before fd 0-2 were replaced."""

    def __init__(self, reader: int, writer: int) -> None:
        self.reader = io.open(reader, "rb", buffering=CHUNK)  # noqa: SIM115, UP020 (for good)
        self.writer = writer
        self.lock = threading.Lock()
        self.owner = os.getpid()

    def send(self, header: dict[str, Any], payload: bytes = b"") -> None:
        if os.getpid() != self.owner:
            return  # a process the code forked speaks through its output, never in frames
        if payload:
            header = {**header, "size": len(payload)}
        data = json.dumps(header).encode() + b"\n" + payload
        with self.lock:
            view = memoryview(data)
            while view:
                view = view[os.write(self.writer, view) :]

    def receive(self) -> dict[str, Any] | None:
        line = self.reader.readline()
        return json.loads(line) if line else None


class Output:
    """Forwards what the code writes to fd 1 and 2, up to `cap` bytes per execution."""

    def __init__(self, channel: Channel, cap: int) -> None:
        self.channel = channel
        self.cap = cap
        # Written through the pipe itself at each execution's start and end: what the pipe
        # held before the start marker (a forked copy's last words, still unread) is dropped.
        token = secrets.token_hex(8).encode()
        self.start_marker = b"\0threadline-" + token + b"-start\0"
        self.end_marker = b"\0threadline-" + token + b"-end--\0"  # as long as the start's
        self.markers = (self.start_marker, self.end_marker)
        read, write = os.pipe()
        os.dup2(write, 1)
        os.dup2(write, 2)
        # The end marker goes through a descriptor of our own, in case the code closes fd 1.
        self.write = write
        self.read = read
        self.sent = 0
        self.dropped = 0
        # Output that comes between executions (a forked copy, a thread still printing) belongs
        # to none of them: it is dropped rather than shown in the next one's log.
        self.active = False
        self.started = threading.Event()
        self.ended = threading.Event()
        threading.Thread(target=self.pump, name="output", daemon=True).start()

    def start(self) -> None:
        self.sent = self.dropped = 0
        self.ended.clear()
        self.started.clear()
        os.write(self.write, self.start_marker)
        self.started.wait()

    def end(self) -> int:
        """Wait until everything written so far is forwarded; the number of bytes dropped."""
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os.write(self.write, self.end_marker)
        self.ended.wait()
        return self.dropped

    def pump(self) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        pending = b""
        while True:
            chunk = os.read(self.read, CHUNK)
            if not chunk:
                return
            pending += chunk
            while (found := self.first_marker(pending)) is not None:
                at, marker = found
                self.forward(decoder.decode(pending[:at], final=True))
                pending = pending[at + len(marker) :]
                self.active = marker == self.start_marker
                (self.started if self.active else self.ended).set()
            # Hold back only a tail that may begin a marker split across two reads.
            start = pending.rfind(b"\0", max(0, len(pending) - len(self.end_marker)))
            tail = pending[start:]
            if start < 0 or not any(m.startswith(tail) for m in self.markers):
                start = len(pending)
            text, pending = pending[:start], pending[start:]
            self.forward(decoder.decode(text))

    def first_marker(self, pending: bytes) -> tuple[int, bytes] | None:
        """Where the first start or end marker in `pending` is, and which one."""
        found = [(at, m) for m in self.markers if (at := pending.find(m)) >= 0]
        return min(found) if found else None

    def forward(self, text: str) -> None:
        if not text or not self.active:
            return
        size = len(text.encode())
        room = self.cap - self.sent
        if room <= 0:
            self.dropped += size
            return
        if size > room:
            kept = text.encode()[:room].decode("utf-8", "ignore")
            self.dropped += size - len(kept.encode())
            text = kept
        self.sent += len(text.encode())
        self.channel.send({"t": "out", "text": text})


class Runner:
    output: Output

    def __init__(self, channel: Channel, collect_bytes: int) -> None:
        self.channel = channel
        self.collect_bytes = collect_bytes
        self.executing = False
        self.images = 0
        self.jobs: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.shell = make_shell(self)

    def serve(self) -> None:
        threading.Thread(target=self.listen, name="control", daemon=True).start()
        self.channel.send({"t": "ready"})
        while (job := self.jobs.get()) is not None:
            self.execute(job["code"])

    def listen(self) -> None:
        """Read frames while code runs, so an interrupt arrives in the middle of an execution."""
        while (frame := self.channel.receive()) is not None:
            if frame["op"] == "interrupt":
                if self.executing:
                    os.kill(os.getpid(), signal.SIGINT)
            elif frame["op"] == "put":
                self.put(frame["name"], frame["size"])
            else:
                self.jobs.put(frame)
        # The server is gone (or closed this session): so is this process, mid-execution or not.
        os._exit(0)

    def put(self, name: str, size: int) -> None:
        error = None
        path = os.path.join(DATA, name)
        try:
            if "/" in name or name in ("", ".", ".."):
                raise OSError(f"not a plain file name: {name!r}")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        except OSError as failure:
            fd, error = -1, str(failure)
        left = size
        while left:
            chunk = self.channel.reader.read(min(left, CHUNK))
            if not chunk:
                raise SystemExit("the server went away while sending a file")
            left -= len(chunk)
            if fd >= 0 and error is None:
                try:
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
                except OSError as failure:
                    error = failure.strerror or str(failure)
        if fd >= 0:
            os.close(fd)
            if error is not None:
                os.unlink(path)
        self.channel.send({"t": "put", "name": name, "error": error})

    def execute(self, code: str) -> None:
        before = snapshot()
        self.output.start()
        self.images = 0
        self.executing = True
        started = time.perf_counter()
        try:
            result = self.shell.run_cell(code, store_history=True)
            error = result.error_before_exec or result.error_in_exec
        except KeyboardInterrupt as interrupted:
            # Outside the code itself (IPython's own bookkeeping): still just an interruption.
            error = interrupted
        finally:
            self.executing = False
        seconds = time.perf_counter() - started
        if os.getpid() != self.channel.owner:
            # A child the code forked (os.fork()) that ran on to the end of the cell.
            os._exit(0)
        dropped = self.output.end()
        for path, data, skipped in changed_files(before, snapshot(), self.collect_bytes):
            if skipped:
                self.channel.send({"t": "file", "path": path, "skipped": skipped})
            else:
                self.channel.send({"t": "file", "path": path}, data)
        self.channel.send(
            {
                "t": "done",
                "dropped": dropped,
                "seconds": seconds,
                "error": None
                if error is None
                else {"name": type(error).__name__, "value": str(error)},
            }
        )

    def on_interrupt(self, signum: int, frame: object) -> None:
        # Only code in progress is interrupted, never the runner's own work around it.
        if self.executing:
            raise KeyboardInterrupt

    def show(self, data: dict[str, Any]) -> None:
        """What display(), plt.show() and a cell's last expression produce."""
        png = data.get("image/png")
        if png is not None:
            self.images += 1
            if self.images <= MAX_IMAGES:
                self.channel.send(
                    {"t": "image"}, png if isinstance(png, bytes) else base64.b64decode(png)
                )
            return
        text = data.get("text/plain")
        if text is not None:
            print(text)


class Publisher(DisplayPublisher):  # type: ignore[misc]
    """display() and the inline backend's figures."""

    def publish(self, data: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        self.shell.runner.show(data)


class Hook(DisplayHook):  # type: ignore[misc]
    """A cell's last expression, shown as in a notebook, without the "Out[n]:" prompt."""

    def write_output_prompt(self) -> None:
        pass

    def write_format_data(self, format_dict: dict[str, Any], md_dict: Any = None) -> None:
        self.shell.runner.show(format_dict)


class Shell(InteractiveShell):  # type: ignore[misc]
    runner: Runner

    def enable_gui(self, gui: str | None = None) -> None:
        pass  # the inline backend needs no event loop; the base class refuses every gui


def make_shell(runner: Runner) -> Shell:
    config = Config()
    config.HistoryManager.enabled = False
    shell: Shell = Shell.instance(
        config=config, colors="nocolor", display_pub_class=Publisher, displayhook_class=Hook
    )
    shell.runner = runner
    with contextlib.suppress(ImportError):
        # Figures shown or left open become PNG images, as in Jupyter.
        shell.enable_matplotlib("inline")
    return shell


def snapshot() -> dict[str, tuple[int, int, int, int]]:
    """Regular files under /mnt/data, never following a symlink."""
    seen: dict[str, tuple[int, int, int, int]] = {}
    folders = [DATA]
    entries = 0
    while folders:
        try:
            listing = os.scandir(folders.pop())
        except OSError:
            continue
        with listing:
            for entry in listing:
                entries += 1
                if entries > MAX_WALK_ENTRIES:
                    return seen
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISDIR(info.st_mode):
                    folders.append(entry.path)
                elif stat.S_ISREG(info.st_mode):
                    key = (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
                    seen[os.path.relpath(entry.path, DATA)] = key
    return seen


def changed_files(
    before: dict[str, tuple[int, int, int, int]],
    after: dict[str, tuple[int, int, int, int]],
    cap: int,
) -> list[tuple[str, bytes, str]]:
    found: list[tuple[str, bytes, str]] = []
    for path in sorted(name for name, key in after.items() if before.get(name) != key):
        if len(found) == MAX_FILES:
            found.append((path, b"", f"not collected: more than {MAX_FILES} files changed"))
            break
        found.append(read_file(path, cap))
    return found


def read_file(path: str, cap: int) -> tuple[str, bytes, str]:
    try:
        fd = os.open(os.path.join(DATA, path), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as error:
        return path, b"", f"not collected: {error.strerror}"
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return path, b"", "not collected: not a regular file"
        if info.st_size > cap:
            return path, b"", f"not collected: {info.st_size} bytes, over the {cap}-byte limit"
        data = file.read(cap + 1)
    if len(data) > cap:
        return path, b"", f"not collected: over the {cap}-byte limit"
    return path, data, ""


def set_limits(limits: dict[str, int]) -> None:
    """Hard limits, set inside the sandbox's own user namespace, where the process count covers
    this sandbox alone. Nothing in here can raise them again."""
    for name, value in (
        ("RLIMIT_AS", limits["memory_bytes"]),
        ("RLIMIT_NPROC", limits["processes"]),
        ("RLIMIT_FSIZE", limits["file_bytes"]),
        ("RLIMIT_NOFILE", limits["open_files"]),
        ("RLIMIT_CORE", 0),
    ):
        resource.setrlimit(getattr(resource, name), (value, value))
    # SIGXCPU at the limit says why a process ended; SIGKILL follows a second later regardless.
    cpu = limits["cpu_seconds"]
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))


def main() -> None:
    limits = json.loads(sys.argv[1])
    set_limits(limits)
    # Keep the server's channel on fresh descriptors; the code gets an empty stdin and the pipe.
    channel = Channel(os.dup(0), os.dup(1))
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    runner = Runner(channel, limits["collect_bytes"])
    for module in ("numpy", "pandas", "matplotlib.pyplot"):
        # Loaded now, so the first execution that imports them does not wait.
        with contextlib.suppress(ImportError):
            __import__(module)
    # Until here a failure reaches the server's log through bwrap's stderr; from here on what
    # goes to fd 1 and 2 is the code's output.
    runner.output = Output(channel, limits["output_bytes"])
    # The process's standard streams for as long as it lives: never closed.
    sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stdout = sys.stderr = open(  # noqa: SIM115
        1, "w", encoding="utf-8", errors="backslashreplace", closefd=False, buffering=1
    )
    signal.signal(signal.SIGINT, runner.on_interrupt)
    runner.serve()


if __name__ == "__main__":
    main()

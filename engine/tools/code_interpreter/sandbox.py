"""Starting the sandbox: bubblewrap (Debian's `bwrap`) around the runner, and whether it can start.

What the code sees: its own user, PID, network, IPC, UTS and cgroup namespaces, so no network at
all (only a loopback of its own) and none of the host's processes; /usr read-only (Debian's
Python and the libraries it loads), a few files of /etc, and the interpreter environment at
/opt/python; /mnt/data, /tmp and /dev/shm as size-capped tmpfs that vanish with the session; and
nothing else: not the project, not var/, not a home directory, not another session. The root is
read-only, the environment empty but for PATH, HOME and MPLBACKEND, the user 1000 (`sandbox`).

When this server runs as root, bubblewrap itself runs as `nobody`: the sandbox's user is then an
unprivileged user on the host too, so the kernel enforces its process limit (it never does for
root), and an escape would land with no rights. A server run by a normal user runs it as itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.tools.code_interpreter import cgroups
from engine.tools.code_interpreter.limits import Limits

RUNNER = Path(__file__).with_name("runner.py")
# Inside the sandbox.
PYTHON = "/opt/python/bin/python"
RUNNER_PATH = "/opt/threadline/runner.py"
SANDBOX_UID = 1000
# bubblewrap's host user when this server runs as root.
NOBODY = 65534
# The protocol's frames carry at most this much besides a file's or an image's bytes.
FRAME_LINE_BYTES = 4 * 1024 * 1024
# Files of /etc that programs in the sandbox read; none holds a secret.
ETC_FILES = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/fonts",
    "/etc/localtime",
    "/etc/mime.types",
)
PASSWD = "root:x:0:0::/:/usr/sbin/nologin\nsandbox:x:1000:1000::/tmp:/bin/sh\n"
GROUP = "root:x:0:\nsandbox:x:1000:\n"


@dataclass(frozen=True)
class Availability:
    available: bool
    # Why not, in words an admin can act on; or, when available, how the limits are enforced.
    detail: str

    def __str__(self) -> str:
        return f"available ({self.detail})" if self.available else f"unavailable: {self.detail}"


def bwrap_path() -> str | None:
    return shutil.which("bwrap", path="/usr/bin:/bin:/usr/local/bin")


_checked: dict[Path, Availability] = {}
_check_lock = threading.Lock()


def availability(limits: Limits) -> Availability:
    """Whether a sandbox can start here: checked once per process with a trial sandbox, then
    remembered while it holds (a failure is checked again, so a fix needs no restart)."""
    with _check_lock:
        known = _checked.get(limits.env)
        if known is not None and known.available:
            return known
        _checked[limits.env] = found = _check(limits)
        return found


def _check(limits: Limits) -> Availability:
    bwrap = bwrap_path()
    if bwrap is None:
        return Availability(
            False, "bubblewrap is not installed (Debian package `bubblewrap`, command `bwrap`)"
        )
    if not (limits.env / "bin" / "python").exists():
        return Availability(
            False,
            f"the sandbox's Python environment is missing at {limits.env}: "
            "run `make .venv-sandbox/.installed`",
        )
    with Launch(limits, bwrap, ["-I", "-c", "import IPython, numpy"], watched=False) as launch:
        trial = subprocess.run(
            launch.argv,
            pass_fds=launch.fds,
            env={},
            cwd="/",
            start_new_session=True,
            user=launch.user,
            group=launch.user,
            extra_groups=launch.extra_groups,
            capture_output=True,
            timeout=30,
            check=False,
        )
    if trial.returncode != 0:
        said = trial.stderr.decode(errors="replace").strip().splitlines()
        why = said[-1] if said else f"exit status {trial.returncode}"
        return Availability(False, f"the sandbox cannot start here ({why})")
    end_orphans()
    if cgroups.available():
        return Availability(True, "bubblewrap; limits by rlimits and cgroup v1 memory and pids")
    return Availability(
        True,
        "bubblewrap; limits by rlimits only (no writable cgroup v1 memory and pids: "
        "memory is capped per process, not per sandbox)",
    )


def end_orphans() -> None:
    """Kill sandboxes left by a server that died while one was starting.

    A sandbox's init that had not yet armed --die-with-parent when bwrap died (with its server)
    waits forever, adopted by PID 1. Running sandboxes never have PID 1 as parent: their bwrap
    is alive, so this touches no other server's sandbox.
    """
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if stat[stat.rindex(")") + 2 :].split()[1] != "1" or "(bwrap)" not in stat:
                continue
            if RUNNER_PATH.encode() in (entry / "cmdline").read_bytes().split(b"\0"):
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue


class Launch:
    """The bwrap command line for one sandbox and the descriptors it reads; closed after spawn."""

    def __init__(self, limits: Limits, bwrap: str, python_args: list[str], watched: bool) -> None:
        self.fds: list[int] = []
        self.env_fd = self.keep(os.open(limits.env, os.O_PATH | os.O_DIRECTORY))
        self.block_write = -1
        self.info_read = -1
        argv = [
            bwrap,
            "--unshare-all",
            "--unshare-user",
            "--disable-userns",
            "--die-with-parent",
            "--new-session",
            "--uid", str(SANDBOX_UID),
            "--gid", str(SANDBOX_UID),
            "--hostname", "sandbox",
            "--ro-bind", "/usr", "/usr",
            *merged_usr_links(),
        ]  # fmt: skip
        for path in ETC_FILES:
            argv += ["--ro-bind-try", path, path]
        argv += [
            "--ro-bind-data", self.data(PASSWD), "/etc/passwd",
            "--ro-bind-data", self.data(GROUP), "/etc/group",
            "--proc", "/proc",
            "--dev", "/dev",
            "--perms", "1777", "--size", str(limits.tmp_bytes), "--tmpfs", "/tmp",
            "--perms", "1777", "--size", str(limits.tmp_bytes), "--tmpfs", "/dev/shm",
            "--perms", "0755", "--size", str(limits.disk_bytes), "--tmpfs", "/mnt/data",
            "--ro-bind-fd", str(self.env_fd), "/opt/python",
            "--ro-bind-data", self.data(RUNNER.read_text()), RUNNER_PATH,
            "--remount-ro", "/",
            "--clearenv",
            "--setenv", "PATH", "/opt/python/bin:/usr/bin:/bin",
            "--setenv", "HOME", "/tmp",
            "--setenv", "MPLBACKEND", "agg",
            "--setenv", "LANG", "C.UTF-8",
            "--chdir", "/mnt/data",
        ]  # fmt: skip
        if watched:
            # bwrap names its first process (the sandbox's init), then waits for a go: until
            # the server holds that process (and has put it in its cgroup).
            self.info_read, info_write = os.pipe()
            block_read, self.block_write = os.pipe()
            self.keep(info_write)
            self.keep(block_read)
            argv += ["--info-fd", str(info_write), "--block-fd", str(block_read)]
        self.argv = [*argv, PYTHON, *python_args]

    def keep(self, fd: int) -> int:
        self.fds.append(fd)
        return fd

    def data(self, text: str) -> str:
        fd = os.memfd_create("sandbox-file")
        os.write(fd, text.encode())
        os.lseek(fd, 0, os.SEEK_SET)
        return str(self.keep(fd))

    @property
    def user(self) -> int | None:
        return NOBODY if os.geteuid() == 0 else None

    @property
    def extra_groups(self) -> list[int] | None:
        return [] if self.user is not None else None

    def close_inherited(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []

    def __enter__(self) -> Launch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close_inherited()
        for fd in (self.info_read, self.block_write):
            if fd >= 0:
                os.close(fd)
        self.info_read = self.block_write = -1


def merged_usr_links() -> list[str]:
    """/bin, /lib… as the host has them: links into /usr on Debian, or directories elsewhere."""
    argv: list[str] = []
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / name
        if path.is_symlink():
            argv += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            argv += ["--ro-bind", str(path), str(path)]
    return argv


@dataclass
class Started:
    # bwrap itself, whose stdin and stdout carry the runner's frames.
    process: asyncio.subprocess.Process
    # The transport behind `process`'s pipes: asyncio closes it by itself only once bwrap has
    # exited and both its stdout and stderr have been read to the end, which a killed sandbox
    # may never see (a reader gone, a buffer full). `release` closes it whatever happened.
    transport: asyncio.SubprocessTransport
    # A pidfd of the sandbox's init: killing it ends every process of the sandbox (its PID
    # namespace), whatever happened to bwrap; a pidfd never hits a reused PID.
    init: int

    def kill_init(self) -> None:
        if self.init >= 0:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self.init, signal.SIGKILL)

    def kill(self) -> None:
        self.kill_init()
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()

    def release(self) -> None:
        """Close every handle of the sandbox: its pipes, bwrap's transport, the init's pidfd.
        Kills bwrap if it still runs; idempotent."""
        self.transport.close()
        if self.init >= 0:
            os.close(self.init)
            self.init = -1


async def spawn(limits: Limits, cgroup: cgroups.Cgroup | None) -> Started:
    """Start the runner in a new sandbox."""
    bwrap = bwrap_path()
    if bwrap is None:
        raise OSError("bubblewrap is not installed")
    args = ["-I", RUNNER_PATH, json.dumps(limits.for_runner())]
    with Launch(limits, bwrap, args, watched=True) as launch:
        loop = asyncio.get_running_loop()
        # What asyncio.create_subprocess_exec does, keeping the transport to close it.
        transport, protocol = await loop.subprocess_exec(
            lambda: asyncio.subprocess.SubprocessStreamProtocol(limit=FRAME_LINE_BYTES, loop=loop),
            *launch.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            pass_fds=launch.fds,
            # Nothing of the server's environment reaches bubblewrap, whose first process keeps
            # it in /proc/1/environ for the sandbox to read.
            env={},
            cwd="/",
            # Apart from the server's process group: a Ctrl-C in its terminal is for the server.
            start_new_session=True,
            user=launch.user,
            group=launch.user,
            extra_groups=launch.extra_groups,
        )
        process = asyncio.subprocess.Process(transport, protocol, loop)
        launch.close_inherited()
        init = -1
        try:
            info = await asyncio.wait_for(read_json(launch.info_read), limits.start_seconds)
            # The init waits for our go, so it is alive while we take hold of it.
            init = os.pidfd_open(int(info["child-pid"]))
            if cgroup is not None:
                cgroup.add(int(info["child-pid"]))
            os.write(launch.block_write, b"go")
        except (OSError, ValueError, KeyError, TimeoutError):
            # Never a sandbox outside its cgroup: bwrap's stderr says why it did not start.
            process.kill()
        except BaseException:
            # Cancelled: no sandbox is left behind, and none of its handles.
            started = Started(process, transport, init)
            started.kill()
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(process.wait()), 5)
            finally:
                started.release()
            raise
    return Started(process, transport, init)


def wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def read_json(fd: int) -> dict[str, Any]:
    """One JSON object from a pipe, without blocking the loop."""
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    data = b""
    while True:
        readable = loop.create_future()
        loop.add_reader(fd, wake, readable)
        try:
            await readable
        finally:
            loop.remove_reader(fd)
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            continue
        if not chunk:
            raise ValueError("bwrap exited before it started the sandbox")
        data += chunk
        try:
            found = json.loads(data)
        except ValueError:
            continue
        if not isinstance(found, dict):
            raise ValueError("bwrap wrote no JSON object")
        return found

"""Memory and process caps for a whole sandbox, through cgroup v1, where this process may.

rlimits (set by the runner) cap each process; a cgroup caps the sandbox's processes together,
tmpfs pages included, so a fork bomb that allocates cannot take the host's memory. Groups are
created under this server's own cgroups (never moving anything out of them), which needs write
access to the cgroup v1 `memory` and `pids` hierarchies: root, on a host that mounts them
writable. Elsewhere (a server run by a normal user, cgroup v2 only) the rlimits stand alone and
`available()` says so.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
CONTROLLERS = ("memory", "pids")
PREFIX = "threadline-sandbox-"
_serial = itertools.count(1)


def own_group(controller: str) -> Path | None:
    """Where this process sits in the v1 hierarchy of `controller`."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, names, path = line.split(":", 2)
        if controller in names.split(","):
            return ROOT / controller / path.lstrip("/")
    return None


def available() -> bool:
    for controller in CONTROLLERS:
        parent = own_group(controller)
        if parent is None or not os.access(parent, os.W_OK):
            return False
    return True


def sweep() -> None:
    """Remove the empty groups left by server processes that died without cleaning up."""
    for controller in CONTROLLERS:
        parent = own_group(controller)
        if parent is None:
            continue
        for group in parent.glob(PREFIX + "*"):
            pid = group.name.removeprefix(PREFIX).split("-")[0]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                with contextlib.suppress(OSError):
                    group.rmdir()


class Cgroup:
    """One sandbox's groups: created with their caps, joined by its first process, removed."""

    def __init__(self, memory_bytes: int, processes: int) -> None:
        name = f"{PREFIX}{os.getpid()}-{next(_serial)}"
        self.paths: list[Path] = []
        try:
            for controller in CONTROLLERS:
                parent = own_group(controller)
                assert parent is not None
                path = parent / name
                path.mkdir()
                self.paths.append(path)
            memory, pids = self.paths
            (memory / "memory.limit_in_bytes").write_text(str(memory_bytes))
            swap = memory / "memory.memsw.limit_in_bytes"
            if swap.exists():
                swap.write_text(str(memory_bytes))
            (pids / "pids.max").write_text(str(processes))
        except BaseException:
            self.remove()
            raise

    def add(self, pid: int) -> None:
        for path in self.paths:
            (path / "cgroup.procs").write_text(str(pid))

    def out_of_memory(self) -> bool:
        """Whether the kernel's OOM killer struck inside this group."""
        try:
            control = (self.paths[0] / "memory.oom_control").read_text()
        except (OSError, IndexError):
            return False
        counts = dict(line.split() for line in control.splitlines() if len(line.split()) == 2)
        return int(counts.get("oom_kill", "0")) > 0

    def remove(self) -> None:
        # A group with processes cannot go: those of a killed sandbox take a moment to exit.
        for path in reversed(self.paths):
            for _ in range(50):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)
        self.paths = []

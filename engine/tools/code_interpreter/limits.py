"""What one sandbox may use, from the THREADLINE_CODE_INTERPRETER_* settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

MB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    # The sandbox's Python environment (a venv built from Debian's /usr/bin/python3).
    env: Path
    # Wall clock per execution: then an interrupt, and if that does not stop it, a kill.
    timeout_seconds: float
    # A session unused this long, or this old, ends; the next execution starts a new one.
    idle_seconds: float
    lifetime_seconds: float
    # Per sandbox: address space of each process, and with cgroups all processes together.
    memory_bytes: int
    # Size of /mnt/data (a tmpfs), and so the largest file the code can write.
    disk_bytes: int
    # CPU seconds of each process in the sandbox, the session's Python included.
    cpu_seconds: int
    processes: int
    # Output (stdout, stderr, tracebacks) kept per execution.
    output_bytes: int
    # Largest file collected from /mnt/data after an execution.
    file_bytes: int
    # Sessions this server process keeps at once, and how many wait ready for a new thread.
    sessions: int
    warm_sessions: int
    open_files: int = 256
    # /tmp and /dev/shm: scratch space that also lives in memory.
    tmp_bytes: int = 64 * MB
    # Patience with a session that starts, and with an interrupted execution.
    start_seconds: float = 30.0
    interrupt_grace_seconds: float = 3.0
    # Use cgroup v1 where this process may (cgroups.py); False leaves the rlimits alone, as a
    # server run by a normal user has them.
    cgroups: bool = True

    @classmethod
    def from_settings(cls) -> Limits:
        return cls(
            env=Path(settings.CODE_INTERPRETER_ENV),
            timeout_seconds=settings.CODE_INTERPRETER_TIMEOUT_SECONDS,
            idle_seconds=settings.CODE_INTERPRETER_IDLE_SECONDS,
            lifetime_seconds=settings.CODE_INTERPRETER_LIFETIME_SECONDS,
            memory_bytes=settings.CODE_INTERPRETER_MEMORY_MB * MB,
            disk_bytes=settings.CODE_INTERPRETER_DISK_MB * MB,
            cpu_seconds=settings.CODE_INTERPRETER_CPU_SECONDS,
            processes=settings.CODE_INTERPRETER_PROCESSES,
            output_bytes=settings.CODE_INTERPRETER_OUTPUT_BYTES,
            file_bytes=settings.CODE_INTERPRETER_FILE_MB * MB,
            sessions=settings.CODE_INTERPRETER_SESSIONS,
            warm_sessions=settings.CODE_INTERPRETER_WARM_SESSIONS,
        )

    def for_runner(self) -> dict[str, int]:
        """The limits the runner sets on itself inside the sandbox (runner.set_limits)."""
        return {
            "cpu_seconds": self.cpu_seconds,
            "memory_bytes": self.memory_bytes,
            "processes": self.processes,
            "file_bytes": self.disk_bytes,
            "open_files": self.open_files,
            "output_bytes": self.output_bytes,
            "collect_bytes": self.file_bytes,
        }

    @property
    def cgroup_memory_bytes(self) -> int:
        # tmpfs pages count as the sandbox's memory, so the cap covers its file systems too.
        return self.memory_bytes + self.disk_bytes + 2 * self.tmp_bytes

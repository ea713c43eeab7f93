"""Zygotes: pre-started extraction children that fork one bounded reader per file.

Starting Python and importing pypdf costs ~115 ms, more than reading a typical small PDF. A
zygote pays it once: it is started like the one-shot child (``python -P child.py
--zygote``, by path, without Django), imports pypdf, then waits on its stdin. It never starts
a thread, so unlike the server it may fork: per request it forks a grandchild that lowers its
limits and extracts exactly as the one-shot child does, relays the grandchild's stdout and
stderr, kills it at the wall-clock timeout, and reports how it ended. The server keeps up to
`extract._ZYGOTE_POOL_SIZE` of them (one per concurrent caller, started lazily); a caller that finds
none free, or whose zygote fails, uses a one-shot child, so results and errors never depend
on the zygote. A zygote exits on EOF on its stdin, which the kernel delivers whenever the
server process ends, however it ends; the grandchild dies with its zygote (PR_SET_PDEATHSIG).

Wire format, zygote to server: frames of a one-byte tag, a 4-byte big-endian length and the
payload. "r" ready; "o"/"e" a piece of the grandchild's stdout/stderr; "x" it exited (payload:
the exit code, negative for a signal); "t" it was killed at the timeout; "!" the zygote
cannot serve (payload: why). Server to zygote: one JSON line per request.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import select
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from engine.knowledge.extraction.child import _FRAME, _READ_SIZE, SCRIPT, _write_all

logger = logging.getLogger(__name__)

_ZYGOTE_START_TIMEOUT = 10.0  # seconds to import pypdf before we give up on zygotes
_ZYGOTE_RETRY_AFTER = 60.0  # after a zygote fails to start, use one-shot children this long
_ZYGOTE_GRACE = 5.0  # beyond the timeout, for a zygote to report; only a stuck one misses it


@dataclass(frozen=True)
class _Outcome:
    """How one bounded child ended: its exit code (None if killed at the wall-clock timeout,
    negative for a signal, as in ``subprocess``) and everything it wrote."""

    returncode: int | None
    stdout: bytes = b""
    stderr: bytes = b""


class _ZygoteFailed(Exception):
    """The zygote died, broke the protocol or cannot fork: read the file some other way."""


class _ZygoteStuck(Exception):
    """The zygote did not report within the timeout plus grace."""


class _Zygote:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-P", SCRIPT, "--zygote"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            # Grandchildren's stderr comes back in frames; the zygote itself has nothing to say.
            stderr=subprocess.DEVNULL,
            bufsize=0,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None  # both are pipes
        self._stdin, self._stdout = self.proc.stdin, self.proc.stdout
        self._buffer = bytearray()
        self._poller = select.poll()  # not select(): a busy server's fds can pass 1023
        self._poller.register(self._stdout.fileno(), select.POLLIN)
        try:
            tag, payload = self._read_frame(time.monotonic() + _ZYGOTE_START_TIMEOUT)
            if tag != b"r":
                raise _ZygoteFailed(payload.decode(errors="replace")[-2000:])
        except BaseException:
            self.close()
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def run(self, args: list[str], timeout: float) -> _Outcome:
        request = json.dumps({"args": args, "timeout": timeout}).encode() + b"\n"
        try:
            _write_all(self._stdin.fileno(), request)
        except OSError as exc:  # BrokenPipeError: it died since we last looked
            raise _ZygoteFailed(f"gone: {exc}") from None
        deadline = time.monotonic() + timeout + _ZYGOTE_GRACE
        stdout, stderr = bytearray(), bytearray()
        while True:
            tag, payload = self._read_frame(deadline)
            if tag == b"o":
                stdout += payload
            elif tag == b"e":
                stderr += payload
            elif tag == b"x":
                return _Outcome(int(payload), bytes(stdout), bytes(stderr))
            elif tag == b"t":
                return _Outcome(None)
            else:
                raise _ZygoteFailed(payload.decode(errors="replace")[-2000:])

    def close(self, *, kill: bool = False) -> None:
        """End the zygote and release its pipes. Without ``kill`` it gets EOF and a moment to
        exit on its own; its grandchild, if any, dies with it either way."""
        with contextlib.suppress(OSError):
            self._stdin.close()
        if not kill:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=1)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._stdout.close()

    def _read_frame(self, deadline: float) -> tuple[bytes, bytes]:
        tag, size = _FRAME.unpack(self._read_exact(_FRAME.size, deadline))
        return tag, self._read_exact(size, deadline)

    def _read_exact(self, size: int, deadline: float) -> bytes:
        while len(self._buffer) < size:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._poller.poll(math.ceil(remaining * 1000)):
                raise _ZygoteStuck
            chunk = os.read(self._stdout.fileno(), _READ_SIZE)
            if not chunk:
                raise _ZygoteFailed(f"closed its output; exit code {self.proc.poll()}")
            self._buffer += chunk
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data


class _ZygotePool:
    def __init__(self, size: int) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._idle: list[_Zygote] = []
        self._busy = 0
        self._start_after = 0.0
        self._pid = os.getpid()

    def run(self, args: list[str], timeout: float) -> _Outcome | None:
        """Read a file in a zygote's grandchild; None means "use a one-shot child instead"."""
        zygote = self._acquire()
        if zygote is None:
            return None
        healthy = False
        try:
            outcome = zygote.run(args, timeout)
            healthy = True
            return outcome
        except _ZygoteStuck:
            logger.warning("extraction zygote %s did not report in time; killed it", zygote.pid)
            return _Outcome(None)
        except _ZygoteFailed as exc:
            logger.warning(
                "extraction zygote %s failed (%s); using a one-shot child", zygote.pid, exc
            )
            return None
        finally:  # also on KeyboardInterrupt mid-request: a half-read reply poisons the pipe
            self._release(zygote, healthy)

    def close(self) -> None:
        with self._lock:
            if os.getpid() != self._pid:
                return
            idle, self._idle = self._idle, []
        for zygote in idle:
            zygote.close()

    def _acquire(self) -> _Zygote | None:
        with self._lock:
            if os.getpid() != self._pid:  # a forked copy of the server: those zygotes aren't ours
                self._forget_inherited()
            dead = []
            zygote = None
            while self._idle:
                candidate = self._idle.pop()
                if candidate.alive():
                    zygote = candidate
                    break
                dead.append(candidate)
            start = zygote is None
            refuse = start and (self._busy >= self.size or time.monotonic() < self._start_after)
            if not refuse:
                self._busy += 1
        for candidate in dead:  # killed from outside between calls
            logger.warning(
                "extraction zygote %s exited with %s; starting another",
                candidate.pid,
                candidate.proc.returncode,
            )
            candidate.close()
        if refuse or not start:
            return zygote
        try:
            return _Zygote()
        except (OSError, _ZygoteFailed, _ZygoteStuck) as exc:
            logger.warning(
                "could not start an extraction zygote (%s); using one-shot children for %g s",
                exc or type(exc).__name__,
                _ZYGOTE_RETRY_AFTER,
            )
            with self._lock:
                self._busy -= 1
                self._start_after = time.monotonic() + _ZYGOTE_RETRY_AFTER
            return None

    def _release(self, zygote: _Zygote, healthy: bool) -> None:
        with self._lock:
            mine = os.getpid() == self._pid
            if mine:
                self._busy -= 1
                if healthy:
                    self._idle.append(zygote)
                    return
        if mine:
            zygote.close(kill=True)

    def _forget_inherited(self) -> None:
        # Keep the inherited handles referenced forever: closing or collecting them would wait
        # for (or warn about) processes that are another process's children.
        _INHERITED_ZYGOTES.extend(self._idle)
        self._idle = []
        self._busy = 0
        self._pid = os.getpid()


_INHERITED_ZYGOTES: list[_Zygote] = []

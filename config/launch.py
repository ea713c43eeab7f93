"""`make run`'s server: as many daphne processes as THREADLINE_PROCESSES says, on HOST:PORT.

One process does everything on one core (Python's lock keeps its threads to one core at a time).
With two or more, the engine gets a process of its own, listening on a loopback port that only
the chat uses, and the others serve people and API clients on HOST:PORT, reaching that engine
over HTTP, as `THREADLINE_ASSISTANTS_URL` would point them at any engine (README, "Scaling
out"). The chat processes share one listening socket, which the kernel hands each new connection
from; more than one of them needs Redis (REDIS_URL), which carries the live answers, the replay
logs and the sessions between them.

`auto` (the default) is one process per core the machine lets this one use, two at most without
Redis; one where the chat is pointed at another engine already.

The sockets are opened here and handed to the children (daphne's `fd:` endpoint), so the
engine's port is bound before the chat is told it, and no other program can take it in between.
A child that ends takes the others with it: the server is never left half up.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

VARIABLE = "THREADLINE_PROCESSES"
# Twisted listens with a backlog of 50 by default: a burst of new streams overflowed it.
DEFAULT_BACKLOG = 1024
STOP_SECONDS = 10.0


class LaunchError(Exception):
    """A setting that cannot be served; `str()` tells the operator what to change."""


@dataclass(frozen=True)
class Layout:
    processes: int

    @property
    def split(self) -> bool:
        """Whether the engine has a process of its own."""
        return self.processes > 1

    @property
    def chat_processes(self) -> int:
        return self.processes - 1 if self.split else 1


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def layout(value: str, cores: int, *, redis: bool, other_engine: bool) -> Layout:
    """How many processes to start for the variable's value."""
    value = value.strip().lower() or "auto"
    if value == "auto":
        if other_engine or cores < 2:
            return Layout(1)
        return Layout(cores if redis else 2)
    try:
        processes = int(value)
    except ValueError:
        raise LaunchError(
            f"{VARIABLE}={value!r} is not a number of processes: give a whole number from 1, "
            "or auto (one per core)."
        ) from None
    if processes < 1:
        raise LaunchError(f"{VARIABLE}={processes}: give 1 or more processes, or auto.")
    if processes > 1 and other_engine:
        raise LaunchError(
            f"{VARIABLE}={processes} starts an engine process of its own, but "
            "THREADLINE_ASSISTANTS_URL points the chat at another engine: unset one of them."
        )
    if processes > 2 and not redis:
        raise LaunchError(
            f"{VARIABLE}={processes} runs {processes - 1} chat processes, and their live "
            "answers, replay logs and sessions must be shared: set REDIS_URL (README, "
            '"Scaling out"), or use 2.'
        )
    return Layout(processes)


def listening_socket(host: str, port: int, backlog: int) -> socket.socket:
    if ":" in host:
        # daphne's fd endpoint adopts IPv4 sockets only.
        raise LaunchError(f"HOST={host}: an IPv6 address; listen on an IPv4 one (0.0.0.0).")
    try:
        sock = socket.create_server((host, port), backlog=backlog)
    except OSError as error:
        raise LaunchError(f"Cannot listen on {host}:{port}: {error.strerror}.") from None
    sock.set_inheritable(True)
    return sock


def daphne(sock: socket.socket, env: dict[str, str]) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "daphne",
        "-e",
        f"fd:fileno={sock.fileno()}",
        "config.asgi:application",
    ]
    return subprocess.Popen(command, env=env, pass_fds=[sock.fileno()])


def start(layout: Layout, host: str, port: int, backlog: int) -> list[subprocess.Popen[bytes]]:
    public = listening_socket(host, port, backlog)
    env = {**os.environ, "HOST": host, "PORT": str(port)}
    if not layout.split:
        children = [daphne(public, env)]
    else:
        engine = listening_socket("127.0.0.1", 0, backlog)
        engine_port = engine.getsockname()[1]
        children = [daphne(engine, {**env, "HOST": "127.0.0.1", "PORT": str(engine_port)})]
        engine.close()  # the child holds its own copy
        chat_env = {**env, "THREADLINE_ASSISTANTS_URL": f"http://127.0.0.1:{engine_port}/v1"}
        children += [daphne(public, chat_env) for _ in range(layout.chat_processes)]
    public.close()
    return children


def stop(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    for child in children:
        try:
            child.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def serve() -> int:
    host = os.environ.get("HOST", "127.0.0.1")
    try:
        port = int(os.environ.get("PORT", "8000"))
        backlog = int(os.environ.get("BACKLOG", str(DEFAULT_BACKLOG)))
        chosen = layout(
            os.environ.get(VARIABLE, "auto"),
            usable_cores(),
            redis=bool(os.environ.get("REDIS_URL")),
            other_engine=bool(os.environ.get("THREADLINE_ASSISTANTS_URL")),
        )
        children = start(chosen, host, port, backlog)
    except ValueError:
        print("PORT and BACKLOG must be whole numbers.", file=sys.stderr)
        return 2
    except LaunchError as error:
        print(error, file=sys.stderr)
        return 2
    if chosen.split:
        processes = f"{chosen.chat_processes} for the chat and 1 for the engine"
    else:
        processes = "one process"
    print(
        f"Threadline is serving on http://{host}:{port}/ (chat) and /admin/ (admin), "
        f"{processes} ({VARIABLE}); Ctrl-C stops it.",
        flush=True,
    )
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)  # Ctrl-C reaches the children too
    status = 0
    while not stopping:
        ended = [child for child in children if child.poll() is not None]
        if ended:
            status = ended[0].returncode or 1
            print("A server process ended; stopping the others.", file=sys.stderr, flush=True)
            break
        time.sleep(0.2)
    stop(children)
    return status


if __name__ == "__main__":
    sys.exit(serve())

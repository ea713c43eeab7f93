"""Real Threadline servers for tests and benchmarks: daphne subprocesses on free ports.

Plain functions and classes, no fixtures: the conftests build their fixtures from these, and
`bench/` imports them too.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import openai

if TYPE_CHECKING:
    from tests.fake_model import FakeModelServer

ROOT = Path(__file__).resolve().parent.parent
ENGINE_KEY = "sk-test-engine-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Wait until the server answers HTTP on the port.

    A bare TCP connect is not proof: with nothing listening, a connect to a port in the
    ephemeral range can connect to itself (its source port chosen equal to the target).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                sock.sendall(b"GET /v1/models HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                if sock.recv(5) == b"HTTP/":
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"server did not answer on port {port} within {timeout}s")


def fresh_postgres_database(admin_url: str) -> str:
    """Create an empty database on the test PostgreSQL server and return its URL.

    Set THREADLINE_TEST_POSTGRES (a URL to its maintenance database) to run the servers of the
    test suite on PostgreSQL instead of SQLite.
    """
    import psycopg

    name = f"threadline_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + "/" + name


# Debian's redis-server; THREADLINE_REDIS_SERVER points elsewhere (or nowhere, to see the skip).
REDIS_SERVER = Path(
    os.environ.get("THREADLINE_REDIS_SERVER")
    or shutil.which("redis-server")
    or "/usr/bin/redis-server"
)


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    """Ask a server to stop; kill it if it has not within 10 seconds."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class RedisServer:
    """A real redis-server on a free port, in memory only: no RDB snapshots, no AOF.

    Started again after a stop, it listens on the same port, empty.
    """

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="threadline-redis-"))
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        if not REDIS_SERVER.exists():
            raise RuntimeError(f"{REDIS_SERVER} is not installed")
        with (self.dir / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(
                [
                    str(REDIS_SERVER),
                    "--port", str(self.port),
                    "--bind", "127.0.0.1",
                    "--dir", str(self.dir),
                    "--save", "",
                    "--appendonly", "no",
                    "--daemonize", "no",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited early:\n{self.log()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock,
            ):
                sock.sendall(b"PING\r\n")
                if sock.recv(7) == b"+PONG\r\n":
                    return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port}:\n{self.log()}")

    def stop(self) -> None:
        stop_process(self.process)

    def log(self) -> str:
        path = self.dir / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""


class ThreadlineServer:
    """A daphne process serving the whole product, with its own data directory and database.

    Several processes can share one (`data_dir`, and `DATABASE_URL` in `env` on PostgreSQL);
    each then logs to a file of its own (`name`).
    """

    def __init__(
        self,
        env: dict[str, str] | None = None,
        data_dir: Path | None = None,
        name: str = "server",
        application: str = "config.asgi:application",
    ) -> None:
        self.application = application
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="threadline-test-"))
        self.log_path = self.data_dir / f"{name}.log"
        self.port = free_port()
        self.env = {
            **os.environ,
            "THREADLINE_DATA_DIR": str(self.data_dir),
            "THREADLINE_API_KEYS": ENGINE_KEY,
            "THREADLINE_ASSISTANTS_KEY": ENGINE_KEY,
            "SECRET_KEY": "test-secret-key-that-is-long-enough-for-django-checks-0123456789",
            "DEBUG": "0",
            "PORT": str(self.port),
            "LOG_LEVEL": "WARNING",
            "PYTHONWARNINGS": "ignore",
            **(env or {}),
        }
        for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "AZURE_OPENAI_ENDPOINT", "DATABASE_URL"):
            if env is None or name not in env:
                self.env.pop(name, None)
        admin_url = os.environ.get("THREADLINE_TEST_POSTGRES")
        if admin_url and "DATABASE_URL" not in self.env:
            self.env["DATABASE_URL"] = fresh_postgres_database(admin_url)
        self.process: subprocess.Popen[bytes] | None = None
        self.migrated = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/v1"

    def manage(self, *args: str) -> str:
        """Run a management command against this server's database; return what it printed."""
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stderr}")
        return result.stdout

    def migrate(self) -> None:
        self.manage("migrate", "--noinput", "-v0")
        self.migrated = True

    def start(self) -> ThreadlineServer:
        if not self.migrated:
            self.migrate()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "daphne",
                    "-e",
                    f"tcp:port={self.port}:interface=127.0.0.1:backlog=1024",
                    self.application,
                ],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(self.port, self.process)
        return self

    def kill(self) -> None:
        """Die at once, as in a crash: no cleanup runs."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        stop_process(self.process)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def model_env(model_server: FakeModelServer) -> dict[str, str]:
    """A server's environment for the scripted model server as its model API."""
    return {
        "OPENAI_API_KEY": model_server.api_key,
        "OPENAI_BASE_URL": model_server.base_url,
        "THREADLINE_MODEL_MAX_RETRIES": "2",
        "THREADLINE_MODEL_TIMEOUT_SECONDS": "3",
    }


def sdk(server: ThreadlineServer, key: str = ENGINE_KEY) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=server.api_url, max_retries=0, timeout=30)


def start_chat_server(extra_env: dict[str, str] | None = None) -> ThreadlineServer:
    """A server with its static files collected, as the chat's pages and the admin need."""
    server = ThreadlineServer(env=extra_env or {})
    server.migrate()
    server.manage("collectstatic", "--noinput", "-v0")
    return server.start()


def shell(server: ThreadlineServer, code: str) -> Any:
    """Run Python in the server's environment; it prints one JSON value, returned here."""
    out = server.manage("shell", "--no-imports", "-c", code)
    return json.loads(out.strip().splitlines()[-1])

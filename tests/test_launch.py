"""`make run`'s launcher (config/launch.py): one process per core, the engine in one of its own."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chat import titles
from config.launch import LaunchError, Layout, layout
from tests.chat.conftest import ChatClient
from tests.fake_model import FakeModelServer, Reply
from tests.servers import RedisServer, ThreadlineServer, model_env, shell, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "launch-pass-123"


@pytest.mark.parametrize(
    ("value", "cores", "redis", "other_engine", "processes"),
    [
        ("auto", 1, False, False, 1),
        ("auto", 2, False, False, 2),
        ("auto", 8, False, False, 2),  # one chat process: its live answers live in its memory
        ("auto", 8, True, False, 8),
        ("auto", 8, True, True, 1),  # the chat already uses another engine
        ("", 4, False, False, 2),
        (" 1 ", 8, False, False, 1),
        ("2", 1, False, False, 2),  # asked for: a machine with one core may still split
        ("5", 2, True, False, 5),
    ],
)
def test_layout_follows_the_variable_the_cores_and_redis(
    value: str, cores: int, redis: bool, other_engine: bool, processes: int
) -> None:
    assert layout(value, cores, redis=redis, other_engine=other_engine) == Layout(processes)


@pytest.mark.parametrize(
    ("value", "redis", "other_engine", "says"),
    [
        ("many", False, False, "not a number of processes"),
        ("1.5", False, False, "not a number of processes"),
        ("0", False, False, "1 or more"),
        ("-2", False, False, "1 or more"),
        ("3", False, False, "set REDIS_URL"),
        ("2", False, True, "THREADLINE_ASSISTANTS_URL"),
    ],
)
def test_a_value_that_cannot_be_served_says_what_to_change(
    value: str, redis: bool, other_engine: bool, says: str
) -> None:
    with pytest.raises(LaunchError, match=says):
        layout(value, 4, redis=redis, other_engine=other_engine)


def test_split_layout_gives_the_engine_one_process() -> None:
    assert not Layout(1).split and Layout(1).chat_processes == 1
    assert Layout(2).split and Layout(2).chat_processes == 1
    assert Layout(4).chat_processes == 3


# --- The real thing: daphne processes started by the launcher ---------------------------------


@pytest.fixture(scope="module")
def model() -> Iterator[FakeModelServer]:
    server = FakeModelServer()
    server.start()
    server.script_instructions(titles.INSTRUCTIONS)
    yield server
    server.stop()


@pytest.fixture
def site(model: FakeModelServer) -> Iterator[ThreadlineServer]:
    """A data directory and database set up as `make run` sets them up; not yet served."""
    server = ThreadlineServer(env=model_env(model))
    server.migrate()
    server.manage("collectstatic", "--noinput", "-v0")
    server.profile_id = shell(  # type: ignore[attr-defined]
        server,
        "from django.contrib.auth.models import User\n"
        "from chat.models import AssistantProfile\n"
        f"User.objects.create_user('owner', password={PASSWORD!r})\n"
        "print(AssistantProfile.objects.create(name='Split', model='split', published=True).pk)",
    )
    yield server


@contextlib.contextmanager
def launched(
    server: ThreadlineServer, processes: int, extra: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], list[int]]]:
    """`make run`'s launcher serving the site, and its server processes once all have started;
    whatever is left of them is killed afterwards."""
    env = {
        **server.env,
        "HOST": "127.0.0.1",
        "THREADLINE_PROCESSES": str(processes),
        **(extra or {}),
    }
    env.pop("THREADLINE_ASSISTANTS_URL", None)
    with server.log_path.open("ab") as log:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "config.launch"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    pids: list[int] = []
    try:
        wait_for_port(server.port, launcher)  # the launcher's own socket: before its children
        deadline = time.monotonic() + 10
        while len(pids := children(launcher)) < processes and time.monotonic() < deadline:
            time.sleep(0.05)
        yield launcher, pids
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def launch_once(server: ThreadlineServer, **env: str) -> subprocess.CompletedProcess[str]:
    """The launcher run to its end (for settings it refuses)."""
    return subprocess.run(
        [sys.executable, "-m", "config.launch"],
        cwd=ROOT,
        env={**server.env, "HOST": "127.0.0.1", **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def children(launcher: subprocess.Popen[bytes]) -> list[int]:
    found = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text().split()
    return [int(pid) for pid in found]


def environ(pid: int) -> dict[str, str]:
    pairs = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(pair.decode().split("=", 1) for pair in pairs if b"=" in pair)


def listening_ports(pid: int) -> set[int]:
    """The TCP ports of the listening sockets the process holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def role(pid: int) -> str:
    return "chat" if "THREADLINE_ASSISTANTS_URL" in environ(pid) else "engine"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A child the launcher has not reaped yet is a zombie: gone for all that matters here.
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"


def ended_within(launcher: subprocess.Popen[bytes], seconds: float) -> int:
    return launcher.wait(timeout=seconds)


def test_two_processes_the_chat_answers_through_the_engine_of_its_own(
    site: ThreadlineServer, model: FakeModelServer
) -> None:
    with launched(site, 2) as (launcher, pids):
        assert len(pids) == 2
        by_role = {role(pid): pid for pid in pids}
        assert set(by_role) == {"chat", "engine"}
        url = environ(by_role["chat"])["THREADLINE_ASSISTANTS_URL"]
        engine_port = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/v1", url)
        assert engine_port is not None
        # The port the chat was given is the engine process's alone; the site's, the chat's.
        assert listening_ports(by_role["engine"]) == {int(engine_port.group(1))}
        assert listening_ports(by_role["chat"]) == {site.port}

        model.script("split", [Reply("Answered by the engine's own process.")])
        person = ChatClient(site.url)
        try:
            person.login("owner", PASSWORD)
            sent = person.send("Who answers?", assistant=site.profile_id)  # type: ignore[attr-defined]
            assert sent.response.status_code == 200, sent.response.text
            assert sent.events_url is not None
            status, events = person.events(sent.events_url)
        finally:
            person.close()
        assert status == 200
        assert events[-1].event == "end"
        assert "Answered by the engine" in "".join(e.data for e in events)

        launcher.send_signal(signal.SIGTERM)
        assert ended_within(launcher, 15) == 0
        assert not any(alive(pid) for pid in pids)


def test_with_redis_chat_processes_share_the_port_and_each_answer_arrives(
    site: ThreadlineServer, model: FakeModelServer
) -> None:
    redis = RedisServer().start()
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(redis.stop)
        launcher, pids = cleanup.enter_context(launched(site, 3, {"REDIS_URL": redis.url}))
        chats = [pid for pid in pids if role(pid) == "chat"]
        assert len(pids) == 3 and len(chats) == 2
        assert all(listening_ports(pid) == {site.port} for pid in chats)
        answers = [f"Answer number {i}." for i in range(6)]
        model.script("split", [Reply(text) for text in answers])
        person = ChatClient(site.url)
        person.login("owner", PASSWORD)
        try:
            for text in answers:
                sent = person.send("Again?", assistant=site.profile_id)  # type: ignore[attr-defined]
                assert sent.events_url is not None, sent.response.text
                # A connection of its own: the kernel may hand it to either chat process, and
                # the live answer must reach it from the one relaying it (through Redis).
                reader = ChatClient(site.url)
                reader.http.cookies = person.http.cookies
                try:
                    status, events = reader.events(sent.events_url)
                finally:
                    reader.close()
                assert status == 200 and events[-1].event == "end"
                assert text in "".join(e.data for e in events)
        finally:
            person.close()
        launcher.send_signal(signal.SIGTERM)
        assert ended_within(launcher, 15) == 0


def test_a_process_that_dies_takes_the_others_with_it(site: ThreadlineServer) -> None:
    with launched(site, 2) as (launcher, pids):
        engine = next(pid for pid in pids if role(pid) == "engine")
        os.kill(engine, signal.SIGKILL)
        assert ended_within(launcher, 15) != 0
        assert not any(alive(pid) for pid in pids)
        assert "A server process ended" in site.log()


def test_one_process_serves_everything(site: ThreadlineServer) -> None:
    with launched(site, 1) as (launcher, pids):
        assert len(pids) == 1
        assert "THREADLINE_ASSISTANTS_URL" not in environ(pids[0])
        launcher.send_signal(signal.SIGINT)  # Ctrl-C
        assert ended_within(launcher, 15) == 0
        assert not alive(pids[0])


def test_a_bad_value_starts_nothing_and_says_why(site: ThreadlineServer) -> None:
    result = launch_once(site, THREADLINE_PROCESSES="3", REDIS_URL="")
    assert result.returncode == 2
    assert "set REDIS_URL" in result.stderr
    assert "serving" not in result.stdout


def test_a_port_in_use_is_said_plainly(site: ThreadlineServer) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        result = launch_once(site, PORT=port, THREADLINE_PROCESSES="2")
    assert result.returncode == 2
    assert "Cannot listen on 127.0.0.1" in result.stderr

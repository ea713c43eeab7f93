"""What model-written code can reach from inside the sandbox: its own session, and no more."""

from __future__ import annotations

import secrets
import socket
import threading
from collections.abc import Iterator

import pytest
from django.conf import settings

from engine.tools.code_interpreter.limits import Limits
from engine.tools.code_interpreter.sessions import Sessions

pytestmark = pytest.mark.anyio


async def test_writes_outside_mnt_data_are_refused(sessions: Sessions) -> None:
    result = await sessions.execute(
        "thread_writes",
        "import os\n"
        "for path in ['/x', '/usr/x', '/etc/passwd', '/etc/x', '/opt/python/x',\n"
        "             '/opt/threadline/runner.py', '/proc/sys/kernel/hostname', '/mnt/x']:\n"
        "    try:\n"
        "        open(path, 'w').write('x')\n"
        "        print('wrote', path)\n"
        "    except OSError as error:\n"
        "        print('refused', path, error.strerror)\n"
        "open('/mnt/data/ok.txt', 'w').write('ok')\n"
        "print('scratch', open('/tmp/s', 'w').write('s'))",
    )
    lines = result.logs.splitlines()
    assert [line for line in lines if line.startswith("wrote")] == []
    assert len([line for line in lines if line.startswith("refused")]) == 8
    assert lines[-1] == "scratch 1"
    assert [f.path for f in result.files] == ["/mnt/data/ok.txt"]


async def test_mnt_data_is_size_capped(sessions: Sessions) -> None:
    cap = sessions.limits.disk_bytes
    result = await sessions.execute(
        "thread_full",
        "import os\n"
        "def write(name, size):\n"
        "    try:\n"
        "        with open('/mnt/data/' + name, 'wb') as file:\n"
        "            file.write(b'0' * size)\n"
        "        print(name, 'written')\n"
        "    except OSError as error:\n"
        "        print(name, 'refused:', error.strerror)\n"
        "    os.remove('/mnt/data/' + name)\n"
        f"write('too-big.bin', {cap + 1})\n"
        f"write('most.bin', {cap - 1024 * 1024})\n"
        "with open('/mnt/data/most.bin', 'wb') as file:\n"
        f"    file.write(b'0' * {cap - 1024 * 1024})\n"
        "write('more.bin', 2 * 1024 * 1024)",
    )
    assert result.logs.splitlines() == [
        "too-big.bin refused: File too large",
        "most.bin written",
        "more.bin refused: No space left on device",
    ]


async def test_a_symlink_out_of_mnt_data_is_not_followed_when_collecting(
    sessions: Sessions,
) -> None:
    result = await sessions.execute(
        "thread_links",
        "import os\n"
        "os.symlink('/etc/passwd', '/mnt/data/passwd.txt')\n"
        "os.symlink('/etc', '/mnt/data/etc')\n"
        "os.symlink('/proc/self/environ', '/mnt/data/environ')\n"
        "os.mkfifo('/mnt/data/pipe')\n"
        "open('/mnt/data/real.txt', 'w').write('real')",
    )
    assert [(f.path, f.data) for f in result.files] == [("/mnt/data/real.txt", b"real")]
    # The sandbox's /etc/passwd is its own anyway: no host account shows in it.
    seen = await sessions.execute("thread_links", "print(open('/mnt/data/passwd.txt').read())")
    assert "sandbox:x:1000" in seen.logs and "nobody" not in seen.logs


@pytest.fixture
def host_listener() -> Iterator[int]:
    """A TCP server on the host's loopback, which the sandbox must not reach."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def serve() -> None:
        try:
            while True:
                accepted.append(server.accept()[0])
        except OSError:
            pass

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1]
    server.close()
    assert accepted == [], "the sandbox reached the host's loopback"


async def test_network_and_dns_fail(sessions: Sessions, host_listener: int) -> None:
    result = await sessions.execute(
        "thread_net",
        "import socket, urllib.request\n"
        "def attempt(name, call):\n"
        "    try:\n"
        "        call()\n"
        "        print(name, 'reached')\n"
        "    except OSError as error:\n"
        "        print(name, 'failed', type(error).__name__)\n"
        "attempt('dns', lambda: socket.getaddrinfo('pypi.org', 443))\n"
        "attempt('ip', lambda: socket.create_connection(('1.1.1.1', 53), timeout=3))\n"
        f"host = ('127.0.0.1', {host_listener})\n"
        "attempt('host loopback', lambda: socket.create_connection(host, timeout=3))\n"
        "attempt('http', lambda: urllib.request.urlopen('http://example.com', timeout=3))\n"
        "print(sorted(name for _, name in socket.if_nameindex()))",
    )
    lines = result.logs.splitlines()
    assert lines[:4] == [
        "dns failed gaierror",
        "ip failed OSError",
        "host loopback failed ConnectionRefusedError",
        "http failed URLError",
    ]
    assert lines[4] == "['lo']"


async def test_no_secret_of_the_server_is_visible(
    limits: Limits, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-" + secrets.token_hex(16)
    monkeypatch.setenv("THREADLINE_TEST_SECRET", secret)
    # Set before the session starts, as a server's own secrets are.
    manager = Sessions(limits, mode="auto")
    try:
        result = await manager.execute(
            "thread_secret",
            "import os, glob\n"
            "found = []\n"
            "for path in glob.glob('/proc/*/environ') + glob.glob('/proc/*/cmdline'):\n"
            "    try:\n"
            "        data = open(path, 'rb').read()\n"
            "    except OSError:\n"
            "        continue\n"
            f"    found += [path] if b'{secret}' in data else []\n"
            "print(open('/proc/1/environ', 'rb').read())\n"
            "print(sorted(os.environ))\n"
            "print(found)",
        )
    finally:
        await manager.aclose()
    assert secret not in result.logs
    lines = result.logs.splitlines()
    assert lines[0] == "b''"
    assert lines[1] == "['HOME', 'LANG', 'MPLBACKEND', 'PATH', 'PWD']"
    assert lines[2] == "[]"


async def test_the_project_var_and_home_directories_are_invisible(
    sessions: Sessions,
) -> None:
    result = await sessions.execute(
        "thread_look",
        "import os\n"
        f"for path in [{str(settings.BASE_DIR)!r}, {str(settings.DATA_DIR)!r}, '/root', '/home',\n"
        "             '/work', '/var', '/srv', '/run', '/etc/shadow', '/etc/hostname']:\n"
        "    print(path, os.path.exists(path))\n"
        "print(sorted(os.listdir('/')))\n"
        "print(sorted(os.listdir('/etc')))\n"
        "print(sorted(os.listdir('/opt')))",
    )
    lines = result.logs.splitlines()
    assert all(line.endswith(" False") for line in lines[:10]), lines
    assert (
        lines[10]
        == str(
            sorted(
                ["bin", "dev", "etc", "lib", "lib64", "mnt", "opt", "proc", "sbin", "tmp", "usr"]
            )
        )
        or "lib32" in lines[10]
    )
    assert "shadow" not in lines[11] and "hostname" not in lines[11]
    assert lines[12] == "['python', 'threadline']"


async def test_sessions_cannot_see_each_other(sessions: Sessions) -> None:
    await sessions.execute("thread_one", "open('/mnt/data/mine.txt', 'w').write('one')")
    result = await sessions.execute(
        "thread_two",
        "import os\n"
        "print(os.listdir('/mnt/data'))\n"
        "print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))",
    )
    files, pids = result.logs.splitlines()
    assert files == "[]"
    # Its own PID namespace: bubblewrap's init and the session's Python, nothing of the host's.
    assert pids == "[1, 2]"

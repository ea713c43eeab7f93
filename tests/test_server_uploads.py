"""A large upload costs the server a few megabytes of memory, not its own size, nor many times it.

Twisted parses a multipart body into memory unless told not to, and daphne queues a whole body
in memory unless it is handed over as its file (config/server.py); the server's peak resident
memory (VmHWM) before and after an upload shows whether either happened.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import ThreadlineServer, sdk

MB = 1024 * 1024
SIZE = 64 * MB


@pytest.fixture(scope="module")
def fresh_server() -> Iterator[ThreadlineServer]:
    """A server of its own: its peak memory must not carry other tests' uploads."""
    server = ThreadlineServer().start()
    yield server
    server.stop()


def peak_memory(server: ThreadlineServer) -> int:
    assert server.process is not None
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    found = re.search(r"VmHWM:\s+(\d+) kB", status)
    assert found is not None
    return int(found.group(1)) * 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's /proc")
def test_a_multipart_upload_is_not_parsed_into_memory_by_the_server(
    fresh_server: ThreadlineServer, tmp_path: Path
) -> None:
    path = tmp_path / "big.md"
    with path.open("wb") as f:
        line = b"Some text that is not worth reading, said many times over.\n"
        f.write(line * (SIZE // len(line)))
    with sdk(fresh_server) as client:
        client.models.list()  # warm: the first request loads what every request needs
        before = peak_memory(fresh_server)
        with path.open("rb") as f:
            uploaded = client.files.create(
                file=("big.md", f, "text/markdown"), purpose="assistants"
            )
        assert uploaded.bytes == os.path.getsize(path)
    grown = peak_memory(fresh_server) - before
    # Parsed by Twisted, a 64 MB upload grew it by about 780 MB; queued whole for the
    # application by daphne (django/daphne#483), by about 64 MB; handed over as the file
    # Twisted wrote (config/server.py), by a few MB.
    assert grown < SIZE // 4, f"the server's peak memory grew by {grown // MB} MB"

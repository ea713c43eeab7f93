"""Request bodies are held to their route's limit as they arrive (config/server.py): a body over
it is refused before the server keeps it, whether it declares its length or comes chunked, and
an accepted body is never held in memory whole.

The server's resident memory comes from /proc: its peak (VmHWM) must not grow by a refused
body, nor by much of an accepted one.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx2
import openai
import pytest

from tests.servers import ENGINE_KEY, ThreadlineServer, sdk

MB = 1024 * 1024
KEY = {"Authorization": f"Bearer {ENGINE_KEY}"}

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="reads the server's memory from Linux's /proc"
)


@pytest.fixture(scope="module")
def server() -> Iterator[ThreadlineServer]:
    """A server of its own: its peak memory must carry no other test's requests. Uploads over
    4 MB are refused, so that refusing one as it arrives takes little time."""
    server = ThreadlineServer(env={"THREADLINE_MAX_UPLOAD_BYTES": str(4 * MB)}).start()
    yield server
    server.stop()


def peak_memory(server: ThreadlineServer) -> int:
    assert server.process is not None
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    found = re.search(r"VmHWM:\s+(\d+) kB", status)
    assert found is not None
    return int(found.group(1)) * 1024


def pieces(total: int, size: int = MB) -> Iterator[bytes]:
    """A body of `total` bytes as an iterator, which httpx sends chunked, with no length."""
    piece = b"x" * size
    for _ in range(total // size):
        yield piece


def multipart(boundary: str, content: Iterator[bytes] | list[bytes]) -> Iterator[bytes]:
    yield (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nassistants\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="notes.txt"\r\n'
        "Content-Type: text/plain\r\n\r\n"
    ).encode()
    yield from content
    yield f"\r\n--{boundary}--\r\n".encode()


def test_an_anonymous_300_mb_post_is_refused_without_growing_the_server(
    server: ThreadlineServer,
) -> None:
    httpx2.get(f"{server.api_url}/models", headers=KEY)  # warm: what every request loads
    before = peak_memory(server)
    response = httpx2.post(f"{server.url}/accounts/login/", content=pieces(300 * MB), timeout=60)
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("text/html")
    assert "64 KB" in response.text
    assert response.headers["x-request-id"].startswith("req_")
    grown = peak_memory(server) - before
    # Unbounded, the server kept all of it: 143 MB grew to 445 MB, and stayed there.
    assert grown < 16 * MB, f"the server's peak memory grew by {grown // MB} MB"


def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_sent(
    server: ThreadlineServer,
) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /accounts/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 314572800\r\n\r\n"
        )
        answer = sock.recv(65536)  # not one byte of the body was sent
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"Connection: close" in answer


def test_an_engine_body_over_its_limit_is_413_in_openai_shape(server: ThreadlineServer) -> None:
    body = json.dumps({"metadata": {"note": "x" * (11 * MB)}}).encode()
    declared = httpx2.post(f"{server.api_url}/threads", content=body, headers=KEY, timeout=60)
    chunked = httpx2.post(
        f"{server.api_url}/threads", content=pieces(11 * MB), headers=KEY, timeout=60
    )
    for response in (declared, chunked):
        assert response.status_code == 413
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["code"] == "request_too_large"
        assert "10 MB" in error["message"]
    assert "Traceback" not in server.log()


def test_a_chunked_upload_is_read_whole(server: ThreadlineServer) -> None:
    content = b"Sent in pieces, with no length up front.\n" * 50_000  # 2 MB: handed over as a file
    response = httpx2.post(
        f"{server.api_url}/files",
        content=multipart("b0undary", [content[: MB // 2], content[MB // 2 :]]),
        headers={**KEY, "Content-Type": "multipart/form-data; boundary=b0undary"},
        timeout=60,
    )
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert response.status_code == 200, response.text
    with sdk(server) as client:
        file = client.files.retrieve(response.json()["id"])
        assert file.bytes == len(content)
        assert client.files.content(file.id).read() == content


def test_a_chunked_upload_over_the_limit_is_refused_as_it_arrives(
    server: ThreadlineServer,
) -> None:
    with sdk(server) as client:
        before = [file.id for file in client.files.list()]
    response = httpx2.post(
        f"{server.api_url}/files",
        content=multipart("b0undary", pieces(64 * MB)),
        headers={**KEY, "Content-Type": "multipart/form-data; boundary=b0undary"},
        timeout=60,
    )
    assert response.status_code == 413
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("file_too_large", "file")
    assert "the largest upload this server accepts is 4,194,304 bytes" in error["message"]
    with sdk(server) as client:
        assert [file.id for file in client.files.list()] == before


def test_the_sdks_upload_over_the_limit_is_413_before_it_is_sent(
    server: ThreadlineServer,
) -> None:
    """The SDK declares the length: refused from the headers, the body read and dropped."""
    with sdk(server) as client, pytest.raises(openai.APIStatusError) as caught:
        client.files.create(file=("more.txt", b"x" * (4 * MB + 1)), purpose="assistants")
    assert caught.value.status_code == 413
    assert caught.value.body["code"] == "file_too_large"

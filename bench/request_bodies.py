"""Request bodies and the server's memory: main's daphne set-up beside today's (config/server.py).

Each request goes to a fresh server process, main's and today's: a 300 MB anonymous POST to the
sign-in page (declared length, and chunked) and an accepted 200 MB upload to /v1/files. Its
resident memory (VmRSS) before and after, and how much its peak (VmHWM) grew. Run:
`python bench/request_bodies.py [megabytes of the anonymous POST]`.
"""

from __future__ import annotations

import re
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore", category=DeprecationWarning)

import httpx2  # noqa: E402

from bench.report import table  # noqa: E402
from tests.servers import ENGINE_KEY, ThreadlineServer, sdk  # noqa: E402

MB = 1024 * 1024
SERVERS = {"main": "bench.daphne_as_main:application", "today": "config.asgi:application"}


def memory(server: ThreadlineServer) -> tuple[int, int]:
    assert server.process is not None
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    rss, peak = (re.search(rf"{name}:\s+(\d+) kB", status) for name in ("VmRSS", "VmHWM"))
    assert rss and peak
    return int(rss.group(1)) * 1024 // MB, int(peak.group(1)) * 1024 // MB


def pieces(total: int) -> Iterator[bytes]:
    piece = b"x" * MB
    for _ in range(total // MB):
        yield piece


def anonymous_post(server: ThreadlineServer, size: int, chunked: bool) -> str:
    body = pieces(size) if chunked else b"x" * size
    url = f"{server.url}/accounts/login/"
    try:
        return str(httpx2.post(url, content=body, timeout=300).status_code)
    except httpx2.HTTPError as error:
        return type(error).__name__


def upload(server: ThreadlineServer, path: Path) -> str:
    with sdk(server) as client, path.open("rb") as f:
        return str(client.files.create(file=f, purpose="assistants").bytes // MB) + " MB stored"


def measure(application: str, request: str, size: int, upload_path: Path) -> list[str]:
    server = ThreadlineServer(application=application).start()
    try:
        httpx2.get(f"{server.api_url}/models", headers={"Authorization": f"Bearer {ENGINE_KEY}"})
        rss_before, peak_before = memory(server)
        if request == "upload":
            answer = upload(server, upload_path)
        else:
            answer = anonymous_post(server, size * MB, chunked=request == "chunked")
        rss_after, peak_after = memory(server)
    finally:
        server.stop()
    return [answer, f"{rss_before} MB", f"{rss_after} MB", f"+{peak_after - peak_before} MB"]


def main() -> None:
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    requests = {
        "declared": f"{size} MB anonymous POST, declared length",
        "chunked": f"{size} MB anonymous POST, chunked",
        "upload": "200 MB upload to /v1/files, with a key",
    }
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "notes.md"
        with path.open("wb") as f:
            line = b"A line of notes, over and over, to make a large file.\n"
            f.write(line * (200 * MB // len(line)))
        for request, label in requests.items():
            for name, application in SERVERS.items():
                rows.append([label, name, *measure(application, request, size, path)])
    print(table(["request", "server", "answer", "RSS before", "RSS after", "peak grew"], rows))


if __name__ == "__main__":
    main()

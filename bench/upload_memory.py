"""Upload memory: does a large file stream from disk to the Assistants API, or sit in memory whole?

Client side (this process, the chat's own calls in `chat.assistants_api` against a live server):
a 100 MB file as a Django temporary upload (a knowledge file, a chat attachment) and as the copy
kept while the API was away, each sent as an open file; then the same bytes passed whole, for
comparison. Peak Python allocations (tracemalloc) and peak RSS growth are measured around the
call. Server side: an admin posts a 100 MB PDF to the assistant form of a live server (parse,
keep, upload to the embedded engine, all in that one process); its peak RSS (VmHWM) is read
before and after. Run: `python bench/upload_memory.py [megabytes]`.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import tempfile
import threading
import time
import tracemalloc
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore", category=DeprecationWarning)
MB = 1024 * 1024


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"VmHWM:\s+(\d+) kB", status)
    assert found is not None
    return int(found.group(1)) * 1024


@contextmanager
def measured() -> Iterator[dict[str, float]]:
    """Peak Python allocations and peak RSS growth (sampled every 2 ms) inside the block, in MB."""
    figures: dict[str, float] = {}
    base = rss()
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    tracemalloc.start()
    try:
        yield figures
    finally:
        figures["traced"] = tracemalloc.get_traced_memory()[1] / MB
        tracemalloc.stop()
        done.set()
        sampler.join()
        figures["rss"] = (peak[0] - base) / MB


def fake_pdf(size: int, into: Any) -> None:
    """A PDF header, then random bytes: passes the chat's content check, fails ingestion."""
    into.write(b"%PDF-1.4\n")
    block = os.urandom(MB)
    while (written := into.tell()) < size:
        into.write(block[: size - written])
    into.seek(0)


def measure_client(size: int, api_url: str, key: str) -> list[tuple[str, float, float]]:
    from django.conf import settings
    from django.core.files import File
    from django.core.files.uploadedfile import TemporaryUploadedFile

    from chat import assistants_api as api
    from chat import uploads

    settings.ASSISTANTS_URL, settings.ASSISTANTS_KEY = api_url, key
    settings.ASSISTANTS_TIMEOUT_SECONDS = 300
    api.sync_client.cache_clear()
    store_id = api.create_vector_store("bench")

    def temporary_upload() -> TemporaryUploadedFile:
        upload = TemporaryUploadedFile("big.pdf", uploads.PDF, size, None)
        fake_pdf(size, upload)
        upload.size = size
        return upload

    async def attach(upload: Any) -> str:
        try:
            return await api.upload_file("big.pdf", upload, uploads.PDF)
        finally:
            await api.close_async_client()

    def kept_copy(path: Path) -> Callable[[], str]:
        def send() -> str:
            with File(path.open("rb")) as copy:
                return api.add_knowledge(store_id, "big.pdf", copy, uploads.PDF)

        return send

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        kept = Path(folder) / "big.pdf"
        with kept.open("wb") as f:
            fake_pdf(size, f)
        upload = temporary_upload()
        scenarios: list[tuple[str, Callable[[], Any]]] = [
            (
                "knowledge file: check, then add_knowledge (sync SDK)",
                lambda: api.add_knowledge(
                    store_id, "big.pdf", uploads.check(upload, 1024 * MB).file, uploads.PDF
                ),
            ),
            ("chat attachment: upload_file (async SDK)", lambda: asyncio.run(attach(upload))),
            ("waiting file's local copy: add_knowledge", kept_copy(kept)),
            (
                "for comparison: the bytes read whole first",
                lambda: api.add_knowledge(store_id, "big.pdf", kept.read_bytes(), uploads.PDF),
            ),
        ]
        for label, call in scenarios:
            with measured() as figures:
                file_id = call()
            stored = api.sync_client().files.retrieve(file_id).bytes
            assert stored == size, (label, stored)
            rows.append((label, figures["traced"], figures["rss"]))
        upload.close()
    api.sync_client().close()
    return rows


ADMIN = """
from django.contrib.auth.models import User
User.objects.create_superuser("admin", password="a-long-bench-password-42")
print("null")
"""


def measure_server(server: Any, size: int) -> tuple[float, float]:
    """Peak RSS of the server process before and after an admin adds a knowledge file, in MB."""
    import httpx2

    from tests.servers import shell

    shell(server, ADMIN)
    with httpx2.Client(base_url=server.url, timeout=600) as http:
        http.get("/admin/login/")
        login = {
            "username": "admin",
            "password": "a-long-bench-password-42",
            "csrfmiddlewaretoken": http.cookies["csrftoken"],
        }
        assert http.post("/admin/login/", data=login).status_code == 302
        http.get("/admin/chat/assistantprofile/add/")  # warm: the form and the model list
        before = peak_rss_of(server.process.pid)
        form = {
            "name": "Bench",
            "model": "threadline-retrieval",
            "response_format": "auto",
            "file_search": "on",
            "csrfmiddlewaretoken": http.cookies["csrftoken"],
        }
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "big.pdf"
            with path.open("wb") as f:
                fake_pdf(size, f)
            with path.open("rb") as f:
                response = http.post(
                    "/admin/chat/assistantprofile/add/",
                    data=form,
                    files={"knowledge_files": ("big.pdf", f, "application/pdf")},
                )
        assert response.status_code == 302, response.text[:2000]
        after = peak_rss_of(server.process.pid)
    return before / MB, after / MB


def main() -> None:
    size = int(sys.argv[1]) * MB if len(sys.argv) > 1 else 100 * MB
    data_dir = tempfile.mkdtemp(prefix="threadline-bench-")
    os.environ["THREADLINE_DATA_DIR"] = data_dir
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from tests.servers import ENGINE_KEY, start_chat_server

    print(f"Upload memory, a {size // MB} MB file.\n")
    server = start_chat_server()  # with static files collected, for the admin's pages
    try:
        before, after = measure_server(server, size)  # first: its peak is then its own
        rows = measure_client(size, server.api_url, ENGINE_KEY)
    finally:
        server.stop()
    width = max(len(r[0]) for r in rows)
    print(f"{'client side (this process)':<{width}} | peak traced | peak RSS growth")
    print("-" * (width + 34))
    for label, traced, grown in rows:
        print(f"{label:<{width}} | {traced:8.1f} MB | {grown:8.1f} MB")
    print(
        f"\nServer side: the server's peak RSS was {before:.0f} MB before an admin added the "
        f"file and {after:.0f} MB after (+{after - before:.0f} MB). Daphne queues each request "
        "body whole in memory (django/daphne#483); here that is the form's and the engine's."
    )
    print("Target: client side, far below the file's size (streamed); server side, about the")
    print("file's size (daphne's queue), not a multiple of it (Twisted parsing the body).")


if __name__ == "__main__":
    main()

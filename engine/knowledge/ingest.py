"""Background ingestion of vector store files: extract, chunk, index; never inside a request.

A file attached to a store stays `in_progress` until a job here ends it `completed` or `failed`.
Jobs run on a small thread pool in the process that accepted the file, after the attaching
transaction commits.

Claims: a job first claims its row by setting `claimed_at`, so one file is never ingested twice
at once, even by several processes. Extraction may take longer than the stale age
(RUN_STALE_SECONDS; extraction's own limit is 60 s), so a ticker thread renews this process's
claims every third of that age; a claim older than the stale age therefore belongs to a process
that died, and `resume_stale()` queues its file again. The job writes its result (chunks and
status, in one transaction) only while the row is still `in_progress` and still carries this
job's claim: a file cancelled, removed or taken over meanwhile is left as it is.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import close_old_connections, transaction
from django.db.models import Q
from django.utils import timezone

from engine.knowledge import embeddings, search, vectors
from engine.knowledge.chunking import Chunk as TextChunk
from engine.knowledge.chunking import chunk_pages
from engine.knowledge.extraction.extract import ExtractionError, extract_pages
from engine.knowledge.files import file_path
from engine.knowledge.furniture import without_furniture
from engine.knowledge.search import chunk_rows
from engine.models import Chunk, VectorStoreFile

log = logging.getLogger(__name__)

WORKERS = 2
SERVER_ERROR = {
    "code": "server_error",
    "message": "The server failed while processing this file. Add it to the vector store again.",
}

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_queued: set[int] = set()  # rows submitted in this process and not finished yet
_claims_lock = threading.Lock()
_claims: dict[int, datetime] = {}  # rows ingesting here -> the claimed_at value this job wrote


def enqueue(store_file_ids: list[int]) -> None:
    """Ingest these vector store files in the background once the current transaction commits."""
    if store_file_ids:
        transaction.on_commit(lambda: submit(store_file_ids))


def submit(store_file_ids: list[int]) -> None:
    executor = start()
    with _lock:
        fresh = [pk for pk in store_file_ids if pk not in _queued]
        _queued.update(fresh)
    if fresh:
        # Ready when the first chunks are. Only for files: the ticker submits every tick, mostly
        # nothing, and an idle process must not hold the model.
        embeddings.load_in_background()
    for pk in fresh:
        executor.submit(job, pk)


def start() -> ThreadPoolExecutor:
    """The process's pool, started with its ticker when the server starts (or on first use)."""
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(WORKERS, thread_name_prefix="threadline-ingest")
            ticker = threading.Thread(target=tick_forever, name="threadline-ingest", daemon=True)
            ticker.start()
            vectors.start_backfill()
        return _executor


def stale_age() -> timedelta:
    return timedelta(seconds=settings.RUN_STALE_SECONDS)


def tick_forever() -> None:
    # The first tick runs at once: the first ingestion request of a process resumes lost files.
    interval = max(0.5, settings.RUN_STALE_SECONDS / 3)
    while True:
        try:
            close_old_connections()
            heartbeat()
            resume_stale()
        except Exception:
            log.exception("Ingestion ticker failed; trying again")
        time.sleep(interval)


def heartbeat() -> None:
    """Renew the claims of the files this process is ingesting."""
    with _claims_lock:
        for pk, claimed_at in list(_claims.items()):
            now = timezone.now()
            if VectorStoreFile.objects.filter(pk=pk, claimed_at=claimed_at).update(claimed_at=now):
                _claims[pk] = now


def resume_stale() -> None:
    """Queue again the files a lost process left `in_progress`; safe to call from any process."""
    cutoff = timezone.now() - stale_age()
    lost = VectorStoreFile.objects.filter(status="in_progress").filter(
        Q(claimed_at__lt=cutoff) | Q(claimed_at__isnull=True, created_at__lt=cutoff)
    )
    submit(list(lost.values_list("pk", flat=True)))


def job(pk: int) -> None:
    close_old_connections()
    try:
        if claim(pk):
            ingest(pk)
    except Exception:
        log.exception("Ingesting vector store file %s failed", pk)
        try:
            finish(pk, status="failed", last_error=SERVER_ERROR)
        except Exception:
            # Most likely the database itself: the claim goes stale and the file is retried.
            log.exception("Could not mark vector store file %s failed", pk)
    finally:
        with _claims_lock:
            _claims.pop(pk, None)
        with _lock:
            _queued.discard(pk)
        close_old_connections()


def claim(pk: int) -> bool:
    now = timezone.now()
    free = Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - stale_age())
    with _claims_lock:
        if VectorStoreFile.objects.filter(free, pk=pk, status="in_progress").update(claimed_at=now):
            _claims[pk] = now
            return True
    return False


def ingest(pk: int) -> None:
    row = VectorStoreFile.objects.select_related("file").filter(pk=pk).first()
    if row is None:  # removed since it was claimed
        return
    path = file_path(row.file)
    static = row.chunking_strategy["static"]
    try:
        # Running headers, footers and leaders out: they are the printer's, not the document's.
        pages = without_furniture(extract_pages(path, row.file.filename))
    except ExtractionError as error:
        finish(pk, status="failed", last_error=failure(error))
        return
    chunks = chunk_pages(pages, static["max_chunk_size_tokens"], static["chunk_overlap_tokens"])
    # Embedded before the final write, so a completed file is searchable by meaning at once.
    embedded = vectors.embed_for_ingestion([chunk.text for chunk in chunks])
    finish(pk, status="completed", chunks=chunks, pages=len(pages), row=row, embedded=embedded)
    search.refresh_statistics()


def failure(error: ExtractionError) -> dict[str, str]:
    # Every extraction failure is about the file, so the uploader can act on the message.
    code = "unsupported_file" if error.code == "unsupported_type" else "invalid_file"
    return {"code": code, "message": error.message}


def finish(
    pk: int,
    *,
    status: str,
    last_error: dict[str, Any] | None = None,
    chunks: list[TextChunk] | None = None,
    pages: int = 0,
    row: VectorStoreFile | None = None,
    embedded: vectors.Embedded | None = None,
) -> None:
    """Write the result if the row is still in progress under this job's claim."""
    chunks = chunks or []
    usage = sum(len(chunk.text.encode()) for chunk in chunks)
    # Holding the claims lock keeps the heartbeat from moving claimed_at under this write.
    with _claims_lock, transaction.atomic():
        claimed_at = _claims.get(pk)
        if claimed_at is None:
            return
        written = VectorStoreFile.objects.filter(
            pk=pk, status="in_progress", claimed_at=claimed_at
        ).update(
            status=status,
            last_error=last_error,
            usage_bytes=usage,
            pages=pages,
            chunk_count=len(chunks),
            claimed_at=None,
        )
        if written and row is not None:
            rows = chunk_rows(pk, chunks, row.vector_store_id, row.file_id)
            Chunk.objects.bulk_create(rows)
            if embedded is not None:
                vectors.save(rows, embedded)

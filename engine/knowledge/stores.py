"""Files and vector stores: storing uploads, attaching files to stores, searching them.

Ingestion itself runs in the background (`engine.ingest`); this module only creates the rows it
works on and the ones it must leave alone (cancelled, removed).
"""

from __future__ import annotations

import operator
import secrets
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler, SkipFile
from django.db import models, transaction
from django.http import HttpRequest
from django.utils import timezone

from engine.api.errors import ApiError
from engine.api.schemas import (
    ChunkingStrategy,
    ComparisonFilter,
    CompoundFilter,
    CreateVectorStoreFile,
    ExpiresAfter,
    dump,
)
from engine.knowledge import ingest, search
from engine.knowledge.chunking import AUTO_CHUNK_OVERLAP_TOKENS, AUTO_MAX_CHUNK_SIZE_TOKENS
from engine.knowledge.resources import check_files
from engine.models import Chunk, File, FileBatch, Project, Thread, VectorStore, VectorStoreFile

PURPOSES = ("assistants", "vision", "user_data", "batch", "fine-tune", "evals")
# As OpenAI did: a thread's own store lives on for a week after it was last used.
THREAD_STORE_EXPIRY = ExpiresAfter(anchor="last_active_at", days=7)

# --- Uploaded bytes -------------------------------------------------------------------------------


def file_path(file: File) -> Path:
    return settings.FILES_DIR / file.storage_name


def too_large(size: int) -> ApiError:
    return ApiError(
        413,
        f"The file is too large: {size:,} bytes or more, and the largest upload this server "
        f"accepts is {settings.MAX_UPLOAD_BYTES:,} bytes (THREADLINE_MAX_UPLOAD_BYTES).",
        param="file",
        code="file_too_large",
    )


class StoredUpload(UploadedFile):
    """An uploaded file whose bytes already sit in storage under a random name."""

    def __init__(self, path: Path, name: str, content_type: str, size: int) -> None:
        super().__init__(file=None, name=name, content_type=content_type, size=size)
        self.path = path

    def close(self) -> None:
        """Nothing is open: the bytes were written and closed while they arrived."""


class StorageUploadHandler(FileUploadHandler):
    """Streams the `file` field of a multipart upload straight into FILES_DIR.

    Django's default handlers keep small uploads in memory and copy large ones through the system
    temp directory; this one writes each byte once, where it stays, and stops at the size limit.
    Whatever it wrote is the caller's to `discard()` unless the upload is accepted.
    """

    def __init__(self, request: HttpRequest) -> None:
        super().__init__(request)
        self.written: list[Path] = []
        self.destination: Any = None

    def new_file(self, field_name: str, file_name: str, *args: Any, **kwargs: Any) -> None:
        super().new_file(field_name, file_name, *args, **kwargs)
        if field_name != "file":
            raise SkipFile()
        settings.FILES_DIR.mkdir(parents=True, exist_ok=True)
        path = settings.FILES_DIR / secrets.token_hex(16)
        self.written.append(path)
        self.destination = path.open("xb")

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        if start + len(raw_data) > settings.MAX_UPLOAD_BYTES:
            raise too_large(start + len(raw_data))
        self.destination.write(raw_data)

    def file_complete(self, file_size: int) -> StoredUpload:
        self.destination.close()
        return StoredUpload(self.written[-1], self.file_name, self.content_type, file_size)

    def discard(self, keep: Path | None = None) -> None:
        if self.destination is not None:
            self.destination.close()
        for path in self.written:
            if path != keep:
                path.unlink(missing_ok=True)


def create_file(project: Project, upload: StoredUpload, purpose: str) -> File:
    return File.objects.create(
        project=project,
        filename=upload.name or "upload",
        bytes=upload.size or 0,
        purpose=purpose,
        storage_name=upload.path.name,
    )


def delete_file(file: File) -> None:
    """Remove the file from every vector store, then the file; its bytes go once that commits."""
    path = file_path(file)
    with transaction.atomic():
        remove_store_files(VectorStoreFile.objects.filter(file=file))
        file.delete()
        transaction.on_commit(lambda: path.unlink(missing_ok=True))


# --- Vector stores --------------------------------------------------------------------------------


def create_store(
    project: Project,
    *,
    file_ids: list[str],
    chunking_strategy: ChunkingStrategy | None,
    metadata: dict[str, str],
    name: str | None = None,
    description: str | None = None,
    expires_after: ExpiresAfter | None = None,
    owner_thread_id: str | None = None,
) -> VectorStore:
    with transaction.atomic():
        store = VectorStore(
            project=project,
            name=name,
            description=description,
            metadata=metadata,
            owner_thread_id=owner_thread_id,
        )
        set_expiry(store, expires_after)
        store.save()
        entries = [
            CreateVectorStoreFile(file_id=file_id, chunking_strategy=chunking_strategy)
            for file_id in file_ids
        ]
        attach(store, entries)
    return store


def set_expiry(store: VectorStore, expires_after: ExpiresAfter | None) -> None:
    store.expires_after = dump(expires_after)
    store.expires_at = None
    if expires_after is not None:
        store.expires_at = store.last_active_at + timedelta(days=expires_after.days)


def touch_stores(store_ids: Iterable[str]) -> None:
    """Mark stores as used now, which pushes back the expiry of those that have one."""
    now = timezone.now()
    for store in VectorStore.objects.filter(pk__in=list(store_ids)):
        store.last_active_at = now
        set_expiry(store, ExpiresAfter(**store.expires_after) if store.expires_after else None)
        store.save(update_fields=["last_active_at", "expires_at"])


def is_expired(store: VectorStore) -> bool:
    return store.expires_at is not None and store.expires_at <= timezone.now()


def delete_store(store: VectorStore) -> None:
    """Delete the store with its files' chunks; the files themselves stay."""
    with transaction.atomic():
        remove_store_files(store.files.all())
        store.delete()


def remove_store_files(store_files: models.QuerySet[VectorStoreFile]) -> None:
    """Delete vector store files and their chunks, waiting for any ingestion writing them."""
    with transaction.atomic():
        # The row lock (PostgreSQL; SQLite's IMMEDIATE transaction locks everything) orders this
        # against an ingestion job's final write: either its chunks are here to delete, or its
        # row is gone when it looks and it writes nothing.
        ids = list(store_files.select_for_update().values_list("pk", flat=True))
        Chunk.objects.filter(store_file_id__in=ids).delete()
        VectorStoreFile.objects.filter(pk__in=ids).delete()


def effective_strategy(strategy: ChunkingStrategy | None) -> dict[str, Any]:
    """The static strategy a file is chunked with; OpenAI reports `auto` as what it means."""
    if strategy is None or strategy.type == "auto":
        static = {
            "max_chunk_size_tokens": AUTO_MAX_CHUNK_SIZE_TOKENS,
            "chunk_overlap_tokens": AUTO_CHUNK_OVERLAP_TOKENS,
        }
    elif strategy.static is None:
        raise ApiError(
            400,
            "Missing required parameter: 'chunking_strategy.static'.",
            param="chunking_strategy.static",
            code="missing_required_parameter",
        )
    else:
        static = strategy.static.model_dump()
    return {"type": "static", "static": static}


def attach(
    store: VectorStore,
    entries: list[CreateVectorStoreFile],
    batch: FileBatch | None = None,
    param: str = "file_ids",
) -> list[VectorStoreFile]:
    """Add files to a store, one row per file, and queue the ones that need ingesting."""
    unique: dict[str, CreateVectorStoreFile] = {}
    for entry in entries:
        unique.setdefault(entry.file_id, entry)
    check_files(store.project, list(unique), param)
    strategies = [effective_strategy(entry.chunking_strategy) for entry in unique.values()]
    with transaction.atomic():
        existing = {
            row.file_id: row
            for row in store.files.select_for_update().filter(file_id__in=list(unique))
        }
        rows = [
            upsert(store, entry, strategy, existing.get(entry.file_id), batch)
            for entry, strategy in zip(unique.values(), strategies, strict=True)
        ]
        # Rows already in progress are queued again too: harmless (a job claims its row
        # first), and it revives a file whose process died before its claim went stale.
        ingest.enqueue([row.pk for row in rows if row.status == "in_progress"])
    return rows


def upsert(
    store: VectorStore,
    entry: CreateVectorStoreFile,
    strategy: dict[str, Any],
    row: VectorStoreFile | None,
    batch: FileBatch | None,
) -> VectorStoreFile:
    """The store's row for a file: new; reset if it had failed or was cancelled, which is how a
    client retries; otherwise kept as it is, with the new batch and attributes."""
    if row is not None and row.status not in ("failed", "cancelled"):
        row.batch = batch or row.batch
        if entry.attributes is not None:
            row.attributes = entry.attributes
        row.save(update_fields=["batch", "attributes"])
        return row
    row = row or VectorStoreFile(vector_store=store, file_id=entry.file_id)
    row.status = "in_progress"
    row.last_error = None
    row.claimed_at = None
    row.usage_bytes = 0
    row.pages = 0
    row.chunking_strategy = strategy
    row.attributes = entry.attributes or {}
    row.batch = batch or row.batch
    row.save()
    return row


def create_batch(store: VectorStore, entries: list[CreateVectorStoreFile], param: str) -> FileBatch:
    with transaction.atomic():
        batch = FileBatch.objects.create(project=store.project, vector_store=store)
        attach(store, entries, batch, param)
    return batch


def cancel_batch(batch: FileBatch) -> None:
    """Stop the batch's files that are still waiting or ingesting; finished ones stay."""
    with transaction.atomic():
        if not batch.files.filter(status="in_progress").exists():
            raise ApiError(
                400,
                f"Batch '{batch.id}' has no files in progress, so there is nothing to cancel.",
            )
        batch.cancelled = True
        batch.save(update_fields=["cancelled"])
        # An ingestion job writes only while the row is still in_progress, so it cannot
        # bring these back.
        batch.files.filter(status="in_progress").update(status="cancelled", claimed_at=None)


def add_to_thread_store(thread: Thread, file_ids: list[str]) -> VectorStore:
    """Add message attachments to the thread's vector store, creating one if it has none.

    As OpenAI did: the files join the store already attached to the thread; without one, the
    thread gets its own store, which expires a week after its last use.
    """
    with transaction.atomic():
        locked = Thread.objects.select_for_update().get(pk=thread.pk)
        store = thread_store(locked)
        if store is None:
            store = create_store(
                locked.project,
                file_ids=[],
                chunking_strategy=None,
                metadata={},
                expires_after=THREAD_STORE_EXPIRY,
                owner_thread_id=locked.id,
            )
            resources = {**locked.tool_resources, "file_search": {"vector_store_ids": [store.id]}}
            Thread.objects.filter(pk=locked.pk).update(tool_resources=resources)
            thread.tool_resources = resources
        entries = [CreateVectorStoreFile(file_id=file_id) for file_id in file_ids]
        attach(store, entries, param="attachments.file_id")
    return store


def thread_store(thread: Thread) -> VectorStore | None:
    store_ids = thread.tool_resources.get("file_search", {}).get("vector_store_ids", [])
    return VectorStore.objects.filter(project_id=thread.project_id, pk__in=store_ids).first()


# --- Search ---------------------------------------------------------------------------------------


def search_store(
    store: VectorStore,
    queries: list[str],
    *,
    max_results: int,
    score_threshold: float,
    filters: ComparisonFilter | CompoundFilter | None,
) -> list[search.Hit]:
    """The best chunks for any of the queries, best first, each with its file's attributes."""
    if is_expired(store):
        raise ApiError(400, f"Vector store '{store.id}' has expired and can no longer be searched.")
    file_ids = matching_file_ids(store, filters) if filters is not None else None
    best: dict[int, search.Hit] = {}
    for query in queries:
        for hit in search.search(
            [store.id],
            query,
            max_results=max_results,
            score_threshold=score_threshold,
            file_ids=file_ids,
        ):
            if hit.chunk_id not in best or hit.score > best[hit.chunk_id].score:
                best[hit.chunk_id] = hit
    hits = sorted(best.values(), key=lambda hit: hit.score, reverse=True)[:max_results]
    attributes = dict(
        store.files.filter(file_id__in={hit.file_id for hit in hits}).values_list(
            "file_id", "attributes"
        )
    )
    for hit in hits:
        hit.attributes = attributes.get(hit.file_id) or {}
    touch_stores([store.id])
    return hits


def matching_file_ids(store: VectorStore, filters: ComparisonFilter | CompoundFilter) -> list[str]:
    """The store's completed files whose attributes pass the filter, evaluated here in Python."""
    rows = store.files.filter(status="completed").values_list("file_id", "attributes")
    return [file_id for file_id, attributes in rows if passes(filters, attributes or {})]


MISSING = object()
ORDERINGS: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


def passes(filters: ComparisonFilter | CompoundFilter, attributes: dict[str, Any]) -> bool:
    if isinstance(filters, CompoundFilter):
        results = (passes(part, attributes) for part in filters.filters)
        return all(results) if filters.type == "and" else any(results)
    actual = attributes.get(filters.key, MISSING)
    expected = filters.value
    if filters.type in ("in", "nin"):
        options = expected if isinstance(expected, list) else [expected]
        found = any(same(actual, option) for option in options)
        return found if filters.type == "in" else not found
    if filters.type == "eq":
        return same(actual, expected)
    if filters.type == "ne":
        return not same(actual, expected)
    # Ordering compares numbers with numbers and strings with strings; anything else fails.
    if kind(actual) != kind(expected) or kind(actual) not in ("number", "string"):
        return False
    return ORDERINGS[filters.type](actual, expected)


def same(actual: Any, expected: Any) -> bool:
    # True == 1 in Python, but a boolean attribute never equals a number here.
    return kind(actual) == kind(expected) and actual == expected


def kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "other"

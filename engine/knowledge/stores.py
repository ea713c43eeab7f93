"""Vector stores: their files (attached, retried, removed), file batches, a thread's own store.

Ingestion itself runs in the background (`engine.knowledge.ingest`); this module only creates the
rows it works on and the ones it must leave alone (cancelled, removed).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.db import models, transaction
from django.utils import timezone

from engine.api.errors import ApiError
from engine.api.schemas import ChunkingStrategy, CreateVectorStoreFile, ExpiresAfter, dump
from engine.knowledge import ingest
from engine.knowledge.chunking import AUTO_CHUNK_OVERLAP_TOKENS, AUTO_MAX_CHUNK_SIZE_TOKENS
from engine.knowledge.files import check_files, file_path
from engine.models import Chunk, File, FileBatch, Project, Thread, VectorStore, VectorStoreFile

# As OpenAI did: a thread's own store lives on for a week after it was last used.
THREAD_STORE_EXPIRY = ExpiresAfter(anchor="last_active_at", days=7)


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


EXPIRY_SWEEP_SECONDS = 60
_last_sweep = 0.0


def delete_expired_files() -> None:
    """Delete the files whose `expires_after` has passed, with their chunks and bytes. They
    are invisible from the moment they expire (`File.objects`); this frees the space, at most
    once a minute per process."""
    global _last_sweep
    if time.monotonic() - _last_sweep < EXPIRY_SWEEP_SECONDS:
        return
    _last_sweep = time.monotonic()
    for file in File.with_expired.filter(expires_at__lte=timezone.now()):
        delete_file(file)


def delete_file(file: File) -> None:
    """Remove the file from every vector store, then the file; its bytes go once that commits."""
    path = file_path(file)
    with transaction.atomic():
        remove_store_files(VectorStoreFile.objects.filter(file=file))
        file.delete()
        transaction.on_commit(lambda: path.unlink(missing_ok=True))


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

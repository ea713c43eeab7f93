"""Chunk vectors: written with the chunks, re-embedded in the background, searched in memory.

Search is exact, on SQLite and PostgreSQL alike: each process keeps the configured model's
vectors in one float32 matrix and ranks the searched stores' rows with one matrix product, about
10 ms for 100k chunks of 256 dimensions on one core (`bench/knowledge.py`). Exact search needs no
database extension, returns the true nearest chunks whatever the store filter, and sees a new
chunk as soon as its transaction commits. It costs memory: 1 KB per chunk per process (100 MB at
100k chunks of 256 dimensions).

The matrix follows the database. Before each search one query reads the newest vector id, and rows
with a larger id are loaded. Every few seconds the row count is compared too: a count that
disagrees (rows deleted, or committed out of id order on PostgreSQL, which a search may then miss
for those seconds, though full-text still finds them) reconciles the set of ids.

Re-embedding: a chunk whose vector is missing or belongs to another model gets one from the
background backfill of each process (`start_backfill`), which replaces rows, never edits them.
Two processes may embed the same batch; the second's rows simply replace the first's.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from django.db import IntegrityError, close_old_connections, connection, transaction

from engine.knowledge import embeddings
from engine.knowledge.embeddings import Embedder, Vectors
from engine.models import Chunk, ChunkVector

log = logging.getLogger(__name__)

STORED = np.dtype("<f2")  # float16 on disk: half the bytes, ample precision for a cosine
# Searches over more rows than this rank first on PROJECTED_DIMENSIONS main directions, then
# exactly over SHORTLIST_FACTOR times the rows asked for.
PROJECT_ABOVE = 20_000
PROJECTED_DIMENSIONS = 64
SHORTLIST_FACTOR = 10
RECOUNT_SECONDS = 5.0
BACKFILL_BATCH = 256
BACKFILL_IDLE_SECONDS = 10.0


# --- Writing ----------------------------------------------------------------------------------


def to_bytes(vector: npt.NDArray[np.float32]) -> bytes:
    return vector.astype(STORED).tobytes()


@dataclass
class Embedded:
    """New chunks' vectors under `model`."""

    model: str
    vectors: Vectors

    def rows(self, chunk_ids: list[int]) -> list[ChunkVector]:
        return [
            ChunkVector(chunk_id=chunk_id, model=self.model, vector=to_bytes(vector))
            for chunk_id, vector in zip(chunk_ids, self.vectors, strict=True)
        ]


def embed(embedder: Embedder, texts: list[str]) -> Embedded:
    return Embedded(embedder.name, embedder.embed(texts))


def save(chunks: list[Chunk], embedded: Embedded) -> None:
    """Store the vectors of freshly created chunks (same order), inside the caller's transaction."""
    ChunkVector.objects.bulk_create(embedded.rows([chunk.pk for chunk in chunks]))


def embed_for_ingestion(texts: list[str]) -> Embedded | None:
    """The configured model's vectors for new chunks, or None (embeddings off, or the model
    failed: the file is still searchable by its words, and the backfill tries again)."""
    embedder = embeddings.configured()
    if embedder is None or not texts:
        return None
    try:
        return embed(embedder, texts)
    except Exception:
        log.exception("Embedding %s chunks failed; the backfill will try again", len(texts))
        return None


# --- The in-memory index ----------------------------------------------------------------------


@dataclass
class Index:
    model: str
    dimensions: int = 0
    matrix: Vectors = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    chunk_ids: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    stores: npt.NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, np.int32))
    live: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, np.bool_))
    size: int = 0  # rows in use; the arrays grow by doubling
    row_of: dict[int, int] = field(default_factory=dict)  # chunk id -> row
    store_codes: dict[str, int] = field(default_factory=dict)
    newest_id: int = 0
    live_count: int = 0
    next_count: float = 0.0  # when the row count is next compared (time.monotonic())
    # For large searches: the rows projected on their main directions (see `nearest`).
    basis: Vectors | None = None
    projected: Vectors = field(default_factory=lambda: np.zeros((0, 0), np.float32))

    def add(self, chunk_id: int, store_id: str, vector: npt.NDArray[np.float32]) -> None:
        row = self.row_of.get(chunk_id)
        if row is None:
            if not self.dimensions:
                self.dimensions = len(vector)
                self.matrix = np.zeros((0, self.dimensions), np.float32)
            if len(vector) != self.dimensions:
                return  # a model whose size changed under the same name: skip, do not crash
            if self.size == len(self.chunk_ids):
                self.grow()
            row = self.size
            self.size += 1
            self.row_of[chunk_id] = row
            self.chunk_ids[row] = chunk_id
        if not self.live[row]:
            self.live[row] = True
            self.live_count += 1
        self.stores[row] = self.store_codes.setdefault(store_id, len(self.store_codes))
        self.matrix[row] = vector
        if self.basis is not None:
            self.projected[row] = vector @ self.basis

    def grow(self) -> None:
        capacity = max(1024, 2 * len(self.chunk_ids))
        extra = capacity - len(self.chunk_ids)
        self.matrix = np.vstack([self.matrix, np.zeros((extra, self.dimensions), np.float32)])
        self.chunk_ids = np.concatenate([self.chunk_ids, np.zeros(extra, np.int64)])
        self.stores = np.concatenate([self.stores, np.zeros(extra, np.int32)])
        self.live = np.concatenate([self.live, np.zeros(extra, np.bool_)])
        if self.basis is not None:
            padding = np.zeros((extra, self.basis.shape[1]), np.float32)
            self.projected = np.vstack([self.projected, padding])

    def fit_projection(self) -> None:
        """The main directions of the vectors (an uncentred PCA, which keeps dot products best),
        fitted once from the rows present when the index first grows large."""
        rows = self.matrix[: self.size][self.live[: self.size]]
        _, eigenvectors = np.linalg.eigh(rows.T @ rows)
        self.basis = np.ascontiguousarray(eigenvectors[:, -PROJECTED_DIMENSIONS:])
        self.projected = np.zeros((len(self.chunk_ids), PROJECTED_DIMENSIONS), np.float32)
        self.projected[: self.size] = self.matrix[: self.size] @ self.basis

    def keep_only(self, chunk_ids: set[int]) -> None:
        for chunk_id, row in self.row_of.items():
            if self.live[row] and chunk_id not in chunk_ids:
                self.live[row] = False
                self.live_count -= 1


_indexes: dict[str, Index] = {}
_index_lock = threading.Lock()

LOAD_ROWS = """SELECT v.id, v.chunk_id, c.vector_store_id, v.vector
    FROM engine_chunkvector v JOIN engine_chunk c ON c.id = v.chunk_id
    WHERE v.model = %s AND {}"""


def refreshed(model: str) -> Index:
    """The process's index for `model`, brought up to date with the database.

    The caller holds `_index_lock` while it uses the index: rows are added in place."""
    index = _indexes.setdefault(model, Index(model))
    with connection.cursor() as cursor:
        # The newest id of any model: one step down the primary key's index.
        cursor.execute("SELECT coalesce(max(id), 0) FROM engine_chunkvector")
        newest = cursor.fetchone()[0]
        if newest > index.newest_id:
            newer = LOAD_ROWS.format("v.id > %s ORDER BY v.id")
            cursor.execute(newer, [model, index.newest_id])
            load(index, cursor.fetchall())
            index.newest_id = newest
        # Deleted rows cost nothing meanwhile (searches keep only chunks in scope), and
        # rows committed out of id order are rare: counting every few seconds is enough.
        if time.monotonic() >= index.next_count:
            index.next_count = time.monotonic() + RECOUNT_SECONDS
            cursor.execute("SELECT count(*) FROM engine_chunkvector WHERE model = %s", [model])
            if cursor.fetchone()[0] != index.live_count:
                reconcile(index, cursor)
    return index


def load(index: Index, rows: list[tuple[Any, ...]]) -> None:
    for _, chunk_id, store_id, blob in rows:
        vector = np.frombuffer(bytes(blob), STORED).astype(np.float32)
        index.add(chunk_id, store_id, vector)


def reconcile(index: Index, cursor: Any) -> None:
    cursor.execute("SELECT chunk_id FROM engine_chunkvector WHERE model = %s", [index.model])
    present = {row[0] for row in cursor.fetchall()}
    index.keep_only(present)
    missing = [
        chunk_id
        for chunk_id in present
        if chunk_id not in index.row_of or not index.live[index.row_of[chunk_id]]
    ]
    for start in range(0, len(missing), 500):
        part = missing[start : start + 500]
        cursor.execute(
            LOAD_ROWS.format("v.chunk_id IN ({})".format(",".join(["%s"] * len(part)))),
            [index.model, *part],
        )
        load(index, cursor.fetchall())  # few rows: reconciling is rare


def nearest(
    store_ids: list[str], query: npt.NDArray[np.float32], model: str, limit: int
) -> list[tuple[int, float]]:
    """The chunks of these stores most similar to the query vector: (chunk id, cosine), best
    first. Chunks of files that are not completed or were removed may be among them: the
    caller keeps those its scope allows."""
    with _index_lock:
        return _nearest(refreshed(model), store_ids, query, limit)


def _nearest(
    index: Index, store_ids: list[str], query: npt.NDArray[np.float32], limit: int
) -> list[tuple[int, float]]:
    if not index.size or len(query) != index.dimensions:
        return []
    codes = [index.store_codes[s] for s in store_ids if s in index.store_codes]
    rows = np.flatnonzero(np.isin(index.stores[: index.size], codes) & index.live[: index.size])
    if not len(rows):
        return []
    if len(rows) > PROJECT_ABOVE and len(rows) > limit * SHORTLIST_FACTOR:
        if index.basis is None:
            index.fit_projection()
        assert index.basis is not None
        # The main directions carry most of a dot product: rank on them (a quarter of the
        # memory read), then rank the best SHORTLIST_FACTOR * limit exactly.
        rough = (index.projected[: index.size] @ (query @ index.basis))[rows]
        rows = rows[np.argpartition(-rough, limit * SHORTLIST_FACTOR)[: limit * SHORTLIST_FACTOR]]
        scores = index.matrix[rows] @ query
    elif len(rows) < index.size // 2:  # a few stores' rows: gathered, then multiplied
        scores = index.matrix[rows] @ query
    else:
        scores = (index.matrix[: index.size] @ query)[rows]
    best = np.argpartition(-scores, limit)[:limit] if len(rows) > limit else np.arange(len(rows))
    best = best[np.argsort(-scores[best], kind="stable")]
    return [(int(index.chunk_ids[rows[i]]), float(scores[i])) for i in best]


def similarities(
    chunk_ids: list[int], query: npt.NDArray[np.float32], model: str
) -> dict[int, float]:
    """Cosine of the query with each of these chunks that has a vector under `model`."""
    with _index_lock:
        return _similarities(_indexes.get(model), chunk_ids, query)


def _similarities(
    index: Index | None, chunk_ids: list[int], query: npt.NDArray[np.float32]
) -> dict[int, float]:
    if index is None or len(query) != index.dimensions:
        return {}
    found = [
        (chunk_id, index.row_of[chunk_id])
        for chunk_id in chunk_ids
        if chunk_id in index.row_of and index.live[index.row_of[chunk_id]]
    ]
    if not found:
        return {}
    scores = index.matrix[[row for _, row in found]] @ query
    return {chunk_id: float(score) for (chunk_id, _), score in zip(found, scores, strict=True)}


def forget_indexes() -> None:
    """Drop every in-memory index (tests and benchmarks that rebuild their database)."""
    with _index_lock:
        _indexes.clear()


# --- Background re-embedding ------------------------------------------------------------------

_backfill_lock = threading.Lock()
_backfill_thread: threading.Thread | None = None


def start_backfill() -> None:
    """Start this process's re-embedding thread, once."""
    global _backfill_thread
    with _backfill_lock:
        if _backfill_thread is None and embeddings.configured_name() is not None:
            _backfill_thread = threading.Thread(
                target=backfill_forever, name="threadline-embed", daemon=True
            )
            _backfill_thread.start()


def backfill_forever() -> None:
    while True:
        try:
            close_old_connections()
            done = backfill_once()
        except Exception:
            log.exception("Re-embedding chunks failed; trying again")
            done = 0
        if not done:
            time.sleep(BACKFILL_IDLE_SECONDS)


def pending(model: str) -> bool:
    """Whether some chunk lacks a vector of `model` (two counts, no join: cheap when idle)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM engine_chunk")
        chunks = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM engine_chunkvector WHERE model = %s", [model])
        return bool(chunks != cursor.fetchone()[0])


def backfill_once(batch: int = BACKFILL_BATCH) -> int:
    """Embed one batch of chunks that lack a vector of the configured model; how many."""
    name = embeddings.configured_name()
    if name is None or not pending(name):
        return 0  # checked before the model is loaded: an idle process never loads it
    embedder = embeddings.configured()
    if embedder is None:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT c.id, c.text FROM engine_chunk c
            LEFT JOIN engine_chunkvector v ON v.chunk_id = c.id
            WHERE v.id IS NULL OR v.model <> %s
            ORDER BY c.id LIMIT %s""",
            [embedder.name, batch],
        )
        rows = cursor.fetchall()
    if not rows:
        return 0
    embedded = embed(embedder, [text for _, text in rows])
    chunk_ids = [chunk_id for chunk_id, _ in rows]
    try:
        with transaction.atomic():
            ChunkVector.objects.filter(chunk_id__in=chunk_ids).exclude(model=embedder.name).delete()
            alive = set(Chunk.objects.filter(pk__in=chunk_ids).values_list("pk", flat=True))
            ChunkVector.objects.bulk_create(
                [row for row in embedded.rows(chunk_ids) if row.chunk_id in alive],
                ignore_conflicts=True,
            )
    except IntegrityError:
        return 0  # a chunk removed meanwhile; the next round sees the rest
    return len(rows)

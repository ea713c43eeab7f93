"""Hybrid search: full-text and vector candidates fused into one ranking, scores in 0..1.

Candidates come from two places in the searched stores: the full-text index's best chunks
(`engine.knowledge.search`, bm25 mapped into 0..1) and the chunks nearest the query's vector
(`engine.knowledge.vectors`). Every candidate then gets both signals, and a blend ranks them:

    first stage:  (cosine + TEXT_WEIGHT * text) / (1 + TEXT_WEIGHT)
    reranked:     (cosine + best window's cosine + TEXT_WEIGHT * text) / (2 + TEXT_WEIGHT)

(cosines below zero count as zero). A blend keeps a score's meaning, so `score_threshold` means
the same for every query; rank fusion (RRF) would not, and measured worse on paraphrased
questions: full-text ranks carry little signal when a question shares no words with its page.
The semantic side weighs most for the same reason; the text side still lifts the chunk that
holds a rare word of the query, which a static embedding model barely tells apart.

The reranker (`ranker` auto or a dated ranker; `none` turns it off) scores the candidates' best
64-token window against the query: a chunk's vector is the mean of up to 800 tokens, so an answer
held in one paragraph of a long chunk is diluted. Windows are computed from the chunks' text at
query time (local model only; an API model's vectors are compared whole).

With embeddings off, or for chunks not embedded yet under the current model (while a changed
THREADLINE_EMBEDDINGS re-embeds in the background), search is full-text: text-only scores for
those chunks.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import numpy.typing as npt
from django.db import connection

from engine.knowledge import embeddings, search, vectors
from engine.knowledge.embeddings import Embedder, LocalEmbedder
from engine.knowledge.search import Hit
from engine.models import File

log = logging.getLogger(__name__)

TEXT_WEIGHT = 0.5
# Candidates taken from each side before blending, and how many of the best the reranker sees.
TEXT_CANDIDATES = 20
VECTOR_CANDIDATES = 50
RERANKED = 20
RERANK_OFF = "none"

# The vector side runs here while the caller's thread runs the full-text side: numpy and the
# database drivers release the interpreter lock, so the two overlap on a second core.
_vector_side = ThreadPoolExecutor(max_workers=2, thread_name_prefix="threadline-vectors")


def rewrite(query: str) -> str:
    """The query as search terms: question words, stop words and punctuation left out.

    `rewrite_query` asks for a query fit for search; without a language model at hand, the
    deterministic rewrite keeps the words that carry meaning (the original when none would be
    left)."""
    terms = [term for term in search.query_terms(query) if " " not in term]
    return " ".join(terms) or query


def hybrid_search(
    store_ids: list[str],
    query: str,
    *,
    max_results: int = 10,
    score_threshold: float = 0.0,
    file_ids: list[str] | None = None,
    ranker: str = "auto",
) -> list[Hit]:
    """The best chunks for `query` among completed files of these stores, best first."""
    if not store_ids or file_ids == [] or not search.query_terms(query):
        return []  # nothing searchable: an empty or one-letter query matches no meaning either
    embedder = embeddings.configured()
    vectors.start_backfill()
    limit = max(max_results, VECTOR_CANDIDATES)
    pending = _vector_side.submit(nearest, embedder, query, store_ids, limit) if embedder else None
    lexical = search.search(
        store_ids, query, max_results=max(max_results, TEXT_CANDIDATES), file_ids=file_ids
    )
    query_vector, found = pending.result() if pending else (None, [])
    if embedder is None or query_vector is None:
        return [hit for hit in lexical if hit.score >= score_threshold][:max_results]

    text_score = {hit.chunk_id: hit.score for hit in lexical}
    hits: dict[int, Hit | None] = {hit.chunk_id: hit for hit in lexical}
    cosine = dict(found)
    for chunk_id in in_scope([c for c in cosine if c not in hits], store_ids, file_ids):
        hits[chunk_id] = None  # in scope; its text is read only if it makes the shortlist
    cosine.update(vectors.similarities(list(hits), query_vector, embedder.name))

    def first_stage(chunk_id: int) -> float:
        semantic = max(0.0, cosine.get(chunk_id, 0.0))
        return (semantic + TEXT_WEIGHT * text_score.get(chunk_id, 0.0)) / (1 + TEXT_WEIGHT)

    rerank = ranker != RERANK_OFF and isinstance(embedder, LocalEmbedder)
    shortlist = sorted(hits, key=lambda chunk_id: (-first_stage(chunk_id), chunk_id))
    shortlist = shortlist[: max(max_results, RERANKED) if rerank else max_results]
    read = {
        chunk_id: Hit(chunk_id, file_id, page, text, 0.0)
        for chunk_id, file_id, page, text in search.chunk_texts_of(
            [c for c in shortlist if not hits[c]]
        )
    }
    ranked = [hit for c in shortlist if (hit := hits[c] or read.get(c)) is not None]
    if isinstance(embedder, LocalEmbedder) and rerank:
        stored = vectors.token_ids([hit.chunk_id for hit in ranked], embedder.name)
        unstored = [hit for hit in ranked if hit.chunk_id not in stored]
        for hit, ids in zip(unstored, embedder.tokens([h.text for h in unstored]), strict=True):
            stored[hit.chunk_id] = ids
        windows = embedder.best_windows([stored[hit.chunk_id] for hit in ranked], query_vector)
        for hit, window in zip(ranked, windows, strict=True):
            semantic = max(0.0, cosine.get(hit.chunk_id, 0.0))
            text = TEXT_WEIGHT * text_score.get(hit.chunk_id, 0.0)
            hit.score = (semantic + max(0.0, window) + text) / (2 + TEXT_WEIGHT)
    else:
        for hit in ranked:
            hit.score = first_stage(hit.chunk_id)
    ranked.sort(key=lambda hit: (-hit.score, hit.chunk_id))
    kept = [hit for hit in ranked if hit.score >= score_threshold][:max_results]
    name_files(kept)
    return kept


def nearest(
    embedder: Embedder, query: str, store_ids: list[str], limit: int
) -> tuple[npt.NDArray[np.float32] | None, list[tuple[int, float]]]:
    """The query's vector and the chunks nearest it (no vector if the model failed)."""
    try:
        query_vector = embedder.embed([query])[0]
    except Exception:
        # An embedding API that fails must not take search down: words still find chunks.
        log.exception("Embedding a search query failed; searching by words only")
        return None, []
    return query_vector, vectors.nearest(store_ids, query_vector, embedder.name, limit)


def in_scope(chunk_ids: list[int], store_ids: list[str], file_ids: list[str] | None) -> list[int]:
    """Those of the chunks that belong to completed files of these stores (and these files)."""
    if not chunk_ids:
        return []
    where, params = search.scope(store_ids, file_ids)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT c.id FROM engine_chunk c
            JOIN engine_vectorstorefile f ON f.id = c.store_file_id
            WHERE c.id IN ({",".join(["%s"] * len(chunk_ids))}) AND {where}""",  # noqa: S608
            [*chunk_ids, *params],
        )
        return [row[0] for row in cursor.fetchall()]


def name_files(hits: list[Hit]) -> None:
    names = dict(
        File.objects.filter(pk__in={hit.file_id for hit in hits}).values_list("pk", "filename")
    )
    for hit in hits:
        hit.filename = names.get(hit.file_id, "")

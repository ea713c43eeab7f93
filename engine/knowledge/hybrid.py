"""Hybrid search: full-text and vector candidates fused into one ranking, scores in 0..1.

Candidates come from two places in the searched stores: the full-text index's best chunks
(`engine.knowledge.search`) and the chunks nearest the query's vector (`engine.knowledge.vectors`).
Each candidate is then scored by meaning, with words as a bonus:

    score = (cosine + ALL_TERMS_BONUS * [the chunk holds every word of the query]) / (1 + bonus)

(a cosine below zero counts as zero). Meaning leads because a paraphrase shares few words with
its page: blending in bm25 scores (0.1 to 0.5 of them) or fusing ranks (RRF, k 10 or 60) found
13 or 14 of the 19 paraphrased questions tuned on, as meaning alone does, and none of them put
the page of "Toponymy Model authors" first; full-text ranks among chunks that share only a
common word with the question are noise. Words still decide where they are unambiguous: a
chunk holding every informative word of a query of two or more (the name of a thing and what is
asked about it) gets the bonus, which is what keyword questions need when a static embedding
model barely tells a rare name from its neighbours ("Toponymy Model authors" finds the page
listing the Toponymy Model's authors, not the prose page that names the package).

Scoring each sentence of a chunk and counting its best one (max-sim), beside or instead of the
chunk's one vector, ranked better on the half of the paraphrase set it was tuned on and worse on
the held-out half and on questions written afterwards; it is left out. So every `ranker` of
`ranking_options` ranks alike (the spec's rankers name OpenAI's models): the fusion is the
reranking.

With embeddings off, or for chunks not embedded yet under the current model (while a changed
THREADLINE_EMBEDDINGS re-embeds in the background), the full-text score stands in for meaning.
"""

from __future__ import annotations

import functools
import logging
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import numpy.typing as npt
from django.db import connection

from engine.knowledge import embeddings, search, vectors
from engine.knowledge.embeddings import Embedder
from engine.knowledge.search import Hit
from engine.models import File

log = logging.getLogger(__name__)

# Tuned on half of tests/data/paraphrase_questions.jsonl, checked on the other half.
ALL_TERMS_BONUS = 0.25
# Candidates taken from the vector side (the full-text side gives as many as asked for); the
# best by meaning whose text is read to score them.
VECTOR_CANDIDATES = 50
SHORTLIST = 20

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
) -> list[Hit]:
    """The best chunks for `query` among completed files of these stores, best first."""
    if not store_ids or file_ids == [] or not search.query_terms(query):
        return []  # nothing searchable: an empty or one-letter query matches no meaning either
    embedder = embeddings.configured()
    vectors.start_backfill()
    limit = max(max_results, VECTOR_CANDIDATES)
    pending = _vector_side.submit(nearest, embedder, query, store_ids, limit) if embedder else None
    lexical = search.search(store_ids, query, max_results=max_results, file_ids=file_ids)
    query_vector, found = pending.result() if pending else (None, [])
    if embedder is None or query_vector is None:
        return [hit for hit in lexical if hit.score >= score_threshold][:max_results]

    text_score = {hit.chunk_id: hit.score for hit in lexical}
    hits: dict[int, Hit | None] = {hit.chunk_id: hit for hit in lexical}
    cosine = dict(found)
    for chunk_id in in_scope([c for c in cosine if c not in hits], store_ids, file_ids):
        hits[chunk_id] = None  # in scope; its text is read only if it makes the shortlist
    cosine.update(vectors.similarities(list(hits), query_vector, embedder.name))

    def whole(chunk_id: int) -> float:
        """The chunk's meaning by its vector, or by words while it has none."""
        if chunk_id in cosine:
            return max(0.0, cosine[chunk_id])
        return text_score.get(chunk_id, 0.0)

    by_meaning = sorted(hits, key=lambda chunk_id: (-whole(chunk_id), chunk_id))
    # Every full-text candidate stays in: one holding all the query's words may be far by meaning.
    shortlist = list(
        dict.fromkeys([*by_meaning[: max(max_results, SHORTLIST)], *(h.chunk_id for h in lexical)])
    )
    read = {
        chunk_id: Hit(chunk_id, file_id, page, text, 0.0)
        for chunk_id, file_id, page, text in search.chunk_texts_of(
            [c for c in shortlist if not hits[c]]
        )
    }
    ranked = [hit for c in shortlist if (hit := hits[c] or read.get(c)) is not None]
    terms = search.query_terms(query)
    for hit in ranked:
        bonus = ALL_TERMS_BONUS if holds_every_term(hit.text, terms) else 0.0
        hit.score = (whole(hit.chunk_id) + bonus) / (1 + ALL_TERMS_BONUS)
    ranked.sort(key=lambda hit: (-hit.score, hit.chunk_id))
    kept = [hit for hit in ranked if hit.score >= score_threshold][:max_results]
    name_files(kept)
    return kept


def holds_every_term(text: str, terms: list[str]) -> bool:
    """Whether the text holds each of two or more query terms, matched as full-text search
    matches them (longer words by prefix, character pairs of unspaced scripts as written)."""
    if len(terms) < 2:
        return False
    lowered = text.lower()
    return all(term_pattern(term).search(lowered) for term in terms)


@functools.lru_cache(maxsize=1024)
def term_pattern(term: str) -> re.Pattern[str]:
    if " " in term:  # two adjacent characters of a script written without spaces
        return re.compile(re.escape(term.replace(" ", "")))
    root = search.stem(term)
    prefix = root != term or len(term) >= search.PREFIX_CHARS
    return re.compile(r"(?<!\w)" + re.escape(root) + ("" if prefix else r"(?!\w)"))


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
    """Name the files of the hits found by vector alone (full-text hits come named)."""
    unnamed = {hit.file_id for hit in hits if not hit.filename}
    if not unnamed:
        return
    names = dict(File.objects.filter(pk__in=unnamed).values_list("pk", "filename"))
    for hit in hits:
        hit.filename = hit.filename or names.get(hit.file_id, "")

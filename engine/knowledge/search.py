"""Full-text search over vector store chunks: SQLite FTS5 (bm25) or PostgreSQL full-text search.

Both indexes see `index_text(text)`: scripts written without spaces (CJK, Thai, …) are cut into
single characters, so every language is searchable with the databases' simple tokenizers, and a
query in those scripts becomes phrases of adjacent characters. Queries are bags of words: stop
words dropped, the rest OR-ed, longer words matched by prefix as a crude stemmer, ranked by
bm25 with an idf that never reaches zero (see `_bm25`; ts_rank weighted by that idf on
PostgreSQL). Scores are mapped into 0..1 so `score_threshold` means the same on both.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from django.db import connection

from engine.knowledge.chunking import DENSE_SCRIPTS
from engine.models import Chunk, File

MAX_QUERY_TERMS = 32
# How many index-wide best chunks to rank before keeping those in the searched stores.
CANDIDATES = 200
# Above this many chunks, terms that more than COMMON_SHARE of all chunks hold are dropped.
PRUNE_ABOVE_CHUNKS = 20_000
COMMON_SHARE = 0.1
# On PostgreSQL: at most how many chunks a search ranks (see _search_postgres).
RANKED_ROWS = 500
# On PostgreSQL: below this many chunks, how many hold each term is counted, not estimated.
COUNTED_BELOW_CHUNKS = 2_000
# On PostgreSQL: chunks written since the last ANALYZE (at least, and of all) that make
# ingestion run one.
ANALYZE_AFTER_CHUNKS = 1_000
ANALYZE_AFTER_SHARE = 0.1
DENSE_CHAR = re.compile(f"([{DENSE_SCRIPTS}])")
DENSE_RUN = re.compile(f"[{DENSE_SCRIPTS}]+")
WORD = re.compile(r"\w+")
SUFFIXES = ("ing", "es", "ed", "s")
# Words this long (or stemmed) match by prefix.
PREFIX_CHARS = 6
# BM25's k1 as FTS5 sets it: a term's tf-part, tf * (k1 + 1) / (tf + k1 * ...), stays below k1 + 1.
K1 = 1.2
# FTS5's bm25() floors an idf at or below zero to this.
FTS5_IDF_FLOOR = 1e-6

# Words too common to rank by; English and French, the corpus's languages with most text.
STOP_WORDS = frozenset(
    """a about above after again all also am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further
    had has have having he her here hers him his how i if in into is it its itself just me more
    most my no nor not now of off on once only or other our out over own same she should so some
    such than that the their them then there these they this those through to too under until up
    very was we were what when where which while who whom why will with would you your yours
    le la les un une des du de et est en au aux pour par sur dans que qui ce ces son sa ses
    """.split()  # noqa: SIM905 (a word list reads best as text)
)


def index_text(text: str) -> str:
    return DENSE_CHAR.sub(r" \1 ", text)


def query_terms(query: str) -> list[str]:
    """The query as index terms: quoted words (prefix-matched when long) and character phrases."""
    terms: list[str] = []
    for run in DENSE_RUN.findall(query):
        chars = list(run)
        pairs = [f"{a} {b}" for a, b in itertools.pairwise(chars)] or chars
        terms.extend(pairs)
    for word in WORD.findall(DENSE_RUN.sub(" ", query).lower()):
        if word in STOP_WORDS or (len(word) == 1 and not word.isdigit()):
            continue
        terms.append(word)
    unique = list(dict.fromkeys(terms))
    return unique[:MAX_QUERY_TERMS]


def stem(word: str) -> str:
    if len(word) < 5 or " " in word:
        return word
    for suffix in SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)]
    return word


def fts5_query(terms: list[str]) -> str:
    parts = []
    for term in terms:
        root = stem(term)
        quoted = '"' + root.replace('"', '""') + '"'
        parts.append(quoted + "*" if root != term or len(term) >= PREFIX_CHARS else quoted)
    return " OR ".join(parts)


def term_tsquery(term: str) -> str:
    """One query term in PostgreSQL's tsquery syntax ('' when nothing searchable is left)."""
    root = stem(term)
    words = [w for w in (re.sub(r"[^\w]", "", w) for w in root.split()) if w]
    if len(words) > 1:
        return "(" + " <-> ".join(words) + ")"
    if not words:
        return ""
    return words[0] + (":*" if root != term or len(term) >= PREFIX_CHARS else "")


@dataclass
class Hit:
    chunk_id: int
    file_id: str
    page: int
    text: str
    score: float
    filename: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)


def search(
    store_ids: list[str],
    query: str,
    *,
    max_results: int = 10,
    score_threshold: float = 0.0,
    file_ids: list[str] | None = None,
) -> list[Hit]:
    """The best chunks for `query` among completed files of these stores, best first."""
    terms = query_terms(query)
    if not store_ids or not terms or file_ids == []:
        return []
    if connection.vendor == "postgresql":
        rows = _search_postgres(store_ids, terms, max_results, file_ids)
    else:
        rows = _search_sqlite(store_ids, terms, max_results, file_ids)
    hits = [Hit(*row) for row in rows]
    hits = [hit for hit in hits if hit.score >= score_threshold]
    names = dict(
        File.objects.filter(pk__in={h.file_id for h in hits}).values_list("pk", "filename")
    )
    # A file that expired is gone, though its chunks wait for the sweep to delete them.
    hits = [hit for hit in hits if hit.file_id in names]
    for hit in hits:
        hit.filename = names[hit.file_id]
    return hits


def scope(store_ids: list[str], file_ids: list[str] | None) -> tuple[str, list[Any]]:
    where, params = _chunk_scope(store_ids, file_ids)
    return where + " AND f.status = 'completed'", params


def _chunk_scope(store_ids: list[str], file_ids: list[str] | None) -> tuple[str, list[Any]]:
    """The scope's conditions on the chunk row alone (alias c)."""
    where = "c.vector_store_id IN ({})".format(",".join(["%s"] * len(store_ids)))
    params: list[Any] = list(store_ids)
    if file_ids is not None:
        where += " AND c.file_id IN ({})".format(",".join(["%s"] * len(file_ids)))
        params += file_ids
    return where, params


def _search_sqlite(
    store_ids: list[str], terms: list[str], limit: int, file_ids: list[str] | None
) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        kept, rare = _informative(cursor, terms)
        match = fts5_query(kept)
        # Phase one ranks the whole index (FTS5's fast path); phase two keeps the candidates in
        # scope. Only when scope filtered out too many does the slower joined query run.
        candidates = max(CANDIDATES, limit * 20)
        cursor.execute(
            "SELECT rowid, bm25(engine_chunk_fts) FROM engine_chunk_fts "
            "WHERE engine_chunk_fts MATCH %s ORDER BY bm25(engine_chunk_fts) LIMIT %s",
            [match, candidates],
        )
        ranked = cursor.fetchall()
        if not ranked:
            return []
        where, params = scope(store_ids, file_ids)
        rank_of = dict(ranked)
        cursor.execute(
            f"""SELECT c.id FROM engine_chunk c
            JOIN engine_vectorstorefile f ON f.id = c.store_file_id
            WHERE c.id IN ({",".join(["%s"] * len(rank_of))}) AND {where}""",  # noqa: S608
            [*rank_of, *params],
        )
        ids = sorted((row[0] for row in cursor.fetchall()), key=rank_of.__getitem__)
        if len(ids) < limit and len(ranked) == candidates:
            rows, rank_of = _search_sqlite_joined(cursor, match, store_ids, candidates, file_ids)
            ids = [row[0] for row in rows]
        if rare:
            # Every term left is in at most a tenth of the chunks, where FTS5's idf and the
            # positive one differ by under 5% (log 9 against log 10): FTS5's order stands.
            scores = {chunk_id: -rank_of[chunk_id] for chunk_id in ids}
        else:
            scores = _bm25(cursor, kept, ids)
        # Sorting is stable: equal scores keep FTS5's order. Only the kept chunks' text is
        # read: a thousand candidates' would cost more than ranking.
        rows = chunk_texts(cursor, sorted(ids, key=lambda chunk_id: -scores[chunk_id])[:limit])
    return [(*row, scores[row[0]] / (1.0 + scores[row[0]])) for row in rows]


def chunk_texts_of(chunk_ids: list[int]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        return chunk_texts(cursor, chunk_ids)


def chunk_texts(cursor: Any, chunk_ids: list[int]) -> list[tuple[Any, ...]]:
    """(id, file_id, page, text) of these chunks, in the order given."""
    if not chunk_ids:
        return []
    cursor.execute(
        "SELECT id, file_id, page, text FROM engine_chunk WHERE id IN ({})".format(  # noqa: S608
            ",".join(["%s"] * len(chunk_ids))
        ),
        chunk_ids,
    )
    found = {row[0]: row for row in cursor.fetchall()}
    return [found[chunk_id] for chunk_id in chunk_ids if chunk_id in found]


def _bm25(cursor: Any, terms: list[str], chunk_ids: list[int]) -> dict[int, float]:
    """These chunks' bm25 scores with the idf that stays positive,
    log(1 + (N - n + 0.5) / (n + 0.5)), as Lucene's BM25 and our PostgreSQL ranking weigh terms.

    FTS5's bm25() uses log((N - n + 0.5) / (n + 0.5)), floored to 1e-6: a term that half the
    chunks or more hold counts for nothing. In a store of one document those are often the words
    a question hinges on, a label on every diagram ("Author:") or the document's subject
    ("model"), and the chunk holding all of the question's words lost to one repeating only
    the rarest. bm25() of a one-term query is FTS5's idf times the term's tf-part (its count,
    saturated and normalised by the chunk's length); that idf, from the same statement's counts,
    is divided back out and the tf-part weighed by the positive idf instead.
    """
    scores = dict.fromkeys(chunk_ids, 0.0)
    if not chunk_ids:
        return scores
    for term in terms:
        # One statement, so the counts and the ranks come from one snapshot of the index.
        cursor.execute(
            f"""WITH holding AS MATERIALIZED (
                SELECT rowid AS id, bm25(engine_chunk_fts) AS rank FROM engine_chunk_fts
                WHERE engine_chunk_fts MATCH %s
            )
            SELECT id, rank, (SELECT count(*) FROM holding), (SELECT count(*) FROM engine_chunk)
            FROM holding WHERE id IN ({",".join(["%s"] * len(chunk_ids))})""",  # noqa: S608
            [fts5_query([term]), *chunk_ids],
        )
        for chunk_id, rank, holding, size in cursor.fetchall():
            odds = (size - holding + 0.5) / (holding + 0.5)
            # Below k1 + 1 by construction; the bound only guards against a count out of step.
            tf_part = min(-rank / max(math.log(odds), FTS5_IDF_FLOOR), K1 + 1)
            scores[chunk_id] += tf_part * math.log(1 + odds)
    return scores


def _informative(cursor: Any, terms: list[str]) -> tuple[list[str], bool]:
    """Drop terms most chunks contain: they barely move bm25 yet cost the most to rank. Also
    says whether every term kept is rare (in at most COMMON_SHARE of the chunks).

    Only a large index needs this; in a small one every term may be frequent and matter.
    """
    cursor.execute("SELECT max(rowid) FROM engine_chunk")
    size = cursor.fetchone()[0] or 0
    if size < PRUNE_ABOVE_CHUNKS:
        return terms, False
    frequency = {}
    for term in terms:
        root = stem(term)
        cursor.execute(
            "SELECT coalesce(max(doc), 0) FROM engine_chunk_vocab WHERE term >= %s AND term < %s",
            [root, root + "\uffff"],
        )
        frequency[term] = cursor.fetchone()[0]
    kept = [term for term in terms if frequency[term] <= size * COMMON_SHARE]
    rarest = sorted(terms, key=frequency.__getitem__)[:2]
    return (kept, True) if kept else (rarest, False)


def _search_sqlite_joined(
    cursor: Any, match: str, store_ids: list[str], limit: int, file_ids: list[str] | None
) -> tuple[list[tuple[Any, ...]], dict[int, float]]:
    """The best chunks in scope, and their FTS5 ranks."""
    where, params = scope(store_ids, file_ids)
    cursor.execute(
        f"""SELECT c.id, c.file_id, c.page, c.text, r.rank
        FROM (
            SELECT rowid, bm25(engine_chunk_fts) AS rank FROM engine_chunk_fts
            WHERE engine_chunk_fts MATCH %s
        ) AS r
        JOIN engine_chunk c ON c.id = r.rowid
        JOIN engine_vectorstorefile f ON f.id = c.store_file_id
        WHERE {where}
        ORDER BY r.rank
        LIMIT %s""",  # noqa: S608 (only placeholders are interpolated)
        [match, *params, limit],
    )
    found = cursor.fetchall()
    return [row[:4] for row in found], {row[0]: row[4] for row in found}


def _search_postgres(
    store_ids: list[str], terms: list[str], limit: int, file_ids: list[str] | None
) -> list[tuple[Any, ...]]:
    """Each term's ts_rank weighted by its inverse document frequency, as bm25 does.

    ts_rank alone has no idea how rare a word is, so a common one outranks the telling one.
    The stored `search_vector` and its GIN index (migration 0009) find the chunks holding a
    term, but ts_rank reads each chunk it ranks (~20 µs each, all terms): a large index ranks at
    most RANKED_ROWS chunks, those holding its rarest terms (bm25's best are among them), and as
    many holding any term as `limit` asks for where those are too few.
    """
    queries = [q for q in dict.fromkeys(term_tsquery(t) for t in terms) if q]
    if not queries:
        return []
    with connection.cursor() as cursor:
        size, found = _pg_frequencies(cursor, queries)
        weights = [math.log(1 + (size - n + 0.5) / (n + 0.5)) for n in found]
        pairs = list(zip(queries, weights, found, strict=True))
        if size >= PRUNE_ABOVE_CHUNKS:
            common = math.log(1 + (size - size * COMMON_SHARE + 0.5) / (size * COMMON_SHARE + 0.5))
            kept = [pair for pair in pairs if pair[1] >= common]
            pairs = kept or sorted(pairs, key=lambda pair: -pair[1])[:2]
        rarest = [query for query, *_ in pairs]
        cap = None  # a small index: every chunk holding a term is ranked
        if size > RANKED_ROWS:
            rarest, rows, cap = [], 0.0, RANKED_ROWS
            for query, _, n in sorted(pairs, key=lambda pair: pair[2]):
                if rarest and rows + n > RANKED_ROWS:
                    break  # its chunks would crowd out the rarer words' ones
                rarest.append(query)
                rows += n
        score = " + ".join("%s * ts_rank(c.search_vector, to_tsquery('simple', %s))" for _ in pairs)
        where, params = scope(store_ids, file_ids)
        # Each holding query is planned for all its rows (MATERIALIZED) and read only as far as
        # its LIMIT, on the chunk table alone: planned for its LIMIT, or joined to the files, a
        # word few chunks hold had the planner read a whole store in hope of the first few
        # (400 ms at 100k chunks). The files' status is checked on the few candidates.
        inside, inside_params = _chunk_scope(store_ids, file_ids)
        holding = f"""SELECT c.id FROM engine_chunk c
            WHERE c.search_vector @@ to_tsquery('simple', %s) AND {inside}"""  # noqa: S608
        cursor.execute(
            f"""WITH rarest AS MATERIALIZED ({holding}), any_term AS MATERIALIZED ({holding}),
            candidates AS (
                (SELECT id FROM rarest LIMIT %s) UNION (SELECT id FROM any_term LIMIT %s)
            )
            SELECT id, file_id, page, text, rank / (1.0 + rank) FROM (
                SELECT c.id, c.file_id, c.page, c.text, ({score}) AS rank
                FROM engine_chunk c JOIN engine_vectorstorefile f ON f.id = c.store_file_id
                WHERE c.id IN (SELECT id FROM candidates) AND {where}
            ) AS ranked
            ORDER BY rank DESC, id
            LIMIT %s""",  # noqa: S608 (only placeholders are interpolated)
            [
                *(" | ".join(rarest), *inside_params),
                *(" | ".join(q for q, *_ in pairs), *inside_params),
                cap,
                limit,
                *(value for query, weight, _ in pairs for value in (weight, query)),
                *params,
                limit,
            ],
        )
        return list(cursor.fetchall())


def refresh_statistics() -> None:
    """On PostgreSQL, the planner's statistics of the chunks brought up to date after a large
    ingestion, as autovacuum would a minute or so later: search weighs and picks terms by them
    (`_pg_frequencies`), and with none it takes every word as equally rare."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT n_mod_since_analyze, n_live_tup FROM pg_stat_user_tables "
            "WHERE relid = 'engine_chunk'::regclass"
        )
        row = cursor.fetchone()
        if row and row[0] >= max(ANALYZE_AFTER_CHUNKS, row[1] * ANALYZE_AFTER_SHARE):
            cursor.execute("ANALYZE engine_chunk")


def _pg_frequencies(cursor: Any, queries: list[str]) -> tuple[float, list[float]]:
    """How many chunks there are, and how many hold each query: counted in one pass over a
    small index; over a larger one, the planner's estimates (from the statistics ANALYZE and
    autovacuum keep of the tsvector column's common words), as counting a common word reads
    most of the table (~100 ms at 10k chunks)."""
    size = _planner_rows(cursor, "SELECT 1 FROM engine_chunk", [])
    if size < COUNTED_BELOW_CHUNKS:
        counts = ", ".join(
            "count(*) FILTER (WHERE search_vector @@ to_tsquery('simple', %s))" for _ in queries
        )
        cursor.execute(f"SELECT count(*), {counts} FROM engine_chunk", queries)  # noqa: S608
        size, *found = cursor.fetchone()
        return max(size, 1), found
    found = [
        _planner_rows(
            cursor,
            "SELECT 1 FROM engine_chunk WHERE search_vector @@ to_tsquery('simple', %s)",
            [query],
        )
        for query in queries
    ]
    return size, found


def _planner_rows(cursor: Any, sql: str, params: list[Any]) -> float:
    cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
    plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return float(plan[0]["Plan"]["Plan Rows"])


def chunk_rows(
    store_file_id: int, chunks: list[Any], vector_store_id: str, file_id: str
) -> list[Chunk]:
    """Chunk rows ready for bulk_create, with the text the index sees."""
    return [
        Chunk(
            store_file_id=store_file_id,
            vector_store_id=vector_store_id,
            file_id=file_id,
            page=chunk.page,
            index=chunk.index,
            text=chunk.text,
            search_text=index_text(chunk.text),
            tokens=chunk.tokens,
        )
        for chunk in chunks
    ]

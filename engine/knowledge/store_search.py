"""Searching one vector store through the API: several queries, attribute filters, best first."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from engine.api.errors import ApiError
from engine.api.schemas import ComparisonFilter, CompoundFilter
from engine.knowledge import hybrid, search
from engine.knowledge.stores import delete_expired_files, is_expired, touch_stores
from engine.models import VectorStore


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
    delete_expired_files()
    file_ids = matching_file_ids(store, filters) if filters is not None else None
    best: dict[int, search.Hit] = {}
    for query in queries:
        for hit in hybrid.hybrid_search(
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

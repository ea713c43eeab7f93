"""file_search on the run side: the function a model sees, the stores a run searches, the search.

A language model calls file_search as a function; the engine executes the call here, over the
vector stores of the run's assistant and thread, and keeps the results in the run step, where
citations and the offline model find them.
"""

from __future__ import annotations

import json
from typing import Any

from engine.knowledge import citations, hybrid
from engine.knowledge.stores import delete_expired_files, is_expired, touch_stores
from engine.models import Assistant, Run, VectorStore, VectorStoreFile
from engine.providers.interface import Knowledge, ToolCallRequest

NAME = "file_search"
# Passages a file_search call returns when the tool does not say.
DEFAULT_SEARCH_RESULTS = 8

FUNCTION = {
    "type": "function",
    "function": {
        "name": NAME,
        "description": (
            "Search the files attached to this assistant and thread. Returns numbered passages; "
            "cite a passage you use by writing its marker, e.g. 【3:0†source】, right after the "
            "claim it supports."
        ),
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string", "description": "What to look for."}},
            "required": ["query"],
        },
    },
}


def call_details(call: ToolCallRequest) -> dict[str, Any]:
    """The run step's record of a model's file_search call, results still to come."""
    try:
        query = json.loads(call.arguments or "{}").get("query", "")
    except ValueError:
        query = call.arguments
    return {"id": call.id, "type": "file_search", "file_search": {"query": query}}


def run_searches(run: Run, searches: list[dict[str, Any]]) -> None:
    """Execute the model's file_search calls over the assistant's and thread's stores."""
    store_ids = search_scope(run)
    max_results, threshold = search_settings(run.tools)
    for call in searches:
        hits = hybrid.hybrid_search(
            store_ids, call["query"], max_results=max_results, score_threshold=threshold
        )
        call["ranking_options"] = {"ranker": "default_2024_08_21", "score_threshold": threshold}
        call["results"] = [citations.result_entry(hit) for hit in hits]
    touch_stores(store_ids)


def knowledge(run: Run) -> Knowledge:
    """What the offline model answers from: whether there is anything to search, and what the
    run's searches found so far."""
    return Knowledge(has_stores=bool(search_scope(run)), searches=citations.search_calls(run.id))


def still_ingesting(run: Run) -> bool:
    """Whether files are still being ingested into the stores the run searches."""
    return VectorStoreFile.objects.filter(
        vector_store_id__in=search_scope(run), status="in_progress"
    ).exists()


def search_scope(run: Run) -> list[str]:
    """The unexpired vector stores a run searches: its assistant's and its thread's."""
    delete_expired_files()
    store_ids: list[str] = []
    assistant = Assistant.objects.filter(pk=run.assistant_id).first()
    for owner in (assistant, run.thread):
        if owner is not None:
            store_ids += owner.tool_resources.get("file_search", {}).get("vector_store_ids", [])
    stores = VectorStore.objects.filter(pk__in=store_ids)
    live = {store.id for store in stores if not is_expired(store)}
    return [store_id for store_id in dict.fromkeys(store_ids) if store_id in live]


def search_settings(tools: list[dict[str, Any]]) -> tuple[int, float]:
    for tool in tools:
        if tool["type"] == NAME:
            options = tool.get(NAME) or {}
            ranking = options.get("ranking_options") or {}
            return (
                options.get("max_num_results") or DEFAULT_SEARCH_RESULTS,
                ranking.get("score_threshold") or 0.0,
            )
    return DEFAULT_SEARCH_RESULTS, 0.0

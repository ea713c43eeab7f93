"""file_search results shown to the model, and the citations found in its answer.

Each result the model sees carries a marker `【n:m†file name】`: n counts the run's file_search
calls, m is the result's rank in that call. When an answer is complete, every marker in its
text becomes a `file_citation` annotation at the marker's position. OpenAI dropped `quote` from
citations; we keep it, with the page, as extra fields that standard clients ignore.
"""

from __future__ import annotations

import re
from typing import Any

from engine.knowledge.search import WORD, Hit, query_terms
from engine.models import RunStep

MARKER = re.compile(r"【(\d+):(\d+)†([^】]*)】")
EXCERPT_CHARS = 320
# Sentence ends, including the CJK full stop and full-width ! and ?.
SENTENCE_SPLIT = re.compile(r"(?<=[.!?\u3002\uff01\uff1f])\s+|\n+")


def marker(call: int, rank: int, filename: str) -> str:
    return f"【{call}:{rank}†{filename}】"


def result_entry(hit: Hit) -> dict[str, Any]:
    """A result as a file_search step records it; `content` is shown only on request."""
    return {
        "file_id": hit.file_id,
        "file_name": hit.filename,
        "score": round(hit.score, 4),
        "page": hit.page,
        "content": [{"type": "text", "text": hit.text}],
    }


def results_for_model(call: int, query: str, results: list[dict[str, Any]]) -> str:
    if not results:
        return f"No passages in the attached files match {query!r}."
    blocks = []
    for rank, result in enumerate(results):
        text = result["content"][0]["text"]
        header = f"{marker(call, rank, result['file_name'])} (page {result['page']})"
        blocks.append(f"{header}\n{text}")
    return "\n\n".join(blocks)


def excerpt(text: str, query: str, limit: int = EXCERPT_CHARS) -> str:
    """The sentences of a passage that best match the query, within `limit` characters."""
    terms = {t for t in query_terms(query) if " " not in t}
    sentences = [s.strip() for s in SENTENCE_SPLIT.split(text) if s.strip()]
    if not sentences:
        return ""

    def overlap(sentence: str) -> int:
        words = {w.lower() for w in WORD.findall(sentence)}
        return sum(1 for t in terms if any(w.startswith(t[:5]) for w in words))

    best = max(range(len(sentences)), key=lambda i: overlap(sentences[i]))
    start = end = best
    chosen = sentences[best]
    # Grow around the best sentence while it fits, preferring what follows.
    while True:
        grown = False
        if end + 1 < len(sentences) and len(chosen) + len(sentences[end + 1]) + 1 <= limit:
            end += 1
            chosen = f"{chosen} {sentences[end]}"
            grown = True
        if start > 0 and len(chosen) + len(sentences[start - 1]) + 1 <= limit:
            start -= 1
            chosen = f"{sentences[start]} {chosen}"
            grown = True
        if not grown:
            break
    if len(chosen) > limit:
        chosen = chosen[: limit - 1].rsplit(" ", 1)[0] + "…"
    return chosen


def search_calls(run_id: str) -> list[dict[str, Any]]:
    """The run's file_search calls in order, as recorded in its steps."""
    calls = []
    for step in RunStep.objects.filter(run_id=run_id, type="tool_calls").order_by("created_at"):
        for call in step.step_details.get("tool_calls", []):
            if call["type"] == "file_search":
                calls.append(call["file_search"])
    return calls


def annotate(text: str, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """file_citation annotations for the markers in `text` that name a real result."""
    annotations = []
    for match in MARKER.finditer(text):
        call, rank = int(match.group(1)), int(match.group(2))
        if call >= len(calls) or rank >= len(calls[call].get("results", [])):
            continue
        search = calls[call]
        result = search["results"][rank]
        passage = result["content"][0]["text"]
        annotations.append(
            {
                "type": "file_citation",
                "text": match.group(0),
                "start_index": match.start(),
                "end_index": match.end(),
                "file_citation": {
                    "file_id": result["file_id"],
                    "quote": excerpt(passage, search.get("query", "")),
                    "page": result["page"],
                    "file_name": result["file_name"],
                },
            }
        )
    return annotations

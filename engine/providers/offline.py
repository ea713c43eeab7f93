"""The offline retrieval-only model: answers without a language model.

It behaves like a model that always calls file_search first, then answers with the best
passages, each quoted and cited with the same markers a language model would write. With no
knowledge to search it says plainly that no language model is configured and how to configure
one.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

from engine.ids import new_id
from engine.knowledge import citations
from engine.providers.interface import (
    ModelEvent,
    ModelRequest,
    TextDelta,
    ToolCallRequest,
    TurnEnd,
)

# Passages quoted in an answer: enough to cover a question, few enough to read.
PASSAGES = 3
# A passage scored under this share of the best one's is more likely noise.
RELATIVE_RELEVANCE = 0.5

CONFIGURE_HINT = (
    "To chat with a model, set OPENAI_API_KEY (plus OPENAI_BASE_URL for Ollama, vLLM or another "
    "OpenAI-compatible server), or AZURE_OPENAI_ENDPOINT and AZURE_OPENAI_API_KEY for Azure "
    "OpenAI, then restart Threadline."
)
NO_MODEL_ANSWER = (
    "No language model is configured, so I can only answer from the documents attached to this "
    "assistant or thread, and there are none to search. " + CONFIGURE_HINT
)
NOTHING_FOUND = (
    "I searched the attached documents but found nothing about that. Try other words, or check "
    "that the documents have finished processing."
)
FOOTER = (
    "_Offline answer: these are passages quoted from your documents, not a written answer, "
    "because no language model is configured._"
)


def words(text: str) -> list[str]:
    """Split text into stream-sized pieces, keeping every character (whitespace included)."""
    return re.findall(r"\s*\S+|\s+$", text)


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        content = message.get("content")
        if message["role"] == "user" and isinstance(content, str):
            return content
    return ""


def is_heading(quote: str) -> bool:
    return len(quote) < citations.HEADING_CHARS and not citations.ENDS_SENTENCE.search(quote)


def compose_answer(searches: list[dict[str, Any]]) -> str:
    call = len(searches) - 1
    search = searches[call]
    results = search.get("results", [])[:PASSAGES]
    if not results:
        return NOTHING_FOUND
    # Search scores blend similarity and word matches linearly (engine.knowledge.hybrid):
    # they compare as ratios.
    floor = results[0]["score"] * RELATIVE_RELEVANCE
    results = [result for result in results if result["score"] >= floor]
    quotes = [
        citations.excerpt(result["content"][0]["text"], search.get("query", ""))
        for result in results
    ]
    # A passage whose best words are a heading ("3.1 LRS model") can be close in meaning to a
    # question yet says nothing about it: where another passage quotes a sentence, it is left out.
    if any(citations.ENDS_SENTENCE.search(quote) for quote in quotes):
        quotes = ["" if is_heading(quote) else quote for quote in quotes]
    lines = ["Here is what the documents say:"]
    quoted: set[str] = set()
    for rank, (result, quote) in enumerate(zip(results, quotes, strict=True)):
        if not quote or quote in quoted:
            continue  # overlapping chunks can hold the same best sentences
        quoted.add(quote)
        # Quoted once: the citation's footnote names the file and page, not the words again.
        mark = citations.marker(call, rank, result["file_name"])
        lines.append(f"> {quote} {mark}")
    lines.append(FOOTER)
    return "\n\n".join(lines)


class OfflineModel:
    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        knowledge = request.knowledge
        searched = bool(request.messages) and request.messages[-1]["role"] == "tool"
        can_search = any(
            tool["function"]["name"] == "file_search" for tool in request.tools
        ) and bool(knowledge and knowledge.has_stores)
        if searched and knowledge and knowledge.searches:
            text = compose_answer(knowledge.searches)
        elif can_search:
            query = last_user_text(request.messages)
            call = ToolCallRequest(
                new_id("call_"), "file_search", json.dumps({"query": query}, ensure_ascii=False)
            )
            yield TurnEnd(finish_reason="tool_calls", tool_calls=[call])
            return
        else:
            text = NO_MODEL_ANSWER
        pieces = words(text)
        for piece in pieces:
            yield TextDelta(piece)
        yield TurnEnd(finish_reason="stop", completion_tokens=len(pieces))

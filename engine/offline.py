"""The offline retrieval-only model: answers without a language model.

It behaves like a model that always calls file_search first, then answers with the best passages,
each cited. With no knowledge to search it says plainly that no language model is configured and
how to configure one.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from engine.providers import ModelEvent, ModelRequest, TextDelta, TurnEnd

NO_MODEL_ANSWER = (
    "No language model is configured, so I can only answer from the documents attached to this "
    "assistant or thread, and there are none to search. To chat with a model, set "
    "OPENAI_API_KEY (plus OPENAI_BASE_URL for Ollama, vLLM or another OpenAI-compatible "
    "server), or AZURE_OPENAI_ENDPOINT and AZURE_OPENAI_API_KEY for Azure OpenAI, then restart "
    "Threadline."
)


def words(text: str) -> list[str]:
    """Split text into stream-sized pieces, keeping every character (whitespace included)."""
    return re.findall(r"\s*\S+|\s+$", text)


class OfflineModel:
    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        text = NO_MODEL_ANSWER
        completion = 0
        for piece in words(text):
            completion += 1
            yield TextDelta(piece)
        yield TurnEnd(finish_reason="stop", completion_tokens=completion)

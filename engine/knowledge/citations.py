"""file_search results shown to the model, and the citations found in its answer.

Each result the model sees carries a marker `【n:m†file name】`: n counts the run's file_search
calls, m is the result's rank in that call. When an answer is complete, every marker in its
text becomes a `file_citation` annotation at the marker's position. OpenAI dropped `quote` from
citations; we keep it, with the page, as extra fields that standard clients ignore.
"""

from __future__ import annotations

import re
from typing import Any

from engine.knowledge import embeddings
from engine.knowledge.search import WORD, Hit, query_terms
from engine.models import RunStep

MARKER = re.compile(r"【(\d+):(\d+)†([^】]*)】")
EXCERPT_CHARS = 320
# Sentence ends, including the CJK full stop and full-width ! and ?.
SENTENCE_SPLIT = re.compile(r"(?<=[.!?\u3002\uff01\uff1f])\s+")
ENDS_SENTENCE = re.compile(r"[.!?:\u3002\uff01\uff1f][\"\u201d\u2019)\]]*$")
# A line this short that ends without punctuation is a heading, not a broken sentence.
HEADING_CHARS = 48
# Dot (or underscore) leaders of a table of contents: "Overview ........ 6".
LEADER = re.compile(r"(?:\.\s?){4,}|…{2,}|_{4,}")


def sentences(text: str) -> list[str]:
    """The passage's sentences: lines joined back into paragraphs (words broken with a hyphen
    mended), headings and table-of-contents lines set apart."""
    return [sentence for _, sentence in numbered_sentences(text)]


def numbered_sentences(text: str) -> list[tuple[int, str]]:
    """The sentences, each with the number of its paragraph."""
    paragraphs: list[str] = []
    current = ""
    lines = [line.strip() for line in text.split("\n")]
    for i, line in enumerate(lines):
        if not line or LEADER.search(line):
            paragraphs.append(current)
            current = ""
            continue
        if current.endswith("-") and line[:1].islower():
            current = current[:-1] + line
        else:
            current = f"{current} {line}" if current else line
        following = lines[i + 1] if i + 1 < len(lines) else ""
        heading = (
            current == line
            and len(line) < HEADING_CHARS
            and not ENDS_SENTENCE.search(line)
            and not following[:1].islower()
        )
        if heading:
            paragraphs.append(current)
            current = ""
    paragraphs.append(current)
    return [
        (number, s.strip())
        for number, p in enumerate(paragraphs)
        for s in SENTENCE_SPLIT.split(p)
        if s.strip()
    ]


def whole(found: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Without the pieces of sentences a passage starts or ends with (a chunk is cut by size,
    not by sentence), where whole ones remain."""

    def prose(sentences: list[tuple[int, str]]) -> bool:
        return any(ENDS_SENTENCE.search(sentence) for _, sentence in sentences)

    kept = list(found)
    if not kept[0][1][:1].isupper() and not kept[0][1][:1].isdigit() and prose(kept[1:]):
        kept = kept[1:]
    if not ENDS_SENTENCE.search(kept[-1][1]) and prose(kept[:-1]):
        kept = kept[:-1]
    return kept


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
    numbered = numbered_sentences(text)
    if not numbered:
        return ""

    def overlap(sentence: str) -> int:
        words = {w.lower() for w in WORD.findall(sentence)}
        return sum(1 for t in terms if any(w.startswith(t[:5]) for w in words))

    # Whole sentences, unless the words asked about are only in a piece of one (a glossary
    # line the chunk ends with, say): a piece that answers beats whole ones that do not.
    trimmed = whole(numbered)
    if max(overlap(s) for _, s in trimmed) >= max(overlap(s) for _, s in numbered):
        numbered = trimmed
    found = [sentence for _, sentence in numbered]

    def complete(i: int) -> bool:
        return bool(ENDS_SENTENCE.search(found[i]))

    def joins(i: int, best: int) -> bool:
        """A sentence of the same paragraph as the best one, and whole."""
        return numbered[i][0] == numbered[best][0] and complete(i)

    # A heading's words describe what follows it: they count for the next sentence too. The
    # best match is then a real sentence rather than a heading, where one matches as well.
    # Only the heading's own words: in a list of short lines (a glossary) each line is a
    # "heading" of the next, and carrying scores down the list would favour its longest line.
    own = [overlap(sentence) for sentence in found]
    scores = [own[i] + (own[i - 1] if i and not complete(i - 1) else 0) for i in range(len(found))]
    best = max(range(len(found)), key=lambda i: (scores[i], complete(i), own[i], len(found[i])))
    if max(own) == 0:
        # A paraphrase shares no word with the passage: quote what is closest in meaning.
        closeness = similarities(found, query)
        best = max(range(len(found)), key=closeness.__getitem__)
    start = end = best
    chosen = found[best]
    # Grow around the best sentence while it fits, preferring what follows, through whole
    # sentences of its paragraph only: a heading or a caption beside it is not what it says.
    while True:
        grown = False
        if (
            end + 1 < len(found)
            and joins(end + 1, best)
            and len(chosen) + len(found[end + 1]) + 1 <= limit
        ):
            end += 1
            chosen = f"{chosen} {found[end]}"
            grown = True
        if (
            start > 0
            and joins(start - 1, best)
            and len(chosen) + len(found[start - 1]) + 1 <= limit
        ):
            start -= 1
            chosen = f"{found[start]} {chosen}"
            grown = True
        if not grown:
            break
    if len(chosen) > limit:
        chosen = chosen[: limit - 1].rsplit(" ", 1)[0] + "…"
    return chosen


def similarities(sentences: list[str], query: str) -> list[float]:
    """Each sentence's cosine with the query under the local model (zeros without it: an API
    model would cost a request per citation)."""
    embedder = embeddings.configured()
    if not isinstance(embedder, embeddings.LocalEmbedder) or not query.strip():
        return [0.0] * len(sentences)
    vectors = embedder.embed([query, *sentences])
    return [float(score) for score in vectors[1:] @ vectors[0]]


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

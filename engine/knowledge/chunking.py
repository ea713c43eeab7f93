"""Token estimates and page-bounded chunking, following OpenAI's "static" chunking strategy.

Token count
-----------
No tokenizer can be downloaded here, so ``count_tokens`` estimates what OpenAI's BPE tokenizers
(cl100k_base / o200k_base) would produce. The text is cut into units:

* one unit per character of a script written without spaces (CJK ideographs, kana, Hangul,
  Thai, Lao, Tibetan, Myanmar, Khmer, full-width forms) and of anything outside the Basic
  Multilingual Plane (emoji, rare ideographs): **1 token each**;
* one unit per whitespace-separated word (longer words are cut every 16 characters): ASCII
  letters cost 1/4 token, digits 1/3 (BPE groups at most three digits), ASCII punctuation 1
  (BPE mostly keeps it apart), any other character (accents, Cyrillic, Arabic, ...) 1/2, and
  **every word at least 1 token**.

On the English PDFs of the test corpus this gives 1.3-1.4 tokens per word (about 4 characters
a token), a little above the ~1.3 that OpenAI quotes for English; Cyrillic and Arabic come out
at 2 characters a token, at or above what BPE spends on them; code and tables, rich in
punctuation, are over-counted most. This is an estimate that could not be checked against
tiktoken (no download possible), deliberately biased to over-count so that a chunk of "800
tokens" is not much over 800 real tokens. Likely under-counts: emoji sequences and random
identifiers or base64, which BPE splits finely.

Chunking
--------
``chunk_pages`` never lets a chunk cross a page boundary, so every citation names one page.
Inside a page it takes as many units as fit in ``max_chunk_size_tokens``, then moves the cut
back to the best boundary in the last quarter of that window (paragraph > sentence > line >
space > between two CJK characters), and starts the next chunk so that it repeats at most
``chunk_overlap_tokens`` of the previous one. A chunk's ``tokens`` equals
``count_tokens(chunk.text)``.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import accumulate

from engine.knowledge.extraction.extract import Page

AUTO_MAX_CHUNK_SIZE_TOKENS = 800
AUTO_CHUNK_OVERLAP_TOKENS = 400
MIN_CHUNK_SIZE_TOKENS = 100
MAX_CHUNK_SIZE_TOKENS = 4096


@dataclass(frozen=True)
class Chunk:
    page: int  # the 1-based page the whole chunk comes from
    index: int  # position in the file's chunk order, from 0
    text: str
    tokens: int


# Scripts without spaces between words, where BPE spends about a token per character.
DENSE_SCRIPTS = (
    "\u0e00-\u0fff"  # Thai, Lao, Tibetan
    "\u1000-\u109f"  # Myanmar
    "\u1100-\u11ff"  # Hangul Jamo
    "\u1780-\u17ff"  # Khmer
    "\u2e80-\u2fdf"  # CJK radicals
    "\u3000-\u9fff"  # CJK punctuation, kana, Bopomofo, CJK ideographs
    "\ua960-\ua97f\uac00-\ud7ff"  # Hangul
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\uff00-\uffef"  # full-width and half-width forms
    "\U00010000-\U0010ffff"  # outside the BMP: emoji, rare ideographs
)
_MAX_WORD_CHARS = 16  # so a unit costs at most 16 tokens, a quarter of the smallest chunk
_UNIT = re.compile(rf"[{DENSE_SCRIPTS}]|[^\s{DENSE_SCRIPTS}]{{1,{_MAX_WORD_CHARS}}}")
# Sentence punctuation (also the CJK full stop and full-width ! ? ;), then closing quotes.
_SENTENCE_END = re.compile(
    r"[.!?;:\u2026\u3002\uff01\uff1f\uff1b][\"'\u201d\u2019)\]\u300d\u300f]*$"
)

# Costs are kept in twelfths of a token so that sums are exact integers.
_SCALE = 12
_LETTER_COST, _DIGIT_COST, _PUNCTUATION_COST, _OTHER_COST, _MIN_UNIT_COST = 3, 4, 12, 6, 12


def count_tokens(text: str) -> int:
    """Estimate the number of OpenAI tokens in ``text`` (see the module docstring)."""
    return _to_tokens(sum(_unit_cost(m.group()) for m in _UNIT.finditer(text)))


def check_static_strategy(max_chunk_size_tokens: int, chunk_overlap_tokens: int) -> None:
    """Raise ValueError unless the numbers are valid for OpenAI's static chunking strategy."""
    if not MIN_CHUNK_SIZE_TOKENS <= max_chunk_size_tokens <= MAX_CHUNK_SIZE_TOKENS:
        raise ValueError(
            f"max_chunk_size_tokens must be between {MIN_CHUNK_SIZE_TOKENS} and "
            f"{MAX_CHUNK_SIZE_TOKENS}, got {max_chunk_size_tokens}."
        )
    if chunk_overlap_tokens < 0 or 2 * chunk_overlap_tokens > max_chunk_size_tokens:
        raise ValueError(
            "chunk_overlap_tokens must be at least 0 and at most half of max_chunk_size_tokens "
            f"({max_chunk_size_tokens // 2}), got {chunk_overlap_tokens}."
        )


def chunk_pages(
    pages: Iterable[Page],
    max_chunk_size_tokens: int = AUTO_MAX_CHUNK_SIZE_TOKENS,
    chunk_overlap_tokens: int = AUTO_CHUNK_OVERLAP_TOKENS,
) -> list[Chunk]:
    """Split each page into overlapping chunks; a chunk never spans two pages."""
    check_static_strategy(max_chunk_size_tokens, chunk_overlap_tokens)
    chunks: list[Chunk] = []
    for page in pages:
        for text, tokens in _split_page(page.text, max_chunk_size_tokens, chunk_overlap_tokens):
            chunks.append(Chunk(page=page.number, index=len(chunks), text=text, tokens=tokens))
    return chunks


def _unit_cost(unit: str) -> int:
    cost = 0
    for char in unit:
        if not char.isascii():
            cost += _OTHER_COST
        elif char.isalpha():
            cost += _LETTER_COST
        elif char.isdigit():
            cost += _DIGIT_COST
        else:
            cost += _PUNCTUATION_COST
    return max(cost, _MIN_UNIT_COST)


def _to_tokens(cost: int) -> int:
    return -(-cost // _SCALE)


def _split_page(text: str, max_tokens: int, overlap_tokens: int) -> Iterator[tuple[str, int]]:
    spans = [m.span() for m in _UNIT.finditer(text)]
    if not spans:
        return
    # prefix[j] is the cost of units [0, j); costs are positive, so prefix is strictly rising.
    prefix = [0, *accumulate(_unit_cost(text[a:b]) for a, b in spans)]
    budget, overlap = max_tokens * _SCALE, overlap_tokens * _SCALE
    start = 0
    while True:
        end = bisect_right(prefix, prefix[start] + budget) - 1  # most units that fit
        if end < len(spans):
            end = _best_cut(text, spans, prefix, start, end, budget)
        yield text[spans[start][0] : spans[end - 1][1]], _to_tokens(prefix[end] - prefix[start])
        if end == len(spans):
            return
        # The cut lies in the window's last quarter (no unit is longer than a quarter) and
        # the overlap is at most half of it, so the next chunk always starts further on.
        start = bisect_left(prefix, prefix[end] - overlap)


_PARAGRAPH, _SENTENCE, _LINE, _SPACE, _NONE = 4, 3, 2, 1, 0


def _best_cut(
    text: str, spans: list[tuple[int, int]], prefix: list[int], start: int, end: int, budget: int
) -> int:
    """Pick the unit index to end the chunk at: the best boundary in the last quarter."""
    earliest = bisect_left(prefix, prefix[start] + budget * 3 // 4)
    best, best_rank = end, -1
    for cut in range(end, earliest - 1, -1):
        rank = _boundary_rank(text, spans[cut - 1], spans[cut][0])
        if rank > best_rank:
            best, best_rank = cut, rank
            if rank == _PARAGRAPH:
                break
    return best


def _boundary_rank(text: str, before: tuple[int, int], next_start: int) -> int:
    gap = text[before[1] : next_start]
    if "\n\n" in gap:
        return _PARAGRAPH
    if _SENTENCE_END.search(text, before[0], before[1]):
        return _SENTENCE
    if "\n" in gap:
        return _LINE
    return _SPACE if gap else _NONE

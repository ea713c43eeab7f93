"""Page furniture out of extracted pages: running headers and footers, page numbers, and
table-of-contents leaders.

Search and quotes are about what a document says: "GeoBase® 7" at the top of every page, a
lone "iv" at the bottom, or "2.1 LRS MODEL ........ 7" are the printer's, and quoted in an
answer they read as noise. A line is a running header or footer when, with its numbers blanked
out, it repeats among the first or last lines of at least half the pages (three or more).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from difflib import SequenceMatcher

from engine.knowledge.extraction.child import Page

# How many lines at each end of a page may be furniture.
EDGE_LINES = 3
MIN_PAGES = 3
REPEAT_SHARE = 0.5
NUMBERS = re.compile(r"\d+|\b[ivxlcdm]{1,7}\b", re.IGNORECASE)
NOT_LETTERS = re.compile(r"[\W\d_]+")
# Near repeats are looked for in documents up to this long (the comparisons grow as its square).
FUZZY_PAGES = 60
SIMILAR = 0.93  # one misread letter in twenty; not two lines made from one template
PAGE_NUMBER = re.compile(
    r"(?:page\s*)?[-\u2013\u2014(\[]?\s*(?:\d{1,4}|[ivxlcdm]{1,7})\s*[-\u2013\u2014)\]]?"
    r"(?:\s*(?:of|/)\s*\d{1,4})?",
    re.IGNORECASE,
)
# Dot (or underscore) leaders of a table of contents: "Overview ........ 6".
LEADER = re.compile(r"(?:\.\s?){4,}|…{2,}|_{4,}")


def shape(line: str) -> str:
    """The line's letters, without its numbers (page numbers, roman or not)."""
    return NOT_LETTERS.sub("", NUMBERS.sub(" ", line.lower()))


def similar(a: str, b: str) -> bool:
    return a == b or (
        abs(len(a) - len(b)) <= 3 and SequenceMatcher(None, a, b, autojunk=False).ratio() >= SIMILAR
    )


def running_lines(shapes: list[set[str]]) -> set[str]:
    """The shapes that repeat at page edges often enough to be headers or footers."""
    needed = max(MIN_PAGES, math.ceil(len(shapes) * REPEAT_SHARE))
    counts = Counter(key for page in shapes for key in page if key)
    repeated = {key for key, count in counts.items() if count >= needed}
    if len(shapes) <= FUZZY_PAGES:
        for key in counts:
            if key in repeated or len(key) < 4:
                continue
            if sum(any(similar(key, other) for other in page) for page in shapes) >= needed:
                repeated.add(key)
    return repeated


def edges(lines: list[str]) -> list[str]:
    filled = [line for line in lines if line.strip()]
    return filled[:EDGE_LINES] + filled[-EDGE_LINES:]


def without_furniture(pages: list[Page]) -> list[Page]:
    """The pages with their running headers and footers, lone page numbers and leader lines
    taken out; everything else as it was."""
    split = [page.text.split("\n") for page in pages]
    repeated: set[str] = set()
    if len(pages) >= MIN_PAGES:
        repeated = running_lines([{shape(x) for x in edges(lines)} for lines in split])
    cleaned = []
    for page, lines in zip(pages, split, strict=True):
        edge = set(edges(lines))
        kept = [
            line
            for line in lines
            if not LEADER.search(line)
            and not (line in edge and (shape(line) in repeated or PAGE_NUMBER.fullmatch(line)))
        ]
        # A page that is nothing but a number keeps it: that is then what the page says.
        text = "\n".join(kept).strip() or page.text
        cleaned.append(Page(page.number, text))
    return cleaned

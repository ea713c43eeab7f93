"""Page furniture out of extracted pages, and whole sentences in quotes: what the offline
model quotes must read as the document, not as its printer's marks."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.knowledge.citations import excerpt, sentences
from engine.knowledge.extraction.child import Page, _extract_pdf
from engine.knowledge.furniture import without_furniture

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "pdf"


BIRDS = ["grey heron", "great egret", "little bittern", "night heron", "purple heron", "stork"]


def book(pages: int) -> list[Page]:
    return [
        Page(
            n,
            f"A Field Guide to Herons — Edition 2\n{n}\nThe {BIRDS[n - 1]} wades in water.\n"
            f"Page {n} of {pages}",
        )
        for n in range(1, pages + 1)
    ]


def test_running_headers_footers_and_page_numbers_go() -> None:
    cleaned = without_furniture(book(6))
    assert [p.text for p in cleaned] == [f"The {bird} wades in water." for bird in BIRDS]


def test_a_short_document_keeps_its_lines_and_a_table_of_contents_loses_its_leaders() -> None:
    pages = [Page(1, "Contents\n1 Overview .......... 6\n2 Model . . . . . . 8\nThe end.")]
    assert without_furniture(pages)[0].text == "Contents\nThe end."
    two = book(2)
    assert "A Field Guide to Herons" in without_furniture(two)[0].text  # two pages prove nothing


@pytest.mark.skipif(not CORPUS.exists(), reason="the shared corpus is not beside the project")
def test_scanned_headers_that_misread_themselves_still_go() -> None:
    pages = without_furniture(_extract_pdf(str(CORPUS / "Seige_of_Vicksburg_Sample_OCR.pdf"), 50))
    text = "\n".join(p.text for p in pages)
    assert "SIEGE OF VICKS" not in text
    assert "thirteen dollars a month" in text


def test_quotes_are_whole_sentences_without_headings_or_leaders() -> None:
    passage = (
        "ing of the chunk before.\n2.1 LRS model\n\nFour packages constitute the model: Network,"
        " Events and Metadata. The Network package holds the\nlinear network.\nContents "
        "........ 7\nThe Events pack-\nage holds events. And this sentence is cut"
    )
    assert sentences(passage)[:3] == [
        "ing of the chunk before.",
        "2.1 LRS model",
        "Four packages constitute the model: Network, Events and Metadata.",
    ]
    quote = excerpt(passage, "Which four packages make up the model?")
    assert quote == (
        "Four packages constitute the model: Network, Events and Metadata. The Network "
        "package holds the linear network."
    )
    assert excerpt(passage, "What does the events package hold?") == (
        "The Events package holds events."
    )


def test_a_glossary_is_quoted_at_the_line_asked_about() -> None:
    # Each short line reads as the heading of the next; the line with the word asked about is
    # the quote, not the longest line of the list.
    glossary = (
        "ABBREVIATIONS\nLRM Linear Reference Method\nLRS Linear Reference System\n"
        "NHNC1 National Hydro Network, Canada, Level 1\nNID National Identifier"
    )
    assert excerpt(glossary, "What does the abbreviation LRM stand for?") == (
        "LRM Linear Reference Method"
    )
    # A chunk that ends in a piece of a sentence: kept when only that piece has the answer.
    cut = "The model is described below. Tributaries are joined at the confluence node of"
    assert "confluence" in excerpt(cut, "Where are tributaries joined at a confluence?")


def test_a_page_that_is_only_its_number_keeps_it() -> None:
    pages = [Page(1, "1"), Page(2, "2"), Page(3, "3")]
    assert [p.text for p in without_furniture(pages)] == ["1", "2", "3"]

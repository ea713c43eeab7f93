"""Token estimates and page-bounded chunking. No Django needed."""

import re
from itertools import pairwise

import pytest

from engine.knowledge.chunking import (
    AUTO_CHUNK_OVERLAP_TOKENS,
    AUTO_MAX_CHUNK_SIZE_TOKENS,
    Chunk,
    check_static_strategy,
    chunk_pages,
    count_tokens,
)
from engine.knowledge.extraction.extract import Page

STRATEGIES = [(100, 0), (100, 50), (333, 100), (800, 400), (4096, 2048)]


def numbered_words(count: int, prefix: str = "w") -> str:
    """Unique words, so where a chunk starts and ends can be read off its text."""
    return " ".join(f"{prefix}{n}" for n in range(count))


def prose(sentences: int) -> str:
    return " ".join(
        f"Sentence {n} tells the reader something about the river and the mill."
        for n in range(sentences)
    )


def test_auto_strategy_is_800_with_400_overlap() -> None:
    assert (AUTO_MAX_CHUNK_SIZE_TOKENS, AUTO_CHUNK_OVERLAP_TOKENS) == (800, 400)
    text = prose(300)
    assert chunk_pages([Page(1, text)]) == chunk_pages([Page(1, text)], 800, 400)


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("", 0),
        ("  \n ", 0),
        ("the", 1),
        ("hello", 2),  # long common words are over-counted: BPE has "hello" as one token
        ("Hello, world!", 5),  # BPE: 4
        ("The quick brown fox jumps over the lazy dog.", 11),  # BPE: 10
        ("你好世界", 4),
        ("こんにちは世界", 7),
        ("สวัสดีชาวโลก", 12),
        ("Привет, мир", 6),
        ("🙂👍", 2),
        ("a" * 400, 100),
    ],
)
def test_count_tokens_estimates(text: str, tokens: int) -> None:
    assert count_tokens(text) == tokens


def test_count_tokens_overcounts_english_prose_slightly() -> None:
    # Real BPE tokenizers give about 1.3 tokens per English word.
    text = prose(50)
    words = len(text.split())
    assert 1.3 * words <= count_tokens(text) <= 1.5 * words


@pytest.mark.parametrize(("max_tokens", "overlap"), STRATEGIES)
def test_no_chunk_exceeds_max_and_tokens_are_counted(max_tokens: int, overlap: int) -> None:
    pages = [
        Page(1, prose(400)),
        Page(2, numbered_words(3000)),
        Page(3, "界" * 9000),
        Page(4, "| a | b |\n|---|---|\n" * 500),
    ]
    chunks = chunk_pages(pages, max_tokens, overlap)
    assert len(chunks) > 3
    for chunk in chunks:
        assert chunk.tokens == count_tokens(chunk.text)
        assert 0 < chunk.tokens <= max_tokens


def test_chunks_keep_their_page_and_global_order() -> None:
    pages = [Page(1, numbered_words(1500, "a")), Page(2, "   "), Page(3, numbered_words(1500, "c"))]
    chunks = chunk_pages(pages, 200, 50)
    assert [chunk.index for chunk in chunks] == list(range(len(chunks)))
    assert [chunk.page for chunk in chunks] == sorted(chunk.page for chunk in chunks)
    assert {chunk.page for chunk in chunks} == {1, 3}
    for chunk in chunks:
        expected_prefix = "a" if chunk.page == 1 else "c"
        assert all(word.startswith(expected_prefix) for word in chunk.text.split())


def test_chunk_never_crosses_a_page_boundary_even_when_pages_are_short() -> None:
    pages = [Page(number, f"Page {number} is short.") for number in range(1, 6)]
    chunks = chunk_pages(pages)
    assert [(chunk.page, chunk.text) for chunk in chunks] == [
        (page.number, page.text) for page in pages
    ]


@pytest.mark.parametrize(("max_tokens", "overlap"), STRATEGIES)
def test_overlap_repeats_at_most_the_overlap_and_nearly_all_of_it(
    max_tokens: int, overlap: int
) -> None:
    chunks = chunk_pages([Page(1, numbered_words(6000))], max_tokens, overlap)
    for before, after in pairwise(chunks):
        before_words, after_words = before.text.split(), after.text.split()
        shared = [word for word in after_words if word in set(before_words)]
        assert shared == before_words[len(before_words) - len(shared) :]
        assert shared == after_words[: len(shared)]
        # Whole words only, so the overlap may fall short by less than one word (<= 2 tokens).
        assert overlap - 2 <= count_tokens(" ".join(shared)) <= overlap


def test_zero_overlap_tiles_the_page_exactly() -> None:
    text = prose(200)
    chunks = chunk_pages([Page(1, text)], 150, 0)
    assert " ".join(chunk.text for chunk in chunks) == text


def test_chunks_together_cover_every_word() -> None:
    text = numbered_words(5000)
    chunks = chunk_pages([Page(1, text)], 300, 150)
    assert {word for chunk in chunks for word in chunk.text.split()} == set(text.split())


def test_cuts_prefer_sentence_ends() -> None:
    chunks = chunk_pages([Page(1, prose(200))], 150, 0)
    assert all(chunk.text.endswith("mill.") for chunk in chunks)


def test_cuts_prefer_paragraph_breaks_over_sentence_ends() -> None:
    paragraphs = [f"{prose(3)} End of paragraph {n}." for n in range(60)]
    chunks = chunk_pages([Page(1, "\n\n".join(paragraphs))], 400, 0)
    assert all(re.search(r"End of paragraph \d+\.$", chunk.text) for chunk in chunks)


@pytest.mark.parametrize(
    "sample",
    ["這是一個沒有空格的中文句子", "日本語の文章には空白がありません", "ภาษาไทยไม่เว้นวรรคระหว่างคำ"],
    ids=["chinese", "japanese", "thai"],
)
def test_text_without_spaces_is_chunked_by_character(sample: str) -> None:
    text = sample * 300
    chunks = chunk_pages([Page(1, text)], 100, 30)
    assert len(chunks) > 1
    for before, after in pairwise(chunks):
        assert len(before.text) == before.tokens == 100
        assert before.text[-30:] == after.text[:30]
    assert "".join(chunk.text[30:] for chunk in chunks[1:]) == text[100:]


def test_cjk_sentences_are_cut_after_the_full_stop() -> None:
    text = "".join(f"第{n}句話說明了河流與磨坊的故事。" for n in range(200))
    chunks = chunk_pages([Page(1, text)], 100, 0)
    assert all(chunk.text.endswith("。") for chunk in chunks)


@pytest.mark.parametrize("blob", ["QUJD" * 5000, "=" * 20_000], ids=["base64", "rule"])
def test_unbroken_string_longer_than_a_chunk_is_split(blob: str) -> None:
    chunks = chunk_pages([Page(1, blob)], 100, 0)
    assert "".join(chunk.text for chunk in chunks) == blob
    assert all(chunk.tokens <= 100 for chunk in chunks)


def test_pages_without_text_give_no_chunks() -> None:
    assert chunk_pages([Page(1, ""), Page(2, " \n\n ")]) == []


def test_chunk_is_a_frozen_record() -> None:
    chunk = chunk_pages([Page(7, "Just one line.")])[0]
    assert chunk == Chunk(page=7, index=0, text="Just one line.", tokens=4)
    with pytest.raises(AttributeError):
        chunk.text = "changed"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("max_tokens", "overlap", "complaint"),
    [
        (99, 0, "max_chunk_size_tokens must be between 100 and 4096, got 99"),
        (4097, 0, "max_chunk_size_tokens must be between 100 and 4096, got 4097"),
        (800, -1, "chunk_overlap_tokens must be at least 0 and at most half"),
        (800, 401, r"at most half of max_chunk_size_tokens \(400\), got 401"),
    ],
)
def test_invalid_strategy_is_rejected(max_tokens: int, overlap: int, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        check_static_strategy(max_tokens, overlap)
    with pytest.raises(ValueError, match=complaint):
        chunk_pages([Page(1, "text")], max_tokens, overlap)


@pytest.mark.parametrize(("max_tokens", "overlap"), [(100, 0), (100, 50), (4096, 2048), (801, 400)])
def test_strategy_limits_are_inclusive(max_tokens: int, overlap: int) -> None:
    check_static_strategy(max_tokens, overlap)

"""Markdown to safe HTML, citations to footnotes, and the cost of rendering a growing answer."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest

from chat.highlighting import stylesheet
from chat.live.answer import Checkpoints
from chat.live.consumers import sse_event
from chat.rendering import MATHML_TAGS, cited_text, markdown_html, message_view


def test_raw_html_from_the_model_is_shown_as_text() -> None:
    html = markdown_html('Hi <script>alert(1)</script> <img src=x onerror="alert(2)">')
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


@pytest.mark.parametrize(
    "link",
    [
        "[x](javascript:alert(1))",
        "[x](JaVaScRiPt:alert(1))",
        "[x](vbscript:msgbox(1))",
        "[x](data:text/html;base64,PHNjcmlwdD4=)",
        '<a href="javascript:alert(1)">x</a>',
    ],
)
def test_script_links_lose_their_target(link: str) -> None:
    html = markdown_html(link).lower()
    assert "<a" not in html  # it stays text, if anything


def test_links_open_safely_and_images_from_other_hosts_become_links() -> None:
    html = markdown_html("[site](https://example.com/a) ![pixel](https://evil.example/p.png)")
    assert '<a href="https://example.com/a" rel="noopener noreferrer nofollow">site</a>' in html
    assert "<img" not in html
    assert (
        '<a href="https://evil.example/p.png" rel="noopener noreferrer nofollow">pixel</a>' in html
    )
    own = markdown_html("![chart](/c/1/files/file-abc)")
    assert '<img src="/c/1/files/file-abc" alt="chart">' in own


def test_code_tables_and_lists_render() -> None:
    html = markdown_html(
        "```python\nprint('<hi>')\n```\n\n| a | b |\n|--:|---|\n| 1 | 2 |\n\n1. one\n2. two"
    )
    assert '<code class="language-python"><span class="tok-nb">print</span>' in html
    assert "&lt;hi&gt;" in html and "<hi>" not in html
    assert '<th class="align-right">a</th>' in html and "style=" not in html
    assert "<ol>" in html and "<li>two</li>" in html
    assert "language-" not in markdown_html('```x" onclick="y\ncode\n```').split("<code")[1][:5]


def annotation(text: str, marker: str, file_id: str, page: int, quote: str) -> dict[str, object]:
    start = text.index(marker)
    return {
        "type": "file_citation",
        "text": marker,
        "start_index": start,
        "end_index": start + len(marker),
        "file_citation": {"file_id": file_id, "quote": quote, "page": page, "file_name": "a.pdf"},
    }


def test_citations_become_numbered_links_to_the_page_with_footnotes() -> None:
    text = "First 【0:0†a.pdf】 then **second** 【0:1†a.pdf】 and again 【0:0†a.pdf】."
    notes = [
        annotation(text, "【0:0†a.pdf】", "file-a", 3, "a quote"),
        annotation(text, "【0:1†a.pdf】", "file-b", 7, "<b>other</b>"),
    ]
    third = text.rindex("【0:0†a.pdf】")
    notes.append({**notes[0], "start_index": third, "end_index": third + len("【0:0†a.pdf】")})
    html, footnotes, source = cited_text(text, notes, 5, {})
    assert "【" not in html
    assert html.count('<sup class="cite">') == 3
    assert '<a href="/c/5/files/file-a#page=3" target="_blank" title="a.pdf, page 3">1</a>' in html
    assert [(n.number, n.page, n.quote, n.url) for n in footnotes] == [
        (1, 3, "a quote", "/c/5/files/file-a#page=3"),
        (2, 7, "<b>other</b>", "/c/5/files/file-b#page=7"),
    ]
    assert "<strong>second</strong>" in html
    assert source == "First [1] then **second** [2] and again [1]."


def test_the_model_cannot_forge_a_citation() -> None:
    html, footnotes, _ = cited_text("fake \ue0001\ue001 link", [], 1, {})
    assert "<sup" not in html and footnotes == []


def test_a_citation_with_wrong_offsets_is_found_by_its_text() -> None:
    text = "See 【0:0†a.pdf】."
    note = annotation(text, "【0:0†a.pdf】", "file-a", 1, "q")
    note["start_index"], note["end_index"] = 0, 2
    html, footnotes, _ = cited_text(text, [note], 1, {})
    assert "【" not in html and len(footnotes) == 1


def test_messages_of_people_are_plain_text_and_attachments_listed() -> None:
    view = message_view(
        {
            "id": "msg_1",
            "role": "user",
            "content": [{"type": "text", "text": {"value": "**not bold** <i>x</i>"}}],
            "attachments": [{"file_id": "file-1"}],
        },
        9,
        {"file-1": "<b>.pdf"},
    )
    assert view.html == "**not bold** &lt;i&gt;x&lt;/i&gt;"
    assert [(a.name, a.url) for a in view.attachments] == [("<b>.pdf", "/c/9/files/file-1")]
    assert view.dom_id == "m-msg_1"


def test_checkpoints_render_a_streaming_answer_in_linear_time() -> None:
    checkpoints = Checkpoints()
    text = ""
    rendered = 0
    paragraph = "word " * 30 + "\n\n"
    for _ in range(2000):  # about 300,000 characters, one paragraph at a time
        text += paragraph
        if len(text) >= checkpoints.next_at:
            rendered += checkpoints.due(text)
    assert rendered < 2 * len(text)
    assert rendered > len(text) / 3  # and it does render on the way


def test_checkpoints_do_not_split_a_code_block() -> None:
    checkpoints = Checkpoints()
    text = "intro\n\n```\n" + "code line\n\n" * 40
    upto = checkpoints.due(text)
    assert text[:upto] == "intro\n\n"


def test_sse_events_frame_every_line() -> None:
    assert sse_event(7, "update", "<p>a\nb</p>\r\nc") == (
        b"id: 7\nevent: update\ndata: <p>a\ndata: b</p>\ndata: c\n\n"
    )


# --- Code and maths -------------------------------------------------------------------------------


def elements(html: str) -> list[tuple[str, list[str]]]:
    """Every element of the HTML as a browser's parser sees it: (tag, attribute names)."""
    found: list[tuple[str, list[str]]] = []

    class Collector(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            found.append((tag, [name for name, _ in attrs]))

    Collector().feed(html)
    return found


def test_code_is_highlighted_with_classes_and_no_inline_styles() -> None:
    html = markdown_html("```python\ndef f(x):\n    return '<b>'  # note\n```")
    assert '<code class="language-python"><span class="tok-k">def</span>' in html
    assert '<span class="tok-c1"># note</span>' in html
    assert "&lt;b&gt;" in html and "<b>" not in html
    assert "style=" not in html
    # An unknown language is shown plain; so is a language name trying to be an attribute.
    assert "tok-" not in markdown_html("```nosuchlanguage\nx = 1\n```")


def test_the_code_stylesheet_is_the_one_the_pinned_pygments_writes() -> None:
    written = (Path(__file__).parents[2] / "static" / "chat" / "code.css").read_text()
    assert written == stylesheet(), "run: python -c 'from chat.highlighting import stylesheet…'"


@pytest.mark.parametrize(
    ("text", "display"),
    [
        ("Energy: $E = mc^2$.", "inline"),
        ("Energy: \\(E = mc^2\\).", "inline"),
        ("$$E = mc^2$$", "block"),
        ("\\[E = mc^2\\]", "block"),
    ],
)
def test_maths_in_every_delimiter_becomes_mathml(text: str, display: str) -> None:
    html = markdown_html(text)
    assert f'<math display="{display}">' in html
    assert "<msup><mi>c</mi><mn>2</mn></msup>" in html
    assert "$" not in html and "\\(" not in html


def test_prices_code_and_broken_maths_stay_text() -> None:
    assert "<math" not in markdown_html("It costs $5 and $10.")
    assert "<math" not in markdown_html("`$x$` is code")
    broken = markdown_html("$$" + "{" * 500 + "x" + "}" * 500 + "$$")
    assert "<math" not in broken and 'class="math-source"' in broken


@pytest.mark.parametrize(
    "payload",
    [
        "$\\href{javascript:alert(1)}{click}$",
        "$$\\href{javascript:alert(1)}{click}$$",
        "$\\text{<script>alert(1)</script>}$",
        "$\\text{<img src=x onerror=alert(1)>}$",
        "$\\text{<a href='javascript:alert(1)'>x</a>}$",
        '$\\text{<annotation-xml encoding="text/html"><img src=x onerror=alert(1)>}$',
        "$\\text{<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>}$",
        "$\\text{<svg><script>alert(1)</script></svg>}$",
        "$\\color{red}{x}\\style{background:url(javascript:alert(1))}{y}$",
        "$\\mathrm{<mi xlink:href='javascript:alert(1)'>x</mi>}$",
        "$$" + "\\sqrt{" * 2000 + "x" + "}" * 2000 + "$$",
        "$$" + "\\left(" * 3000 + "$$",
    ],
)
def test_hostile_maths_stays_inert(payload: str) -> None:
    html = markdown_html(payload)
    # Shown as text at most: no element or attribute that could run, load or link anything.
    for tag, attributes in elements(html):
        assert tag in MATHML_TAGS | {"p", "div", "pre", "code"}, (tag, html[:300])
        for name in attributes:
            assert name in {"display", "class", "mathvariant", "stretchy", "fence"}, (name, html)


def test_a_footnote_does_not_repeat_a_quote_the_answer_already_shows() -> None:
    text = "> Four packages constitute the model. 【0:0†a.pdf】\n\nAnd more 【0:1†a.pdf】."
    notes = [
        annotation(text, "【0:0†a.pdf】", "file-a", 7, "Four packages constitute the model."),
        annotation(text, "【0:1†a.pdf】", "file-a", 9, "A quote the text does not hold."),
    ]
    html, footnotes, _ = cited_text(text, notes, 1, {})
    assert html.count("Four packages constitute the model.") == 1
    assert [(n.page, n.quote) for n in footnotes] == [
        (7, ""),
        (9, "A quote the text does not hold."),
    ]

"""Turning what the API says into HTML that is safe to put in the page.

Assistant text is markdown (markdown-it-py, raw HTML off), with code highlighted by Pygments
(`chat.highlighting`) and LaTeX maths as MathML (`chat.maths`), and then sanitised (nh3) with
an allowlist: neither the model's HTML, nor `javascript:` links, nor images from other hosts,
nor MathML's links and HTML islands reach the page. Citations become numbered links to the
cited page of the file, through the ownership-checked file route.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import nh3
from django.urls import reverse
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt
from mdit_py_plugins.dollarmath import dollarmath_plugin
from mdit_py_plugins.texmath import texmath_plugin

from chat.highlighting import TOKEN_CLASS, highlighted
from chat.maths import mathml

# MathML Core's presentation elements, without <semantics>, <annotation> and <annotation-xml>
# (the last can hold HTML: a way around any sanitiser) and without <maction>.
MATHML_TAGS = {
    "math", "menclose", "merror", "mfrac", "mi", "mmultiscripts", "mn", "mo", "mover",
    "mpadded", "mphantom", "mprescripts", "mroot", "mrow", "ms", "mspace", "msqrt", "mstyle",
    "msub", "msubsup", "msup", "mtable", "mtd", "mtext", "mtr", "munder", "munderover", "none",
}  # fmt: skip
# Layout only: no href, no xlink:*, no event handlers, no style, no colours.
MATHML_ATTRIBUTES = {
    "math": {"display"},
    "menclose": {"notation"},
    "mfrac": {"linethickness"},
    "mi": {"mathvariant"},
    "mo": {"accent", "fence", "form", "largeop", "maxsize", "minsize", "movablelimits",
           "separator", "stretchy", "symmetric", "lspace", "rspace"},
    "mover": {"accent"},
    "munder": {"accentunder"},
    "munderover": {"accent", "accentunder"},
    "mpadded": {"depth", "height", "lspace", "voffset", "width"},
    "mspace": {"depth", "height", "width"},
    "mstyle": {"displaystyle", "scriptlevel"},
    "mtable": {"columnalign", "columnlines", "rowalign", "rowlines"},
    "mtd": {"columnalign", "columnspan", "rowalign", "rowspan"},
}  # fmt: skip
ALLOWED_TAGS = {
    "a", "blockquote", "br", "code", "del", "div", "em", "h1", "h2", "h3", "h4", "h5", "h6",
    "hr", "img", "li", "ol", "p", "pre", "s", "span", "strong", "table", "tbody", "td", "th",
    "thead", "tr", "ul",
} | MATHML_TAGS  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},
    "code": {"class"},
    "pre": {"class"},
    "span": {"class"},
    "div": {"class"},
    "ol": {"start"},
    "th": {"class"},
    "td": {"class"},
    **MATHML_ATTRIBUTES,
}
CODE_CLASS = re.compile(r"language-[\w+#.-]{1,40}")
# A table column's alignment, as a class: the page's Content-Security-Policy refuses style
# attributes (static/chat/chat.css styles these).
ALIGN_CLASS = re.compile(r"align-(left|center|right)")
# The classes our own renderers write; any other class is dropped.
OWN_CLASSES = {
    "pre": re.compile(r"math-source"),
    "code": re.compile(rf"{CODE_CLASS.pattern}|math-source"),
    "span": TOKEN_CLASS,
    "div": re.compile(r"math-display"),
    "th": ALIGN_CLASS,
    "td": ALIGN_CLASS,
}
# Citations are swapped for these before markdown and back after sanitising; the model's text
# cannot forge one, since any such characters in it are dropped first.
CITE_OPEN, CITE_CLOSE = "\ue000", "\ue001"
CITE_TOKEN = re.compile(f"{CITE_OPEN}(\\d+){CITE_CLOSE}")
DOM_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
FILE_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


def own_url(url: str) -> bool:
    """A path on this site: the only images the page shows are the chat's own."""
    parts = urlsplit(url)
    return not parts.scheme and not parts.netloc and url.startswith("/")


def keep_attribute(tag: str, attribute: str, value: str) -> str | None:
    if tag == "img" and attribute == "src":
        return value if own_url(value) else None
    if attribute == "class":
        allowed = OWN_CLASSES.get(tag)
        return value if allowed is not None and allowed.fullmatch(value) else None
    return value


CLEANER = nh3.Cleaner(
    tags=ALLOWED_TAGS,
    attributes=ALLOWED_ATTRIBUTES,
    attribute_filter=keep_attribute,
    url_schemes={"http", "https", "mailto"},
    link_rel="noopener noreferrer nofollow",
)


def foreign_image_as_link(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
    """Images from other hosts become links to them: the page never loads them."""
    token = tokens[idx]
    src = token.attrGet("src") or ""
    alt = self.renderInlineAsText(token.children or [], options, env) or src
    if own_url(src):
        return self.image(tokens, idx, options, env)
    return f'<a href="{html.escape(src)}">{html.escape(alt)}</a>'


def alignment_as_class(state: Any) -> None:
    """Table cells say their alignment with a class, not the style attribute markdown-it gives."""
    for token in state.tokens:
        if token.type in ("th_open", "td_open") and token.attrs.get("style"):
            side = str(token.attrs.pop("style")).removeprefix("text-align:")
            token.attrSet("class", f"align-{side}")


def code_block(code: str, language: str, attributes: str) -> str:
    """markdown-it's highlight hook: the inside of <pre><code class="language-…">."""
    return highlighted(code, language.split()[0] if language else "")


def inline_math(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
    return mathml(tokens[idx].content, display=False)


def display_math(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
    return f'<div class="math-display">{mathml(tokens[idx].content, display=True)}</div>\n'


def inline_display_math(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
    """$$…$$ inside a paragraph: displayed, but with no block element inside the <p>."""
    return mathml(tokens[idx].content, display=True)


MARKDOWN = MarkdownIt(
    "commonmark",
    {"html": False, "linkify": False, "typographer": False, "highlight": code_block},
)
MARKDOWN.enable(["table", "strikethrough"])
MARKDOWN.add_render_rule("image", foreign_image_as_link)
MARKDOWN.core.ruler.push("alignment_as_class", alignment_as_class)
# $…$ and $$…$$ (not "$5 and $10": no digits or spaces just inside the dollars), then \(…\)
# and \[…\]. Both plugins name their tokens alike; these rules render them all.
dollarmath_plugin(
    MARKDOWN, allow_labels=False, allow_space=False, allow_digits=False, double_inline=True
)
texmath_plugin(MARKDOWN, delimiters="brackets")
MARKDOWN.add_render_rule("math_inline", inline_math)
MARKDOWN.add_render_rule("math_inline_double", inline_display_math)
for _name in ("math_block", "math_block_eqno"):
    MARKDOWN.add_render_rule(_name, display_math)


def markdown_html(text: str) -> SafeString:
    return mark_safe(CLEANER.clean(MARKDOWN.render(text)))  # noqa: S308 (sanitised just now)


def escape_text(text: str) -> str:
    return html.escape(text, quote=False)


def dom_id(value: str) -> str:
    """An API id as an HTML id that is also a plain CSS selector."""
    return DOM_UNSAFE.sub("-", value)


# --- Messages -------------------------------------------------------------------------------------


@dataclass
class Footnote:
    number: int
    name: str
    page: int | None
    quote: str
    url: str


@dataclass
class Attachment:
    name: str
    url: str


@dataclass
class MessageView:
    dom_id: str
    role: str
    html: SafeString
    footnotes: list[Footnote] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    incomplete: bool = False
    # Steps of the run with function calls made before this message (chat.tools.history).
    steps: list[Any] = field(default_factory=list)
    message_id: str = ""
    run_id: str = ""
    # What "Copy" copies: the text as written (markdown), citations as their numbers.
    source: str = ""
    conversation_id: int = 0
    # Shown in the owner's page only (Copy, Edit, Regenerate), not in the admin's transcript.
    actions: bool = False
    # The newest answer of the thread, which Regenerate replaces.
    regenerable: bool = False


# The route that opens a conversation's files: its owner's, or the admin's (for a transcript).
OWNER_FILES = "chat:file"


def file_url(
    conversation_id: int, file_id: str, page: int | None = None, route: str = OWNER_FILES
) -> str:
    url = reverse(route, args=[conversation_id, file_id])
    return f"{url}#page={page}" if page else url


def citation(annotation: dict[str, Any]) -> tuple[str, str, int | None, str]:
    """(file id, name, page, quote) of a file_citation; quote and page are our engine's extras."""
    cited = annotation.get("file_citation") or {}
    page = cited.get("page", annotation.get("page"))
    return (
        str(cited.get("file_id", "")),
        str(cited.get("file_name") or ""),
        page if isinstance(page, int) else None,
        str(cited.get("quote") or annotation.get("quote") or ""),
    )


def quoted_in(quote: str, text: str) -> bool:
    """Whether the text already quotes this (an offline answer is made of its quotes)."""
    words = " ".join(quote.removesuffix("…").split())
    return bool(words) and words in " ".join(text.split())


def cited_text(
    text: str,
    annotations: list[dict[str, Any]],
    conversation_id: int,
    names: dict[str, str],
    first_number: int = 1,
    file_route: str = OWNER_FILES,
) -> tuple[SafeString, list[Footnote], str]:
    """Markdown with each citation marker replaced by a numbered link, the footnotes, and the
    text with each marker as its number in brackets (what "Copy" copies).

    A footnote names its source; it repeats the quote only where the text does not hold it."""
    text = text.replace(CITE_OPEN, "").replace(CITE_CLOSE, "")
    footnotes: list[Footnote] = []
    numbers: dict[tuple[str, int | None, str], int] = {}
    spans: list[tuple[int, int, int | str]] = []
    for annotation in annotations:
        if annotation.get("type") == "file_path":
            span = file_path_span(text, annotation, conversation_id, file_route)
            if span is not None:
                spans.append(span)
            continue
        if annotation.get("type") != "file_citation":
            continue
        start, end = annotation.get("start_index"), annotation.get("end_index")
        marker = annotation.get("text") or ""
        if not (isinstance(start, int) and isinstance(end, int) and text[start:end] == marker):
            start = text.find(marker) if marker else -1
            end = start + len(marker)
        if start < 0 or not marker:
            continue
        file_id, name, page, quote = citation(annotation)
        key = (file_id, page, quote)
        if key not in numbers:
            numbers[key] = first_number + len(footnotes)
            footnotes.append(
                Footnote(
                    number=numbers[key],
                    name=name or names.get(file_id, "a file"),
                    page=page,
                    quote="" if quoted_in(quote, text) else quote,
                    url=file_url(conversation_id, file_id, page, file_route),
                )
            )
        spans.append((start, end, numbers[key]))
    # Replace from the end, so earlier offsets stay right; overlapping markers are dropped.
    limit = len(text)
    source = text
    for start, end, replacement in sorted(spans, key=lambda span: span[0], reverse=True):
        if end > limit:
            continue
        if isinstance(replacement, int):
            text = f"{text[:start]}{CITE_OPEN}{replacement}{CITE_CLOSE}{text[end:]}"
            source = f"{source[:start].rstrip(' ')} [{replacement}]{source[end:]}"
        else:
            # A file the code wrote: the page links it; the copy keeps what the model wrote.
            text = f"{text[:start]}{replacement}{text[end:]}"
        limit = start
    rendered = markdown_html(text)
    by_number = {note.number: note for note in footnotes}

    def link(match: re.Match[str]) -> str:
        note = by_number[int(match.group(1))]
        where = f"{note.name}, page {note.page}" if note.page else note.name
        return (
            f'<sup class="cite"><a href="{html.escape(note.url)}" target="_blank" '
            f'title="{html.escape(where)}">{note.number}</a></sup>'
        )

    return mark_safe(CITE_TOKEN.sub(link, rendered)), footnotes, source  # noqa: S308


def file_path_span(
    text: str, annotation: dict[str, Any], conversation_id: int, file_route: str
) -> tuple[int, int, str] | None:
    """A file the code wrote, named `sandbox:/mnt/data/NAME` in the answer: the link becomes
    the chat's download route for it (a markdown link's target, or a link of its own)."""
    start, end = annotation.get("start_index"), annotation.get("end_index")
    marker = str(annotation.get("text") or "")
    file_id = str((annotation.get("file_path") or {}).get("file_id") or "")
    if not (isinstance(start, int) and isinstance(end, int) and text[start:end] == marker):
        return None
    if not marker or not FILE_ID.fullmatch(file_id):
        return None
    url = file_url(conversation_id, file_id, route=file_route)
    if text[max(start - 2, 0) : start] == "](":
        return start, end, url
    name = marker.rsplit("/", 1)[-1].replace("[", "").replace("]", "")
    return start, end, f"[{name}]({url})"


def cited_file_ids(messages: list[dict[str, Any]]) -> set[str]:
    """Files that citations or attachments in these messages name, to look their names up."""
    ids = set()
    for message in messages:
        for attachment in message.get("attachments") or []:
            ids.add(attachment["file_id"])
        for part in message.get("content") or []:
            for annotation in (part.get("text") or {}).get("annotations") or []:
                file_id, name, _, _ = citation(annotation)
                if file_id and not name:
                    ids.add(file_id)
    return ids


def message_view(
    message: dict[str, Any],
    conversation_id: int,
    names: dict[str, str],
    file_route: str = OWNER_FILES,
    skip_images: set[str] | frozenset[str] = frozenset(),
) -> MessageView:
    """`skip_images`: images the run's steps show already (code interpreter's figures)."""
    role = message.get("role", "assistant")
    pieces: list[str] = []
    sources: list[str] = []
    footnotes: list[Footnote] = []
    for part in message.get("content") or []:
        if part.get("type") == "text":
            text = part["text"].get("value", "")
            if role == "user":
                pieces.append(escape_text(text))
                sources.append(text)
                continue
            annotations = part["text"].get("annotations") or []
            body, notes, source = cited_text(
                text,
                annotations,
                conversation_id,
                names,
                first_number=len(footnotes) + 1,
                file_route=file_route,
            )
            pieces.append(body)
            sources.append(source)
            footnotes.extend(notes)
        elif part.get("type") == "image_file":
            image_id = part["image_file"]["file_id"]
            if image_id in skip_images:
                continue
            url = html.escape(file_url(conversation_id, image_id, route=file_route))
            pieces.append(f'<p><img src="{url}" alt="Image from the assistant"></p>')
        elif part.get("type") == "refusal":
            pieces.append(f"<p>{escape_text(part.get('refusal', ''))}</p>")
    attachments = [
        Attachment(
            name=names.get(a["file_id"], "attached file"),
            url=file_url(conversation_id, a["file_id"], route=file_route),
        )
        for a in message.get("attachments") or []
    ]
    return MessageView(
        dom_id=f"m-{dom_id(message.get('id', ''))}",
        role=role,
        html=mark_safe("".join(pieces)),  # noqa: S308 (each piece is escaped or sanitised)
        footnotes=footnotes,
        attachments=attachments,
        incomplete=message.get("status") == "incomplete",
        message_id=str(message.get("id", "")),
        conversation_id=conversation_id,
        run_id=str(message.get("run_id") or ""),
        source="\n\n".join(sources),
    )

"""LaTeX maths (`$…$`, `$$…$$`, `\\(…\\)`, `\\[…\\]`) as MathML, rendered on the server.

latex2mathml writes MathML Core, which browsers lay out natively: no script, no fonts to load,
and screen readers read it. Its output is not trusted (it copies `\\text{…}` verbatim and turns
`\\href` into an attribute): the sanitiser in `chat.rendering` cleans it like everything else.
"""

from __future__ import annotations

import html
import re

from latex2mathml.converter import convert

# Longer expressions are shown as their source: the converter is quick, but not on any input.
MAX_CHARS = 4_000
# Deeper groups than this are shown as source too (the converter recurses once per level).
MAX_DEPTH = 40


# Commands whose argument latex2mathml copies into the MathML as it is.
TEXT_COMMAND = re.compile(r"\\(?:text[a-z]*|mbox|hbox)\s*\{")


def without_markup(tex: str) -> str:
    """`<` and `>` as maths (`\\lt`, `\\gt`), or as escaped text inside `\\text{…}`: the
    converter would copy them into its output as tags."""
    out: list[str] = []
    position = 0
    for found in TEXT_COMMAND.finditer(tex):
        if found.start() < position:
            continue  # a \text inside a \text argument, escaped with it
        out.append(tex[position : found.start()].replace("<", "\\lt ").replace(">", "\\gt "))
        depth, end = 1, found.end()
        while end < len(tex) and depth:
            depth += {"{": 1, "}": -1}.get(tex[end], 0)
            end += 1
        out.append(html.escape(tex[found.start() : end], quote=False))
        position = end
    out.append(tex[position:].replace("<", "\\lt ").replace(">", "\\gt "))
    return "".join(out)


def too_deep(tex: str) -> bool:
    depth = 0
    for char in tex:
        if char == "{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif char == "}":
            depth -= 1
    return False


def source(tex: str, display: bool) -> str:
    """What a reader sees when the maths cannot be rendered: its source, as written."""
    tag = "pre" if display else "code"
    return f'<{tag} class="math-source">{html.escape(tex, quote=False)}</{tag}>'


def mathml(tex: str, display: bool) -> str:
    tex = tex.strip()
    if not tex or len(tex) > MAX_CHARS or too_deep(tex):
        return source(tex, display)
    try:
        return convert(without_markup(tex), display="block" if display else "inline")
    except Exception:  # any LaTeX it cannot parse (it raises many kinds), or recursion
        return source(tex, display)

"""Text extraction for uploaded files: the only module in Threadline that imports pypdf.

``extract_pages(path, filename)`` returns the text of a file page by page. Uploaded files are
untrusted, so the parsing never runs in the calling process: each call starts one child process
(``python -P engine/extract.py --child ...``) which lowers its own RLIMIT_AS / RLIMIT_CPU before
it reads a byte of the file, and the parent kills it after a wall-clock timeout. A decompression
bomb, a looping page tree or a parser bug therefore ends in an ``ExtractionError`` instead of
hanging the server or eating its memory.

Why a fresh ``subprocess`` rather than ``multiprocessing``: the caller is a long-running, threaded
(async) server, where ``fork`` is unsafe and ``preexec_fn`` is documented as unsafe; ``subprocess``
spawns via fork+exec in C, and the child applies its limits to itself. Running the file by path
with ``-P`` keeps the child independent of the Django project (no package ``__init__``, no
settings, no project directory on ``sys.path`` to shadow the standard library). Call it from a
worker thread (``asyncio.to_thread``) in async code: it blocks until the child exits.

Page cap policy: a PDF with more than ``max_pages`` pages is rejected with "too_large" rather
than silently truncated, so a user never believes a half-indexed file is searchable.

Non-PDF kinds (text, Markdown, HTML, JSON, DOCX) are one page, number 1. DOCX is read with the
standard library only (zipfile + expat), inside the same bounded child.
"""

from __future__ import annotations

import codecs
import json
import logging
import os
import re
import resource
import signal
import subprocess
import sys
import warnings
import zipfile
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from pypdf import PdfReader

logger = logging.getLogger(__name__)

Kind = Literal["pdf", "text", "markdown", "html", "json", "docx"]
ErrorCode = Literal[
    "encrypted",
    "no_text",
    "not_a_pdf",
    "empty",
    "unsupported_type",
    "too_large",
    "timeout",
    "corrupt",
]


@dataclass(frozen=True)
class Page:
    number: int  # 1-based; non-paginated formats have page 1 only
    text: str


class ExtractionError(Exception):
    """A file whose text cannot be extracted; ``message`` is safe to show to the uploader."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


UNSUPPORTED_MESSAGE = (
    "This file type is not supported. Upload a PDF, plain text, Markdown, HTML, JSON "
    "or Word (.docx) file."
)
SCANNED_PDF_MESSAGE = (
    "Scanned PDF: no extractable text. Upload a PDF with a text layer (run OCR first)."
)

_SNIFF_BYTES = 8192
_PDF_MAGIC = b"%PDF-"
_PDF_HEADER_WINDOW = 1024  # readers accept junk before the header; pypdf looks this far too
_ZIP_MAGIC = b"PK\x03\x04"
_DOCX_BODY = "word/document.xml"
_TEXT_BOMS = {
    codecs.BOM_UTF8: "utf-8-sig",
    codecs.BOM_UTF16_LE: "utf-16",
    codecs.BOM_UTF16_BE: "utf-16",
}
_EXTENSION_KINDS: dict[str, Kind] = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".json": "json",
}
# Bytes that never occur in real text files; their presence marks a binary file.
_BINARY_CONTROLS = re.compile(rb"[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f]")


def sniff_kind(path: str | os.PathLike[str], filename: str) -> Kind:
    """Decide what a file is from its bytes; the name only picks between text-like kinds."""
    with open(path, "rb") as f:
        head = f.read(_SNIFF_BYTES)
        at_eof = not f.read(1)
    if not head:
        raise ExtractionError("empty", "The file is empty.")
    if _PDF_MAGIC in head[:_PDF_HEADER_WINDOW]:
        return "pdf"
    if head.startswith(_ZIP_MAGIC):
        # DOCX is the only ZIP we take. Whether it holds word/document.xml is checked in the
        # child: listing a hostile archive's directory can take any amount of memory.
        return "docx"
    if not _looks_like_text(head, at_eof):
        raise ExtractionError("unsupported_type", UNSUPPORTED_MESSAGE)
    return _EXTENSION_KINDS.get(Path(filename).suffix.lower(), "text")


def _looks_like_text(head: bytes, at_eof: bool) -> bool:
    if any(head.startswith(bom) for bom in _TEXT_BOMS):
        return True
    if _BINARY_CONTROLS.search(head):
        return False
    try:
        # final=at_eof: the sample may end in the middle of a multi-byte character.
        codecs.getincrementaldecoder("utf-8")().decode(head, final=at_eof)
        return True
    except UnicodeDecodeError:
        pass
    try:
        head.decode("cp1252")  # strict: a few bytes are undefined, which rules out some binaries
        return True
    except UnicodeDecodeError:
        return False


_CHILD_SCRIPT = os.path.abspath(__file__)


def extract_pages(
    path: str | os.PathLike[str],
    filename: str,
    *,
    timeout: float = 60,
    memory_mb: int = 1024,
    max_pages: int = 2000,
) -> list[Page]:
    """Return the text of every page, parsing in a resource-limited child process.

    Raises ExtractionError (see ErrorCode) for anything that yields no usable text.
    PDF pages without text are kept (as empty pages) so page numbers stay true.
    ``memory_mb`` caps the child's whole address space, of which the interpreter and pypdf
    take about 45 MB before the file is opened.
    """
    kind = sniff_kind(path, filename)
    command = [
        sys.executable,
        "-P",  # don't put engine/ on sys.path: a file there must not shadow the stdlib
        _CHILD_SCRIPT,
        "--child",
        os.fspath(path),
        kind,
        str(max_pages),
        str(memory_mb),
        # The CPU limit backs up the wall clock; it only fires first if the clock is stuck.
        str(int(timeout) + 1),
    ]
    try:
        done = subprocess.run(
            command, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:  # run() has already killed and reaped the child
        raise _timeout_error(timeout) from None
    if done.returncode == 0:
        result = json.loads(done.stdout)
        if "error" in result:
            raise ExtractionError(*result["error"])
        return [Page(number, text) for number, text in result["pages"]]
    raise _crash_error(done, timeout, memory_mb)


def _timeout_error(timeout: float) -> ExtractionError:
    return ExtractionError(
        "timeout",
        f"Reading this file took more than {timeout:g} s, so it was stopped. "
        "It may be damaged or unusually complex; try re-saving or splitting it.",
    )


def _memory_error(memory_mb: int) -> ExtractionError:
    return ExtractionError(
        "too_large",
        f"Reading this file needed more than {memory_mb} MB of memory, so it was stopped. "
        "It may be damaged or compressed abnormally; try re-saving or splitting it.",
    )


def _crash_error(
    done: subprocess.CompletedProcess[bytes], timeout: float, memory_mb: int
) -> ExtractionError:
    if done.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        return _timeout_error(timeout)
    if b"MemoryError" in done.stderr:  # died before it could report (e.g. importing pypdf)
        return _memory_error(memory_mb)
    logger.warning(
        "extraction child exited with %s: %s",
        done.returncode,
        done.stderr[-2000:].decode(errors="replace"),
    )
    return ExtractionError(
        "corrupt", "This file could not be read; it may be damaged. Try re-saving it."
    )


# --- Everything below runs in the child process. ---------------------------------------------


def _child_main(path: str, kind: Kind, max_pages: int, memory_mb: int, cpu_seconds: int) -> None:
    # Recoverable damage (e.g. a broken xref table) is normal in the wild; pypdf repairs it and
    # says so through warnings and logging, up to once per object. Nobody reads that here, and
    # an inherited PYTHONWARNINGS=error must not turn it into a failure.
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    if kind == "pdf":
        # Load the parser before the limits, so that a tight budget fails on the file with a
        # MemoryError we can report, not as a half-imported library.
        import pypdf  # noqa: F401
    _lower_soft_limit(resource.RLIMIT_AS, memory_mb * 1024 * 1024)
    _lower_soft_limit(resource.RLIMIT_CPU, cpu_seconds)
    _lower_soft_limit(resource.RLIMIT_CORE, 0)  # a crash must not write a core of a big file
    try:
        pages = _extract_here(path, kind, max_pages)
        result: dict[str, list] = {"pages": [[page.number, page.text] for page in pages]}
    except ExtractionError as exc:
        result = {"error": [exc.code, exc.message]}
    except MemoryError:
        result = {"error": ["too_large", _memory_error(memory_mb).message]}
    # ASCII-only JSON so no text can fail to encode on the way out.
    sys.stdout.buffer.write(json.dumps(result).encode())


def _lower_soft_limit(limit: int, value: int) -> None:
    _soft, hard = resource.getrlimit(limit)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(limit, (value, hard))


def _extract_here(path: str, kind: Kind, max_pages: int) -> list[Page]:
    if kind == "pdf":
        return _extract_pdf(path, max_pages)
    if kind == "docx":
        text = _docx_text(path)
    else:
        text = _decode(Path(path).read_bytes())
        if kind == "html":
            text = _html_text(text)
        elif kind == "json":
            text = _json_text(text)
    text = normalise_whitespace(text)
    if not text:
        raise ExtractionError("no_text", "The file contains no text.")
    return [Page(1, text)]


def _extract_pdf(path: str, max_pages: int) -> list[Page]:
    from pypdf import PdfReader
    from pypdf.errors import LimitReachedError, PyPdfError

    try:
        reader = PdfReader(path)
        if reader.is_encrypted and not _opens_without_password(reader):
            raise ExtractionError(
                "encrypted", "This PDF is encrypted; upload a copy without a password."
            )
        page_count = len(reader.pages)
    except LimitReachedError:
        raise _safety_limit_error() from None
    except (PyPdfError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise ExtractionError(
            "not_a_pdf",
            "This file starts like a PDF but its structure could not be read "
            f"({type(exc).__name__}). Re-export or re-save it as PDF and upload it again.",
        ) from None
    if page_count == 0:
        raise ExtractionError("empty", "This PDF has no pages.")
    if page_count > max_pages:
        raise ExtractionError(
            "too_large",
            f"This PDF has {page_count} pages; the limit is {max_pages}. "
            "Split it into smaller files.",
        )

    pages = []
    failed = 0
    hit_limit = False
    for number, page in enumerate(reader.pages, start=1):
        try:
            text = page.extract_text()
        except MemoryError:
            raise
        except Exception as exc:  # one damaged page must not lose the rest of the document
            failed += 1
            hit_limit |= isinstance(exc, LimitReachedError)
            text = ""
        pages.append(Page(number, normalise_whitespace(text)))

    if not any(page.text for page in pages):
        if hit_limit:
            raise _safety_limit_error()
        if failed == page_count:
            raise ExtractionError(
                "corrupt", "No page of this PDF could be read; it may be damaged. Re-save it."
            )
        raise ExtractionError("no_text", SCANNED_PDF_MESSAGE)
    return pages


def _safety_limit_error() -> ExtractionError:
    # pypdf stops on streams that inflate past its limits (decompression bombs) and on
    # objects that refer to themselves.
    return ExtractionError(
        "too_large",
        "This PDF trips a safety limit (a stream that decompresses to an enormous size, or "
        "objects that loop), so its text could not be read. Re-save or split it.",
    )


def _opens_without_password(reader: PdfReader) -> bool:
    # Many "encrypted" PDFs only restrict printing/copying and open with an empty password.
    from pypdf.errors import DependencyError

    try:
        return bool(reader.decrypt(""))
    except (DependencyError, NotImplementedError):  # e.g. an unsupported cipher
        return False


def _decode(data: bytes) -> str:
    for bom, encoding in _TEXT_BOMS.items():
        if data.startswith(bom):
            return data.decode(encoding, errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        # Legacy Windows text is the common non-UTF-8 upload; it maps nearly every byte.
        return data.decode("cp1252", errors="replace")


_SKIPPED_HTML = {"script", "style", "template"}
_BLOCK_HTML = {
    *("address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "figcaption"),
    *("figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main"),
    *("nav", "ol", "p", "pre", "section", "table", "td", "th", "title", "tr", "ul"),
}


class _HTMLText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED_HTML:
            self._skip_depth += 1
        elif tag in _BLOCK_HTML:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_HTML:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag in _BLOCK_HTML:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip_depth:
            self.parts.append(data)


def _html_text(markup: str) -> str:
    parser = _HTMLText()
    parser.feed(markup)
    parser.close()
    return "".join(parser.parts)


def _json_text(text: str) -> str:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ExtractionError(
            "corrupt", f"This file is not valid JSON ({exc}). Fix it and upload it again."
        ) from None
    # One key or item per line gives the chunker natural places to cut.
    return json.dumps(value, indent=1, ensure_ascii=False)


_DOCX_TEXT_TAGS = {"t"}  # w:t runs and DrawingML a:t text boxes; w:delText is deleted text
_DOCX_BREAK_TAGS = {"p", "br", "cr"}


def _docx_text(path: str) -> str:
    from xml.etree.ElementTree import ParseError, iterparse

    try:
        with zipfile.ZipFile(path) as zf:
            if _DOCX_BODY not in zf.namelist():  # another ZIP-based format, or just a ZIP
                raise ExtractionError("unsupported_type", UNSUPPORTED_MESSAGE)
            parts = []
            with zf.open(_DOCX_BODY) as body:
                # Safe enough without defusedxml: ElementTree never fetches external entities,
                # expat >= 2.4 refuses entity-expansion bombs, and this child is rlimited.
                for _event, element in iterparse(body, events=("end",)):  # noqa: S314
                    tag = element.tag.rpartition("}")[2]
                    if tag in _DOCX_TEXT_TAGS:
                        parts.append(element.text or "")
                    elif tag == "tab":
                        parts.append("\t")
                    elif tag in _DOCX_BREAK_TAGS:
                        parts.append("\n")
                    element.clear()  # keep memory flat on long documents
    except (zipfile.BadZipFile, ParseError, EOFError, OSError) as exc:
        raise ExtractionError(
            "corrupt",
            f"This Word file is damaged ({type(exc).__name__}). Re-save it as .docx and "
            "upload it again.",
        ) from None
    return "".join(parts)


# Control characters (PostgreSQL rejects NUL in text) and lone surrogates (not encodable).
_JUNK = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_HORIZONTAL_SPACE = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def normalise_whitespace(text: str) -> str:
    """Fold runs of spaces to one, keep line breaks, keep at most one blank line between
    paragraphs, drop control characters."""
    text = _JUNK.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _HORIZONTAL_SPACE.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()


if __name__ == "__main__":
    if sys.argv[1:2] != ["--child"] or len(sys.argv) != 7:
        sys.exit("internal helper of engine.extract; use extract_pages() instead")
    _path, _kind, _max_pages, _memory_mb, _cpu_seconds = sys.argv[2:]
    _child_main(_path, _kind, int(_max_pages), int(_memory_mb), int(_cpu_seconds))  # type: ignore[arg-type]

"""The bounded child: what reads one uploaded file's text, in a process of its own.

The server runs this file by path (``python -P …/child.py --child …``), never as part of the
Django project: no package ``__init__``, no settings, no project directory on ``sys.path`` to
shadow the standard library, so it imports the standard library and pypdf only. It lowers its
own RLIMIT_AS / RLIMIT_CPU before it reads a byte of the file and answers with one JSON object
on stdout. This is the only module in Threadline that imports pypdf.

Started with ``--zygote`` instead, it is a zygote: it loads pypdf once, then forks one such
bounded reader (a grandchild) per request (see ``engine.knowledge.extraction.zygotes``).

Non-PDF kinds (text, Markdown, HTML, JSON, DOCX) are one page, number 1. DOCX is read with the
standard library only (zipfile + expat), inside the same bounded process.
"""

from __future__ import annotations

import codecs
import contextlib
import gc
import io
import json
import logging
import math
import os
import re
import resource
import select
import signal
import struct
import sys
import time
import traceback
import warnings
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn, cast

if TYPE_CHECKING:
    from pypdf import PdfReader

# How the server starts this module: by path, as a script.
SCRIPT = os.path.abspath(__file__)

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

_TEXT_BOMS = {
    codecs.BOM_UTF8: "utf-8-sig",
    codecs.BOM_UTF16_LE: "utf-16",
    codecs.BOM_UTF16_BE: "utf-16",
}
_DOCX_BODY = "word/document.xml"

# The zygote's frames to the server: a one-byte tag, a 4-byte big-endian length, the payload.
_FRAME = struct.Struct("!cI")
_READ_SIZE = 1 << 16


def memory_error(memory_mb: int) -> ExtractionError:
    return ExtractionError(
        "too_large",
        f"Reading this file needed more than {memory_mb} MB of memory, so it was stopped. "
        "It may be damaged or compressed abnormally; try re-saving or splitting it.",
    )


# --- The bounded reader: lowers its limits, reads one file. ------------------------------------


def _child_result(path: str, kind: Kind, max_pages: int, memory_mb: int, cpu_seconds: int) -> bytes:
    """Lower this process's limits, read the file, return the JSON reply for the server."""
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
        result: dict[str, list[Any]] = {"pages": [[page.number, page.text] for page in pages]}
    except ExtractionError as exc:
        result = {"error": [exc.code, exc.message]}
    except MemoryError:
        result = {"error": ["too_large", memory_error(memory_mb).message]}
    # ASCII-only JSON so no text can fail to encode on the way out.
    return json.dumps(result).encode()


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


# --- The zygote: forks one bounded reader per request (see engine.knowledge.extraction.zygotes).


def _zygote_main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the server; we go on its EOF
    try:
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        _warm_up()
        set_death_signal = _death_signal_setter()
    except BaseException:
        _send(b"!", traceback.format_exc().encode())
        raise SystemExit(1) from None
    # Everything so far lives as long as the zygote: keep the collector from scanning it in
    # every grandchild, which would copy the shared memory pages for nothing.
    gc.freeze()
    _send(b"r", b"")
    zygote_pid, server_pid = os.getpid(), os.getppid()
    stdin = select.poll()
    stdin.register(0, select.POLLIN)
    pending = bytearray()
    try:
        while True:
            while b"\n" not in pending:
                if not stdin.poll(2000):
                    if os.getppid() != server_pid:  # orphaned, yet a copy of our stdin lives on
                        return
                    continue
                chunk = os.read(0, _READ_SIZE)
                if not chunk:  # the server closed us, or exited
                    return
                pending += chunk
            line, _, rest = bytes(pending).partition(b"\n")
            pending = bytearray(rest)
            request = json.loads(line)
            _serve(request["args"], request["timeout"], zygote_pid, set_death_signal)
    except BrokenPipeError:  # the server has gone mid-reply
        return


def _warm_up() -> None:
    """Read a tiny PDF once, so the imports and caches a first extraction fills are paid here
    once, not in every grandchild."""
    from pypdf import PdfReader

    content = zlib.compress(b"BT /F1 12 Tf 72 720 Td (warm) Tj ET")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 3 0 R >> >> /Contents 5 0 R >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(content), content),
    ]
    pdf = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(pdf))
        pdf += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(pdf)
    pdf += b"xref\n0 6\n0000000000 65535 f \n"
    pdf += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    pdf += b"trailer\n<< /Size 6 /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % xref
    PdfReader(io.BytesIO(pdf)).pages[0].extract_text()
    for encoding in ("charmap", "utf-16-be"):  # what pypdf decodes text strings with
        codecs.lookup(encoding)


def _death_signal_setter() -> Callable[[], None] | None:
    """A function that makes the calling process get SIGKILL when its parent dies (Linux)."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (ImportError, OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1
    return lambda: prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


def _serve(
    args: list[str],
    timeout: float,
    zygote_pid: int,
    set_death_signal: Callable[[], None] | None,
) -> None:
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    try:
        pid = os.fork()
    except OSError as exc:
        for fd in (out_read, out_write, err_read, err_write):
            os.close(fd)
        _send(b"!", f"cannot fork: {exc}".encode())
        return
    if pid == 0:
        _grandchild(args, out_write, err_write, (out_read, err_read), zygote_pid, set_death_signal)
    os.close(out_write)
    os.close(err_write)
    deadline = time.monotonic() + timeout
    streams = {out_read: b"o", err_read: b"e"}
    status = None
    try:
        poller = select.poll()
        for fd in (*streams, 0):
            poller.register(fd, select.POLLIN)
        while streams:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            for fd, _event in poller.poll(math.ceil(remaining * 1000)):
                if fd == 0:  # the server never writes mid-request: this is its EOF
                    raise SystemExit(0)
                data = os.read(fd, _READ_SIZE)
                if data:
                    _send(streams[fd], data)
                else:
                    poller.unregister(fd)
                    os.close(fd)
                    del streams[fd]
        if not streams:  # both pipes closed: the grandchild is exiting
            status = _wait_until(pid, deadline)
    finally:
        if status is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        for fd in streams:
            os.close(fd)
    if status is None:
        _send(b"t", b"")
    else:
        _send(b"x", str(os.waitstatus_to_exitcode(status)).encode())


def _wait_until(pid: int, deadline: float) -> int | None:
    while True:
        reaped, status = os.waitpid(pid, os.WNOHANG)
        if reaped:
            return status
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.001)


def _grandchild(
    args: list[str],
    out_write: int,
    err_write: int,
    spare_fds: tuple[int, ...],
    zygote_pid: int,
    set_death_signal: Callable[[], None] | None,
) -> NoReturn:
    code = 1
    try:
        if set_death_signal is not None:
            set_death_signal()
        if os.getppid() != zygote_pid:  # the zygote died before we could ask to follow it
            os._exit(1)
        null = os.open(os.devnull, os.O_RDONLY)
        # Leave nothing of the zygote's: its pipes to the server are 0 and 1.
        os.dup2(null, 0)
        os.dup2(out_write, 1)
        os.dup2(err_write, 2)
        for fd in (null, out_write, err_write, *spare_fds):
            os.close(fd)
        path, kind, max_pages, memory_mb, cpu_seconds = args
        # The server sends the kind its sniffing decided.
        reply = _child_result(
            path, cast("Kind", kind), int(max_pages), int(memory_mb), int(cpu_seconds)
        )
        _write_all(1, reply)
        code = 0
    except BaseException as exc:
        _report_crash(exc)
    finally:
        os._exit(code)


def _report_crash(exc: BaseException) -> None:
    # What the interpreter would print for an uncaught exception, even if memory has run out.
    try:
        sys.stderr.write("".join(traceback.format_exception(exc)))
        sys.stderr.flush()
    except BaseException:
        with contextlib.suppress(BaseException):
            os.write(2, b"MemoryError\n" if isinstance(exc, MemoryError) else b"crashed\n")


def _send(tag: bytes, payload: bytes) -> None:
    _write_all(1, _FRAME.pack(tag, len(payload)) + payload)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


if __name__ == "__main__":
    if sys.argv[1:] == ["--zygote"]:
        _zygote_main()
    elif sys.argv[1:2] == ["--child"] and len(sys.argv) == 7:
        _path, _kind, _max_pages, _memory_mb, _cpu_seconds = sys.argv[2:]
        _kind_sent = cast("Kind", _kind)  # the server sends the kind its sniffing decided
        sys.stdout.buffer.write(
            _child_result(_path, _kind_sent, int(_max_pages), int(_memory_mb), int(_cpu_seconds))
        )
    else:
        sys.exit("internal helper of engine.knowledge.extraction; use extract_pages() instead")

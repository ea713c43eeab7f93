"""Text extraction for uploaded files: the only module in Threadline that imports pypdf.

``extract_pages(path, filename)`` returns the text of a file page by page. Uploaded files are
untrusted, so the parsing never runs in the calling process: each call starts one child process
(``python -P engine/extract.py --child ...``) which lowers its own RLIMIT_AS / RLIMIT_CPU before
it reads a byte of the file, and the parent kills it after a wall-clock timeout. A decompression
bomb, a looping page tree or a parser bug therefore ends in an ``ExtractionError`` instead of
hanging the server or eating its memory.

Why ``subprocess`` rather than ``multiprocessing``: the caller is a long-running, threaded (async)
server, where ``fork`` is unsafe and ``preexec_fn`` is documented as unsafe; ``subprocess`` spawns
via fork+exec in C, and the child applies its limits to itself. Running the file by path with
``-P`` keeps the child independent of the Django project (no package ``__init__``, no settings,
no project directory on ``sys.path`` to shadow the standard library). Call it from a worker
thread (``asyncio.to_thread``) in async code: it blocks until the child exits.

Starting Python and importing pypdf takes longer than reading most PDFs, so the bounded child is
normally not a fresh interpreter but a fork of a "zygote": a pre-started, single-threaded helper
(same script, ``--zygote``) that has pypdf loaded and forks one grandchild per file. Limits,
timeout, results and errors are the same either way; when no zygote is free or one fails, the
call falls back to a fresh child. See "Zygotes" below.

Page cap policy: a PDF with more than ``max_pages`` pages is rejected with "too_large" rather
than silently truncated, so a user never believes a half-indexed file is searchable.

Non-PDF kinds (text, Markdown, HTML, JSON, DOCX) are one page, number 1. DOCX is read with the
standard library only (zipfile + expat), inside the same bounded child.
"""

from __future__ import annotations

import atexit
import codecs
import contextlib
import gc
import json
import logging
import math
import os
import re
import resource
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import traceback
import warnings
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NoReturn

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
    take about 50 MB before the file is opened.
    """
    kind = sniff_kind(path, filename)
    args = [
        os.path.abspath(path),  # the zygote's working directory is the server's at its start
        kind,
        str(max_pages),
        str(memory_mb),
        # The CPU limit backs up the wall clock; it only fires first if the clock is stuck.
        str(int(timeout) + 1),
    ]
    outcome = _ZYGOTES.run(args, timeout)
    if outcome is None:  # no zygote to spare, or it failed: pay for a fresh interpreter
        outcome = _run_one_shot(args, timeout)
    if outcome.returncode == 0:
        result = json.loads(outcome.stdout)
        if "error" in result:
            raise ExtractionError(*result["error"])
        return [Page(number, text) for number, text in result["pages"]]
    raise _crash_error(outcome, timeout, memory_mb)


@dataclass(frozen=True)
class _Outcome:
    """How one bounded child ended: its exit code (None if killed at the wall-clock timeout,
    negative for a signal, as in ``subprocess``) and everything it wrote."""

    returncode: int | None
    stdout: bytes = b""
    stderr: bytes = b""


def _run_one_shot(args: list[str], timeout: float) -> _Outcome:
    command = [
        sys.executable,
        "-P",  # don't put engine/ on sys.path: a file there must not shadow the stdlib
        _CHILD_SCRIPT,
        "--child",
        *args,
    ]
    try:
        done = subprocess.run(
            command, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:  # run() has already killed and reaped the child
        return _Outcome(None)
    return _Outcome(done.returncode, done.stdout, done.stderr)


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


def _crash_error(outcome: _Outcome, timeout: float, memory_mb: int) -> ExtractionError:
    if outcome.returncode in (None, -signal.SIGXCPU, -signal.SIGKILL):
        return _timeout_error(timeout)
    if b"MemoryError" in outcome.stderr:  # died before it could report (e.g. importing pypdf)
        return _memory_error(memory_mb)
    logger.warning(
        "extraction child exited with %s: %s",
        outcome.returncode,
        outcome.stderr[-2000:].decode(errors="replace"),
    )
    return ExtractionError(
        "corrupt", "This file could not be read; it may be damaged. Try re-saving it."
    )


# --- Zygotes: pre-started children that fork one bounded grandchild per file -----------------
#
# Starting Python and importing pypdf costs ~115 ms, more than reading a typical small PDF. A
# zygote pays it once: it is started like the one-shot child (``python -P extract.py
# --zygote``, by path, without Django), imports pypdf, then waits on its stdin. It never starts
# a thread, so unlike the server it may fork: per request it forks a grandchild that lowers its
# limits and extracts exactly as the one-shot child does, relays the grandchild's stdout and
# stderr, kills it at the wall-clock timeout, and reports how it ended. The server keeps up to
# _ZYGOTE_POOL_SIZE of them (one per concurrent caller, started lazily); a caller that finds
# none free, or whose zygote fails, uses a one-shot child, so results and errors never depend
# on the zygote. A zygote exits on EOF on its stdin, which the kernel delivers whenever the
# server process ends, however it ends; the grandchild dies with its zygote (PR_SET_PDEATHSIG).
#
# Wire format, zygote to server: frames of a one-byte tag, a 4-byte big-endian length and the
# payload. "r" ready; "o"/"e" a piece of the grandchild's stdout/stderr; "x" it exited (payload:
# the exit code, negative for a signal); "t" it was killed at the timeout; "!" the zygote
# cannot serve (payload: why). Server to zygote: one JSON line per request.

_ZYGOTE_POOL_SIZE = 2  # the ingestion pool's concurrency; more callers use one-shot children
_ZYGOTE_START_TIMEOUT = 10.0  # seconds to import pypdf before we give up on zygotes
_ZYGOTE_RETRY_AFTER = 60.0  # after a zygote fails to start, use one-shot children this long
_ZYGOTE_GRACE = 5.0  # beyond the timeout, for a zygote to report; only a stuck one misses it
_FRAME = struct.Struct("!cI")
_READ_SIZE = 1 << 16


class _ZygoteFailed(Exception):
    """The zygote died, broke the protocol or cannot fork: read the file some other way."""


class _ZygoteStuck(Exception):
    """The zygote did not report within the timeout plus grace."""


class _Zygote:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-P", _CHILD_SCRIPT, "--zygote"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            # Grandchildren's stderr comes back in frames; the zygote itself has nothing to say.
            stderr=subprocess.DEVNULL,
            bufsize=0,
        )
        self._buffer = bytearray()
        self._poller = select.poll()  # not select(): a busy server's fds can pass 1023
        self._poller.register(self.proc.stdout.fileno(), select.POLLIN)
        try:
            tag, payload = self._read_frame(time.monotonic() + _ZYGOTE_START_TIMEOUT)
            if tag != b"r":
                raise _ZygoteFailed(payload.decode(errors="replace")[-2000:])
        except BaseException:
            self.close()
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def run(self, args: list[str], timeout: float) -> _Outcome:
        request = json.dumps({"args": args, "timeout": timeout}).encode() + b"\n"
        try:
            _write_all(self.proc.stdin.fileno(), request)
        except OSError as exc:  # BrokenPipeError: it died since we last looked
            raise _ZygoteFailed(f"gone: {exc}") from None
        deadline = time.monotonic() + timeout + _ZYGOTE_GRACE
        stdout, stderr = bytearray(), bytearray()
        while True:
            tag, payload = self._read_frame(deadline)
            if tag == b"o":
                stdout += payload
            elif tag == b"e":
                stderr += payload
            elif tag == b"x":
                return _Outcome(int(payload), bytes(stdout), bytes(stderr))
            elif tag == b"t":
                return _Outcome(None)
            else:
                raise _ZygoteFailed(payload.decode(errors="replace")[-2000:])

    def close(self, *, kill: bool = False) -> None:
        """End the zygote and release its pipes. Without ``kill`` it gets EOF and a moment to
        exit on its own; its grandchild, if any, dies with it either way."""
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        if not kill:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=1)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()

    def _read_frame(self, deadline: float) -> tuple[bytes, bytes]:
        tag, size = _FRAME.unpack(self._read_exact(_FRAME.size, deadline))
        return tag, self._read_exact(size, deadline)

    def _read_exact(self, size: int, deadline: float) -> bytes:
        while len(self._buffer) < size:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._poller.poll(math.ceil(remaining * 1000)):
                raise _ZygoteStuck
            chunk = os.read(self.proc.stdout.fileno(), _READ_SIZE)
            if not chunk:
                raise _ZygoteFailed(f"closed its output; exit code {self.proc.poll()}")
            self._buffer += chunk
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data


class _ZygotePool:
    def __init__(self, size: int) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._idle: list[_Zygote] = []
        self._busy = 0
        self._start_after = 0.0
        self._pid = os.getpid()

    def run(self, args: list[str], timeout: float) -> _Outcome | None:
        """Read a file in a zygote's grandchild; None means "use a one-shot child instead"."""
        zygote = self._acquire()
        if zygote is None:
            return None
        healthy = False
        try:
            outcome = zygote.run(args, timeout)
            healthy = True
            return outcome
        except _ZygoteStuck:
            logger.warning("extraction zygote %s did not report in time; killed it", zygote.pid)
            return _Outcome(None)
        except _ZygoteFailed as exc:
            logger.warning(
                "extraction zygote %s failed (%s); using a one-shot child", zygote.pid, exc
            )
            return None
        finally:  # also on KeyboardInterrupt mid-request: a half-read reply poisons the pipe
            self._release(zygote, healthy)

    def close(self) -> None:
        with self._lock:
            if os.getpid() != self._pid:
                return
            idle, self._idle = self._idle, []
        for zygote in idle:
            zygote.close()

    def _acquire(self) -> _Zygote | None:
        with self._lock:
            if os.getpid() != self._pid:  # a forked copy of the server: those zygotes aren't ours
                self._forget_inherited()
            dead = []
            zygote = None
            while self._idle:
                candidate = self._idle.pop()
                if candidate.alive():
                    zygote = candidate
                    break
                dead.append(candidate)
            start = zygote is None
            refuse = start and (self._busy >= self.size or time.monotonic() < self._start_after)
            if not refuse:
                self._busy += 1
        for candidate in dead:  # killed from outside between calls
            logger.warning(
                "extraction zygote %s exited with %s; starting another",
                candidate.pid,
                candidate.proc.returncode,
            )
            candidate.close()
        if refuse or not start:
            return zygote
        try:
            return _Zygote()
        except (OSError, _ZygoteFailed, _ZygoteStuck) as exc:
            logger.warning(
                "could not start an extraction zygote (%s); using one-shot children for %g s",
                exc or type(exc).__name__,
                _ZYGOTE_RETRY_AFTER,
            )
            with self._lock:
                self._busy -= 1
                self._start_after = time.monotonic() + _ZYGOTE_RETRY_AFTER
            return None

    def _release(self, zygote: _Zygote, healthy: bool) -> None:
        with self._lock:
            mine = os.getpid() == self._pid
            if mine:
                self._busy -= 1
                if healthy:
                    self._idle.append(zygote)
                    return
        if mine:
            zygote.close(kill=True)

    def _forget_inherited(self) -> None:
        # Keep the inherited handles referenced forever: closing or collecting them would wait
        # for (or warn about) processes that are another process's children.
        _INHERITED_ZYGOTES.extend(self._idle)
        self._idle = []
        self._busy = 0
        self._pid = os.getpid()


_INHERITED_ZYGOTES: list[_Zygote] = []
_ZYGOTES = _ZygotePool(_ZYGOTE_POOL_SIZE)
atexit.register(_ZYGOTES.close)


# --- Everything below runs in the child process. ---------------------------------------------


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
        result: dict[str, list] = {"pages": [[page.number, page.text] for page in pages]}
    except ExtractionError as exc:
        result = {"error": [exc.code, exc.message]}
    except MemoryError:
        result = {"error": ["too_large", _memory_error(memory_mb).message]}
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


# --- Everything below runs in a zygote (see "Zygotes" above) or its grandchildren. ------------


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
    import io

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
        reply = _child_result(path, kind, int(max_pages), int(memory_mb), int(cpu_seconds))  # type: ignore[arg-type]
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
        sys.stdout.buffer.write(
            _child_result(_path, _kind, int(_max_pages), int(_memory_mb), int(_cpu_seconds))  # type: ignore[arg-type]
        )
    else:
        sys.exit("internal helper of engine.extract; use extract_pages() instead")

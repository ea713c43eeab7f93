"""Text extraction for uploaded files: the text of a file, page by page, read in a bounded child.

``extract_pages(path, filename)`` returns the text of a file page by page. Uploaded files are
untrusted, so the parsing never runs in the calling process: each call starts one child process
(``python -P …/extraction/child.py --child ...``) which lowers its own RLIMIT_AS / RLIMIT_CPU
before it reads a byte of the file, and the parent kills it after a wall-clock timeout. A
decompression bomb, a looping page tree or a parser bug therefore ends in an ``ExtractionError``
instead of hanging the server or eating its memory.

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
call falls back to a fresh child. See `engine.knowledge.extraction.zygotes`.

Page cap policy: a PDF with more than ``max_pages`` pages is rejected with "too_large" rather
than silently truncated, so a user never believes a half-indexed file is searchable.

What the child does (and the only import of pypdf) is in `engine.knowledge.extraction.child`.
"""

from __future__ import annotations

import atexit
import codecs
import json
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from engine.knowledge.extraction.child import (
    _TEXT_BOMS,
    SCRIPT,
    UNSUPPORTED_MESSAGE,
    ExtractionError,
    Kind,
    Page,
    memory_error,
)
from engine.knowledge.extraction.zygotes import _Outcome, _ZygotePool

# What callers need, whichever module defines it.
__all__ = ["ExtractionError", "Page", "extract_pages", "sniff_kind"]

logger = logging.getLogger(__name__)

_ZYGOTE_POOL_SIZE = 2  # the ingestion pool's concurrency; more callers use one-shot children
_ZYGOTES = _ZygotePool(_ZYGOTE_POOL_SIZE)
atexit.register(_ZYGOTES.close)

_SNIFF_BYTES = 8192
_PDF_MAGIC = b"%PDF-"
_PDF_HEADER_WINDOW = 1024  # readers accept junk before the header; pypdf looks this far too
_ZIP_MAGIC = b"PK\x03\x04"
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


def _run_one_shot(args: list[str], timeout: float) -> _Outcome:
    command = [
        sys.executable,
        "-P",  # don't put the script's folder on sys.path: a file there must not shadow the stdlib
        SCRIPT,
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


def _crash_error(outcome: _Outcome, timeout: float, memory_mb: int) -> ExtractionError:
    if outcome.returncode in (None, -signal.SIGXCPU, -signal.SIGKILL):
        return _timeout_error(timeout)
    if b"MemoryError" in outcome.stderr:  # died before it could report (e.g. importing pypdf)
        return memory_error(memory_mb)
    logger.warning(
        "extraction child exited with %s: %s",
        outcome.returncode,
        outcome.stderr[-2000:].decode(errors="replace"),
    )
    return ExtractionError(
        "corrupt", "This file could not be read; it may be damaged. Try re-saving it."
    )

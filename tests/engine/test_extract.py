"""Text extraction: the shared PDF corpus, other file kinds, and hostile files that must stay
bounded. No Django needed."""

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import pytest

from engine.knowledge.extraction import extract
from engine.knowledge.extraction import zygotes as zygote_pool
from engine.knowledge.extraction.child import SCANNED_PDF_MESSAGE, normalise_whitespace
from engine.knowledge.extraction.extract import (
    ExtractionError,
    Page,
    extract_pages,
    sniff_kind,
)

CORPUS = Path(os.environ.get("THREADLINE_CORPUS", "/work/shared/corpus"))
TEXT_PDF_PAGES = {
    "GeoBase_NHNC1_Data_Model_UML_EN.pdf": 19,
    "Seige_of_Vicksburg_Sample_OCR.pdf": 6,
    "crazyones.pdf": 1,
    "example.pdf": 1,
    "multilang.pdf": 1,
    "pdflatex-outline.pdf": 4,
    "two-different-pages.pdf": 2,
}
QUESTIONS = [json.loads(line) for line in (CORPUS / "questions.jsonl").read_text().splitlines()]


def write_pdf(path: Path, contents: list[bytes], *, flate_encoded: bool = False) -> None:
    """Write a minimal valid PDF: one page per content stream, Helvetica available as /F1.

    With flate_encoded, the streams are already zlib-compressed and declared /FlateDecode.
    """
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"",  # the page tree, filled in once the page objects are numbered
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    kids = []
    for content in contents:
        flate = b" /Filter /FlateDecode" if flate_encoded else b""
        objects.append(
            b"<< /Length %d%s >>\nstream\n%s\nendstream" % (len(content), flate, content)
        )
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % len(objects)
        )
        kids.append(b"%d 0 R" % len(objects))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(kids), len(kids))

    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref_offset = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref_offset,
    )
    path.write_bytes(out)


def make_text_pdf(path: Path, pages: int, lines_per_page: int = 40) -> None:
    """Write a text PDF whose lines read "Page <n> line <m>: ..." (for tests and benchmarks)."""
    contents = []
    for page in range(1, pages + 1):
        lines = [
            b"BT /F1 12 Tf 72 %d Td (Page %d line %d: the quick brown fox jumps over the lazy "
            b"dog while the archivist indexes every word.) Tj ET" % (750 - 18 * line, page, line)
            for line in range(1, lines_per_page + 1)
        ]
        contents.append(b"\n".join(lines))
    write_pdf(path, contents)


def folded(text: str) -> str:
    return " ".join(text.split())


@cache
def corpus_pages(name: str) -> tuple[Page, ...]:
    # One child process per corpus file for the whole module, as in production.
    return tuple(extract_pages(CORPUS / "pdf" / name, name))


def extraction_error(path: Path, filename: str | None = None, **limits: int) -> ExtractionError:
    with pytest.raises(ExtractionError) as caught:
        extract_pages(path, filename or path.name, **limits)
    return caught.value


# --- The corpus --------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "page_count"), TEXT_PDF_PAGES.items())
def test_text_pdf_extracts_every_page_with_numbers_in_order(name: str, page_count: int) -> None:
    pages = corpus_pages(name)
    assert [page.number for page in pages] == list(range(1, page_count + 1))
    assert any(page.text for page in pages)


@pytest.mark.parametrize("question", QUESTIONS, ids=[q["q"][:40] for q in QUESTIONS])
def test_question_evidence_is_on_its_page(question: dict) -> None:
    pages = corpus_pages(question["file"])
    assert question["evidence"] in folded(pages[question["page"] - 1].text)


def test_scanned_pdf_fails_with_run_ocr_message() -> None:
    error = extraction_error(CORPUS / "pdf" / "git.pdf")
    assert (error.code, error.message) == ("no_text", SCANNED_PDF_MESSAGE)


def test_encrypted_pdf_fails_with_password_message() -> None:
    error = extraction_error(CORPUS / "pdf" / "encrypted-file.pdf")
    assert error.code == "encrypted"
    assert "without a password" in error.message


def test_pdf_with_broken_xref_extracts_quietly(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    pages = extract_pages(CORPUS / "pdf" / "two-different-pages.pdf", "two-different-pages.pdf")
    assert [page.text for page in pages] == ["1", "2"]
    assert capfd.readouterr() == ("", "")
    assert caplog.records == []


def test_calls_from_many_threads_each_get_their_own_file() -> None:
    # The server calls this from worker threads; children must not mix up their results.
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = pool.map(lambda name: extract_pages(CORPUS / "pdf" / name, name), TEXT_PDF_PAGES)
        assert [len(pages) for pages in results] == list(TEXT_PDF_PAGES.values())


def test_multilingual_pdf_yields_every_script() -> None:
    (page,) = corpus_pages("multilang.pdf")
    assert "Hello World" in page.text
    for script, letters in {
        "Arabic": "\u0600-\u06ff",
        "Cyrillic": "\u0400-\u04ff",
        "CJK": "\u4e00-\u9fff",
        "Thai": "\u0e00-\u0e7f",
        "Kana": "\u3040-\u30ff",
    }.items():
        assert re.search(f"[{letters}]{{4}}", page.text), script


def test_pdf_text_keeps_line_breaks_and_folds_spaces() -> None:
    text = corpus_pages("pdflatex-outline.pdf")[0].text
    assert text.startswith("Contents\n1 Foo 2\n2 Bar 2\n")
    assert "  " not in text


# --- Sniffing and other kinds ------------------------------------------------------------------


def test_executable_renamed_pdf_is_unsupported_type(tmp_path: Path) -> None:
    exe = tmp_path / "invoice.pdf"
    exe.write_bytes(b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + bytes(64) + b"PE\x00")
    error = extraction_error(exe)
    assert error.code == "unsupported_type"
    assert "PDF" in error.message


def test_empty_file_is_empty(tmp_path: Path) -> None:
    empty = tmp_path / "notes.txt"
    empty.write_bytes(b"")
    assert extraction_error(empty).code == "empty"


def test_pdf_named_txt_is_still_a_pdf(tmp_path: Path) -> None:
    disguised = tmp_path / "notes.txt"
    disguised.write_bytes((CORPUS / "pdf" / "crazyones.pdf").read_bytes())
    assert sniff_kind(disguised, "notes.txt") == "pdf"
    assert "round pegs" in folded(extract_pages(disguised, "notes.txt")[0].text)


@pytest.mark.parametrize(
    ("filename", "kind"),
    [
        ("a.txt", "text"),
        ("a.py", "text"),
        ("README", "text"),
        ("a.md", "markdown"),
        ("a.HTML", "html"),
        ("a.json", "json"),
    ],
)
def test_extension_picks_between_text_kinds(tmp_path: Path, filename: str, kind: str) -> None:
    path = tmp_path / filename
    path.write_text('{"a": 1}')
    assert sniff_kind(path, filename) == kind


def test_utf8_text_with_bom_is_one_normalised_page(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes("\ufeffCafé  au\tlait\r\n\r\n\r\n\r\nsecond paragraph \r\n".encode())
    assert extract_pages(path, "notes.txt") == [Page(1, "Café au lait\n\nsecond paragraph")]


def test_legacy_windows_text_is_decoded(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes("naïve café “quoted”".encode("cp1252"))
    assert extract_pages(path, "notes.txt")[0].text == "naïve café “quoted”"


def test_utf16_text_with_bom_is_decoded(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes("Привет, мир".encode("utf-16"))
    assert extract_pages(path, "notes.txt")[0].text == "Привет, мир"


def test_markdown_keeps_its_text(tmp_path: Path) -> None:
    path = tmp_path / "guide.md"
    path.write_text("# Setup\n\nRun `make`.\n\n- one\n- two\n")
    assert extract_pages(path, "guide.md")[0].text == "# Setup\n\nRun `make`.\n\n- one\n- two"


def test_html_yields_visible_text_only(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text(
        "<html><head><title>Title</title><style>p {color: red}</style>"
        "<script>var hidden = '<p>no</p>';</script></head>"
        "<body><h1>Fish &amp; chips</h1><p>First <b>bold</b> line.</p><p>Second</p></body></html>"
    )
    assert (
        extract_pages(path, "page.html")[0].text
        == "Title\n\nFish & chips\n\nFirst bold line.\n\nSecond"
    )


def test_json_is_indexed_as_its_text(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    path.write_text(json.dumps({"city": "Zürich", "tags": ["lake", "bank"]}))
    text = extract_pages(path, "data.json")[0].text
    assert '"city": "Zürich"' in text
    assert '"lake"' in text


def test_invalid_json_is_corrupt_with_the_parser_position(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    path.write_text('{"city": "Zürich",}')
    error = extraction_error(path)
    assert error.code == "corrupt"
    assert "not valid JSON" in error.message
    assert "line 1" in error.message


def test_whitespace_only_text_has_no_text(tmp_path: Path) -> None:
    path = tmp_path / "blank.txt"
    path.write_text(" \n\t\n ")
    assert extraction_error(path).code == "no_text"


def write_docx(path: Path, body_xml: str) -> None:
    namespace = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as docx:
        docx.writestr("[Content_Types].xml", "<Types/>")
        docx.writestr(
            "word/document.xml",
            f'<w:document xmlns:w="{namespace}"><w:body>{body_xml}</w:body></w:document>',
        )


def test_docx_paragraphs_become_lines_without_deleted_text(tmp_path: Path) -> None:
    path = tmp_path / "memo.docx"
    write_docx(
        path,
        "<w:p><w:r><w:t>Quarterly</w:t></w:r><w:r><w:tab/><w:t>report</w:t></w:r></w:p>"
        "<w:p><w:r><w:delText>withdrawn</w:delText><w:t>Revenue rose.</w:t></w:r></w:p>",
    )
    assert sniff_kind(path, "memo.docx") == "docx"
    assert extract_pages(path, "memo.docx") == [Page(1, "Quarterly report\nRevenue rose.")]


def test_zip_that_is_not_docx_is_unsupported_type(tmp_path: Path) -> None:
    path = tmp_path / "archive.docx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "hello")
    assert extraction_error(path).code == "unsupported_type"


def test_normalisation_drops_control_characters() -> None:
    assert normalise_whitespace("a\x00b\x1b[0m \x0c c\u00a0\u00a0d\ud800") == "ab[0m c d"


# --- Generated PDFs and hostile files ----------------------------------------------------------


def test_generated_pdf_pages_map_to_their_text(tmp_path: Path) -> None:
    path = tmp_path / "long.pdf"
    make_text_pdf(path, pages=30, lines_per_page=5)
    pages = extract_pages(path, "long.pdf")
    assert len(pages) == 30
    for page in pages:
        lines = page.text.split("\n")
        assert len(lines) == 5
        assert lines[0].startswith(f"Page {page.number} line 1: the quick brown fox")


def test_pdf_over_the_page_cap_is_rejected_not_truncated(tmp_path: Path) -> None:
    path = tmp_path / "long.pdf"
    make_text_pdf(path, pages=5, lines_per_page=1)
    error = extraction_error(path, max_pages=3)
    assert error.code == "too_large"
    assert "5 pages" in error.message
    assert len(extract_pages(path, "long.pdf", max_pages=5)) == 5


def zlib_bomb(megabytes: int) -> bytes:
    """A Flate stream of `megabytes` MB of spaces, built without holding them in memory."""
    compressor = zlib.compressobj(9)
    block = b" " * (1024 * 1024)
    return b"".join(compressor.compress(block) for _ in range(megabytes)) + compressor.flush()


def test_decompression_bomb_ends_as_too_large(tmp_path: Path) -> None:
    path = tmp_path / "bomb.pdf"
    write_pdf(path, [zlib_bomb(512)], flate_encoded=True)  # 512 MB behind 0.5 MB of file
    started = time.monotonic()
    assert extraction_error(path).code == "too_large"
    assert time.monotonic() - started < 10


def test_memory_limit_stops_a_stream_under_pypdfs_own_limit(tmp_path: Path) -> None:
    path = tmp_path / "bomb.pdf"
    write_pdf(path, [zlib_bomb(70)], flate_encoded=True)  # pypdf itself allows 75 MB
    error = extraction_error(path, memory_mb=100)
    assert error.code == "too_large"
    assert "100 MB" in error.message


def test_tiny_memory_limit_fails_cleanly() -> None:
    # The interpreter and pypdf already take ~45 MB, so 16 MB leaves nothing to read the file.
    error = extraction_error(CORPUS / "pdf" / "GeoBase_NHNC1_Data_Model_UML_EN.pdf", memory_mb=16)
    assert error.code == "too_large"
    assert "16 MB" in error.message


def test_slow_pdf_is_stopped_at_the_timeout(tmp_path: Path) -> None:
    # Every page is cheap to store but slow to interpret, so only the clock can stop it.
    path = tmp_path / "slow.pdf"
    page = zlib.compress(b"BT /F1 12 Tf " + b"(x) Tj " * 10_000 + b"ET")
    write_pdf(path, [page] * 300, flate_encoded=True)
    started = time.monotonic()
    error = extraction_error(path, timeout=1)
    assert error.code == "timeout"
    assert "1 s" in error.message
    assert time.monotonic() - started < 3


# --- Zygotes: the pre-started children that fork one bounded grandchild per file ---------------


@pytest.fixture
def zygotes(monkeypatch: pytest.MonkeyPatch):
    """A private, empty zygote pool, closed after the test."""
    pool = zygote_pool._ZygotePool(2)
    monkeypatch.setattr(extract, "_ZYGOTES", pool)
    yield pool
    pool.close()


def idle_pids(pool: zygote_pool._ZygotePool) -> list[int]:
    return [zygote.pid for zygote in pool._idle]


def children_of(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # exited while we looked
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                children.append(int(entry.name))
    return children


def is_gone(pid: int) -> bool:
    """Exited: no such process, or a zombie nobody has reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


def wait_for(condition, seconds: float = 10):
    deadline = time.monotonic() + seconds
    while not (result := condition()):
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)
    return result


class InThread:
    """Run extract_pages in a thread; .result() returns its pages or raises its error."""

    def __init__(self, *args, **kwargs) -> None:
        self._outcome: list = []
        self._thread = threading.Thread(target=self._run, args=args, kwargs=kwargs)
        self._thread.start()

    def _run(self, *args, **kwargs) -> None:
        try:
            self._outcome.append(extract_pages(*args, **kwargs))
        except BaseException as exc:
            self._outcome.append(exc)

    def result(self):
        self._thread.join(timeout=60)
        (outcome,) = self._outcome
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def slow_pdf(tmp_path: Path) -> Path:
    path = tmp_path / "slow.pdf"
    page = zlib.compress(b"BT /F1 12 Tf " + b"(x) Tj " * 10_000 + b"ET")
    write_pdf(path, [page] * 300, flate_encoded=True)
    return path


def test_one_zygote_serves_sequential_calls(zygotes: zygote_pool._ZygotePool) -> None:
    for name, page_count in TEXT_PDF_PAGES.items():
        assert len(extract_pages(CORPUS / "pdf" / name, name)) == page_count
    assert len(idle_pids(zygotes)) == 1


def test_zygote_killed_between_calls_is_replaced(
    zygotes: zygote_pool._ZygotePool, caplog: pytest.LogCaptureFixture
) -> None:
    crazyones = CORPUS / "pdf" / "crazyones.pdf"
    extract_pages(crazyones, "crazyones.pdf")
    (first,) = idle_pids(zygotes)
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: is_gone(first))
    assert "round pegs" in folded(extract_pages(crazyones, "crazyones.pdf")[0].text)
    (second,) = idle_pids(zygotes)
    assert second != first
    assert "starting another" in caplog.text


def test_zygote_killed_mid_request_falls_back_and_takes_its_grandchild(
    zygotes: zygote_pool._ZygotePool, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "long.pdf"
    make_text_pdf(path, pages=150, lines_per_page=20)
    extract_pages(CORPUS / "pdf" / "crazyones.pdf", "crazyones.pdf")
    (zygote,) = idle_pids(zygotes)
    call = InThread(path, "long.pdf")
    (grandchild,) = wait_for(lambda: children_of(zygote))
    os.kill(grandchild, signal.SIGSTOP)  # so that only its zygote's death can end it
    os.kill(zygote, signal.SIGKILL)
    pages = call.result()  # read again in a one-shot child: same answer
    assert len(pages) == 150
    assert pages[-1].text.startswith("Page 150 line 1:")
    assert "using a one-shot child" in caplog.text
    wait_for(lambda: is_gone(grandchild))  # PR_SET_PDEATHSIG: no orphan keeps parsing
    assert idle_pids(zygotes) == []
    assert len(extract_pages(CORPUS / "pdf" / "example.pdf", "example.pdf")) == 1
    assert len(idle_pids(zygotes)) == 1


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGKILL, "timeout"), (signal.SIGSEGV, "corrupt")]
)
def test_grandchild_killed_from_outside_is_an_error_and_the_zygote_lives_on(
    zygotes: zygote_pool._ZygotePool, tmp_path: Path, signum: int, code: str
) -> None:
    path = slow_pdf(tmp_path)
    extract_pages(CORPUS / "pdf" / "crazyones.pdf", "crazyones.pdf")
    (zygote,) = idle_pids(zygotes)
    call = InThread(path, "slow.pdf")
    (grandchild,) = wait_for(lambda: children_of(zygote))
    os.kill(grandchild, signum)
    with pytest.raises(ExtractionError) as caught:
        call.result()
    assert caught.value.code == code
    assert len(extract_pages(CORPUS / "pdf" / "example.pdf", "example.pdf")) == 1
    assert idle_pids(zygotes) == [zygote]


def test_memory_blow_up_leaves_the_zygote_usable(
    zygotes: zygote_pool._ZygotePool, tmp_path: Path
) -> None:
    path = tmp_path / "bomb.pdf"
    write_pdf(path, [zlib_bomb(70)], flate_encoded=True)
    assert extraction_error(path, memory_mb=100).code == "too_large"
    assert extraction_error(path, memory_mb=16).code == "too_large"
    (zygote,) = idle_pids(zygotes)
    assert len(extract_pages(CORPUS / "pdf" / "example.pdf", "example.pdf")) == 1
    assert idle_pids(zygotes) == [zygote]


def test_timeout_in_a_zygote_is_bounded_and_leaves_it_usable(
    zygotes: zygote_pool._ZygotePool, tmp_path: Path
) -> None:
    path = slow_pdf(tmp_path)
    for _ in range(2):
        started = time.monotonic()
        assert extraction_error(path, timeout=0.5).code == "timeout"
        assert time.monotonic() - started < 2
    (zygote,) = idle_pids(zygotes)
    assert children_of(zygote) == []  # the grandchild was killed and reaped
    assert len(extract_pages(CORPUS / "pdf" / "example.pdf", "example.pdf")) == 1


def test_stuck_zygote_is_a_timeout_within_the_grace_and_is_replaced(
    zygotes: zygote_pool._ZygotePool,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(zygote_pool, "_ZYGOTE_GRACE", 0.5)
    crazyones = CORPUS / "pdf" / "crazyones.pdf"
    extract_pages(crazyones, "crazyones.pdf")
    (stuck,) = idle_pids(zygotes)
    os.kill(stuck, signal.SIGSTOP)
    started = time.monotonic()
    assert extraction_error(crazyones, timeout=0.5).code == "timeout"
    assert time.monotonic() - started < 2
    assert "did not report in time" in caplog.text
    assert is_gone(stuck)
    assert len(extract_pages(crazyones, "crazyones.pdf")) == 1
    (fresh,) = idle_pids(zygotes)
    assert fresh != stuck


def test_concurrent_calls_get_a_zygote_each(zygotes: zygote_pool._ZygotePool) -> None:
    names = list(TEXT_PDF_PAGES) * 3
    with ThreadPoolExecutor(max_workers=2) as pool:
        counts = list(pool.map(lambda name: len(extract_pages(CORPUS / "pdf" / name, name)), names))
    assert counts == [TEXT_PDF_PAGES[name] for name in names]
    assert 1 <= len(set(idle_pids(zygotes))) <= 2
    assert zygotes._busy == 0


def test_more_callers_than_zygotes_use_one_shot_children(zygotes: zygote_pool._ZygotePool) -> None:
    names = list(TEXT_PDF_PAGES) * 2
    with ThreadPoolExecutor(max_workers=5) as pool:
        counts = list(pool.map(lambda name: len(extract_pages(CORPUS / "pdf" / name, name)), names))
    assert counts == [TEXT_PDF_PAGES[name] for name in names]
    assert len(idle_pids(zygotes)) <= zygotes.size
    assert zygotes._busy == 0


def test_zygote_that_cannot_start_falls_back_and_waits_before_retrying(
    zygotes: zygote_pool._ZygotePool,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    attempts = []

    def broken_zygote() -> None:
        attempts.append(1)
        raise OSError("no interpreter")

    monkeypatch.setattr(zygote_pool, "_Zygote", broken_zygote)
    with caplog.at_level(logging.WARNING, logger="engine.knowledge.extraction.zygotes"):
        for _ in range(2):
            pages = extract_pages(CORPUS / "pdf" / "crazyones.pdf", "crazyones.pdf")
            assert "round pegs" in folded(pages[0].text)
    assert len(attempts) == 1
    assert "could not start an extraction zygote" in caplog.text
    assert zygotes._busy == 0


def test_zygotes_exit_with_the_server_process(tmp_path: Path) -> None:
    # os._exit skips atexit: the zygote must notice by itself (EOF on its stdin).
    server = (
        "import os, sys\n"
        "from engine.knowledge.extraction import extract\n"
        f"extract.extract_pages({str(CORPUS / 'pdf' / 'crazyones.pdf')!r}, 'c.pdf')\n"
        "print(extract._ZYGOTES._idle[0].pid, flush=True)\n"
        "os._exit(0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", server],
        cwd=Path(extract.__file__).parents[3],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    zygote = int(done.stdout)
    wait_for(lambda: is_gone(zygote), seconds=5)

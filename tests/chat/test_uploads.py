"""Attachments are judged by their content; every refusal says which file and why, keeps the
text in the box, and leaves nothing behind."""

from __future__ import annotations

import io
import re
import zipfile

import pytest

from tests.chat.conftest import UPLOAD_LIMIT, ChatClient, Scripted, corpus
from tests.fake_model import Reply


def refused(owner: ChatClient, scripted: Scripted, name: str, content: bytes) -> str:
    """Send one file in a new chat; assert it is refused and nothing was made; the page text."""
    before = owner.get("/").text.count('href="/c/')
    sent = owner.send(
        "Please read this", assistant=scripted.profile_id, files=[(name, content, "x/y")]
    )
    assert sent.response.status_code == 200
    assert sent.response.headers.get("HX-Push-Url") is None, "nothing should be created"
    assert "Please read this</textarea>" in sent.response.text
    assert owner.get("/").text.count('href="/c/') == before
    return sent.response.text


def docx(with_body: bool) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        if with_body:
            archive.writestr(
                "word/document.xml",
                '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/'
                'main"><w:body><w:p><w:r><w:t>Hello from Word</w:t></w:r></w:p></w:body>'
                "</w:document>",
            )
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("setup.pdf", b"MZ\x90\x00\x03" + b"\x00" * 4096, "setup.pdf is not a PDF"),
        ("program.exe", b"MZ\x90\x00", "program.exe: only PDF, text, Markdown, HTML, JSON"),
        ("notes.txt", b"\x89PNG\r\n\x1a\n\x00\x00binary", "notes.txt is not text"),
        ("data.json", b'{"unclosed": ', "data.json is not valid JSON"),
        ("letter.docx", docx(with_body=False), "letter.docx is not a Word (.docx) document"),
        ("empty.md", b"", "empty.md is empty"),
        ("sheet.xlsx", docx(with_body=True), "sheet.xlsx is not an Excel (.xlsx) workbook"),
        ("table.csv", b"a,b\n\x00\x01", "table.csv is not CSV text"),
        # A data file for an assistant without code interpreter: no tool would read it.
        ("sales.csv", b"month,total\njan,10\n", "cannot read data files (it has no code"),
        ("big.txt", b"a" * (UPLOAD_LIMIT + 1), "big.txt is over the 2 MB limit"),
    ],
)
def test_files_are_checked_by_content(
    owner: ChatClient, scripted: Scripted, name: str, content: bytes, message: str
) -> None:
    assert message in refused(owner, scripted, name, content)


def test_encrypted_pdf_is_refused_up_front(owner: ChatClient, scripted: Scripted) -> None:
    page = refused(owner, scripted, "locked.pdf", corpus("encrypted-file.pdf"))
    assert "locked.pdf is encrypted (password-protected)" in page


def test_pdf_without_text_is_refused_with_the_engines_reason(
    owner: ChatClient, scripted: Scripted
) -> None:
    """An image-only PDF passes our checks; the engine cannot read it and says why."""
    page = refused(owner, scripted, "scan.pdf", corpus("git.pdf"))
    assert re.search(r"scan\.pdf could not be read: \S", page), page


def test_html_in_a_file_name_is_shown_as_text(owner: ChatClient, scripted: Scripted) -> None:
    scripted.script(Reply("Got it."))
    name = "<b onmouseover=alert(1)>bold.md"  # a file name cannot hold a "/"
    sent = owner.send(
        "Here", assistant=scripted.profile_id, files=[(name, b"# Title\n\nwords", "text/markdown")]
    )
    assert sent.events_url
    owner.events(sent.events_url)
    page = owner.get(f"/c/{sent.conversation_id}/").text
    assert "&lt;b onmouseover=alert(1)&gt;bold.md" in page
    assert "<b onmouseover" not in page


def test_several_files_and_a_word_document_are_accepted(
    owner: ChatClient, scripted: Scripted
) -> None:
    scripted.script(Reply("Read them all."))
    files = [
        ("letter.docx", docx(with_body=True), "application/octet-stream"),
        ("notes.md", b"# Notes\n\nSome notes.", "text/markdown"),
        ("data.json", b'{"ok": true}', "application/json"),
        ("page.html", b"<h1>Hi</h1>", "text/html"),
    ]
    sent = owner.send("Read these", assistant=scripted.profile_id, files=files)
    assert sent.events_url, sent.response.text
    owner.events(sent.events_url)
    page = owner.get(f"/c/{sent.conversation_id}/").text
    for name, content, _ in files:
        link = re.search(rf'href="(/c/\d+/files/[^"]+)"[^>]*>{re.escape(name)}<', page)
        assert link, name
        download = owner.get(link.group(1))
        assert download.content == content
        if not name.endswith(".pdf"):
            # Served as a download in a sandbox: never as a page of this site.
            assert download.headers["content-type"] == "application/octet-stream"
            assert download.headers["content-disposition"].startswith("attachment")
            assert "sandbox" in download.headers["content-security-policy"]
            assert download.headers["x-content-type-options"] == "nosniff"


def test_a_chunked_upload_is_read_whole(owner: ChatClient, scripted: Scripted) -> None:
    """A body sent with Transfer-Encoding: chunked and no Content-Length, as streaming clients
    send one: the server gives it the length it turned out to have (config/server.py)."""
    scripted.script(Reply("Read it."))
    owner.get("/")  # the CSRF cookie
    content = b"# Notes\n\n" + b"Chunked bodies arrive in pieces.\n" * 4000
    boundary = "threadline-boundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="text"\r\n\r\nRead this\r\n',
        f'--{boundary}\r\nContent-Disposition: form-data; name="assistant"\r\n\r\n'
        f"{scripted.profile_id}\r\n",
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="notes.md"\r\n'
        "Content-Type: text/markdown\r\n\r\n",
    ]
    body = [part.encode() for part in parts] + [content, f"\r\n--{boundary}--\r\n".encode()]
    response = owner.http.post(
        "/c/new/send",
        content=iter(body),  # an iterator: httpx sends it chunked, with no length
        headers={**owner.headers(), "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 200, response.text
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in response.request.headers
    conversation = response.headers["HX-Push-Url"]
    page = owner.get(conversation).text
    link = re.search(r'href="(/c/\d+/files/[^"]+)"[^>]*>notes\.md<', page)
    assert link, page
    assert owner.get(link.group(1)).content == content


def test_too_many_files_are_refused(owner: ChatClient, scripted: Scripted) -> None:
    files = [(f"n{i}.txt", b"x", "text/plain") for i in range(11)]
    sent = owner.send("Many", assistant=scripted.profile_id, files=files)
    assert "Attach at most 10 files at once." in sent.response.text


def test_big_json_is_checked_as_text_without_parsing_it_whole() -> None:
    import tracemalloc

    from django.core.files.uploadedfile import SimpleUploadedFile

    from chat.uploads import JSON_PARSE_MAX_BYTES, Refused, check

    rows = b",".join(b'{"id": %d, "name": "row"}' % i for i in range(400_000))
    big = b"[" + rows + b"]"
    assert len(big) > JSON_PARSE_MAX_BYTES
    tracemalloc.start()
    checked = check(SimpleUploadedFile("rows.json", big), limit=len(big))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert checked.content_type == "application/json"
    assert peak < 8 * 1024 * 1024, f"checking held {peak:,} bytes"
    with pytest.raises(Refused, match=r"rows\.json is not JSON text: its content is binary"):
        check(SimpleUploadedFile("rows.json", big[:-1] + b"\x00"), limit=len(big))

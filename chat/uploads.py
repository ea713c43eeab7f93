"""Attachments: which files the chat accepts (judged by their content, not their name), and who
may download which file again.
"""

from __future__ import annotations

import codecs
import json
import os
import unicodedata
import zipfile
from dataclasses import dataclass
from typing import IO

from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler, SkipFile
from django.http import Http404, HttpRequest

from chat import assistants_api as api
from chat.access import aconversation_for
from chat.models import CallFile, Conversation, Upload

CHUNK = 1024 * 1024
JSON_PARSE_MAX_BYTES = 4 * 1024 * 1024
PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


@dataclass(frozen=True)
class Kind:
    label: str
    content_type: str


# What a name promises; the content must then keep the promise.
KINDS = {
    ".pdf": Kind("PDF", PDF),
    ".txt": Kind("text", "text/plain"),
    ".md": Kind("Markdown", "text/markdown"),
    ".markdown": Kind("Markdown", "text/markdown"),
    ".html": Kind("HTML", "text/html"),
    ".htm": Kind("HTML", "text/html"),
    ".json": Kind("JSON", "application/json"),
    ".docx": Kind("Word", DOCX),
}
ACCEPT = ",".join(KINDS)
TYPES_TEXT = "PDF, text, Markdown, HTML, JSON or Word (.docx)"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# Data files that only code interpreter reads (file search does not index them); in a chat,
# with an assistant that has it.
DATA_KINDS = {
    ".csv": Kind("CSV", "text/csv"),
    ".tsv": Kind("TSV", "text/tab-separated-values"),
    ".xlsx": Kind("Excel (.xlsx)", XLSX),
}
CHAT_ACCEPT = ",".join([*KINDS, *DATA_KINDS])
CHAT_TYPES_TEXT = "PDF, text, Markdown, HTML, JSON, Word (.docx), CSV, TSV or Excel (.xlsx)"


class Refused(Exception):
    """A file the chat will not take; the message says which and why."""


def human_size(size: int) -> str:
    """50 MB, 50.4 MB, 600 MB: a tenth where it tells sizes apart, none past a hundred."""
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if size >= scale:
            value = size / scale
            text = f"{value:.0f}" if value >= 100 else f"{value:.1f}".removesuffix(".0")
            return f"{text} {unit}"
    return f"{size} bytes"


def limits_text() -> str:
    return (
        f"{CHAT_TYPES_TEXT}; up to {human_size(settings.CHAT_MAX_UPLOAD_BYTES)} each, "
        f"{settings.CHAT_MAX_FILES} at most"
    )


class LimitedUploadHandler(FileUploadHandler):
    """Skips a file as soon as it is over the size limit, so it is never stored whole."""

    def __init__(self, request: HttpRequest | None = None, limit: int | None = None) -> None:
        super().__init__(request)
        self.limit = limit or settings.CHAT_MAX_UPLOAD_BYTES
        self.too_large: list[tuple[str, int]] = []

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        if start + len(raw_data) > self.limit:
            self.too_large.append((clean_name(self.file_name or ""), start + len(raw_data)))
            raise SkipFile()
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None  # the next handler keeps the file


def too_large_message(name: str, limit: int | None = None, size: int | None = None) -> str:
    """ "big.pdf is 50.4 MB, over the 50 MB limit for one file." (the size where it is known:
    a file skipped while it arrived was not counted to its end)."""
    limit_text = human_size(limit or settings.CHAT_MAX_UPLOAD_BYTES)
    if size is None:
        return f"{name} is over the {limit_text} limit for one file."
    return f"{name} is {human_size(size)}, over the {limit_text} limit for one file."


def clean_name(name: str) -> str:
    """The file's own name: no folders, no control characters, not absurdly long."""
    name = os.path.basename(name.replace("\\", "/"))
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip()
    if len(name) > 200:
        stem, suffix = os.path.splitext(name)
        name = stem[: 200 - len(suffix)] + suffix
    return name or "file"


def kind_of(name: str) -> Kind | None:
    return KINDS.get(os.path.splitext(name)[1].lower())


@dataclass
class CheckedFile:
    name: str
    size: int
    content_type: str
    file: UploadedFile  # the upload itself: storage can move a temporary one, not copy it
    # File search can index it; a data file (CSV, Excel) is for code interpreter only.
    searchable: bool = True


def check(uploaded: UploadedFile, limit: int | None = None, data: bool = False) -> CheckedFile:
    """The file, if its content is what its name says; `limit` defaults to the chat's. `data`:
    data files (CSV, Excel) are accepted too, as the chat takes them for code interpreter."""
    limit = limit or settings.CHAT_MAX_UPLOAD_BYTES
    name = clean_name(uploaded.name or "")
    kind = kind_of(name)
    searchable = kind is not None
    if kind is None and data:
        kind = DATA_KINDS.get(os.path.splitext(name)[1].lower())
    if kind is None:
        types = CHAT_TYPES_TEXT if data else TYPES_TEXT
        raise Refused(f"{name}: only {types} files can be attached.")
    size = uploaded.size or 0
    if size > limit:
        raise Refused(too_large_message(name, limit, size))
    if size == 0:
        raise Refused(f"{name} is empty.")
    uploaded.seek(0)
    if kind.content_type == PDF:
        check_pdf(name, uploaded)
    elif kind.content_type == DOCX:
        check_docx(name, uploaded)
    elif kind.content_type == XLSX:
        check_zip(name, uploaded, "xl/workbook.xml", "an Excel (.xlsx) workbook")
    else:
        check_text(name, uploaded, kind, size)
    uploaded.seek(0)
    return CheckedFile(name, size, kind.content_type, uploaded, searchable)


def check_pdf(name: str, file: IO[bytes]) -> None:
    # PDF readers accept the header anywhere in the first 1,024 bytes.
    if b"%PDF-" not in file.read(1024):
        raise Refused(f"{name} is not a PDF: its content is something else.")
    file.seek(0)
    # An encrypted PDF names its /Encrypt dictionary in the trailer, which is never compressed.
    previous = b""
    while chunk := file.read(CHUNK):
        if b"/Encrypt" in previous[-16:] + chunk:
            raise Refused(
                f"{name} is encrypted (password-protected), so it cannot be read. "
                "Save a copy without the password and attach that."
            )
        previous = chunk


def check_docx(name: str, file: IO[bytes]) -> None:
    check_zip(name, file, "word/document.xml", "a Word (.docx) document")


def check_zip(name: str, file: IO[bytes], member: str, what: str) -> None:
    """An Office file: a zip archive that holds `member`."""
    refused = Refused(f"{name} is not {what}: its content is something else.")
    if file.read(4) != b"PK\x03\x04":
        raise refused
    file.seek(0)
    try:
        with zipfile.ZipFile(file) as archive:
            if member not in archive.namelist():
                raise refused
    except zipfile.BadZipFile:
        raise refused from None


def check_text(name: str, file: IO[bytes], kind: Kind, size: int) -> None:
    refused = Refused(f"{name} is not {kind.label} text: its content is binary.")
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    text: list[str] = []
    # Parsing JSON holds about ten times the text in memory: bigger files are checked as UTF-8
    # text only, and the engine's ingestion reports one that does not parse.
    parse = kind.content_type == "application/json" and size <= JSON_PARSE_MAX_BYTES
    try:
        while chunk := file.read(CHUNK):
            if b"\x00" in chunk:
                raise refused
            piece = decoder.decode(chunk)
            if parse:
                text.append(piece)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise refused from None
    if parse:
        try:
            json.loads("".join(text))
        except ValueError:
            raise Refused(f"{name} is not valid JSON.") from None


# --- Downloading again ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Downloadable:
    name: str


async def file_for(user: User, conversation_id: int, file_id: str) -> Downloadable:
    """A file the user may open from this conversation: one they attached, or one it cites.

    Anything else, including files of other people's conversations, is a 404.
    """
    return await file_in(await aconversation_for(user, conversation_id), file_id)


async def file_in(conversation: Conversation, file_id: str) -> Downloadable:
    """The file, if it belongs to the conversation: attached by its owner, or cited (or shown)
    in its thread. Anything else is a 404."""
    upload = await Upload.objects.filter(conversation=conversation, file_id=file_id).afirst()
    if upload is not None:
        return Downloadable(upload.name)
    # An image a function call of this conversation answered with (an MCP tool's).
    kept = await CallFile.objects.filter(
        call__round__conversation=conversation, file_id=file_id
    ).afirst()
    if kept is not None:
        return Downloadable(kept.name)
    try:
        if await api.thread_cites_file(conversation.thread_id, file_id):
            return Downloadable(str((await api.file_info(file_id))["filename"]))
    except api.NotFound:
        pass
    raise Http404("No such file in this conversation.")


def sniff_type(head: bytes) -> str | None:
    """The types the file route serves inline; anything else is a download."""
    if head.startswith(b"%PDF-"):
        return PDF
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image/webp"
    return None

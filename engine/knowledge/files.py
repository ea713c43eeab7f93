"""Uploaded files: their bytes streamed into storage, their rows, ids checked within a project."""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler, SkipFile
from django.http import HttpRequest
from django.utils import timezone

from engine.api.errors import ApiError
from engine.models import File, Project

PURPOSES = ("assistants", "vision", "user_data", "batch", "fine-tune", "evals")
# The spec's bounds for a file's `expires_after.seconds`: an hour to 30 days.
EXPIRES_AFTER_SECONDS = (3600, 2_592_000)


def file_path(file: File) -> Path:
    return settings.FILES_DIR / file.storage_name


def too_large(size: int) -> ApiError:
    return ApiError(
        413,
        f"The file is too large: {size:,} bytes or more, and the largest upload this server "
        f"accepts is {settings.MAX_UPLOAD_BYTES:,} bytes (THREADLINE_MAX_UPLOAD_BYTES).",
        param="file",
        code="file_too_large",
    )


# The stubs' UploadedFile is generic; Django's takes no type arguments at run time.
class StoredUpload(UploadedFile):  # type: ignore[type-arg]
    """An uploaded file whose bytes already sit in storage under a random name."""

    def __init__(self, path: Path, name: str | None, content_type: str | None, size: int) -> None:
        super().__init__(file=None, name=name, content_type=content_type, size=size)
        self.path = path

    def close(self) -> None:
        """Nothing is open: the bytes were written and closed while they arrived."""


class StorageUploadHandler(FileUploadHandler):
    """Streams the `file` field of a multipart upload straight into FILES_DIR.

    Django's default handlers keep small uploads in memory and copy large ones through the system
    temp directory; this one writes each byte once, where it stays, and stops at the size limit.
    Whatever it wrote is the caller's to `discard()` unless the upload is accepted.
    """

    def __init__(self, request: HttpRequest) -> None:
        super().__init__(request)
        self.written: list[Path] = []
        self.destination: Any = None

    def new_file(self, field_name: str, file_name: str, *args: Any, **kwargs: Any) -> None:
        super().new_file(field_name, file_name, *args, **kwargs)
        if field_name != "file":
            raise SkipFile()
        settings.FILES_DIR.mkdir(parents=True, exist_ok=True)
        path = settings.FILES_DIR / secrets.token_hex(16)
        self.written.append(path)
        self.destination = path.open("xb")

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        if start + len(raw_data) > settings.MAX_UPLOAD_BYTES:
            raise too_large(start + len(raw_data))
        self.destination.write(raw_data)

    def file_complete(self, file_size: int) -> StoredUpload:
        self.destination.close()
        return StoredUpload(self.written[-1], self.file_name, self.content_type, file_size)

    def discard(self, keep: Path | None = None) -> None:
        if self.destination is not None:
            self.destination.close()
        for path in self.written:
            if path != keep:
                path.unlink(missing_ok=True)


def create_file(
    project: Project, upload: StoredUpload, purpose: str, expires_after_seconds: int | None = None
) -> File:
    now = timezone.now()
    return File.objects.create(
        project=project,
        created_at=now,
        filename=upload.name or "upload",
        bytes=upload.size or 0,
        purpose=purpose,
        storage_name=upload.path.name,
        expires_at=(
            now + timedelta(seconds=expires_after_seconds) if expires_after_seconds else None
        ),
    )


def check_files(project: Project, file_ids: list[str], param: str) -> None:
    if not file_ids:
        return  # most messages: building the query alone cost 2% of a run's start
    found = set(File.objects.filter(project=project, pk__in=file_ids).values_list("pk", flat=True))
    for file_id in file_ids:
        if file_id not in found:
            raise ApiError(404, f"No file found with id '{file_id}'.", param=param)

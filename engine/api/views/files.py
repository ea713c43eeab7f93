"""/v1/files"""

from __future__ import annotations

import asyncio
import mimetypes
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

from django.http import HttpRequest, StreamingHttpResponse
from django.http.multipartparser import MultiPartParserError
from django.utils.http import content_disposition_header

from engine.api.access import get_owned
from engine.api.errors import ApiError
from engine.api.pagination import paginate
from engine.knowledge import files, stores
from engine.models import File, Project

FORM_FIELDS = {"purpose", "expires_after[anchor]", "expires_after[seconds]"}
READ_CHUNK = 256 * 1024
# Types a file's content is served as, by its name; anything else (HTML, SVG, XML, scripts: what
# a browser would run) goes as application/octet-stream. Always as a download.
SERVED_TYPES = {
    "application/pdf",
    "application/json",
    "application/jsonl",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/zip",
    "text/plain",
    "text/markdown",
    "text/csv",
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
}


def create_file(request: HttpRequest, project: Project) -> dict[str, Any]:
    # The server refused a body over the limit as it arrived (config/bodies.py); the handler
    # holds the file itself to the limit exactly.
    handler = files.StorageUploadHandler(request)
    request.upload_handlers = [handler]
    kept = None
    stores.delete_expired_files()
    try:
        upload, purpose = read_form(request)
        file = files.create_file(project, upload, purpose, expires_after(request))
        kept = upload.path
    finally:
        handler.discard(keep=kept)
    return file.to_api()


def expires_after(request: HttpRequest) -> int | None:
    """Seconds until the file expires, from `expires_after[anchor]` and
    `expires_after[seconds]` (how the SDKs send the object in a form)."""
    anchor = request.POST.get("expires_after[anchor]")
    seconds = request.POST.get("expires_after[seconds]")
    if anchor is None and seconds is None:
        # The spec's default: batch files expire after 30 days, others stay until deleted.
        return files.EXPIRES_AFTER_SECONDS[1] if request.POST.get("purpose") == "batch" else None
    if anchor != "created_at":
        raise ApiError(
            400,
            f"Invalid value for 'expires_after.anchor': {anchor!r}; the supported anchor is "
            "'created_at'.",
            param="expires_after.anchor",
            code="invalid_value",
        )
    low, high = files.EXPIRES_AFTER_SECONDS
    if seconds is None or not seconds.isdigit() or not low <= int(seconds) <= high:
        raise ApiError(
            400,
            f"Invalid value for 'expires_after.seconds': {seconds!r}; it must be a whole number "
            f"of seconds between {low} (1 hour) and {high} (30 days).",
            param="expires_after.seconds",
            code="invalid_value",
        )
    return int(seconds)


def read_form(request: HttpRequest) -> tuple[files.StoredUpload, str]:
    try:
        uploads = request.FILES.getlist("file")
        purpose = request.POST.get("purpose", "")
    except MultiPartParserError as error:
        raise ApiError(400, f"The multipart/form-data body could not be parsed: {error}") from None
    for name in request.POST:
        if name not in FORM_FIELDS:
            raise ApiError(
                400,
                f"Unrecognized request argument supplied: {name}",
                param=name,
                code="unknown_parameter",
            )
    if not uploads:
        raise missing("file", "send the file as multipart/form-data.")
    if len(uploads) > 1:
        raise ApiError(400, "Upload one file per request.", param="file")
    if not purpose:
        raise missing("purpose", f"one of {', '.join(files.PURPOSES)}.")
    if purpose not in files.PURPOSES:
        raise ApiError(
            400,
            f"Invalid value for 'purpose': '{purpose}' is not one of {', '.join(files.PURPOSES)}.",
            param="purpose",
            code="invalid_value",
        )
    # The storage handler is the request's only upload handler, so this is what it made.
    return cast(files.StoredUpload, uploads[0]), purpose


def missing(param: str, hint: str) -> ApiError:
    return ApiError(
        400,
        f"Missing required parameter: '{param}'; {hint}",
        param=param,
        code="missing_required_parameter",
    )


def list_files(request: HttpRequest, project: Project) -> dict[str, Any]:
    stores.delete_expired_files()
    listed = File.objects.filter(project=project)
    if request.GET.get("purpose"):
        listed = listed.filter(purpose=request.GET["purpose"])
    # The spec lets file lists be longer than the others.
    return paginate(request, listed, File.to_api, max_limit=10_000)


def retrieve_file(request: HttpRequest, project: Project, file_id: str) -> dict[str, Any]:
    return get_owned(File.objects, project, file_id, "file").to_api()


def delete_file(request: HttpRequest, project: Project, file_id: str) -> dict[str, Any]:
    stores.delete_file(get_owned(File.objects, project, file_id, "file"))
    return {"id": file_id, "object": "file", "deleted": True}


def file_content(request: HttpRequest, project: Project, file_id: str) -> StreamingHttpResponse:
    file = get_owned(File.objects, project, file_id, "file")
    path = files.file_path(file)
    if not path.is_file():
        raise ApiError(404, f"The content of file '{file_id}' is no longer stored.")
    response = StreamingHttpResponse(read_chunks(path), content_type=served_type(file.filename))
    response["Content-Length"] = str(path.stat().st_size)
    response["Content-Disposition"] = content_disposition_header(True, file.filename)
    # Should a browser open it anyway: no scripts, no plugins, no same-origin access.
    response["Content-Security-Policy"] = "sandbox"
    return response


def served_type(filename: str) -> str:
    guessed = mimetypes.guess_type(filename)[0]
    return guessed if guessed in SERVED_TYPES else "application/octet-stream"


async def read_chunks(path: Path) -> AsyncIterator[bytes]:
    # An async iterator: Django's ASGI handler would read a sync one (a FileResponse) into
    # memory whole before sending a byte.
    with path.open("rb") as handle:
        while chunk := await asyncio.to_thread(handle.read, READ_CHUNK):
            yield chunk

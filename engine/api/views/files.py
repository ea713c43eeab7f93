"""/v1/files"""

from __future__ import annotations

import asyncio
import mimetypes
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

from django.conf import settings
from django.http import HttpRequest, StreamingHttpResponse
from django.http.multipartparser import MultiPartParserError
from django.utils.http import content_disposition_header

from engine.api.access import get_owned
from engine.api.errors import ApiError
from engine.api.pagination import paginate
from engine.knowledge import files, stores
from engine.models import File, Project

# Room for the multipart framing around the file, so a file of exactly the limit gets in.
MULTIPART_ALLOWANCE = 16 * 1024
READ_CHUNK = 256 * 1024


def create_file(request: HttpRequest, project: Project) -> dict[str, Any]:
    # The server has the body by now (daphne buffers it), but nothing has parsed or copied it.
    declared = int(request.META.get("CONTENT_LENGTH") or 0)
    if declared > settings.MAX_UPLOAD_BYTES + MULTIPART_ALLOWANCE:
        raise files.too_large(declared)
    handler = files.StorageUploadHandler(request)
    request.upload_handlers = [handler]
    kept = None
    try:
        upload, purpose = read_form(request)
        file = files.create_file(project, upload, purpose)
        kept = upload.path
    finally:
        handler.discard(keep=kept)
    return file.to_api()


def read_form(request: HttpRequest) -> tuple[files.StoredUpload, str]:
    try:
        uploads = request.FILES.getlist("file")
        purpose = request.POST.get("purpose", "")
    except MultiPartParserError as error:
        raise ApiError(400, f"The multipart/form-data body could not be parsed: {error}") from None
    for name in request.POST:
        if name != "purpose":
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
    content_type = mimetypes.guess_type(file.filename)[0] or "application/octet-stream"
    response = StreamingHttpResponse(read_chunks(path), content_type=content_type)
    response["Content-Length"] = str(path.stat().st_size)
    response["Content-Disposition"] = content_disposition_header(True, file.filename)
    return response


async def read_chunks(path: Path) -> AsyncIterator[bytes]:
    # An async iterator: Django's ASGI handler would read a sync one (a FileResponse) into
    # memory whole before sending a byte.
    with path.open("rb") as handle:
        while chunk := await asyncio.to_thread(handle.read, READ_CHUNK):
            yield chunk

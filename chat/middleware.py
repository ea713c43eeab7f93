"""Knowledge uploads in the admin: an over-limit file is skipped while it arrives, never stored.

Upload handlers must be in place before anything reads the body, and CSRF checking reads it
before any view runs; hence a middleware, placed before CsrfViewMiddleware, for the assistant
admin's URLs only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.http import HttpRequest
from django.urls import reverse
from django.utils.decorators import sync_and_async_middleware

from chat.uploads import LimitedUploadHandler


def limit_knowledge_uploads(request: HttpRequest) -> None:
    if request.method != "POST":
        return
    if request.path.startswith(reverse("admin:chat_assistantprofile_changelist")):
        request.upload_handlers.insert(
            0, LimitedUploadHandler(request, limit=settings.KNOWLEDGE_MAX_UPLOAD_BYTES)
        )


def too_large_uploads(request: HttpRequest) -> list[str]:
    """The names of the files the handler skipped."""
    return [
        name
        for handler in request.upload_handlers
        if isinstance(handler, LimitedUploadHandler)
        for name, _ in handler.too_large
    ]


@sync_and_async_middleware
def knowledge_upload_limit(get_response: Callable[[HttpRequest], Any]) -> Any:
    # Both kinds, so that the chat's async views (and their streams) stay async.
    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> Any:
            limit_knowledge_uploads(request)
            return await get_response(request)

        return async_middleware

    def middleware(request: HttpRequest) -> Any:
        limit_knowledge_uploads(request)
        return get_response(request)

    return middleware

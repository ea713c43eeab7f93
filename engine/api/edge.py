"""What every response under the engine's prefixes gets, whichever part of Django answered.

- OpenAI's error envelope for every error: views answer in it already, but Django itself can
  answer first (a bad Host header, a failure in a middleware) with an HTML page, which SDKs
  show as a confusing error with HTML inside.
- With THREADLINE_HTTPS=1, no key over plain HTTP. A redirect would not help: the key has
  already crossed the network by the time it is answered, an SDK would send it again to the
  new address without saying anything, and the client would go on sending it in the clear on
  every first request. A refusal in OpenAI's shape names the fix (an https:// base URL) the
  first time. The server's own chat, which calls the engine on this machine without a proxy,
  is the one exception.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from django.utils.decorators import sync_and_async_middleware

from engine.api.errors import ApiError

JSON = "application/json"


def is_engine_path(path: str) -> bool:
    return path.lstrip("/").startswith(tuple(settings.ENGINE_URL_PREFIXES))


def from_this_machine(request: HttpRequest) -> bool:
    """Sent on this machine straight to the server: no proxy said how it came in."""
    if "HTTP_X_FORWARDED_PROTO" in request.META:
        return False
    try:
        client = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return client.is_loopback or str(client) == request.META.get("SERVER_NAME")


def plain_http_refusal(request: HttpRequest) -> HttpResponseBase | None:
    if not settings.HTTPS or request.is_secure() or from_this_machine(request):
        return None
    return ApiError(
        403,
        "This server accepts API keys over HTTPS only: use an https:// base URL. The key "
        "sent with this request crossed the network unencrypted; consider replacing it.",
        code="https_required",
    ).response()


def in_openai_shape(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    if response.status_code < 400 or response.get("Content-Type", "").startswith(JSON):
        return response
    status = HTTPStatus(response.status_code)
    message = f"{status.phrase} ({request.method} {request.path})."
    if status == HTTPStatus.INTERNAL_SERVER_ERROR:
        message = "The server had an error while processing your request. Sorry about that!"
    kind = "server_error" if status >= 500 else "invalid_request_error"
    shaped = ApiError(status, message, code=status.phrase.lower().replace(" ", "_"), type=kind)
    answer = shaped.response()
    for header in ("Allow", "Retry-After"):
        if header in response:
            answer[header] = response[header]
    return answer


@sync_and_async_middleware
def engine_edge(get_response: Callable[[HttpRequest], Any]) -> Any:
    # Both kinds, so that the chat's async views (and their streams) stay async.
    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> Any:
            if not is_engine_path(request.path):
                return await get_response(request)
            refused = plain_http_refusal(request)
            if refused is not None:
                return refused
            return in_openai_shape(request, await get_response(request))

        return async_middleware

    def middleware(request: HttpRequest) -> Any:
        if not is_engine_path(request.path):
            return get_response(request)
        refused = plain_http_refusal(request)
        if refused is not None:
            return refused
        return in_openai_shape(request, get_response(request))

    return middleware

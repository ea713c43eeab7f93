"""A URL's view: checks the key, fans out to one handler per HTTP verb, renders errors."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from engine import disk
from engine.api import rate_limits
from engine.api.access import authenticate
from engine.api.errors import ApiError

log = logging.getLogger(__name__)

Handler = Callable[..., Any]


def api_view(**handlers: Handler) -> Callable[..., HttpResponseBase]:
    """Build a view that authenticates the key and fans out to one handler per HTTP verb.

    Handlers take `(request, project, **url_kwargs)` and return a dict (sent as JSON) or a
    response. Any `ApiError` becomes OpenAI's error envelope; nothing else leaks a stack trace.
    Every response to a rate-limited key says where it stands (`x-ratelimit-*`).
    """

    allowed = sorted(handlers)

    # Engine requests authenticate with a key header only, never a cookie, so a page of another
    # site cannot make a browser send one: there is nothing for CSRF checks to protect.
    @csrf_exempt
    def view(request: HttpRequest, **kwargs: Any) -> HttpResponseBase:
        rate_headers: dict[str, str] = {}
        try:
            handler = handlers.get(request.method or "")
            if handler is None:
                return method_not_allowed(request, allowed)
            caller = authenticate(request)
            rate_headers = rate_limits.admit(caller.key_id, caller.rate)
            result = handler(request, caller.project, **kwargs)
        except ApiError as error:
            response: HttpResponseBase = error.response()
        except SuspiciousOperation as error:
            # Django's own refusals of a request, such as too many form fields.
            response = ApiError(
                400, str(error) or "The request was refused as malformed."
            ).response()
        except Exception as error:
            if disk.full(error):
                log.error("Out of disk space in %s %s: %s", request.method, request.path, error)
                return ApiError(
                    507, disk.API_MESSAGE, type="server_error", code="insufficient_storage"
                ).response()
            log.exception(
                "Unexpected error in %s %s (%s)",
                request.method,
                request.path,
                getattr(request, "scope", {}).get("request_id"),
            )
            response = ApiError(
                500,
                "The server had an error while processing your request. Sorry about that!",
                type="server_error",
                code="server_error",
            ).response()
        else:
            response = result if isinstance(result, HttpResponseBase) else JsonResponse(result)
        for name, value in rate_headers.items():
            response.setdefault(name, value)
        return response

    # The verbs this URL serves, for whoever inspects the URLconf; mypy types a function as
    # having no attributes.
    view.allowed_methods = allowed  # type: ignore[attr-defined]
    return view


def method_not_allowed(request: HttpRequest, allowed: list[str]) -> HttpResponse:
    """405 with the `Allow` header HTTP asks for; before the key is checked, as a wrong verb
    is wrong for every key."""
    response = ApiError(
        405,
        f"Invalid method for URL ({request.method} {request.path}): it accepts "
        f"{', '.join(allowed)}.",
        code="method_not_allowed",
    ).response()
    response["Allow"] = ", ".join(allowed)
    return response


@csrf_exempt
def api_not_found(request: HttpRequest, path: str = "") -> HttpResponse:
    error = ApiError(404, f"Invalid URL ({request.method} {request.path}).", code="not_found")
    return error.response()

"""A URL's view: checks the key, fans out to one handler per HTTP verb, renders errors."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.views.decorators.csrf import csrf_exempt

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

    @csrf_exempt
    def view(request: HttpRequest, **kwargs: Any) -> HttpResponseBase:
        rate_headers: dict[str, str] = {}
        try:
            caller = authenticate(request)
            rate_headers = rate_limits.admit(caller.key_id, caller.rate)
            project = caller.project
            handler = handlers.get(request.method or "")
            if handler is None:
                raise ApiError(
                    405,
                    f"Invalid method for URL ({request.method} {request.path}).",
                    code="method_not_allowed",
                )
            result = handler(request, project, **kwargs)
        except ApiError as error:
            response: HttpResponseBase = error.response()
        except Exception:
            log.exception("Unexpected error in %s %s", request.method, request.path)
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
    view.allowed_methods = sorted(handlers)  # type: ignore[attr-defined]
    return view


def api_not_found(request: HttpRequest, path: str = "") -> HttpResponse:
    error = ApiError(404, f"Invalid URL ({request.method} {request.path}).", code="not_found")
    return error.response()

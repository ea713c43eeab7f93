"""The smallest ASGI applications daphne can serve, for bench/request_floor.py: what the server,
and Django with no middleware, cost per request before any of Threadline's code runs."""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings

settings.configure(
    DEBUG=False,
    ALLOWED_HOSTS=["127.0.0.1"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[],
    SECRET_KEY=secrets.token_urlsafe(50),  # nothing here is signed
    INSTALLED_APPS=[],
    LOGGING_CONFIG=None,
)

from django.core.asgi import get_asgi_application  # noqa: E402
from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.urls import path  # noqa: E402


async def bare(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """daphne alone: the request read, a 200 written."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": b"ok"})


async def ok(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok", content_type="text/plain")


urlpatterns = [path("", ok)]

# Django's handler, URL resolver and an async view: no middleware, no database.
django_bare = get_asgi_application()

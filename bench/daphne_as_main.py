"""The application as main served it before request bodies were bounded, for
bench/request_bodies.py to measure beside today's: Twisted's form parsing off, and nothing else
of config/server.py (no limits, bodies queued whole for the application by daphne)."""

import os
from typing import Any

from daphne import http_protocol

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from django.core.asgi import get_asgi_application


class UnparsedBodyRequest(http_protocol.WebRequest):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, parsePOSTFormSubmission=False, **kwargs)


http_protocol.WebRequest = UnparsedBodyRequest
application = get_asgi_application()

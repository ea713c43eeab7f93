"""How daphne serves Threadline: request bodies are Django's to parse, not Twisted's.

Twisted's `http.Request` parses every multipart POST into `request.args` before daphne sees
it: it reads the whole body into memory and splits it with the email parser, which held about
twelve times an upload's size at its peak (bench/upload_memory.py: +1.2 GB for a 100 MB file).
Daphne never reads `request.args`, and Django parses the body again, streaming files to disk.
Twisted lets a request skip its parsing (`parsePOSTFormSubmission=False`); daphne builds its
requests from the module's `WebRequest` name on each connection, so that name is pointed at a
subclass that asks for it. Imported by `config.asgi`, before daphne accepts a connection.

Daphne still queues a body's chunks in memory for the application (django/daphne#483): an
upload costs about its own size while Django reads it, not twelve times.
"""

from __future__ import annotations

from typing import Any

from daphne import http_protocol


class UnparsedBodyRequest(http_protocol.WebRequest):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, parsePOSTFormSubmission=False, **kwargs)


def leave_bodies_to_django() -> None:
    http_protocol.WebRequest = UnparsedBodyRequest

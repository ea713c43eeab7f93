"""How daphne receives a request body: within its route's limit, counted as it arrives, kept on
disk, and handed to Django in pieces.

Daphne builds its requests from the module's `WebRequest` name on each connection; that name is
pointed at `BoundedBodyRequest`, a subclass, before daphne accepts a connection (`config.asgi`).
Twisted calls the request as the bytes arrive: `gotLength` once the headers are in (with the
declared `Content-Length`, or None for a chunked body), `handleContentChunk` per piece of the
body, `requestReceived` when the body is complete. That is where a body can be refused before
anything keeps it, so the limits live here, not in Django, which sees a body only when all of it
has arrived:

- Over its route's limit (`config.bodies`), a declared length is refused at once and a chunked
  body at the byte that crosses the limit: the 413 goes out, the rest of the body is read and
  dropped for up to `LINGER_SECONDS` (as nginx does, so that a client still sending sees the
  answer instead of a reset), then the connection closes.
- A chunked body gets the `Content-Length` it turned out to have: Django's form parser reads a
  body without one as empty, which lost the Node SDK's streamed uploads.
- Twisted writes a large body to a temporary file, but daphne then reads all of it into its
  queue for the application at once (django/daphne#483): a 300 MB POST held 300 MB of memory,
  for good. Here a body over `HANDOFF_BYTES` is handed over as its file instead, and
  `with_spooled_bodies` (the outermost ASGI application) gives it to Django a piece at a time.
- Twisted's own parsing of form bodies into `request.args` (about twelve times an upload's size
  at its peak; daphne never reads it) is turned off.
"""

from __future__ import annotations

import asyncio
import io
import secrets
from typing import IO, Any, cast
from urllib.parse import unquote

from daphne import http_protocol
from django.conf import settings

from config.asgi_types import AsgiApp, Message, Receive, Scope, Send
from config.bodies import ANONYMOUS_LIMIT, BodyLimit, body_limit, refusal
from config.request_ids import new_request_id

LINGER_SECONDS = 30
HANDOFF_BYTES = 1024 * 1024
READ_CHUNK = 1024 * 1024
# The header that names a handed-over body on its way from the request to the ASGI application;
# the same header from a client is removed first.
SPOOLED_HEADER = b"x-threadline-spooled-body"

# Bodies handed over and not yet taken by their application, by token. Twisted and the
# applications share one thread (daphne runs Twisted on the asyncio loop).
spooled: dict[str, IO[bytes]] = {}


def request_target(channel: Any) -> tuple[str, str] | None:
    """The method and path of the request whose headers the channel has just read.

    Twisted hands the request line to the request only with the complete body; its HTTP/1.1
    channel holds it meanwhile. The path is decoded as daphne decodes it for the application.
    """
    command, target = getattr(channel, "_command", None), getattr(channel, "_path", None)
    if not isinstance(command, bytes) or not isinstance(target, bytes):
        return None
    try:
        path = unquote(target.split(b"?", 1)[0].decode("ascii"))
    except UnicodeDecodeError:
        return None
    return command.decode("ascii", "replace"), path


# daphne has no type information: its request is Any to mypy.
class BoundedBodyRequest(http_protocol.WebRequest):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, parsePOSTFormSubmission=False, **kwargs)
        self.limit = BodyLimit(ANONYMOUS_LIMIT, "this request has no request line")
        self.target_path = ""
        self.received = 0
        self.refused = False
        self.spool_token: str | None = None
        self.linger: Any = None

    def gotLength(self, length: int | None) -> None:
        target = request_target(self.channel)
        # Without a request line (not an HTTP/1.1 channel), the smallest limit: fail closed.
        if target is not None:
            method, self.target_path = target
            self.limit = body_limit(
                method,
                self.target_path,
                has_key=any(
                    self.requestHeaders.hasHeader(h) for h in (b"authorization", b"api-key")
                ),
                has_session=settings.SESSION_COOKIE_NAME.encode() in self.received_cookies,
            )
        if length is not None and length > self.limit.bytes:
            # Twisted would answer "100 Continue" next: the client is told 413 instead.
            self.requestHeaders.removeHeader(b"expect")
            self.refuse(length)
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self.refused:
            return
        self.received += len(data)
        if self.received > self.limit.bytes:
            self.refuse(self.received)
            return
        super().handleContentChunk(data)

    def refuse(self, size: int) -> None:
        """Answer 413 now; drop the rest of the body as it arrives, then close."""
        self.refused = True
        self.drop_content()
        answer = refusal(self.target_path, self.limit, size)
        self.channel.transport.write(
            b"HTTP/1.1 413 Content Too Large\r\n"
            b"Content-Type: " + answer.content_type + b"\r\n"
            b"Content-Length: " + str(len(answer.body)).encode() + b"\r\n"
            b"x-request-id: " + new_request_id().encode() + b"\r\n"
            b"Connection: close\r\n\r\n" + answer.body
        )
        self.linger = self.channel.callLater(LINGER_SECONDS, self.stop_lingering)

    # Twisted types `content` by its class attribute, None; a request's is a file once its
    # length is known.
    def body_file(self) -> IO[bytes]:
        return cast(IO[bytes], self.content)

    def drop_content(self) -> None:
        body: IO[bytes] | None = self.body_file()
        if body is not None:
            body.close()
        self.content = cast(Any, None)

    def stop_lingering(self) -> None:
        self.linger = None
        if self.channel is not None and self.channel.transport is not None:
            self.channel.transport.abortConnection()

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self.refused:
            # The answer is out and the body has been read: nothing is left to say.
            if self.linger is not None and self.linger.active():
                self.linger.cancel()
            self.channel.loseConnection()
            return
        self.requestHeaders.removeHeader(SPOOLED_HEADER)
        size = self.body_file().tell()
        if self.requestHeaders.hasHeader(b"transfer-encoding"):
            self.requestHeaders.removeHeader(b"transfer-encoding")
            self.requestHeaders.setRawHeaders(b"content-length", [str(size).encode()])
        if size > HANDOFF_BYTES:
            self.spool_token = secrets.token_hex(16)
            spooled[self.spool_token] = self.body_file()
            self.content = io.BytesIO()
            self.requestHeaders.setRawHeaders(SPOOLED_HEADER, [self.spool_token.encode()])
        super().requestReceived(command, path, version)

    def release_spooled(self) -> None:
        """Close a handed-over body that its application never took."""
        if self.spool_token is not None:
            body = spooled.pop(self.spool_token, None)
            if body is not None:
                body.close()

    def finish(self) -> None:
        self.release_spooled()
        super().finish()

    def connectionLost(self, reason: Any) -> None:
        self.release_spooled()
        if self.linger is not None and self.linger.active():
            self.linger.cancel()
        super().connectionLost(reason)


class SpooledReceive:
    """`receive` for an application whose body was handed over as a file: the file's pieces
    first (after daphne's own empty body message), then whatever daphne sends next."""

    def __init__(self, body: IO[bytes], receive: Receive) -> None:
        self.body: IO[bytes] | None = body
        self.receive = receive
        self.started = False

    async def __call__(self) -> Message:
        if self.body is None:
            return await self.receive()
        if not self.started:
            self.started = True
            message = await self.receive()
            if message["type"] != "http.request":
                self.body = None
                return message
        chunk = await asyncio.to_thread(self.body.read, READ_CHUNK)
        if chunk:
            return {"type": "http.request", "body": chunk, "more_body": True}
        self.body = None
        return {"type": "http.request", "body": b"", "more_body": False}


def with_spooled_bodies(application: AsgiApp) -> AsgiApp:
    """The ASGI application, given the bodies `BoundedBodyRequest` handed over as files."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await application(scope, receive, send)
            return
        token = next((v for k, v in scope["headers"] if k == SPOOLED_HEADER), None)
        if token is None:
            await application(scope, receive, send)
            return
        scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k != SPOOLED_HEADER]}
        body = spooled.pop(token.decode(), None)
        if body is None:  # the client left before the application started
            await application(scope, receive, send)
            return
        try:
            body.seek(0)
            await application(scope, SpooledReceive(body, receive), send)
        finally:
            body.close()

    return app


def receive_bodies_within_limits() -> None:
    http_protocol.WebRequest = BoundedBodyRequest

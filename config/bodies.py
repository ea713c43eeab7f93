"""How large a request body may be, by route, and the answer to one that is larger.

`config.server` asks `body_limit` as soon as a request's headers have arrived and counts the
body against it as it arrives, so a body over its route's limit is refused before the server
keeps it (a declared `Content-Length` is refused at once, a chunked body at the byte that
crosses the limit). Limits follow what each route accepts:

- a request that carries no credentials (no key for the engine, no session cookie elsewhere),
  and the sign-in pages whatever they carry: `ANONYMOUS_LIMIT`, a form's worth;
- the engine's file uploads: THREADLINE_MAX_UPLOAD_BYTES, plus the multipart framing;
- the engine's JSON bodies: `API_LIMIT` (10 MB: the largest thread a create can hold, 32
  messages of 256,000 characters, is under it);
- the chat's send form: THREADLINE_CHAT_MAX_UPLOAD_BYTES times THREADLINE_CHAT_MAX_FILES, plus
  the message;
- the assistant admin's forms: THREADLINE_KNOWLEDGE_MAX_UPLOAD_BYTES times
  THREADLINE_KNOWLEDGE_MAX_FILES, plus the form;
- any other form: Django's DATA_UPLOAD_MAX_MEMORY_SIZE, which Django enforces on form data.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from html import escape

from django.conf import settings

KB = 1024
MB = 1024 * KB
ANONYMOUS_LIMIT = 64 * KB
API_LIMIT = 10 * MB
# Multipart framing and a form's other fields around its files.
FORM_ALLOWANCE = 64 * KB

ANONYMOUS_PATHS = ("/accounts/login/", "/accounts/signup/", "/accounts/logout/", "/admin/login/")
CHAT_SEND = re.compile(r"^/c/(new|\d+)/send$")
ASSISTANT_ADMIN = "/admin/chat/assistantprofile/"


@dataclass(frozen=True)
class BodyLimit:
    bytes: int
    # What the route accepts, as the refusal ends its sentence.
    accepts: str
    code: str = "request_too_large"
    param: str | None = None


def most(what: str, size: int) -> str:
    return f"the most this server accepts for {what} is {human_size(size)} ({size:,} bytes)"


def api_prefixes() -> tuple[str, ...]:
    return tuple(f"/{prefix}" for prefix in settings.ENGINE_URL_PREFIXES)


def is_api_path(path: str) -> bool:
    return path.startswith(api_prefixes())


def body_limit(method: str, path: str, has_key: bool, has_session: bool) -> BodyLimit:
    """The largest body this request may carry; `has_key` and `has_session` say whether it
    carries an engine key header and a session cookie (present, not yet checked)."""
    if is_api_path(path):
        if not has_key:
            return BodyLimit(ANONYMOUS_LIMIT, most("a request without an API key", ANONYMOUS_LIMIT))
        route = path.split("/", 2)[2]
        if method == "POST" and route == "files":
            return BodyLimit(
                settings.MAX_UPLOAD_BYTES + FORM_ALLOWANCE,
                f"the largest upload this server accepts is {settings.MAX_UPLOAD_BYTES:,} bytes "
                "(THREADLINE_MAX_UPLOAD_BYTES)",
                code="file_too_large",
                param="file",
            )
        return BodyLimit(API_LIMIT, most("a JSON request body", API_LIMIT))
    if path in ANONYMOUS_PATHS or not has_session:
        return BodyLimit(
            ANONYMOUS_LIMIT, most("a request from someone not signed in", ANONYMOUS_LIMIT)
        )
    if CHAT_SEND.match(path):
        files = settings.CHAT_MAX_UPLOAD_BYTES * settings.CHAT_MAX_FILES
        # A character is at most four bytes in UTF-8.
        text = 4 * settings.CHAT_MAX_MESSAGE_CHARS
        return BodyLimit(
            files + text + FORM_ALLOWANCE,
            f"a message takes at most {settings.CHAT_MAX_FILES} attachments of "
            f"{human_size(settings.CHAT_MAX_UPLOAD_BYTES)} each",
        )
    if path.startswith(ASSISTANT_ADMIN):
        files = settings.KNOWLEDGE_MAX_UPLOAD_BYTES * settings.KNOWLEDGE_MAX_FILES
        return BodyLimit(
            files + settings.DATA_UPLOAD_MAX_MEMORY_SIZE,
            f"an assistant takes at most {settings.KNOWLEDGE_MAX_FILES} knowledge files of "
            f"{human_size(settings.KNOWLEDGE_MAX_UPLOAD_BYTES)} at once",
        )
    return BodyLimit(
        settings.DATA_UPLOAD_MAX_MEMORY_SIZE, most("a form", settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
    )


def human_size(size: int) -> str:
    for unit, scale in (("GB", 1024**3), ("MB", MB), ("KB", KB)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} bytes"


@dataclass(frozen=True)
class Refusal:
    content_type: bytes
    body: bytes


def refusal(path: str, limit: BodyLimit, size: int) -> Refusal:
    """A 413's body for a request of `size` bytes or more: OpenAI's error envelope for the
    engine, a short page elsewhere."""
    message = f"The request is too large: {size:,} bytes or more, and {limit.accepts}."
    if is_api_path(path):
        error = {
            "message": message,
            "type": "invalid_request_error",
            "param": limit.param,
            "code": limit.code,
        }
        return Refusal(b"application/json", json.dumps({"error": error}).encode())
    page = (
        "<!doctype html><html lang=en><meta charset=utf-8><title>Too large</title>"
        f"<h1>Too large</h1><p>{escape(message)}</p>"
        "<p>Go back and send less at once.</p></html>"
    )
    return Refusal(b"text/html; charset=utf-8", page.encode())

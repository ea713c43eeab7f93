"""Every response carries an `x-request-id`, as OpenAI's do: a client can quote it, and the
server's log of a failed request names it (`scope["request_id"]`, `request.scope` in Django)."""

from __future__ import annotations

import secrets

from config.asgi_types import AsgiApp, Message, Receive, Scope, Send

HEADER = b"x-request-id"


def new_request_id() -> str:
    return "req_" + secrets.token_hex(16)


def with_request_ids(application: AsgiApp) -> AsgiApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await application(scope, receive, send)
            return
        request_id = new_request_id()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != HEADER]
                message = {**message, "headers": [*headers, (HEADER, request_id.encode())]}
            await send(message)

        await application({**scope, "request_id": request_id}, receive, send_with_id)

    return app

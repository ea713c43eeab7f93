"""The HTTP client MCP calls go through, held to the webhooks' address rules.

The `mcp` SDK speaks HTTP through an httpx2 client we hand it. Its transport here connects
through a network backend that resolves the host once, checks every address it resolves to with
`webhook.refusal` (the same rules, the same THREADLINE_WEBHOOK_ALLOWED_HOSTS), and connects to
a checked address; TLS still verifies the host's name. The SDK follows no redirect off the
server's origin, and this client follows none itself.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import AsyncIterator, Iterable
from typing import Any

import anyio
import httpcore2
import httpx2

from chat.tools import webhook


class Refused(httpx2.ConnectError):
    """The host resolves to an address the rules keep us from; the message says which."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


async def checked_addresses(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, once each is allowed; Refused if any is not."""
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        try:
            found = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as error:
            raise httpx2.ConnectError(f"{host} could not be resolved ({error}).") from None
        addresses = list(dict.fromkeys(str(entry[4][0]) for entry in found))
    else:
        addresses = [str(literal)]
    for address in addresses:
        problem = webhook.refusal(ipaddress.ip_address(address.split("%")[0]), host)
        if problem is not None:
            raise Refused(problem)
    return addresses


class TooLarge(httpx2.ReadError):
    """An answer's body went past the limit; reading stopped there."""


class CheckedBackend(httpcore2.AsyncNetworkBackend):
    def __init__(self) -> None:
        self.inner = httpcore2.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        last: Exception | None = None
        for address in await checked_addresses(host, port):
            try:
                return await self.inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as error:
                last = error
        raise httpx2.ConnectError(f"{host} could not be reached ({last}).")

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore2.AsyncNetworkStream:
        raise Refused("MCP servers are reached over TCP only.")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class CheckedTransport(httpx2.AsyncBaseTransport):
    """httpx2's request and response over an httpcore2 pool on the checked backend."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.pool = httpcore2.AsyncConnectionPool(
            ssl_context=httpx2.create_ssl_context(), network_backend=CheckedBackend()
        )

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        assert isinstance(request.stream, httpx2.AsyncByteStream)
        core = httpcore2.Request(
            method=request.method,
            url=httpcore2.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        try:
            answer = await self.pool.handle_async_request(core)
        except httpcore2.TimeoutException as error:
            raise httpx2.TimeoutException(str(error), request=request) from None
        except httpcore2.NetworkError as error:
            raise httpx2.NetworkError(str(error), request=request) from None
        except httpcore2.ProtocolError as error:
            raise httpx2.RemoteProtocolError(str(error), request=request) from None
        return httpx2.Response(
            status_code=answer.status,
            headers=answer.headers,
            stream=Body(answer, self.limit),
            extensions=answer.extensions,
        )

    async def aclose(self) -> None:
        await self.pool.aclose()


class Body(httpx2.AsyncByteStream):
    """An answer's body, read no further than the limit."""

    def __init__(self, answer: httpcore2.Response, limit: int) -> None:
        self.answer = answer
        self.limit = limit

    async def __aiter__(self) -> AsyncIterator[bytes]:
        size = 0
        try:
            async for part in self.answer.aiter_stream():
                size += len(part)
                if size > self.limit:
                    raise TooLarge(f"more than {self.limit:,} bytes")
                yield part
        except httpcore2.TimeoutException as error:
            raise httpx2.ReadTimeout(str(error)) from None
        except (httpcore2.NetworkError, httpcore2.ProtocolError) as error:
            raise httpx2.ReadError(str(error)) from None

    async def aclose(self) -> None:
        await self.answer.aclose()


def client(
    headers: dict[str, str], timeout: float, read_timeout: float, limit: int
) -> httpx2.AsyncClient:
    """An HTTP client for one MCP connection: `read_timeout` bounds a quiet event stream, and
    `limit` the bytes of any one answer."""
    return httpx2.AsyncClient(
        transport=CheckedTransport(limit),
        headers=headers,
        timeout=httpx2.Timeout(timeout, read=read_timeout),
        follow_redirects=False,
        trust_env=False,
    )

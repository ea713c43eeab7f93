"""Webhooks: a call POSTed as signed JSON to a URL the admin set; the answer is the output.

Outbound requests are checked where they connect, not only where the URL is read: the host is
resolved once, every address it resolves to is checked, and the connection goes to those checked
addresses (aiohttp connects to what its resolver returns, and still sends the host's name for the
Host header and TLS). Link-local and metadata addresses are never reached; private, loopback and
other internal ones only for hosts in `THREADLINE_WEBHOOK_ALLOWED_HOSTS`. Redirects are not
followed, and no answer is read past `THREADLINE_FUNCTION_MAX_OUTPUT_BYTES`.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from django.conf import settings

SIGNATURE_HEADER = "X-Threadline-Signature"
TIMESTAMP_HEADER = "X-Threadline-Timestamp"
# Addresses no webhook reaches, allowlisted or not: cloud metadata services live here.
NEVER = [
    ipaddress.ip_network("169.254.0.0/16"),  # link-local, with 169.254.169.254
    ipaddress.ip_network("fe80::/10"),
    ipaddress.ip_network("fd00:ec2::254/128"),  # AWS metadata over IPv6
    ipaddress.ip_network("100.100.100.200/32"),  # Alibaba Cloud metadata
]
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class WebhookError(Exception):
    """The webhook gave no usable answer; the message says why, in words."""


@dataclass(frozen=True)
class Request:
    url: str
    secret: str
    headers: dict[str, str]
    timeout: float
    payload: dict[str, Any]


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 over `<timestamp>.<body>` (README: "Webhooks")."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def refusal(address: Address, host: str) -> str | None:
    """Why the address may not be reached for `host`; None when it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address in network for network in NEVER) or address.is_link_local:
        return f"{host} resolves to {address}, a link-local or metadata address, never reached."
    internal = (
        address.is_private
        or address.is_loopback
        or address.is_reserved
        or address.is_multicast
        or address.is_unspecified
        or not address.is_global
    )
    if internal and host.lower() not in allowed_hosts():
        return (
            f"{host} resolves to {address}, an internal address; list the host in "
            "THREADLINE_WEBHOOK_ALLOWED_HOSTS to allow it."
        )
    return None


def allowed_hosts() -> set[str]:
    return {host.lower().strip("[]") for host in settings.WEBHOOK_ALLOWED_HOSTS}


class CheckedResolver(AbstractResolver):
    """Resolves once and refuses the whole host if any of its addresses may not be reached."""

    def __init__(self) -> None:
        self.inner = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self.inner.resolve(host, port, family)
        for result in results:
            problem = refusal(ipaddress.ip_address(result["host"]), host)
            if problem is not None:
                raise WebhookError(problem)
        return results

    async def close(self) -> None:
        await self.inner.close()


def check_url(url: str) -> str:
    """The URL's host, once the URL is one a webhook may have; WebhookError otherwise.
    Addresses written in the URL are checked here (aiohttp asks no resolver about them)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookError("The webhook URL must be an http or https URL with a host.")
    if parts.username or parts.password:
        raise WebhookError("The webhook URL must not hold a user name or password.")
    host = parts.hostname
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    problem = refusal(address, host)
    if problem is not None:
        raise WebhookError(problem)
    return host


async def post(request: Request) -> str:
    """POST the call; the answer's body as text. WebhookError for any answer that is not one."""
    check_url(request.url)
    body = json.dumps(request.payload, ensure_ascii=False).encode()
    timestamp = str(int(time.time()))
    headers = {
        **request.headers,
        "Content-Type": "application/json",
        "User-Agent": "Threadline-Webhook",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(request.secret, timestamp, body),
    }
    limit = settings.FUNCTION_MAX_OUTPUT_BYTES
    connector = aiohttp.TCPConnector(resolver=CheckedResolver(), use_dns_cache=False)
    timeout = aiohttp.ClientTimeout(total=request.timeout)
    try:
        async with (
            aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False) as session,
            session.post(request.url, data=body, headers=headers, allow_redirects=False) as answer,
        ):
            if 300 <= answer.status < 400:
                where = answer.headers.get("Location", "elsewhere")
                raise WebhookError(
                    f"The webhook answered with a redirect to {where[:200]}, which is not followed."
                )
            if answer.content_length is not None and answer.content_length > limit:
                raise WebhookError(too_large(limit))
            data = await read_capped(answer, limit)
            text = data.decode(answer.get_encoding() if answer.charset else "utf-8", "replace")
            if not 200 <= answer.status < 300:
                detail = " ".join(text.split())[:300]
                raise WebhookError(
                    f"The webhook answered {answer.status} {answer.reason or ''}".rstrip()
                    + (f": {detail}" if detail else ".")
                )
            return text
    except TimeoutError:
        raise WebhookError(
            f"The webhook did not answer within {request.timeout:g} seconds."
        ) from None
    except aiohttp.ClientConnectorError as error:
        # The resolver's refusal arrives wrapped in the connector's error.
        cause = error.__cause__ or error.os_error
        if isinstance(cause, WebhookError):
            raise cause from None
        raise WebhookError(f"The webhook could not be reached: {error.os_error}.") from None
    except aiohttp.ClientError as error:
        raise WebhookError(f"The webhook could not be reached: {error}.") from None


def too_large(limit: int) -> str:
    return f"The webhook's answer is larger than {limit:,} bytes, the limit; none of it was used."


async def read_capped(answer: aiohttp.ClientResponse, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in answer.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise WebhookError(too_large(limit))
        chunks.append(chunk)
    return b"".join(chunks)

"""Where a webhook may connect, and how it signs: checked without sending anything anywhere."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import time
from typing import Any
from urllib.parse import urlsplit

import pytest

from chat.tools import webhook
from tests.webhook_receiver import verified


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://100.100.100.200/",
    ],
)
def test_metadata_and_link_local_addresses_are_never_reached(settings: Any, url: str) -> None:
    settings.WEBHOOK_ALLOWED_HOSTS = ["169.254.169.254", "fe80::1", "100.100.100.200"]
    with pytest.raises(webhook.WebhookError, match="link-local or metadata"):
        webhook.check_url(url)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9/", "http://10.1.2.3/", "http://192.168.0.5/", "http://[::1]/"]
)
def test_internal_addresses_need_the_allowlist(settings: Any, url: str) -> None:
    settings.WEBHOOK_ALLOWED_HOSTS = []
    with pytest.raises(webhook.WebhookError, match="THREADLINE_WEBHOOK_ALLOWED_HOSTS"):
        webhook.check_url(url)
    settings.WEBHOOK_ALLOWED_HOSTS = [urlsplit(url).hostname]
    assert webhook.check_url(url)


def test_a_name_is_checked_at_every_address_it_resolves_to(settings: Any) -> None:
    settings.WEBHOOK_ALLOWED_HOSTS = []

    async def resolve() -> None:
        resolver = webhook.CheckedResolver()
        try:
            await resolver.resolve("localhost", 80)
        finally:
            await resolver.close()

    with pytest.raises(webhook.WebhookError, match=r"localhost resolves to 127\.0\.0\.1"):
        asyncio.run(resolve())


def test_public_addresses_pass(settings: Any) -> None:
    settings.WEBHOOK_ALLOWED_HOSTS = []
    assert webhook.refusal(ipaddress.ip_address("93.184.216.34"), "example.com") is None


@pytest.mark.parametrize(
    "url", ["ftp://hooks.example.com/", "http://user:pw@hooks.example.com/", "http:///x"]
)
def test_only_plain_http_urls_with_a_host(url: str) -> None:
    with pytest.raises(webhook.WebhookError):
        webhook.check_url(url)


def test_the_signature_is_what_the_readme_tells_receivers_to_check() -> None:
    body, timestamp = b'{"function": "f"}', "1700000000"
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert webhook.sign("s3cret", timestamp, body) == f"sha256={expected}"
    now = str(int(time.time()))
    assert verified("s3cret", now, body, webhook.sign("s3cret", now, body))
    assert not verified("s3cret", now, body + b" ", webhook.sign("s3cret", now, body))
    assert not verified("s3cret", timestamp, body, webhook.sign("s3cret", timestamp, body))  # old

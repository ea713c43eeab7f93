"""Sign-in throttling, on the chat and the admin alike: slower after a few failures, then locked
per account and per address, with the page saying until when; counts shared by every process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx2
import pytest

from tests.chat.conftest import PASSWORD, text_of
from tests.servers import ThreadlineServer, shell

LIMIT = 4
PEOPLE = f"""
import json
from django.contrib.auth.models import User
User.objects.create_user("victim", password={PASSWORD!r})
User.objects.create_user("bystander", password={PASSWORD!r})
User.objects.create_superuser("admin", password={PASSWORD!r})
print("null")
"""


@dataclass
class Pair:
    a: ThreadlineServer
    b: ThreadlineServer


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    """Two processes on one database, behind one proxy (which says who connected)."""
    env = {
        "THREADLINE_SIGNIN_FAILURES": str(LIMIT),
        "THREADLINE_SIGNIN_LOCK_MINUTES": "15",
        "THREADLINE_PROXIES": "1",
    }
    a = ThreadlineServer(env=env, name="a")
    shared_db = {"DATABASE_URL": a.env["DATABASE_URL"]} if "DATABASE_URL" in a.env else {}
    b = ThreadlineServer(env={**env, **shared_db}, data_dir=a.data_dir, name="b")
    a.migrate()
    a.manage("collectstatic", "--noinput", "-v0")
    b.migrated = True
    shell(a, PEOPLE)
    try:
        yield Pair(a.start(), b.start())
    finally:
        a.stop()
        b.stop()


def sign_in(
    server: ThreadlineServer,
    username: str,
    password: str,
    address: str,
    path: str = "/accounts/login/",
) -> httpx2.Response:
    """One sign-in from `address` (as the proxy reports it), in a browser of its own."""
    headers = {"X-Forwarded-For": address}
    with httpx2.Client(base_url=server.url, headers=headers, timeout=30) as http:
        http.get(path)
        return http.post(
            path,
            data={
                "username": username,
                "password": password,
                "csrfmiddlewaretoken": http.cookies["csrftoken"],
                "next": "/admin/" if path.startswith("/admin") else "/",
            },
        )


def test_failures_on_any_process_slow_then_lock_the_account(pair: Pair) -> None:
    took = []
    for attempt in range(1, LIMIT):
        server = pair.a if attempt % 2 else pair.b
        started = time.monotonic()
        refused = sign_in(server, "victim", "wrong password", f"203.0.113.{attempt}")
        took.append(time.monotonic() - started)
        assert refused.status_code == 200
        assert "Please enter a correct username and password" in refused.text
    assert took[-1] >= 1.0, took  # the third failure is held a second

    locked = sign_in(pair.b, "victim", "wrong password", "203.0.113.50")
    assert locked.status_code == 429
    assert int(locked.headers["Retry-After"]) > 14 * 60
    assert "Try again in 15 minutes" in text_of(locked.text)

    # The right password, from yet another address, on either process: still locked.
    for server in (pair.a, pair.b):
        right = sign_in(server, "victim", PASSWORD, "203.0.113.60")
        assert right.status_code == 429, right.text
        assert "sessionid" not in right.cookies
    # Someone else from those addresses is not held up.
    assert sign_in(pair.a, "bystander", PASSWORD, "203.0.113.1").status_code == 302


def test_failures_from_one_address_lock_it_on_the_admin_too(pair: Pair) -> None:
    address = "198.51.100.7"
    for i in range(LIMIT - 1):
        refused = sign_in(pair.a, f"guess{i}", "wrong password", address, "/admin/login/")
        assert refused.status_code == 200
    locked = sign_in(pair.b, "guess-last", "wrong password", address, "/admin/login/")
    assert locked.status_code == 429 and "Sign-in paused" in locked.text
    assert 'href="/admin/login/"' in locked.text

    # The admin's right password from that address is refused; from another, it signs in.
    assert sign_in(pair.a, "admin", PASSWORD, address, "/admin/login/").status_code == 429
    assert sign_in(pair.a, "admin", PASSWORD, address).status_code == 429  # the chat's too
    elsewhere = sign_in(pair.b, "admin", PASSWORD, "198.51.100.8", "/admin/login/")
    assert elsewhere.status_code == 302 and elsewhere.headers["location"] == "/admin/"

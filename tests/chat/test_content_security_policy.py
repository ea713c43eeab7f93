"""Every page sends a strict Content-Security-Policy, and every browser test fails on a breach
of it (tests/chat/conftest.py, `Browser`)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.chat.conftest import Browser, ChatClient, ChatServer, Scripted
from tests.fake_model import Reply

POLICY = {
    "default-src": "'none'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "connect-src": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
    "base-uri": "'none'",
}


def policy_of(response: Any) -> dict[str, str]:
    header = response.headers.get("content-security-policy", "")
    directives = (part.strip().split(" ", 1) for part in header.split(";") if part.strip())
    return {name: value for name, value in directives}


@pytest.mark.parametrize(
    "path",
    ["/accounts/login/", "/admin/login/", "/no-such-page/"],
)
def test_anonymous_pages_send_the_policy(chat_server: ChatServer, path: str) -> None:
    client = ChatClient(chat_server.url)
    try:
        policy = policy_of(client.get(path))
    finally:
        client.close()
    for name, value in POLICY.items():
        assert policy.get(name) == value, (path, name, policy)


def test_chat_and_admin_pages_send_the_policy(
    owner: ChatClient, chat_server: ChatServer, scripted: Scripted
) -> None:
    scripted.script(Reply("| left | right |\n|:--|--:|\n| a | b |"))
    sent = owner.send("A table, please", assistant=scripted.profile_id)
    assert sent.events_url and sent.conversation_id
    owner.events(sent.events_url)
    page = owner.get(f"/c/{sent.conversation_id}/")
    assert policy_of(page) | POLICY == policy_of(page)
    assert 'class="align-right"' in page.text and "style=" not in page.text.split("<body")[1]
    admin = ChatClient(chat_server.url)
    try:
        admin.login("admin")
        for path in ("/admin/", "/admin/chat/assistantprofile/add/"):
            assert policy_of(admin.get(path)) | POLICY == policy_of(admin.get(path)), path
    finally:
        admin.close()


@pytest.mark.browser
def test_a_breach_of_the_policy_fails_the_browser_test(browser: Browser) -> None:
    page = browser.page
    page.goto("/")
    # What a slipped-through style attribute would do; the policy refuses it.
    page.evaluate("document.body.setAttribute('style', 'background: red')")
    deadline = time.monotonic() + 5
    while not browser.csp_violations and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert any("style" in violation for violation in browser.csp_violations)
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") != "rgb(255, 0, 0)"
    browser.csp_violations.clear()  # seen: this test is about the check itself

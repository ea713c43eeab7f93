"""axe-core in real Chromium: no serious or critical violation on the chat, the sign-in page and
the admin, at a laptop's and a phone's size, in the light and the dark scheme. Keyboard: Esc
closes what is open and focus goes back where it was."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chat.conftest import PASSWORD, Browser, ChatServer, Scripted
from tests.chat.test_browser import start_chat, wait_until_idle
from tests.fake_model import Reply

pytestmark = [pytest.mark.browser, pytest.mark.axe]
SIZES_AND_SCHEMES = pytest.mark.parametrize(
    ("screen", "scheme"), [("desktop", "light"), ("phone", "light"), ("desktop", "dark")]
)
RICH_ANSWER = (
    "## Steps\n\n1. Rinse **well**\n2. Simmer\n\n```python\nprint('done')  # ok\n```\n\n"
    "| a | b |\n|---|---|\n| 1 | 2 |\n\n> A quote, and $x^2$ maths.\n\n[A link](https://example.com)"
)


@pytest.fixture
def visitor(
    chromium: Any, chat_server: ChatServer, request: pytest.FixtureRequest, screen: str, scheme: str
) -> Any:
    """A browser that is not signed in yet."""
    session = Browser(chromium, chat_server.url, request.node.name, screen, scheme)
    yield session
    session.close()
    assert session.errors == []


@SIZES_AND_SCHEMES
def test_sign_in_page_has_no_serious_violations(visitor: Browser) -> None:
    visitor.page.goto("/accounts/login/")
    assert visitor.violations() == []
    visitor.shot("sign-in")


@SIZES_AND_SCHEMES
def test_chat_pages_have_no_serious_violations(
    visitor: Browser, scripted: Scripted, tmp_path: Any
) -> None:
    visitor.login("owner")
    page = visitor.page
    assert visitor.violations() == [], "the new-chat page"
    scripted.script(Reply(RICH_ANSWER))
    start_chat(visitor, scripted, "Make it rich")
    wait_until_idle(visitor)
    page.get_by_text("done").first.wait_for()
    assert visitor.violations() == [], "a conversation"
    visitor.shot("conversation")
    # An error in the message box, and the rename box open.
    page.get_by_role("button", name="Send").click()
    page.locator("#composer .errors p").first.wait_for()
    if visitor.phone:
        page.get_by_role("button", name="Threads").click()
        assert visitor.violations() == [], "the drawer"
        page.keyboard.press("Escape")
    page.get_by_text("Rename", exact=True).click()
    assert visitor.violations() == [], "with an error and the rename box"
    visitor.shot("rename-and-error")


@pytest.mark.parametrize(("screen", "scheme"), [("desktop", "light"), ("phone", "light")])
def test_admin_pages_have_no_serious_violations(visitor: Browser) -> None:
    page = visitor.page
    page.goto("/admin/login/")
    assert "Threadline administration" in page.content()
    assert visitor.violations() == [], "admin sign-in"
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Threadline administration").wait_for()
    assert page.title().endswith("Threadline administration")
    assert visitor.violations() == [], "admin home"
    for path in ("/admin/chat/assistantprofile/", "/admin/chat/assistantprofile/add/"):
        page.goto(path)
        assert visitor.violations() == [], path
    visitor.shot("assistant-form")


def test_escape_closes_the_rename_box_and_focus_returns(
    browser: Browser, scripted: Scripted
) -> None:
    scripted.script(Reply("Fine."))
    start_chat(browser, scripted, "Esc please")
    wait_until_idle(browser)
    page = browser.page
    page.get_by_text("Rename", exact=True).click()
    title = page.get_by_label("Title")
    title.focus()
    page.keyboard.press("Escape")
    title.wait_for(state="hidden")
    assert page.evaluate("document.activeElement.textContent") == "Rename"

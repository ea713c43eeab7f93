"""MCP tools in real Chromium: an image a tool answered with, the form of a question the server
asks mid-call, the settings page where a person keeps their own key, and the server's admin page.
Screenshots at desktop and phone sizes go to test-artifacts/."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.chat.conftest import Browser, ChatServer, Scripted
from tests.chat.mcp_setup import connect, server_name
from tests.fake_model import Reply, ToolCall
from tests.mcp_server import McpTestServer

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def mcp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[McpTestServer]:
    server = McpTestServer(tmp_path_factory.mktemp("mcp-browser")).start()
    yield server
    server.stop()


def shots(browser: Browser, name: str, focus: str | None = None) -> None:
    """The page as it is, at desktop then phone size (scrolled to `focus` on the phone)."""
    page = browser.page
    page.set_viewport_size(DESKTOP)
    if focus:
        page.locator(focus).last.scroll_into_view_if_needed()
    browser.shot(f"{name}-desktop")
    page.set_viewport_size(PHONE)
    if focus:
        page.locator(focus).last.scroll_into_view_if_needed()
    browser.shot(f"{name}-phone")
    page.set_viewport_size(DESKTOP)


def wait_until_idle(browser: Browser) -> None:
    browser.page.wait_for_function("() => !document.querySelector('[sse-connect]')", timeout=30_000)


def send(browser: Browser, text: str) -> None:
    page = browser.page
    page.get_by_role("textbox", name="Message").fill(text)
    page.get_by_role("button", name="Send").click()


def test_an_image_and_a_question_from_an_mcp_server_in_the_chat(
    browser: Browser, scripted: Scripted, chat_server: ChatServer, mcp_server: McpTestServer
) -> None:
    names = connect(chat_server.server, scripted.profile_id, mcp_server.url, ["chart", "order"])[
        "functions"
    ]
    page = browser.page
    page.set_viewport_size(DESKTOP)
    scripted.script(
        Reply(tool_calls=[ToolCall(names["chart"], "{}")]),
        Reply("Sales rose 12% this quarter; the chart is above."),
    )
    page.goto("/")
    page.get_by_label("Assistant").select_option(str(scripted.profile_id))
    send(browser, "Show me this quarter's sales")
    page.wait_for_url(re.compile(r"/c/\d+/$"))
    wait_until_idle(browser)
    image = page.locator(".call-images img")
    image.wait_for()
    assert image.evaluate("img => img.complete && img.naturalWidth") == 240
    assert page.get_by_text(f"Ran {names['chart']}").is_visible()
    shots(browser, "mcp-image", ".call-images")

    scripted.script(
        Reply(tool_calls=[ToolCall(names["order"], json.dumps({"item": "pens"}))]),
        Reply("Your pens are ordered."),
    )
    send(browser, "Order pens")
    page.get_by_role("button", name="Send answer").wait_for()
    assert page.get_by_text("How many boxes of pens should I order?").is_visible()
    assert page.get_by_text(f"{names['order']} asks you").is_visible()
    page.get_by_role("spinbutton", name="How many").fill("3")
    page.get_by_role("radio", name="red").check()
    page.get_by_role("checkbox", name="Gift wrap").check()
    shots(browser, "mcp-question", ".tool-call.asking")
    page.get_by_role("button", name="Send answer").click()
    wait_until_idle(browser)
    assert page.locator("#messages").get_by_text("Your pens are ordered.").is_visible()
    assert page.get_by_text(f"Ran {names['order']}").last.is_visible()
    (logged,) = [c for c in mcp_server.calls("order") if c["item"] == "pens"]
    assert logged["data"] == {"quantity": 3, "colour": "red", "gift_wrap": True}
    shots(browser, "mcp-question-answered", ".tool-call")


def test_a_person_keeps_their_own_key_on_the_settings_page(
    browser: Browser, scripted: Scripted, chat_server: ChatServer, mcp_server: McpTestServer
) -> None:
    name = server_name()
    connect(
        chat_server.server,
        scripted.profile_id,
        mcp_server.url,
        ["whoami"],
        name=name,
        auth="per_user",
    )
    page = browser.page
    page.set_viewport_size(DESKTOP)
    page.goto("/")
    page.get_by_role("link", name=re.compile("Settings")).click()
    key = page.get_by_label(f"Key for {name}")
    key.fill("my-own-key-42")
    page.get_by_role("button", name="Save key").last.click()
    page.get_by_text("Your key was saved.").wait_for()
    assert page.get_by_label(f"Key for {name}").input_value() == ""
    assert "my-own-key-42" not in page.content()
    shots(browser, "mcp-settings")


def test_the_mcp_server_admin_page(
    chromium: Any, chat_server: ChatServer, scripted: Scripted, mcp_server: McpTestServer
) -> None:
    setup = connect(chat_server.server, scripted.profile_id, mcp_server.url, ["add", "order"])
    admin = Browser(chromium, chat_server.url, "test_the_mcp_server_admin_page")
    try:
        admin.login("admin")
        page = admin.page
        page.set_viewport_size(DESKTOP)
        page.goto(f"/admin/chat/mcpserver/{setup['id']}/change/")
        assert page.get_by_text("Order office supplies; asks the person how many.").is_visible()
        page.get_by_role("button", name="Refresh tools").click()
        page.get_by_text(re.compile(r"lists 8 tools")).wait_for()
        assert page.get_by_role("checkbox", name="order").is_checked()
        shots(admin, "mcp-admin", ".mcp-tools")
        page.goto("/admin/chat/mcpserver/")
        shots(admin, "mcp-admin-list")
    finally:
        admin.close()

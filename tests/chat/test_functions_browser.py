"""Function calls in real Chromium: the quiz answered, approval allowed and denied, a server
result shown, a reload while a form waits. Screenshots at desktop and phone sizes go to
test-artifacts/."""

from __future__ import annotations

import json
import re

import pytest

from tests.chat.conftest import Browser, ChatServer, Scripted
from tests.chat.functions_setup import QUIZ, QUIZ_ARGUMENTS, give_functions, unique
from tests.fake_model import Reply, ToolCall

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def start_chat(browser: Browser, scripted: Scripted, text: str) -> None:
    page = browser.page
    page.set_viewport_size(DESKTOP)
    page.goto("/")
    page.get_by_label("Assistant").select_option(str(scripted.profile_id))
    page.get_by_role("textbox", name="Message").fill(text)
    page.get_by_role("button", name="Send").click()
    page.wait_for_url(re.compile(r"/c/\d+/$"))


def wait_until_idle(browser: Browser, timeout: float = 20_000) -> None:
    browser.page.wait_for_function(
        "() => !document.querySelector('[sse-connect]')", timeout=timeout
    )


def shots(browser: Browser, name: str) -> None:
    """The page as it is, at desktop then phone size."""
    page = browser.page
    page.set_viewport_size(DESKTOP)
    browser.shot(f"{name}-desktop")
    page.set_viewport_size(PHONE)
    page.locator(".tool-call").last.scroll_into_view_if_needed()
    browser.shot(f"{name}-phone")
    page.set_viewport_size(DESKTOP)


def quiz(browser: Browser, scripted: Scripted, chat_server: ChatServer, reply: str) -> None:
    give_functions(chat_server.server, scripted.profile_id, raw=[QUIZ])
    scripted.script(
        Reply(tool_calls=[ToolCall("display_quiz", json.dumps(QUIZ_ARGUMENTS))]), Reply(reply)
    )
    start_chat(browser, scripted, "Quiz me on fractions")
    browser.page.get_by_role("button", name="Send answer").wait_for()


def answer_quiz(browser: Browser) -> None:
    page = browser.page
    page.get_by_role("radio", name="3/4").check()
    page.get_by_role("textbox", name="2. Explain why.").fill("A half is two quarters.")
    page.get_by_role("button", name="Send answer").click()


def test_the_quiz_is_answered_in_the_page_and_the_answer_goes_on(
    browser: Browser, scripted: Scripted, chat_server: ChatServer
) -> None:
    quiz(browser, scripted, chat_server, "Right: 1/2 + 1/4 = 3/4.")
    page = browser.page
    assert page.get_by_role("group", name="1. What is 1/2 + 1/4?").is_visible()
    assert page.locator("#messages").get_by_text("Time left to answer").is_visible()
    shots(browser, "quiz")
    answer_quiz(browser)
    wait_until_idle(browser)
    assert page.locator("#messages").get_by_text("Right: 1/2 + 1/4 = 3/4.").is_visible()
    assert page.locator("#messages").get_by_text("You answered (display_quiz)").is_visible()
    shots(browser, "quiz-answered")


def test_a_reload_while_the_form_waits_shows_it_again(
    browser: Browser, scripted: Scripted, chat_server: ChatServer
) -> None:
    quiz(browser, scripted, chat_server, "Answered after a reload.")
    browser.page.reload()
    browser.page.get_by_role("button", name="Send answer").wait_for()
    answer_quiz(browser)
    wait_until_idle(browser)
    assert browser.page.locator("#messages").get_by_text("Answered after a reload.").is_visible()


@pytest.mark.parametrize("choice", ["Allow", "Deny"])
def test_approval_is_allowed_or_denied_with_its_buttons(
    choice: str, browser: Browser, scripted: Scripted, chat_server: ChatServer
) -> None:
    name = unique("book_table")
    give_functions(
        chat_server.server,
        scripted.profile_id,
        registry=[{"name": "local_time", "kind": "python", "approval": True}],
    )
    scripted.script(
        Reply(tool_calls=[ToolCall("local_time", json.dumps({"city": "Reykjavík"}))]),
        Reply(f"{choice}ed, as you wished ({name})."),
    )
    start_chat(browser, scripted, "What time is it in Reykjavík?")
    page = browser.page
    page.get_by_role("button", name=choice).wait_for()
    assert page.locator("#messages").get_by_text("local_time needs your approval").is_visible()
    assert page.locator("#messages").get_by_text("Reykjavík").first.is_visible()
    if choice == "Allow":
        shots(browser, "approval")
    page.get_by_role("button", name=choice).click()
    wait_until_idle(browser)
    assert page.locator("#messages").get_by_text(f"{choice}ed, as you wished").is_visible()
    label = "Ran local_time" if choice == "Allow" else "You denied local_time"
    assert page.locator("#messages").get_by_text(label).is_visible()


def test_a_server_result_is_shown_collapsed_and_expands(
    browser: Browser, scripted: Scripted, chat_server: ChatServer
) -> None:
    give_functions(
        chat_server.server,
        scripted.profile_id,
        registry=[{"name": "local_time", "kind": "python", "approval": False}],
    )
    scripted.script(
        Reply(tool_calls=[ToolCall("local_time", json.dumps({"city": "Accra"}))]),
        Reply("It is noon in Accra."),
    )
    start_chat(browser, scripted, "Time in Accra?")
    wait_until_idle(browser)
    page = browser.page
    card = page.locator(".tool-call").last
    assert card.get_by_text("Ran local_time").is_visible()
    result = card.locator("details", has_text="Result")
    assert not result.locator("pre").is_visible()
    result.locator("summary").click()
    assert result.get_by_text('"asked_by": "owner"').is_visible()
    shots(browser, "server-result")


def test_a_failing_function_says_what_went_wrong_in_words(
    browser: Browser, scripted: Scripted, chat_server: ChatServer
) -> None:
    give_functions(
        chat_server.server,
        scripted.profile_id,
        registry=[{"name": "explode", "kind": "python", "parameters": {"type": "object"}}],
    )
    scripted.script(
        Reply(tool_calls=[ToolCall("explode", "{}")]), Reply("That did not work; sorry.")
    )
    start_chat(browser, scripted, "Blow it up")
    wait_until_idle(browser)
    page = browser.page
    assert page.locator("#messages").get_by_text("explode failed", exact=True).is_visible()
    assert (
        page.locator("#messages")
        .get_by_text("explode failed: ValueError: the sky fell")
        .is_visible()
    )
    assert page.locator("#messages").get_by_text("That did not work; sorry.").is_visible()
    shots(browser, "failed")

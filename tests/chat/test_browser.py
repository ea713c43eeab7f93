"""The chat in real Chromium: what a person sees and does. Screenshots go to test-artifacts/."""

from __future__ import annotations

import itertools
import re
import time
from pathlib import Path

import pytest

from tests.chat.conftest import Browser, ChatServer, Scripted, corpus
from tests.fake_model import Reply, ToolCall

pytestmark = pytest.mark.browser


def words(count: int, prefix: str) -> str:
    return " ".join(f"{prefix}{i}" for i in range(count))


def start_chat(browser: Browser, scripted: Scripted, text: str) -> None:
    page = browser.page
    page.goto("/")
    page.get_by_label("Assistant").select_option(str(scripted.profile_id))
    page.get_by_role("textbox", name="Message").fill(text)
    page.get_by_role("button", name="Send").click()
    page.wait_for_url(re.compile(r"/c/\d+/$"))


def answer_text(browser: Browser) -> str:
    return browser.page.locator("article.message.assistant .md").last.inner_text()


def wait_until_idle(browser: Browser, timeout: float = 20_000) -> None:
    """The live section is gone: the answer has ended and been replaced by its final form."""
    browser.page.wait_for_function(
        "() => !document.querySelector('[sse-connect]')", timeout=timeout
    )


def test_sign_in_new_chat_and_the_answer_grows_over_frames(
    browser: Browser, scripted: Scripted
) -> None:
    tokens = words(40, "tok")
    scripted.script(
        Reply(f"Here is a list:\n\n- **first**\n- second\n\n{tokens}", chunk_delay=0.04)
    )
    page = browser.page
    page.goto("/")
    browser.shot("new-chat")
    assert page.get_by_role("navigation", name="Threads").is_visible()
    assert page.get_by_role("button", name="New chat").is_visible()
    start_chat(browser, scripted, "Make me a list")

    lengths = []
    for _ in range(12):
        lengths.append(len(answer_text(browser)))
        page.wait_for_timeout(100)
    browser.shot("streaming")
    growing = [b for a, b in itertools.pairwise(lengths) if b > a]
    assert len(growing) >= 4, f"the answer should grow frame by frame: {lengths}"

    wait_until_idle(browser)
    browser.shot("answered")
    answer = page.locator("article.message.assistant").last
    assert answer.locator("strong", has_text="first").is_visible()  # markdown, rendered at the end
    assert answer.inner_text().split().count("tok39") == 1
    assert (
        page.get_by_role("navigation", name="Threads")
        .get_by_role("link", name="Make me a list")
        .is_visible()
    )


def test_keyboard_enter_sends_and_shift_enter_adds_a_line(
    browser: Browser, scripted: Scripted
) -> None:
    scripted.script(Reply("First answer."), Reply("Second answer."))
    start_chat(browser, scripted, "Hello")
    wait_until_idle(browser)
    box = browser.page.get_by_role("textbox", name="Message")
    box.focus()
    browser.page.keyboard.type("line one")
    browser.page.keyboard.press("Shift+Enter")
    browser.page.keyboard.type("line two")
    assert box.input_value() == "line one\nline two"
    browser.page.keyboard.press("Enter")
    browser.page.locator("#messages").get_by_text("Second answer.").wait_for()
    user_messages = browser.page.locator("article.message.user .md")
    assert user_messages.last.inner_text().endswith("line one\nline two")
    assert box.input_value() == ""


def test_stop_keeps_the_partial_answer(browser: Browser, scripted: Scripted) -> None:
    scripted.script(Reply(words(200, "part"), chunk_delay=0.05), Reply("After the stop."))
    start_chat(browser, scripted, "Go on for a while")
    page = browser.page
    page.wait_for_function(
        "() => (document.querySelector('.streaming .tail') || {}).textContent?.includes('part8')"
    )
    page.get_by_role("button", name="Stop").click()
    page.get_by_text("Stopped.").wait_for()
    wait_until_idle(browser)
    browser.shot("stopped")
    partial = answer_text(browser)
    assert "part8" in partial and "part199" not in partial
    assert page.get_by_role("button", name="Stop").count() == 0
    # The thread takes a new message once the run has ended.
    page.get_by_role("textbox", name="Message").fill("Thanks")
    page.get_by_role("button", name="Send").click()
    page.locator("#messages").get_by_text("After the stop.").wait_for()


def test_reload_mid_stream_shows_the_whole_answer_exactly_once(
    browser: Browser, scripted: Scripted
) -> None:
    tokens = words(60, "u")
    scripted.script(Reply(tokens, chunk_delay=0.05))
    start_chat(browser, scripted, "Count to sixty")
    page = browser.page
    page.wait_for_function(
        "() => (document.querySelector('.streaming .tail') || {}).textContent?.includes('u15')"
    )
    page.reload()
    page.wait_for_function(
        "() => (document.querySelector('.streaming .tail') || {}).textContent?.includes('u40')"
    )
    browser.shot("after-reload")
    wait_until_idle(browser)
    seen = answer_text(browser).split()
    assert seen == tokens.split()
    # A second tab opened now reads the finished thread from the API: the same, once.
    second = browser.context.new_page()
    second.goto(page.url)
    assert second.locator("article.message.assistant .md").last.inner_text().split() == seen
    second.close()


def test_another_user_gets_404_on_the_thread(
    browser: Browser, scripted: Scripted, chromium: object, chat_server: ChatServer
) -> None:
    scripted.script(Reply("Private answer."))
    start_chat(browser, scripted, "A private question")
    wait_until_idle(browser)
    url = browser.page.url
    stranger = Browser(chromium, chat_server.url, "stranger")
    try:
        stranger.login("other")
        response = stranger.page.goto(url)
        assert response is not None and response.status == 404
        assert "Private answer" not in stranger.page.content()
        stranger.shot("404")
        stranger.page.get_by_role("link", name="Back to your chats").click()
        assert "A private question" not in stranger.page.content()
    finally:
        stranger.close()


def test_model_html_and_javascript_links_stay_inert(browser: Browser, scripted: Scripted) -> None:
    evil = (
        "Look: <script>window.pwned = 1</script> and <img src=x onerror='window.pwned = 2'>\n\n"
        "[click me](javascript:window.pwned=3) and [ok](https://example.com/)\n\n"
        "![tracker](https://evil.example/pixel.png)"
    )
    scripted.script(Reply(evil, chunk_delay=0.01))
    start_chat(browser, scripted, "Say something nasty")
    wait_until_idle(browser)
    page = browser.page
    answer = page.locator("article.message.assistant").last
    browser.shot("inert")
    assert "<script>window.pwned = 1</script>" in answer.inner_text()  # shown as text
    assert page.evaluate("window.pwned") is None
    assert answer.locator("script").count() == 0
    assert answer.locator("img").count() == 0
    click_me = answer.get_by_text("click me")
    assert click_me.evaluate("e => e.closest('a') && e.closest('a').getAttribute('href')") is None
    click_me.click()
    assert page.evaluate("window.pwned") is None
    assert answer.get_by_role("link", name="ok").get_attribute("href") == "https://example.com/"
    assert answer.get_by_role("link", name="tracker").get_attribute("rel") == (
        "noopener noreferrer nofollow"
    )


def test_bad_input_gets_clear_messages_in_the_page(
    browser: Browser, scripted: Scripted, tmp_path: Path
) -> None:
    scripted.script(Reply("Fine."))
    page = browser.page
    page.goto("/")
    box = page.get_by_role("textbox", name="Message")
    errors = page.locator("#composer .errors")

    page.get_by_role("button", name="Send").click()
    assert "Write a message first." in errors.all_inner_texts()[-1]

    huge = tmp_path / "huge.pdf"
    with huge.open("wb") as f:
        f.truncate(600 * 1024 * 1024)  # sparse: 600 MB that take no room
    box.fill("Read this")
    page.get_by_label("Attach files").set_input_files(str(huge))
    page.get_by_role("button", name="Send").click()
    assert "huge.pdf is 600 MB" in " ".join(errors.all_inner_texts())
    browser.shot("too-large")

    fake = tmp_path / "invoice.pdf"
    fake.write_bytes(b"MZ\x90\x00" + b"\x00" * 2048)  # a Windows program, renamed
    page.get_by_label("Attach files").set_input_files(str(fake))
    page.get_by_role("button", name="Send").click()
    page.get_by_text("invoice.pdf is not a PDF").wait_for()
    assert box.input_value() == "Read this"
    browser.shot("not-a-pdf")

    html_name = tmp_path / "<img src=x onerror=alert(1)>.txt"
    html_name.write_text("plain words")
    page.get_by_label("Attach files").set_input_files(str(html_name))
    page.get_by_role("button", name="Send").click()
    page.wait_for_url(re.compile(r"/c/\d+/$"))
    attachment = page.get_by_role("link", name="<img src=x onerror=alert(1)>.txt")
    attachment.wait_for()
    assert page.locator("article.message.user img").count() == 0
    browser.shot("html-name")


def test_cited_answer_from_an_attached_pdf_links_to_the_page(
    browser: Browser, scripted: Scripted, tmp_path: Path
) -> None:
    name = "GeoBase_NHNC1_Data_Model_UML_EN.pdf"
    scripted.script(
        Reply(tool_calls=[ToolCall("file_search", '{"query": "Toponymy Model author"}')]),
        Reply(f"The model lists its authors 【0:0†{name}】.", chunk_delay=0.05),
    )
    pdf = tmp_path / name
    pdf.write_bytes(corpus(name))
    page = browser.page
    page.goto("/")
    page.get_by_label("Assistant").select_option(str(scripted.profile_id))
    page.get_by_role("textbox", name="Message").fill("Who wrote the Toponymy Model?")
    page.get_by_label("Attach files").set_input_files(str(pdf))
    page.get_by_role("button", name="Send").click()
    page.get_by_text(re.compile(r"Searched 1 file · \d+ results?")).wait_for(timeout=30_000)
    browser.shot("searched")
    wait_until_idle(browser, timeout=30_000)
    browser.shot("cited")
    footnote = page.get_by_role("list", name="Sources").get_by_role("link").first
    href = footnote.get_attribute("href") or ""
    assert re.search(r"/files/file-[^#]+#page=\d+$", href), href
    assert name in footnote.inner_text()
    response = page.request.get(href.split("#")[0])
    assert response.status == 200
    assert response.headers["content-type"] == "application/pdf"
    assert response.body().startswith(b"%PDF-")


def test_run_error_shows_a_message_and_retry_works(browser: Browser, scripted: Scripted) -> None:
    from tests.fake_model import Fail

    scripted.script(
        Fail(400, "The model refused the request: bad things."),
        Reply("Second time lucky."),
    )
    start_chat(browser, scripted, "Try it")
    page = browser.page
    alert = page.get_by_role("alert").filter(has_text="The answer failed")
    alert.wait_for()
    browser.shot("failed")
    page.get_by_role("button", name="Retry").click()
    page.locator("#messages").get_by_text("Second time lucky.").wait_for()
    time.sleep(0.2)
    browser.shot("retried")

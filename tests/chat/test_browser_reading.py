"""The chat in real Chromium at a laptop's and a phone's size: following the answer, the phone's
drawer and pinned message box, focus and Esc, and how code, maths and titles show.
Screenshots of each go to test-artifacts/."""

from __future__ import annotations

import re
import uuid

import pytest

from chat import titles
from tests.chat.conftest import Browser, Scripted
from tests.chat.test_browser import start_chat, wait_until_idle
from tests.fake_model import Reply

pytestmark = pytest.mark.browser
BOTH = pytest.mark.parametrize("screen", ["desktop", "phone"])


def lines(count: int, prefix: str) -> str:
    """An answer of `count` short paragraphs: long enough to scroll on any screen."""
    return "\n\n".join(f"Line {prefix}{i} of it." for i in range(count))


TAIL_IN_VIEW = """() => {
    const tail = document.querySelector('.streaming .tail');
    const box = document.getElementById('scroll');
    if (!tail || !box) return false;
    const t = tail.getBoundingClientRect(), b = box.getBoundingClientRect();
    return t.bottom <= b.bottom + 2 && t.bottom >= b.top;
}"""


def tail_in_view(browser: Browser, wait: bool = True) -> bool:
    """Whether the end of the growing answer is inside the visible part of the conversation
    (by the next frames, if `wait`: the page follows once per frame)."""
    if wait:
        try:
            browser.page.wait_for_function(TAIL_IN_VIEW, timeout=1_000)
        except Exception:
            return False
        return True
    return bool(browser.page.evaluate(TAIL_IN_VIEW))


def wait_for_words(browser: Browser, word: str) -> None:
    browser.page.wait_for_function(
        "word => (document.querySelector('.streaming .tail') || {}).textContent?.includes(word)",
        arg=word,
    )


@BOTH
def test_a_new_chat_follows_the_answer_until_the_reader_scrolls_up(
    browser: Browser, scripted: Scripted
) -> None:
    scripted.script(Reply(lines(240, "w"), chunk_delay=0.01))
    start_chat(browser, scripted, "Count for a while")
    page = browser.page
    # After sending, the cursor is in the message box again, ready for the next message.
    page.wait_for_function("() => document.activeElement.id === 'message'", timeout=2_000)
    wait_for_words(browser, "w40")
    assert tail_in_view(browser), "a new chat follows its answer"
    assert page.get_by_role("button", name="Jump to latest").is_hidden()
    browser.shot("following")
    # The reader scrolls up: the page stays where they are and offers to jump back.
    page.locator("#scroll").hover()
    page.mouse.wheel(0, -600)
    jump = page.get_by_role("button", name="Jump to latest")
    jump.wait_for()
    wait_for_words(browser, "w90")
    assert not tail_in_view(browser, wait=False)
    browser.shot("scrolled-up")
    jump.click()
    assert tail_in_view(browser)
    wait_for_words(browser, "w120")
    assert tail_in_view(browser), "following again after the jump"
    assert jump.is_hidden()
    wait_until_idle(browser)


@BOTH
def test_a_reloaded_page_and_a_second_tab_follow_too(browser: Browser, scripted: Scripted) -> None:
    scripted.script(Reply(lines(240, "r"), chunk_delay=0.01))
    start_chat(browser, scripted, "Count again")
    wait_for_words(browser, "r30")
    browser.page.reload()
    wait_for_words(browser, "r80")
    assert tail_in_view(browser)
    second = Browser.__new__(Browser)
    second.page, second.screen = browser.context.new_page(), browser.screen
    second.page.goto(browser.page.url)
    wait_for_words(second, "r120")
    assert tail_in_view(second)
    second.page.screenshot(
        path=str(browser.shot("first-tab").with_name(f"{browser.test_name}--second-tab.png"))
    )
    second.page.close()
    wait_until_idle(browser)


@pytest.mark.parametrize("screen", ["phone"])
def test_on_a_phone_threads_are_a_drawer_and_the_message_box_stays_at_the_bottom(
    browser: Browser, scripted: Scripted
) -> None:
    scripted.script(Reply(lines(200, "p"), chunk_delay=0.01))
    start_chat(browser, scripted, "A phone question")
    page = browser.page
    threads = page.get_by_role("navigation", name="Threads")
    toggle = page.get_by_role("button", name="Threads")
    assert threads.is_hidden() and toggle.is_visible()
    box = page.get_by_role("textbox", name="Message").bounding_box()
    send = page.get_by_role("button", name="Send").bounding_box()
    assert box is not None and send is not None
    height = page.viewport_size["height"]
    assert send["y"] + send["height"] <= height and send["y"] > height - 120, send
    assert box["height"] < 120, "the message box keeps small"
    assert page.get_by_text("Enter sends").is_hidden(), "no keyboard hint on a touch screen"
    wait_for_words(browser, "p30")
    assert tail_in_view(browser), "the streaming answer is visible above the message box"
    browser.shot("streaming")
    toggle.click()
    threads.wait_for()
    assert toggle.get_attribute("aria-expanded") == "true"
    assert threads.get_by_role("link", name="A phone question").is_visible()
    browser.shot("drawer")
    page.keyboard.press("Escape")
    threads.wait_for(state="hidden")
    assert page.evaluate("document.activeElement.textContent") == "Threads"
    toggle.click()
    page.locator(".backdrop").click(position={"x": 370, "y": 400})
    threads.wait_for(state="hidden")
    wait_until_idle(browser)


@BOTH
def test_code_is_highlighted_with_a_copy_button_and_maths_is_typeset(
    browser: Browser, scripted: Scripted
) -> None:
    scripted.script(
        Reply(
            "Code:\n\n```python\ndef area(r):\n    return 3.14 * r ** 2  # circle\n```\n\n"
            "Inline $E = mc^2$, and displayed:\n\n$$\\int_0^1 x^2\\,dx = \\frac{1}{3}$$\n\n"
            "And \\(a^2 + b^2 = c^2\\). Not maths: $5 and $10.",
            chunk_delay=0.01,
        )
    )
    start_chat(browser, scripted, "Show code and maths")
    wait_until_idle(browser)
    page = browser.page
    answer = page.locator("article.message.assistant").last
    keyword = answer.locator("pre .tok-k", has_text="def")
    colours = keyword.evaluate("e => getComputedStyle(e).color")
    plain = answer.locator("pre .tok-n").first.evaluate("e => getComputedStyle(e).color")
    assert colours != plain, "keywords are coloured"
    assert answer.locator("math").count() == 3
    display = answer.locator('math[display="block"]').bounding_box()
    assert display is not None and display["height"] > 20, "MathML is laid out"
    assert "$5 and $10" in answer.inner_text()
    browser.shot("code-and-maths")
    answer.get_by_role("button", name="Copy code").click()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied.startswith("def area(r):\n    return 3.14 * r ** 2")
    page.get_by_text("Code copied.").wait_for(state="attached")


def test_hostile_maths_stays_inert_in_the_page(browser: Browser, scripted: Scripted) -> None:
    scripted.script(
        Reply(
            "A $\\href{javascript:window.pwned=1}{link}$ and "
            "$\\text{<img src=x onerror=window.pwned=2>}$ and "
            '$$\\text{<annotation-xml encoding="text/html"><img src=x onerror=window.pwned=3>}$$'
        )
    )
    start_chat(browser, scripted, "Maths, with tricks")
    wait_until_idle(browser)
    page = browser.page
    answer = page.locator("article.message.assistant").last
    answer.locator("math").first.click()
    assert page.evaluate("window.pwned") is None
    assert answer.locator("img, a[href^='javascript'], annotation-xml").count() == 0
    assert "<img" in answer.inner_text()  # shown as the text it is


@BOTH
def test_the_model_titles_the_thread_and_the_tab_follows_renames(
    browser: Browser, scripted: Scripted, chat_model: object
) -> None:
    chat_model.script_instructions(titles.INSTRUCTIONS, [Reply('"Rice, cooked quickly."')])  # type: ignore[attr-defined]
    try:
        word = f"basmati{uuid.uuid4().hex[:6]}"  # in no other test's thread
        scripted.script(Reply(f"Rinse the {word}, then simmer it for twelve minutes."))
        start_chat(browser, scripted, "**How** do I cook `rice` fast?")
        page = browser.page
        heading = page.locator("#conversation-header h1")
        # At once, the first message without its markdown; then the model's title.
        heading.filter(has_text="Rice, cooked quickly").wait_for(timeout=15_000)
        assert page.title() == "Rice, cooked quickly · Threadline"
        if browser.phone:
            page.get_by_role("button", name="Threads").click()
        nav = page.get_by_role("navigation", name="Threads")
        assert nav.get_by_role("link", name="Rice, cooked quickly").is_visible()
        browser.shot("titled")
        # Words of the answer find the thread.
        nav.get_by_role("searchbox", name="Search threads").fill(f"{word} twelve")
        page.wait_for_function("() => document.querySelectorAll('#thread-list a').length === 1")
        assert nav.get_by_role("link").first.inner_text() == "Rice, cooked quickly"
        if browser.phone:
            page.keyboard.press("Escape")
        page.get_by_text("Rename", exact=True).click()
        page.get_by_label("Title").fill("Rice notes")
        page.get_by_role("button", name="Save").click()
        heading.filter(has_text="Rice notes").wait_for()
        page.wait_for_function("() => document.title === 'Rice notes · Threadline'")
        browser.shot("renamed")
    finally:
        chat_model.script_instructions(titles.INSTRUCTIONS)  # type: ignore[attr-defined]


@BOTH
def test_dark_mode_follows_the_system(
    chromium: object,
    chat_server: object,
    scripted: Scripted,
    request: pytest.FixtureRequest,
    screen: str,
) -> None:
    dark = Browser(chromium, chat_server.url, request.node.name, screen, scheme="dark")  # type: ignore[attr-defined]
    try:
        dark.login("owner")
        scripted.script(Reply("Dark answer with `code` and a [link](https://example.com)."))
        start_chat(dark, scripted, "Is it dark?")
        wait_until_idle(dark)
        background = dark.page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert re.fullmatch(r"rgb\((\d+), (\d+), (\d+)\)", background)
        assert sum(int(x) for x in re.findall(r"\d+", background)) < 120, background
        dark.shot("dark")
        assert dark.violations() == []
    finally:
        dark.close()
    assert dark.errors == []


def test_screen_readers_hear_the_answer_a_sentence_or_more_at_a_time(
    browser: Browser, scripted: Scripted
) -> None:
    sentences = [f"Sentence {i} has a few more words in it." for i in range(30)]
    scripted.script(Reply(" ".join(sentences), chunk_delay=0.03))
    page = browser.page
    page.goto("/")
    # Every change of the polite live region, as a screen reader would be told of it.
    page.evaluate(
        """() => {
            window.heard = [];
            const region = document.getElementById('announcer');
            new MutationObserver(() => window.heard.push(region.textContent))
                .observe(region, { childList: true, characterData: true, subtree: true });
        }"""
    )
    assert page.locator("#announcer").get_attribute("aria-live") == "polite"
    page.get_by_label("Assistant").select_option(str(scripted.profile_id))
    page.get_by_role("textbox", name="Message").fill("Talk to me")
    page.get_by_role("button", name="Send").click()
    wait_until_idle(browser)
    page.wait_for_function("() => window.heard.join(' ').includes('Sentence 29')")
    heard = [text for text in page.evaluate("window.heard") if text]
    tokens = len(" ".join(sentences).split())
    assert 2 <= len(heard) < tokens / 8, heard  # throttled: far fewer than the tokens
    assert all(text.endswith(".") for text in heard), heard  # whole sentences
    assert " ".join(heard).split() == " ".join(sentences).split()  # all of it, once

"""Per message in real Chromium, at a laptop's and a phone's size: Copy, Regenerate and Edit
(through the API, owner-scoped, refused while an answer runs), and the message box's errors."""

from __future__ import annotations

import re
from pathlib import Path

import openai
import pytest

from tests.chat.conftest import Browser, ChatClient, ChatServer, Scripted
from tests.chat.test_browser import start_chat, wait_until_idle
from tests.fake_model import Reply
from tests.servers import ENGINE_KEY, shell

pytestmark = pytest.mark.browser
BOTH = pytest.mark.parametrize("screen", ["desktop", "phone"])


def thread_texts(chat_server: ChatServer, browser: Browser) -> list[tuple[str, str]]:
    """(role, text) of the thread's messages as the API holds them, oldest first."""
    conversation_id = int(browser.page.url.rstrip("/").split("/")[-1])
    thread_id = shell(
        chat_server.server,
        "import json\nfrom chat.models import Conversation\n"
        f"print(json.dumps(Conversation.objects.get(pk={conversation_id}).thread_id))",
    )
    with openai.OpenAI(api_key=ENGINE_KEY, base_url=chat_server.server.api_url) as client:
        page = client.beta.threads.messages.list(thread_id, order="asc", limit=100)
        return [(m.role, m.content[0].text.value) for m in page.data]  # type: ignore[union-attr]


@BOTH
def test_copy_regenerate_and_edit(
    browser: Browser, scripted: Scripted, chat_server: ChatServer
) -> None:
    scripted.script(
        Reply("The **first** answer."),
        Reply("The second answer."),
        Reply("An answer to the edit."),
    )
    start_chat(browser, scripted, "Tell me *something*")
    wait_until_idle(browser)
    page = browser.page
    answer = page.locator("article.message.assistant").last
    answer.get_by_role("button", name="Copy").click()
    assert page.evaluate("navigator.clipboard.readText()") == "The **first** answer."
    page.get_by_text("Message copied.").wait_for(state="attached")
    browser.shot("answered")

    # Regenerate: the answer is removed through the API, and a new one written.
    answer.get_by_role("button", name="Regenerate").click()
    messages = page.locator("#messages")
    messages.get_by_text("The second answer.").wait_for()
    wait_until_idle(browser)
    assert messages.get_by_text("The first answer.").count() == 0
    assert page.get_by_role("button", name="Regenerate").count() == 1
    assert thread_texts(chat_server, browser) == [
        ("user", "Tell me *something*"),
        ("assistant", "The second answer."),
    ]
    browser.shot("regenerated")

    # Edit: a dialog says what will happen; Esc closes it, nothing changes.
    mine = page.locator("article.message.user").last
    mine.get_by_role("button", name="Edit").click()
    dialog = page.get_by_role("dialog", name="Edit your message")
    dialog.wait_for()
    assert "removes this message and every message after it" in dialog.inner_text()
    browser.shot("edit-dialog")
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")
    mine.get_by_role("button", name="Edit").click()
    box = dialog.get_by_role("textbox", name="Edited message")
    assert box.input_value() == "Tell me *something*"
    box.fill("Tell me something else")
    dialog.get_by_role("button", name="Send edited message").click()
    messages.get_by_text("An answer to the edit.").wait_for()
    wait_until_idle(browser)
    assert messages.get_by_text("Tell me *something*").count() == 0
    assert thread_texts(chat_server, browser) == [
        ("user", "Tell me something else"),
        ("assistant", "An answer to the edit."),
    ]
    browser.shot("edited")


def test_regenerate_and_edit_wait_for_the_running_answer(
    browser: Browser, scripted: Scripted
) -> None:
    scripted.script(
        Reply("Quick."), Reply(" ".join(f"slow{i}" for i in range(300)), chunk_delay=0.05)
    )
    start_chat(browser, scripted, "First")
    wait_until_idle(browser)
    page = browser.page
    page.get_by_role("textbox", name="Message").fill("Second")
    page.get_by_role("button", name="Send").click()
    page.wait_for_function(
        "() => (document.querySelector('.streaming .tail') || {}).textContent?.includes('slow5')"
    )
    page.locator("article.message.user").first.get_by_role("button", name="Edit").click()
    dialog = page.get_by_role("dialog", name="Edit your message")
    dialog.get_by_role("textbox", name="Edited message").fill("Changed while it answers")
    dialog.get_by_role("button", name="Send edited message").click()
    alert = page.get_by_role("alert").filter(has_text="still answering")
    alert.wait_for()
    browser.shot("refused")
    assert page.locator("#messages").get_by_text("Changed while it answers").count() == 0
    page.get_by_role("button", name="Stop").click()
    wait_until_idle(browser)


def test_another_user_cannot_regenerate_or_edit(
    browser: Browser, scripted: Scripted, chat_server: ChatServer
) -> None:
    scripted.script(Reply("Mine."))
    start_chat(browser, scripted, "Private")
    wait_until_idle(browser)
    conversation_id = browser.page.url.rstrip("/").split("/")[-1]
    stranger = ChatClient(chat_server.url)
    try:
        stranger.login("other")
        for action in ("regenerate", "edit"):
            response = stranger.post(
                f"/c/{conversation_id}/{action}", {"message": "msg_x", "text": "x"}
            )
            assert response.status_code == 404
        anonymous = ChatClient(chat_server.url)
        response = anonymous.post(f"/c/{conversation_id}/regenerate", {"message": "msg_x"})
        assert response.status_code in (302, 403)
        anonymous.close()
    finally:
        stranger.close()
    assert browser.page.locator("#messages").get_by_text("Mine.").count() == 1


@BOTH
def test_a_new_error_replaces_the_old_and_sizes_say_how_much(
    browser: Browser, scripted: Scripted, tmp_path: Path
) -> None:
    page = browser.page
    page.goto("/")
    errors = page.locator("#composer .errors p")
    huge = tmp_path / "big.pdf"
    with huge.open("wb") as f:
        f.truncate(int(50.4 * 1024 * 1024))  # sparse: takes no room
    page.get_by_role("textbox", name="Message").fill("Read this")
    page.get_by_label("Attach files").set_input_files(str(huge))
    assert errors.all_inner_texts() == ["big.pdf is 50.4 MB, over the 2 MB limit for one file."]
    browser.shot("too-large")
    page.get_by_label("Attach files").set_input_files([])
    page.get_by_role("textbox", name="Message").fill("")
    page.get_by_role("button", name="Send").click()
    assert errors.all_inner_texts() == ["Write a message first."]
    fake = tmp_path / "invoice.pdf"
    fake.write_bytes(b"MZ\x90\x00" + b"\x00" * 2048)
    page.get_by_role("textbox", name="Message").fill("Read this")
    page.get_by_label("Attach files").set_input_files(str(fake))
    page.get_by_role("button", name="Send").click()
    page.get_by_text(re.compile("invoice.pdf is not a PDF")).wait_for()
    assert len(errors.all_inner_texts()) == 1  # the server's finding, alone
    browser.shot("server-error")

"""The admin in real Chromium: an assistant with a PDF as its knowledge, used from the chat;
knowledge added while the Assistants API is down, kept, then uploaded by "Sync now".

The server has no model API, so the offline retrieval-only model answers, with citations.
Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chat.conftest import ARTIFACTS, CORPUS, PASSWORD, Browser
from tests.servers import ThreadlineServer, free_port, shell, start_chat_server

pytestmark = pytest.mark.browser

PDF = "GeoBase_NHNC1_Data_Model_UML_EN.pdf"
PEOPLE = f"""
import json
from django.contrib.auth.models import User
User.objects.create_user("reader", password={PASSWORD!r})
User.objects.create_superuser("admin", password={PASSWORD!r})
print("null")
"""


@pytest.fixture(scope="module")
def offline_server() -> Iterator[ThreadlineServer]:
    server = start_chat_server()
    try:
        shell(server, PEOPLE)
        yield server
    finally:
        server.stop()


def admin_login(browser: Browser) -> None:
    page = browser.page
    page.goto("/admin/login/")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/admin/")


def test_admin_sets_up_a_pdf_assistant_and_a_person_gets_a_cited_answer(
    chromium: Any, offline_server: ThreadlineServer, tmp_path: Path
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    admin = Browser(chromium, offline_server.url, "admin-assistant")
    try:
        admin_login(admin)
        page = admin.page
        page.goto("/admin/chat/assistantprofile/add/")
        page.get_by_label("Name").fill("GeoBase guide")
        page.get_by_label("Model").fill("threadline-retrieval")
        instructions = "Answer from the GeoBase documents."
        page.get_by_label("Instructions").fill(instructions)
        huge = tmp_path / "huge.pdf"
        with huge.open("wb") as f:
            f.truncate(600 * 1024 * 1024)  # sparse: 600 MB that take no room
        files = page.get_by_label("Add knowledge files")
        files.set_input_files(str(huge))
        message = files.evaluate("input => input.validationMessage")
        assert message == "huge.pdf is 600 MB, over the 512 MB limit for one file."
        broken = tmp_path / "broken.pdf"  # a PDF header, then nothing a reader can use
        broken.write_bytes(b"%PDF-1.4\nthis is not really a pdf\n%%EOF\n")
        files.set_input_files([str(CORPUS / PDF), str(broken)])
        assert files.evaluate("input => input.validationMessage") == ""
        admin.shot("add-form")
        count = f"{len(instructions)} / 256,000 characters"
        assert page.get_by_text(count).is_visible()  # counted as it is typed
        page.get_by_role("button", name="Save and continue editing").click()
        page.get_by_text("being read now").wait_for()
        page.locator("#knowledge").scroll_into_view_if_needed()
        admin.shot("processing")
        # The knowledge list refreshes itself until the file is read.
        knowledge = page.locator("#knowledge")
        knowledge.get_by_text("✓ ready").wait_for(timeout=60_000)
        knowledge.get_by_text("✗ failed: ").wait_for(timeout=60_000)
        admin.shot("ready")
        page.get_by_role("button", name="Remove broken.pdf").click()
        page.get_by_text("Removed broken.pdf from the knowledge.").wait_for()
        assert knowledge.get_by_text("broken.pdf").count() == 0
        assert knowledge.get_by_text("✓ ready").is_visible()
        page.get_by_label("Published").check()
        page.get_by_role("button", name="Save", exact=True).click()
        page.wait_for_url("**/admin/chat/assistantprofile/")
        assert page.get_by_text("✓ in sync").is_visible()
        admin.shot("list")
        assert admin.errors == []
    finally:
        admin.close()

    reader = Browser(chromium, offline_server.url, "admin-reader")
    try:
        reader.login("reader")
        page = reader.page
        page.get_by_label("Assistant").select_option(label="GeoBase guide")
        page.get_by_role("textbox", name="Message").fill("Who authored the Toponymy Model?")
        page.get_by_role("button", name="Send").click()
        page.wait_for_url(re.compile(r"/c/\d+/$"))
        page.wait_for_function("() => !document.querySelector('[sse-connect]')", timeout=60_000)
        reader.shot("answered")
        sources = page.get_by_role("list", name="Sources").get_by_role("link")
        texts = [sources.nth(i).inner_text() for i in range(sources.count())]
        assert any(PDF in t and "page 18" in t for t in texts), texts
        answer = page.locator("article.message.assistant").last.inner_text()
        assert "Michelle Poirier" in answer
        assert reader.errors == []
    finally:
        reader.close()

    # Back in the admin: the thread, read-only, with its run; what deleting would remove.
    admin = Browser(chromium, offline_server.url, "admin-review")
    try:
        admin_login(admin)
        page = admin.page
        page.goto("/admin/chat/conversation/")
        page.get_by_role("link", name="Who authored the Toponymy Model?").click()
        page.get_by_text("completed").wait_for()
        admin.shot("thread")
        page.get_by_role("link", name="Read the conversation (read-only)").click()
        page.get_by_text("Michelle Poirier").first.wait_for()
        admin.shot("transcript")
        page.goto("/admin/chat/assistantprofile/")
        page.get_by_role("link", name="GeoBase guide").click()
        page.get_by_role("link", name="Delete").click()
        page.get_by_text("Remote vector store: vs_").wait_for()
        admin.shot("delete")
        assert admin.errors == []
    finally:
        admin.close()


def test_knowledge_added_while_the_api_is_down_waits_then_goes_with_sync_now(
    chromium: Any, tmp_path: Path
) -> None:
    # The chat's Assistants API is a port where nothing listens; the engine itself is fine.
    down = ThreadlineServer(env={"THREADLINE_ASSISTANTS_URL": f"http://127.0.0.1:{free_port()}/v1"})
    down.migrate()
    down.manage("collectstatic", "--noinput", "-v0")
    down.start()
    try:
        shell(down, PEOPLE)
        admin = Browser(chromium, down.url, "admin-waiting")
        try:
            admin_login(admin)
            page = admin.page
            page.goto("/admin/chat/assistantprofile/add/")
            page.get_by_label("Name").fill("Kept for later")
            page.get_by_label("Model").fill("threadline-retrieval")
            name = "notes<img src=x onerror=alert(1)>.md"  # a name to escape, too
            notes = tmp_path / name
            notes.write_text("# Notes\n\nThe toponymy model is in chapter 5.\n")
            page.get_by_label("Add knowledge files").set_input_files(
                [str(CORPUS / PDF), str(notes)]
            )
            page.get_by_role("button", name="Save and continue editing").click()
            page.get_by_text("Saved here, but not on the Assistants API").wait_for()
            page.get_by_text("2 knowledge file(s) are kept here, waiting to upload").wait_for()
            knowledge = page.locator("#knowledge")
            waiting = knowledge.get_by_text("waiting to upload: The assistant service isn't")
            assert waiting.count() == 2
            assert knowledge.get_by_text(name).is_visible()  # shown as text, not markup
            assert knowledge.get_by_role("button", name=f"Re-index {PDF}").count() == 0
            knowledge.scroll_into_view_if_needed()
            admin.shot("waiting")
            assert admin.errors == []
        finally:
            admin.close()
    finally:
        down.stop()

    # The same data, served again with the API reachable: "Sync now" uploads what waited.
    up = ThreadlineServer(data_dir=down.data_dir).start()
    try:
        admin = Browser(chromium, up.url, "admin-waiting-synced")
        try:
            admin_login(admin)
            page = admin.page
            page.goto("/admin/chat/assistantprofile/")
            assert page.get_by_text("✗ out of sync").is_visible()
            page.get_by_role("row", name="Kept for later").get_by_role("checkbox").check()
            page.get_by_role("combobox", name="Action").select_option("sync_now")
            page.get_by_role("button", name="Go").click()
            page.get_by_text("Kept for later: uploaded 2 knowledge file(s)").wait_for()
            page.get_by_text("Synced 1 assistant(s).").wait_for()
            page.get_by_role("link", name="Kept for later").click()
            knowledge = page.locator("#knowledge")
            knowledge.get_by_text("✓ ready, 19 pages").wait_for(timeout=60_000)
            knowledge.get_by_text("✓ ready, 1 page").wait_for(timeout=60_000)
            assert knowledge.get_by_text("waiting to upload").count() == 0
            knowledge.scroll_into_view_if_needed()
            admin.shot("synced")
            assert admin.errors == []
        finally:
            admin.close()
    finally:
        up.stop()
    assert list((down.data_dir / "knowledge-waiting").rglob("*.*")) == []  # copies went

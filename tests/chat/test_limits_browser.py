"""Limits in real Chromium: an admin sets a person's limit on their page in the admin; the person
is told, where they pressed Send, that they are over it and when it resets; the admin's usage
page shows them at their limit, with tokens per day as a chart. Desktop and phone sizes;
screenshots go to test-artifacts/.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.chat.conftest import ARTIFACTS, PASSWORD, Browser, ChatServer, Scripted
from tests.chat.test_admin_browser import admin_login
from tests.chat.test_browser import start_chat, wait_until_idle
from tests.fake_model import Reply
from tests.servers import shell

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 860}
PERSON = """
import json
from django.contrib.auth.models import User
print(json.dumps(User.objects.create_user("capped", password={password!r}).pk))
"""


def shots(browser: Browser, name: str) -> None:
    """The whole page at desktop size, then at phone size (and back)."""
    page = browser.page
    for size, label in ((DESKTOP, "desktop"), (PHONE, "phone")):
        page.set_viewport_size(size)
        page.screenshot(path=str(ARTIFACTS / f"{browser.test_name}--{name}-{label}.png"))
    page.set_viewport_size(DESKTOP)


def test_a_person_over_their_limit_is_told_when_and_the_admin_sees_it(
    chromium: Any, chat_server: ChatServer, scripted: Scripted
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    person_id = shell(chat_server.server, PERSON.format(password=PASSWORD))
    admin = Browser(chromium, chat_server.url, "limits-admin")
    person = Browser(chromium, chat_server.url, "limits-person")
    try:
        # The admin gives the person a limit of one message an hour, on the person's page.
        admin_login(admin)
        page = admin.page
        page.goto(f"/admin/auth/user/{person_id}/change/")
        page.get_by_role("spinbutton", name="Messages per hour").fill("1")
        page.get_by_role("spinbutton", name="Tokens per day").fill("5000")
        page.get_by_role("button", name="Save and continue editing").click()
        page.get_by_text("was changed successfully").wait_for()
        assert page.get_by_role("spinbutton", name="Messages per hour").input_value() == "1"
        page.get_by_role("heading", name="Usage limits", exact=True).scroll_into_view_if_needed()
        admin.shot("person-limits")

        # The person sends one message, then another: the second is refused where they sent it.
        person.login("capped")
        usage = {"prompt_tokens": 2400, "completion_tokens": 200, "total_tokens": 2600}
        scripted.script(Reply("The first answer, which went through.", usage=usage))
        start_chat(person, scripted, "What is a usage limit?")
        wait_until_idle(person)
        box = person.page.get_by_role("textbox", name="Message")
        box.fill("And another question")
        person.page.get_by_role("button", name="Send").click()
        alert = person.page.locator("#composer").get_by_role("alert")
        alert.wait_for()
        message = alert.inner_text()
        assert message.startswith("You have reached your limit of 1 message an hour.")
        assert re.search(r"You can send again at \d\d:\d\d UTC( tomorrow)? \(in ", message)
        assert box.input_value() == "And another question", "nothing typed is lost"
        assert person.page.locator("article.message.user").count() == 1
        assert alert.is_visible()
        shots(person, "over-limit")
        person.page.set_viewport_size(PHONE)
        assert alert.is_visible(), "the message shows on a phone too, above the box"
        assert alert.bounding_box()["width"] <= PHONE["width"]
        person.page.set_viewport_size(DESKTOP)

        # The admin's usage page: the person at their message limit, and the chart.
        page.goto("/admin/")
        page.get_by_role("link", name="Usage", exact=True).click()
        row = page.get_by_role("row").filter(
            has=page.get_by_role("rowheader", name=re.compile("capped"))
        )
        cells = row.get_by_role("cell")
        assert cells.nth(0).inner_text().startswith("1 / 1")
        assert "over" in (cells.nth(0).get_attribute("class") or "")
        assert cells.nth(3).inner_text() == "2,600 / 5,000"
        page.get_by_role("link", name="capped", exact=True).click()
        chart = page.get_by_role("img", name=re.compile("Tokens per day for capped"))
        assert chart.is_visible()
        bars = chart.locator("rect.bar")
        heights = [float(bars.nth(i).get_attribute("height")) for i in range(bars.count())]
        assert len(heights) == 30 and heights[-1] > 0 and heights.count(0) == 29
        assert "2,600 tokens" in bars.last.locator("title").text_content()
        content = page.locator("#content-main").inner_html()
        assert "style=" not in content and "<script" not in content, "CSP-ready: no inline code"
        shots(admin, "usage")
        page.set_viewport_size(PHONE)
        page.screenshot(path=str(ARTIFACTS / "limits-admin--usage-phone-full.png"), full_page=True)
        assert chart.bounding_box()["width"] <= PHONE["width"], "the chart fits a phone"
        assert admin.errors == [] and person.errors == []
    finally:
        admin.close()
        person.close()

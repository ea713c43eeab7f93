"""Code interpreter in real Chromium: the code streams in, its chart shows inline, a CSV it
wrote downloads, another person gets a 404 for it, and a reload shows the same. Screenshots at
desktop and phone sizes go to test-artifacts/."""

from __future__ import annotations

import html
import json
import re

import pytest

from tests.chat.conftest import Browser, ChatClient, ChatServer, Scripted, events_url
from tests.chat.test_functions_browser import DESKTOP, PHONE, start_chat, wait_until_idle
from tests.fake_model import Reply, ToolCall
from tests.servers import shell

pytestmark = pytest.mark.browser

GIVE_CODE = """
import json
from chat.models import AssistantProfile
profile = AssistantProfile.objects.get(pk={profile})
profile.code_interpreter = True
profile.save()
print(json.dumps(profile.pk))
"""
CHART = (
    "import matplotlib.pyplot as plt\n"
    "x = list(range(-10, 11))\n"
    "plt.plot(x, [2 * v + 5 for v in x])\n"
    "plt.title('y = 2x + 5')\n"
    "plt.show()\n"
    "open('/mnt/data/line.csv', 'w').write('x,y\\n' + ''.join(f'{v},{2 * v + 5}\\n' for v in x))\n"
    "print('plotted', len(x), 'points')"
)
ANSWER = "Here is y = 2x + 5, and the points: [line.csv](sandbox:/mnt/data/line.csv)."


def python(code: str) -> Reply:
    return Reply(tool_calls=[ToolCall("python", json.dumps({"code": code}))])


def give_code_interpreter(chat_server: ChatServer, scripted: Scripted) -> None:
    shell(chat_server.server, GIVE_CODE.format(profile=scripted.profile_id))


def shots(browser: Browser, name: str) -> None:
    page = browser.page
    page.set_viewport_size(DESKTOP)
    browser.shot(f"{name}-desktop")
    page.set_viewport_size(PHONE)
    page.locator(".code-call").last.scroll_into_view_if_needed()
    browser.shot(f"{name}-phone")
    page.set_viewport_size(DESKTOP)


def test_a_chart_shows_inline_and_the_csv_downloads(
    browser: Browser,
    scripted: Scripted,
    chat_server: ChatServer,
    other: ChatClient,
) -> None:
    give_code_interpreter(chat_server, scripted)
    scripted.script(python(CHART), Reply(ANSWER))
    start_chat(browser, scripted, "Can you chart y=2*x+5 where x=[-10,10]?")
    wait_until_idle(browser, timeout=60_000)
    page = browser.page

    step = page.locator(".code-call")
    assert step.get_by_text("Ran code").is_visible()
    assert "plotted 21 points" in step.locator(".code-output").inner_text()
    # The code is there, folded: a click shows it.
    code = step.locator("details.code")
    assert not code.locator("pre").is_visible()
    code.locator("summary").click()
    assert "plt.show()" in code.locator("pre").inner_text()
    # Highlighted as Python by classes (code.css), as the answers' code blocks are.
    keyword = code.locator("pre .tok-kn").first
    assert keyword.inner_text() == "import"
    colour = "(element) => getComputedStyle(element).color"
    assert keyword.evaluate(colour) != code.locator("pre").evaluate(colour)

    chart = step.get_by_role("img", name="Figure from the code")
    chart.wait_for()
    assert page.evaluate("(img) => img.complete && img.naturalWidth > 100", chart.element_handle())
    # Shown once: the answer does not repeat the figure its step shows.
    assert page.get_by_role("img").count() == 1
    shots(browser, "chart")

    link = page.get_by_role("link", name="line.csv")
    with page.expect_download() as downloaded:
        link.click()
    path = downloaded.value.path()
    assert path is not None
    with open(path) as file:
        assert file.read().startswith("x,y\n-10,-15\n")

    # Another person asking for the same file gets a 404, as for a file that does not exist.
    href = link.get_attribute("href")
    assert href is not None and re.fullmatch(r"/c/\d+/files/file-[\w-]+", href)
    assert other.get(href).status_code == 404
    image_src = chart.get_attribute("src")
    assert image_src is not None and other.get(image_src).status_code == 404

    # After a reload the page shows the same, from the run's steps and the message.
    page.reload()
    again = page.locator(".code-call")
    again.get_by_text("Ran code").wait_for()
    assert "plotted 21 points" in again.locator(".code-output").inner_text()
    assert again.get_by_role("img", name="Figure from the code").is_visible()
    assert page.get_by_role("link", name="line.csv").is_visible()
    assert page.get_by_role("img").count() == 1


def test_an_error_is_said_in_words(
    browser: Browser, scripted: Scripted, chat_server: ChatServer
) -> None:
    give_code_interpreter(chat_server, scripted)
    scripted.script(python("1 / 0"), Reply("Dividing by zero does not work."))
    start_chat(browser, scripted, "Divide one by zero.")
    wait_until_idle(browser, timeout=60_000)
    problem = browser.page.locator(".code-call .problem")
    assert problem.inner_text() == "The code failed with ZeroDivisionError: division by zero"
    shots(browser, "error")


def test_a_csv_attached_goes_to_code_interpreter(
    browser: Browser, scripted: Scripted, chat_server: ChatServer, owner: ChatClient
) -> None:
    give_code_interpreter(chat_server, scripted)
    code = "import pandas as pd\nprint(pd.read_csv('/mnt/data/sales.csv')['total'].sum())"
    scripted.script(python(code), Reply("42 in all."))
    sent = owner.send(
        "Sum the sales.",
        assistant=scripted.profile_id,
        files=[("sales.csv", b"month,total\njan,10\nfeb,32\n", "text/csv")],
    )
    assert sent.response.status_code == 200, sent.response.text
    assert sent.events_url is not None
    status, events = owner.events(sent.events_url, timeout=60)
    assert status == 200
    page = "".join(event.data for event in events)
    assert "42 in all." in page
    assert re.search(r"<samp>42\s*</samp>", page), "the code read the attached CSV"


def test_an_edited_message_keeps_its_csv_for_code_interpreter(
    scripted: Scripted, chat_server: ChatServer, owner: ChatClient
) -> None:
    give_code_interpreter(chat_server, scripted)
    code = "import pandas as pd\nprint(pd.read_csv('/mnt/data/sales.csv')['total'].sum())"
    scripted.script(python(code), Reply("42 in all."), python(code), Reply("Still 42."))
    sent = owner.send(
        "Sum the sales.",
        assistant=scripted.profile_id,
        files=[("sales.csv", b"month,total\njan,10\nfeb,32\n", "text/csv")],
    )
    assert sent.events_url is not None and sent.conversation_id is not None
    owner.events(sent.events_url, timeout=60)
    found = re.search(r'name="message" value="([^"]+)"', sent.response.text)
    assert found is not None, "the sent message can be edited"

    edited = owner.post(
        f"/c/{sent.conversation_id}/edit",
        {"message": found.group(1), "text": "Sum the sales again."},
    )
    redirect = edited.headers.get("HX-Redirect")
    assert edited.status_code == 200 and redirect, edited.text
    page = owner.get(redirect).text
    if (url := events_url(page)) is not None:
        page += "".join(event.data for event in owner.events(url, timeout=60)[1])
    # The edited message still gives the CSV to code interpreter, which reads it again.
    assert "Still 42." in page
    assert re.search(r"<samp>42\s*</samp>", page), "the code read the CSV after the edit"


def test_the_code_streams_in_while_the_model_writes_it(
    scripted: Scripted, chat_server: ChatServer, owner: ChatClient
) -> None:
    give_code_interpreter(chat_server, scripted)
    code = "squares = [n * n for n in range(5)]\nprint(squares)"
    slow = Reply(tool_calls=[ToolCall("python", json.dumps({"code": code}))], chunk_delay=0.05)
    scripted.script(slow, Reply("Done."))
    sent = owner.send("Squares, please.", assistant=scripted.profile_id)
    assert sent.events_url is not None
    status, events = owner.events(sent.events_url, timeout=60)
    assert status == 200
    running = [e.data for e in events if "Running code…" in e.data]
    assert running, "the step shows that code is running"
    # Some fragment showed part of the code only: it arrived as the model wrote it.
    partial = [
        html.unescape(re.sub(r"<[^>]*>", "", found.group(1)))
        for data in running
        if (found := re.search(r'<code class="language-python">(.*?)</code>', data, re.S))
    ]
    assert any(0 < len(shown) < len(code) for shown in partial), partial
    assert "[0, 1, 4, 9, 16]" in "".join(e.data for e in events)

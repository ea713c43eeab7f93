"""The thread list and what one does with a thread: titles, order, search, rename, delete, and
reading a long one page by page."""

from __future__ import annotations

import re

import openai

from chat.titles import cleaned, plain_title
from tests.chat.conftest import ChatClient, ChatServer, Scripted
from tests.fake_model import Reply
from tests.servers import ENGINE_KEY, shell


def converse(
    owner: ChatClient, scripted: Scripted, text: str, conversation_id: int | None = None
) -> int:
    sent = owner.send(text, assistant=scripted.profile_id, conversation_id=conversation_id)
    assert sent.events_url and sent.conversation_id, sent.response.text
    owner.events(sent.events_url)
    return sent.conversation_id


def thread_titles(html: str) -> list[str]:
    nav = html[html.index('aria-label="Threads"') :]
    nav = nav[: nav.index("</nav>")]
    return re.findall(r'<a href="/c/\d+/"[^>]*>([^<]*)</a>', nav)


def test_threads_are_titled_from_the_first_message_newest_first(
    owner: ChatClient, scripted: Scripted
) -> None:
    scripted.script(Reply("a"), Reply("b"), Reply("c"))
    first = converse(owner, scripted, "Alpha question about   spacing\nand lines")
    converse(owner, scripted, "Beta question")
    titles = thread_titles(owner.get("/").text)
    assert titles.index("Beta question") < titles.index("Alpha question about spacing and lines")
    # A new message moves a thread to the top; its title stays.
    converse(owner, scripted, "A follow-up", conversation_id=first)
    titles = thread_titles(owner.get("/").text)
    assert titles.index("Alpha question about spacing and lines") < titles.index("Beta question")


def test_long_first_message_makes_a_short_title(owner: ChatClient, scripted: Scripted) -> None:
    scripted.script(Reply("ok"))
    converse(owner, scripted, "word " * 100)
    title = thread_titles(owner.get("/").text)[0]
    assert len(title) <= 80 and title.endswith("…")


def test_titles_are_plain_text_without_markdown(owner: ChatClient, scripted: Scripted) -> None:
    scripted.script(Reply("ok"))
    converse(owner, scripted, "**Explain** `zip()` and [links](https://example.com) in\n# Python")
    assert thread_titles(owner.get("/").text)[0] == "Explain zip() and links in Python"


def test_rename_changes_the_title_everywhere(owner: ChatClient, scripted: Scripted) -> None:
    scripted.script(Reply("ok"))
    conversation = converse(owner, scripted, "Original title")
    response = owner.post(f"/c/{conversation}/rename", {"title": "  Better   <title>  "})
    assert response.status_code == 200
    assert "<h1>Better &lt;title&gt;</h1>" in response.text
    assert 'hx-swap-oob="true"' in response.text  # the thread list follows
    assert "Better &lt;title&gt;" in thread_titles(owner.get("/").text)


def test_delete_removes_the_thread_and_its_remote_thread(
    owner: ChatClient, scripted: Scripted, chat_server: ChatServer
) -> None:
    scripted.script(Reply("ok"))
    conversation = converse(owner, scripted, "Delete me")
    thread_id = shell(
        chat_server.server,
        "import json; from chat.models import Conversation; "
        f"print(json.dumps(Conversation.objects.get(pk={conversation}).thread_id))",
    )
    response = owner.post(f"/c/{conversation}/delete")
    assert response.headers["HX-Redirect"] == "/"
    assert owner.get(f"/c/{conversation}/").status_code == 404
    assert "Delete me" not in thread_titles(owner.get("/").text)
    with openai.OpenAI(base_url=chat_server.server.api_url, api_key=ENGINE_KEY) as client:
        try:
            client.beta.threads.retrieve(thread_id)
        except openai.NotFoundError:
            pass
        else:
            raise AssertionError("the remote thread should be gone")


def test_long_threads_load_older_messages_on_demand(owner: ChatClient, scripted: Scripted) -> None:
    scripted.script(*[Reply(f"answer {i}") for i in range(12)])
    conversation = converse(owner, scripted, "question 0")
    for i in range(1, 12):
        converse(owner, scripted, f"question {i}", conversation_id=conversation)
    page = owner.get(f"/c/{conversation}/").text
    messages = page[page.index('id="messages"') :]
    assert "question 11" in messages and ">question 0<" not in messages
    older = re.search(r'hx-get="(/c/\d+/\?older=[^"]+)"', page)
    assert older, "a link to older messages"
    fragment = owner.get(older.group(1).replace("&amp;", "&"), headers={"HX-Request": "true"}).text
    assert ">question 0<" in fragment and "answer 0<" in fragment
    assert "question 11" not in fragment  # only the older page
    assert "<html" not in fragment
    # Oldest first within the page.
    assert (
        fragment.index("question 0<") < fragment.index("answer 0<") < fragment.index("question 1<")
    )


def test_a_malformed_older_cursor_is_a_400_over_the_latest_messages(
    owner: ChatClient, scripted: Scripted
) -> None:
    scripted.script(Reply("the latest answer"))
    conversation = converse(owner, scripted, "question")
    for cursor in ("garbage", "msg_doesnotexist", "../../etc", "x" * 300):
        response = owner.get(f"/c/{conversation}/", params={"older": cursor})
        assert response.status_code == 400, (cursor, response.status_code)
        assert "does not point into this thread" in response.text
        assert "the latest answer" in response.text
        fragment = owner.get(
            f"/c/{conversation}/", params={"older": cursor}, headers={"HX-Request": "true"}
        )
        assert fragment.status_code == 400


def test_a_model_title_is_one_plain_line() -> None:
    assert plain_title("# **Bold** and `code`\n\n- a [link](https://x.example)") == (
        "Bold and code a link"
    )
    assert cleaned('"Cooking rice quickly."\nExtra line') == "Cooking rice quickly"
    assert cleaned("Title: **Rice**") == "Rice"
    assert cleaned("   \n") == ""
    assert len(cleaned("word " * 60)) <= 80

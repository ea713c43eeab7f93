"""Searching threads: by title and by what was said in them, through the chat's own full-text
index (SQLite FTS5, or PostgreSQL full-text search: `make test-postgres` runs this file there
too, on a server whose database is PostgreSQL)."""

from __future__ import annotations

import re
import time
import uuid

import httpx2
import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chat.access import conversations_of
from chat.models import Conversation, SaidText
from chat.search import forget, remember
from tests.chat.conftest import ChatClient, ChatServer, Scripted, events_url
from tests.chat.test_threads import converse, thread_titles
from tests.fake_model import Fail, Reply
from tests.servers import shell


def searched(owner: ChatClient, query: str) -> list[str]:
    fragment = owner.get("/threads", params={"q": query}).text
    return thread_titles(f'aria-label="Threads">{fragment}</nav>')


def test_search_finds_threads_by_title_and_by_what_was_said(
    owner: ChatClient, other: ChatClient, scripted: Scripted
) -> None:
    # Words no other test's thread holds.
    word, other_word = (f"{name}{uuid.uuid4().hex[:8]}" for name in ("okapi", "tapir"))
    scripted.script(
        Reply(f"The {word} lives in the rainforest."),
        Reply("He drew thirteen dollars a month as a soldier."),
        Reply(f"Nothing more here? There is: the zebu{other_word} again."),
    )
    converse(owner, scripted, f"Tell me about the {word}")
    pay = converse(owner, scripted, f"What did the head of the family {other_word} draw?")
    pay_title = f"What did the head of the family {other_word} draw?"
    assert searched(owner, word) == [f"Tell me about the {word}"]
    assert searched(owner, "rainforest " + word) == [f"Tell me about the {word}"]
    # Words of the answer, not of the title; every word must be there; the last may be cut.
    assert searched(owner, f"{other_word} thirteen dollars") == [pay_title]
    assert searched(owner, f"{other_word} thirte") == [pay_title]
    assert searched(owner, f"{other_word} thirteen euros") == []
    # A follow-up's words are found too; someone else finds nothing of the owner's.
    converse(owner, scripted, "And later?", conversation_id=pay)
    assert searched(owner, f"zebu{other_word}") == [pay_title]
    assert searched(other, word) == []
    page = owner.get("/?q=nothing-like-this").text
    assert "No threads match" in page


@pytest.mark.django_db
def test_search_is_one_query_and_forgets_removed_messages() -> None:
    owner = User.objects.create_user("searcher")
    pay = Conversation.objects.create(owner=owner, thread_id="thread_1", title="Pay")
    Conversation.objects.create(owner=owner, thread_id="thread_2", title="Other")
    said = [
        {"id": "msg_1", "content": [{"type": "text", "text": {"value": "Thirteen dollars"}}]},
        {"id": "msg_2", "content": [{"type": "text", "text": {"value": "a month 【0:1†a.pdf】"}}]},
    ]
    remember(pay.pk, said)
    remember(pay.pk, said)  # again: kept once
    assert SaidText.objects.filter(conversation=pay).count() == 2
    assert SaidText.objects.get(message_id="msg_2").text == "a month"
    with CaptureQueriesContext(connection) as queries:
        found = list(conversations_of(owner, "pay thirteen dollars mon"))
    assert found == [pay] and len(queries) == 1
    assert list(conversations_of(owner, "thirteen euros")) == []
    assert list(conversations_of(owner, "a.pdf")) == []  # citation markers are not words said
    forget(pay.pk, ["msg_2"])
    assert list(conversations_of(owner, "month")) == []


# --- What an edit or a regenerate removes is no longer found -------------------------------------


def edit_ids(page: str) -> list[str]:
    """The ids the page's Edit forms name: the person's messages, oldest first."""
    return re.findall(r'action="/c/\d+/edit".*?name="message" value="([^"]+)"', page, re.S)


def regenerate_id(page: str) -> str:
    found = re.search(r'class="regenerate".*?name="message" value="([^"]+)"', page, re.S)
    assert found is not None, "the newest answer can be regenerated"
    return found.group(1)


def follow(owner: ChatClient, response: httpx2.Response, conversation_id: int) -> None:
    """Read the new answer of an edit or a regenerate to its end."""
    assert response.status_code == 200, response.text
    url = events_url(response.text) or events_url(owner.get(f"/c/{conversation_id}/").text)
    if url is not None:
        owner.events(url)


def found_soon(owner: ChatClient, query: str, expected: list[str]) -> list[str]:
    """What a search finds once it finds `expected`, or after 10 s: a page may show an answer
    (from the API) a moment before its relay has kept its words, as it does at its end."""
    deadline = time.monotonic() + 10
    while (found := searched(owner, query)) != expected and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


@pytest.mark.parametrize("before", ["answered", "failed", "regenerated"])
def test_an_edit_forgets_the_words_of_the_messages_it_removes(
    owner: ChatClient, scripted: Scripted, before: str
) -> None:
    """The person's words are kept under the name their message carries (a run's own request
    added it), the answer's under its id: an edit finds both, whatever happened between."""
    asked, answered, again, edited, reply = (
        f"{name}{uuid.uuid4().hex[:8]}" for name in ("ibex", "eland", "kudu", "oryx", "addax")
    )
    first_answer = Fail(400, "The model refused.") if before == "failed" else Reply(f"{answered}.")
    regenerated = [Reply(f"{again}.")] if before == "regenerated" else []
    scripted.script(Reply("Hello."), first_answer, *regenerated, Reply(f"{reply}."))
    title = f"A first message, {before}"
    conversation = converse(owner, scripted, title)
    converse(owner, scripted, f"And what of the {asked}?", conversation_id=conversation)
    assert searched(owner, asked) == [title]
    if before == "regenerated":
        page = owner.get(f"/c/{conversation}/").text
        again_response = owner.post(
            f"/c/{conversation}/regenerate", {"message": regenerate_id(page)}
        )
        follow(owner, again_response, conversation)
        assert found_soon(owner, again, [title]) == [title]
        assert searched(owner, answered) == []  # the regenerated answer's words are gone
    if before == "answered":
        assert searched(owner, answered) == [title]

    page = owner.get(f"/c/{conversation}/").text
    second = edit_ids(page)[1]
    assert not second.startswith("sent-"), "the reloaded page knows the message's own id"
    edit = owner.post(f"/c/{conversation}/edit", {"message": second, "text": f"Now {edited}."})
    assert edit.headers.get("HX-Redirect"), edit.text
    follow(owner, edit, conversation)
    assert searched(owner, asked) == []
    assert searched(owner, answered) == []
    assert searched(owner, again) == []
    assert found_soon(owner, edited, [title]) == [title]
    assert found_soon(owner, reply, [title]) == [title]


def test_an_edit_of_a_message_the_page_has_just_sent_forgets_its_words(
    owner: ChatClient, scripted: Scripted
) -> None:
    asked, edited = (f"{name}{uuid.uuid4().hex[:8]}" for name in ("gnu", "dikdik"))
    scripted.script(Reply("Hello."), Reply("Answer."), Reply("Edited answer."))
    conversation = converse(owner, scripted, "Another first message")
    sent = owner.send(f"What of the {asked}?", conversation_id=conversation)
    assert sent.events_url is not None
    owner.events(sent.events_url)
    just_sent = edit_ids(sent.response.text)[0]
    assert just_sent.startswith("sent-"), "the page shows the message before it knows its id"
    edit = owner.post(f"/c/{conversation}/edit", {"message": just_sent, "text": f"{edited}?"})
    follow(owner, edit, conversation)
    assert searched(owner, asked) == []
    assert found_soon(owner, edited, ["Another first message"]) == ["Another first message"]


def test_a_page_keeps_the_words_its_answer_relay_did_not(
    owner: ChatClient, scripted: Scripted, chat_server: ChatServer
) -> None:
    """A relay that died with its process kept none of its run's words: the page that shows
    them from the API keeps them, the person's under the name an edit forgets them by."""
    asked, answered = (f"{name}{uuid.uuid4().hex[:8]}" for name in ("quokka", "numbat"))
    scripted.script(Reply("Hello."), Reply(f"The {answered} eats termites."))
    title = "Animals that smile"
    conversation = converse(owner, scripted, title)
    converse(owner, scripted, f"Does the {asked} smile?", conversation_id=conversation)
    found_soon(owner, answered, [title])
    rows = (
        "import json\nfrom chat.models import SaidText\n"
        f"rows = SaidText.objects.filter(conversation_id={conversation})\n"
    )
    kept = rows + "print(json.dumps(sorted(rows.values_list('message_id', flat=True))))"
    by_relay = shell(chat_server.server, kept)
    assert sorted(name[:4] for name in by_relay) == ["msg_", "msg_", "said", "said"], by_relay
    shell(chat_server.server, rows + "rows.delete()\nprint(json.dumps(1))")
    assert searched(owner, asked) == [] and searched(owner, answered) == []

    owner.get(f"/c/{conversation}/")
    assert searched(owner, asked) == [title]
    assert searched(owner, answered) == [title]
    assert shell(chat_server.server, kept) == by_relay, "kept under the same names, once"

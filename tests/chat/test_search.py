"""Searching threads: by title and by what was said in them, through the chat's own full-text
index (SQLite FTS5, or PostgreSQL full-text search: `make test-postgres` runs this file there
too, on a server whose database is PostgreSQL)."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chat.access import conversations_of
from chat.models import Conversation, SaidText
from chat.search import forget, remember
from tests.chat.conftest import ChatClient, Scripted
from tests.chat.test_threads import converse, thread_titles
from tests.fake_model import Reply


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

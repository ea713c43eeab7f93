"""Finding a person's conversations by what was said in them, not only by their titles.

What the chat has shown is kept in `SaidText` with a full-text index (migration 0007): SQLite
FTS5, or PostgreSQL full-text search. Asking the API instead would cost a request per thread
per search; the index answers in one query, joined to the conversations, on the server.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from django.db import connection
from django.db.models import Q, QuerySet
from django.db.models.expressions import RawSQL

from chat.models import Conversation, SaidText

WORD = re.compile(r"\w+")
# Where a person's message carries its name in the search index (`new_key`).
METADATA_KEY = "threadline_said"
MAX_TERMS = 8
# Citation markers (【0:1†file.pdf】) are the model's bookkeeping, not words it said.
MARKER = re.compile(r"【[^】]*】")


def terms(query: str) -> list[str]:
    return WORD.findall(query.lower())[:MAX_TERMS]


def matching(conversations: QuerySet[Conversation], query: str) -> QuerySet[Conversation]:
    """The conversations that hold every word of the query, in their title or in anything said
    in them (the last word as a prefix: people search as they type). One SQL query: a
    full-text subquery per word."""
    words = terms(query)
    for position, word in enumerate(words):
        prefix = position == len(words) - 1
        conversations = conversations.filter(
            Q(title__icontains=word) | Q(pk__in=said(word, prefix=prefix))
        )
    return conversations


def said(word: str, *, prefix: bool) -> RawSQL:
    """The ids of conversations with a message holding the word: a subquery."""
    if connection.vendor == "postgresql":
        return RawSQL(
            "SELECT conversation_id FROM chat_saidtext "
            "WHERE to_tsvector('simple', text) @@ to_tsquery('simple', %s)",
            [f"{word}:*" if prefix else word],
        )
    return RawSQL(
        "SELECT conversation_id FROM chat_saidtext WHERE id IN "
        "(SELECT rowid FROM chat_saidtext_fts WHERE chat_saidtext_fts MATCH %s)",
        [f'"{word}"*' if prefix else f'"{word}"'],
    )


def plain(message: dict[str, Any]) -> str:
    """A message's words as the index keeps them."""
    texts = [
        (part.get("text") or {}).get("value") or ""
        for part in message.get("content") or []
        if part.get("type") == "text"
    ]
    return MARKER.sub(" ", "\n\n".join(texts)).strip()


def new_key() -> str:
    """A name for a person's message that the chat sends in the request starting its run: the
    API does not say that message's id, so the chat names it in the message's metadata and
    keeps its words under that name. An edit that removes the message finds them by it."""
    return "said_" + secrets.token_hex(12)


def person_said(key: str, text: str) -> dict[str, Any]:
    """The person's message as `remember` takes it, under its id or `new_key()`'s name."""
    return {"id": key, "role": "user", "content": [{"type": "text", "text": {"value": text}}]}


def given_key(message: dict[str, Any]) -> str | None:
    """The name the chat gave a message (`new_key`), if it gave it one."""
    key = (message.get("metadata") or {}).get(METADATA_KEY)
    return str(key) if key else None


def keys_of(messages: list[dict[str, Any]]) -> list[str]:
    """The names the chat gave these messages, where it gave them one."""
    return [key for m in messages if (key := given_key(m))]


def remember(conversation_id: int, messages: list[dict[str, Any]]) -> None:
    """Keep the text of these messages (those already kept stay as they are)."""
    rows = [
        SaidText(conversation_id=conversation_id, message_id=m["id"], text=text)
        for m in messages
        if (text := plain(m))
    ]
    SaidText.objects.bulk_create(rows, ignore_conflicts=True)


def remember_shown(conversation_id: int, messages: list[dict[str, Any]]) -> None:
    """Keep the words of messages a page shows from the API that are not kept yet, under the
    names their relay keeps them by: a relay that died with its process kept none. A page view
    reads (one query) and writes only what is missing."""
    named = {given_key(m) or str(m["id"]): m for m in messages if m.get("id")}
    kept = SaidText.objects.filter(conversation_id=conversation_id, message_id__in=list(named))
    missing = set(named) - set(kept.values_list("message_id", flat=True))
    if missing:
        remember(conversation_id, [{**named[key], "id": key} for key in missing])


def forget(conversation_id: int, message_ids: list[str]) -> None:
    SaidText.objects.filter(conversation_id=conversation_id, message_id__in=message_ids).delete()

"""Conversation titles: the first message as plain text at once, then, where a language model
answers, a short title it writes after the first answer.

The model is reached the only way the chat reaches anything, through the Assistants API: a run
of the conversation's assistant on a throwaway thread, with instructions to write a title and no
tools (`assistants_api.one_off_answer`). It runs in the background, after the answer has ended;
the page asks for the title meanwhile (`views.title`), for a minute at most.
"""

from __future__ import annotations

import asyncio
import html
import logging
from typing import Any

import nh3
from asgiref.sync import sync_to_async

from chat import assistants_api as api
from chat import model_catalog
from chat.models import Conversation
from chat.rendering import MARKDOWN

log = logging.getLogger(__name__)

INSTRUCTIONS = (
    "Write a title for the conversation below: at most six words, in the language of the "
    "conversation, plain text with no quotes, no markdown and no full stop. Answer with the "
    "title alone."
)
# Enough for six words in most languages; the engine stops the model there.
MAX_TOKENS = 24
# What the model is shown of each message: the gist is at the start.
SHOWN_CHARS = 2_000
WAIT_SECONDS = 45.0

# Quotation marks a model may put around its title.
QUOTES = "\"'\u201c\u201d\u2018\u2019\u00ab\u00bb"
TEXT_ONLY = nh3.Cleaner(tags=set(), clean_content_tags=set())


def plain_title(text: str) -> str:
    """The first message as a title: its words without markdown, one line, cut at a word."""
    rendered = MARKDOWN.render(text)
    words = html.unescape(TEXT_ONLY.clean(rendered))
    return Conversation.title_from(words or text)


def ask(conversation_id: int) -> Conversation | None:
    """After an answer: mark the title as being written, if the model should write one; the
    conversation then, else None."""
    conversation = (
        Conversation.objects.select_related("assistant").filter(pk=conversation_id).first()
    )
    if (
        conversation is None
        or conversation.assistant is None
        or conversation.title_source != Conversation.TitleSource.MESSAGE
    ):
        return None
    if model_catalog.is_offline(conversation.assistant.model):
        return None  # the offline model answers with passages, not titles
    return conversation if conversation.ask_title() else None


def cleaned(answer: str) -> str:
    """The model's title: one line, no markdown, quotes or trailing full stop, not too long."""
    first = next((line for line in answer.splitlines() if line.strip()), "")
    if not first:
        return ""
    title = plain_title(first).strip().strip(QUOTES).removeprefix("Title:").strip()
    return Conversation.title_from(title.rstrip(".")) if title else ""


async def write(conversation_id: int, assistant_id: str, messages: list[dict[str, Any]]) -> str:
    """Have the model write the title, and keep it (unless the owner renamed the thread)."""
    shown = [
        {"role": m["role"], "content": m["content"][:SHOWN_CHARS]} for m in messages if m["content"]
    ]
    title = ""
    try:
        answer = await asyncio.wait_for(
            api.one_off_answer(assistant_id, INSTRUCTIONS, shown, MAX_TOKENS), WAIT_SECONDS
        )
        title = cleaned(answer)
    except (api.AssistantsError, TimeoutError) as error:
        log.warning("No title for conversation %s: %s", conversation_id, error)
    await sync_to_async(Conversation.set_generated_title)(conversation_id, title)
    return title

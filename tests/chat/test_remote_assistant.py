"""Saving a profile's remote assistant when several processes do it at once.

Each test plays the race out step by step: copies of one profile read before another process
wrote stand for the processes, and the API is the real offline engine. The races themselves
(a first message in two tabs, an admin's save during a first use) interleave the same steps.
"""

from __future__ import annotations

import uuid

import openai
import pytest

from chat import remote_assistant
from chat.models import AssistantProfile

pytestmark = pytest.mark.django_db


def new_profile() -> AssistantProfile:
    # A name of its own: the offline engine holds the assistants of every other test too.
    name = f"Race {uuid.uuid4().hex[:8]}"
    return AssistantProfile.objects.create(name=name, model="threadline-retrieval")


def copy_of(profile: AssistantProfile) -> AssistantProfile:
    """The profile as another process read it, now."""
    return AssistantProfile.objects.get(pk=profile.pk)


def remote_named(client: openai.OpenAI, name: str) -> list[str]:
    return [a.id for a in client.beta.assistants.list(limit=100) if a.name == name]


def test_two_first_uses_at_once_make_one_remote_assistant(remote: openai.OpenAI) -> None:
    profile = new_profile()
    first, second = copy_of(profile), copy_of(profile)  # both read it before either saved

    made = remote_assistant.save(first)
    kept = remote_assistant.save(second)  # creates one too, loses the claim, deletes its own

    assert kept == made
    assert remote_named(remote, profile.name) == [made]
    profile.refresh_from_db()
    assert profile.assistant_id == made and not profile.needs_sync()


def test_a_remote_assistant_deleted_on_the_api_is_replaced_once(remote: openai.OpenAI) -> None:
    profile = new_profile()
    old = remote_assistant.save(profile)
    remote.beta.assistants.delete(old)
    first, second = copy_of(profile), copy_of(profile)  # both still know the deleted one

    replacement = remote_assistant.save(first)
    # Finds the old one gone too, but the row names the replacement by now: no third one.
    assert remote_assistant.save(second) == replacement

    assert replacement != old
    assert remote_named(remote, profile.name) == [replacement]
    profile.refresh_from_db()
    assert profile.assistant_id == replacement and not profile.needs_sync()


def test_an_edit_during_a_push_is_pushed_too(remote: openai.OpenAI) -> None:
    profile = new_profile()
    assistant_id = remote_assistant.save(profile)
    stale = copy_of(profile)
    profile.instructions = "Answer in French."
    profile.save()  # an admin's edit while the stale copy is being pushed

    assert remote_assistant.save(stale) == assistant_id

    # The stale fields went first; the push saw the newer edit and sent it after them.
    assert remote.beta.assistants.retrieve(assistant_id).instructions == "Answer in French."
    profile.refresh_from_db()
    assert not profile.needs_sync()

"""The remote assistant id: filled in by sync and fixed after; given on a new profile, it must
name an assistant the API has, which the profile then takes over with its knowledge."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from django.test import Client
from django.utils.html import escape

from chat.models import AssistantProfile
from tests.chat.conftest import point_at
from tests.chat.test_admin_assistants import ADD, WEATHER, form
from tests.servers import free_port

pytestmark = pytest.mark.django_db(transaction=True)


def change_url(profile: AssistantProfile) -> str:
    return f"/admin/chat/assistantprofile/{profile.pk}/change/"


def remote_count(remote: openai.OpenAI) -> int:
    return len(remote.beta.assistants.list(limit=100).data)


def test_the_remote_id_is_shown_but_not_editable_once_the_profile_exists(
    admin_client: Client, remote: openai.OpenAI
) -> None:
    admin_client.post(ADD, form())
    profile = AssistantProfile.objects.get()
    page = admin_client.get(change_url(profile)).content.decode()
    assert 'name="assistant_id"' not in page
    assert profile.assistant_id in page
    before = remote_count(remote)

    # A crafted post cannot move it (nor empty it, which used to make a second assistant).
    for other in ("asst_someone_else", ""):
        response = admin_client.post(change_url(profile), form(assistant_id=other, name="Renamed"))
        assert response.status_code == 302
        profile.refresh_from_db()
        assert profile.name == "Renamed" and profile.assistant_id.startswith("asst_")
    assert remote.beta.assistants.retrieve(profile.assistant_id).name == "Renamed"
    assert remote_count(remote) == before


def test_a_new_profile_takes_over_an_existing_remote_assistant_and_its_knowledge(
    admin_client: Client, remote: openai.OpenAI
) -> None:
    store = remote.vector_stores.create(name="made by a script")
    remote.vector_stores.files.upload_and_poll(
        vector_store_id=store.id, file=("facts.md", b"# Facts\n\nWater is wet.\n")
    )
    made = remote.beta.assistants.create(
        name="Made elsewhere",
        model="threadline-retrieval",
        tools=[{"type": "file_search"}, {"type": "function", "function": WEATHER}],
        tool_resources={"file_search": {"vector_store_ids": [store.id]}},
    )
    before = remote_count(remote)
    page = admin_client.get(ADD).content.decode()
    assert "To take over one that is there already, give its id" in page

    response = admin_client.post(ADD, form(assistant_id=f" {made.id} ", functions=""))
    assert response.status_code == 302, response.context["adminform"].form.errors
    profile = AssistantProfile.objects.get()
    assert profile.assistant_id == made.id and profile.sync_error == ""
    assert profile.functions is None  # not managed here: the remote's stay
    assert profile.vector_store_id == store.id
    facts = profile.knowledge.get()
    assert (facts.name, facts.status, facts.pages) == ("facts.md", "completed", 1)

    mirrored = remote.beta.assistants.retrieve(made.id)
    assert (mirrored.name, mirrored.instructions) == ("Legal helper", "Cite the page.")
    assert [t.type for t in mirrored.tools] == ["function", "file_search"]
    assert mirrored.tool_resources.file_search.vector_store_ids == [store.id]
    assert remote_count(remote) == before  # taken over, not copied
    assert "facts.md" in admin_client.get(change_url(profile)).content.decode()


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("asst_nobody_has_this", "The Assistants API has no assistant asst_nobody_has_this."),
        ("../../files", "An assistant id is made of letters, digits, _ and -"),
        ("mirrored", "already mirrors"),
        ("api down", "The id cannot be checked now: The assistant service isn't answering"),
    ],
)
def test_a_bad_remote_id_is_refused_at_its_field_and_nothing_is_saved(
    admin_client: Client, remote: openai.OpenAI, settings: Any, given: str, says: str
) -> None:
    made = remote.beta.assistants.create(model="threadline-retrieval", name="Taken")
    if given == "mirrored":
        AssistantProfile.objects.create(name="First", model="m", assistant_id=made.id)
        given = made.id
    if given == "api down":
        point_at(settings, f"http://127.0.0.1:{free_port()}/v1")
        given = made.id
    profiles = AssistantProfile.objects.count()
    before = remote_count(remote)

    instructions = "Typed <carefully>."
    response = admin_client.post(ADD, form(assistant_id=given, instructions=instructions))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["assistant_id"]
    assert says in errors["assistant_id"][0]
    page = response.content.decode()
    assert escape(errors["assistant_id"][0]) in page
    assert escape(instructions) in page  # what was typed stays
    assert escape(json.dumps([WEATHER])) in page
    assert AssistantProfile.objects.count() == profiles
    assert remote_count(remote) == before
    assert remote.beta.assistants.retrieve(made.id).name == "Taken"  # untouched

"""The assistant admin through Django's test client, against the real embedded engine.

The admin runs in this process (pytest-django's database); its Assistants API is the offline
engine, a live server of its own, checked here through the official SDK.
"""

from __future__ import annotations

import json
import time
from typing import Any

import openai
import pytest
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils.html import escape

from chat.admin import assistant_sync
from chat.models import AssistantProfile, Conversation, KnowledgeFile
from tests.chat.conftest import corpus, point_at
from tests.servers import ThreadlineServer, free_port

# Transactional: the admin reaches the API once its transaction commits (on_commit).
pytestmark = pytest.mark.django_db(transaction=True)

ADD = "/admin/chat/assistantprofile/add/"
LIST = "/admin/chat/assistantprofile/"
WEATHER = {
    "name": "get_weather",
    "description": "Today's weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def form(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "Legal helper",
        "description": "Answers from the contracts.",
        "model": "threadline-retrieval",
        "instructions": "Cite the page.",
        "temperature": "0.4",
        "top_p": "0.9",
        "response_format": "auto",
        "file_search": "on",
        "functions": json.dumps([WEATHER]),
        "metadata": json.dumps({"team": "legal"}),
        "assistant_id": "",
        "published": "on",
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def wait_for_files(profile: AssistantProfile, timeout: float = 30) -> list[KnowledgeFile]:
    deadline = time.monotonic() + timeout
    while True:
        files = assistant_sync.refresh(profile)
        if all(f.status != "in_progress" for f in files) or time.monotonic() > deadline:
            return files
        time.sleep(0.2)


def test_saving_a_new_assistant_creates_it_on_the_api(
    admin_client: Client, remote: openai.OpenAI
) -> None:
    response = admin_client.post(ADD, form(code_interpreter="on"))
    assert response.status_code == 302, response.context["adminform"].form.errors
    profile = AssistantProfile.objects.get(name="Legal helper")
    assert profile.assistant_id.startswith("asst_")
    assert profile.sync_error == "" and not profile.needs_sync()
    mirrored = remote.beta.assistants.retrieve(profile.assistant_id)
    assert mirrored.model == "threadline-retrieval"
    assert mirrored.instructions == "Cite the page."
    assert mirrored.temperature == pytest.approx(0.4)
    assert mirrored.top_p == pytest.approx(0.9)
    assert mirrored.metadata == {"team": "legal"}
    assert [t.type for t in mirrored.tools] == ["code_interpreter", "function", "file_search"]
    assert mirrored.tools[1].function.name == "get_weather"

    # An edit follows; the list shows it in sync.
    change = f"/admin/chat/assistantprofile/{profile.pk}/change/"
    response = admin_client.post(
        change,
        form(temperature="", response_format="json_object", assistant_id=profile.assistant_id),
    )
    assert response.status_code == 302
    mirrored = remote.beta.assistants.retrieve(profile.assistant_id)
    assert mirrored.response_format.type == "json_object"
    assert "✓ in sync" in admin_client.get(LIST).content.decode()


def test_the_form_offers_the_api_models_and_counts_instruction_characters(
    admin_client: Client, remote: openai.OpenAI
) -> None:
    page = admin_client.get(ADD).content.decode()
    assert '<option value="threadline-retrieval">' in page
    assert "0 / 256,000 characters" in page
    too_long = form(instructions="x" * 256_001)
    response = admin_client.post(ADD, too_long)
    assert response.status_code == 200
    assert "instructions" in response.context["adminform"].form.errors


def test_offline_any_model_name_works_and_no_warning_says_otherwise(
    admin_client: Client, remote: openai.OpenAI
) -> None:
    page = admin_client.get(ADD).content.decode()
    assert "every model name is answered by the offline retrieval model" in page
    response = admin_client.post(ADD, form(model="my-local-llama"))
    assert response.status_code == 302
    assert not any("does not list" in m for m in messages_of(response))
    assert AssistantProfile.objects.get().model == "my-local-llama"


def test_a_model_the_model_api_does_not_list_is_a_warning_once(
    admin_client: Client, model_engine: ThreadlineServer, settings: Any
) -> None:
    point_at(settings, model_engine.api_url)
    page = admin_client.get(ADD).content.decode()
    assert '<option value="gpt-4o-mini">' in page  # the model API's, from the engine's list
    assert '<option value="threadline-retrieval">' in page
    response = admin_client.post(ADD, form(model="my-local-llama", functions=""))
    assert response.status_code == 302
    warned = [m for m in messages_of(response) if "does not list a model called" in m]
    assert warned == [
        "The model API does not list a model called 'my-local-llama'. It was kept; runs will "
        "fail if the model API does not know it either."
    ]
    profile = AssistantProfile.objects.get()
    assert profile.model == "my-local-llama"
    admin_client.get(LIST)  # the page that shows (and so uses up) the messages
    # Saving it again for something else says nothing more about the model.
    change = f"/admin/chat/assistantprofile/{profile.pk}/change/"
    again = admin_client.post(change, form(model="my-local-llama", functions="", name="Renamed"))
    assert again.status_code == 302
    assert not any("does not list" in m for m in messages_of(again))
    admin_client.get(LIST)
    listed = admin_client.post(change, form(model="gpt-4o", functions="", name="Renamed"))
    assert not any("does not list" in m for m in messages_of(listed))


@pytest.mark.parametrize(
    ("functions", "says"),
    [
        ('[{"name": "get_weather",', "This is not valid JSON"),
        (json.dumps({"name": "x"}), "must be a JSON list"),
        (
            json.dumps([{**WEATHER, "parameters": {"type": "objekt"}}]),
            "not a valid JSON Schema at type",
        ),
        (json.dumps([WEATHER, {**WEATHER, "description": "again"}]), "is used twice"),
        (json.dumps([{"name": "has spaces"}]), "needs a name of letters"),
    ],
)
def test_bad_function_definitions_are_shown_at_the_field_and_nothing_is_saved(
    admin_client: Client, remote: openai.OpenAI, functions: str, says: str
) -> None:
    before = len(remote.beta.assistants.list(limit=100).data)
    response = admin_client.post(ADD, form(functions=functions))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["functions"]
    assert says in " ".join(errors["functions"])
    assert says.split()[0] in response.content.decode()  # shown on the page
    assert escape(functions) in response.content.decode()  # what was typed stays in the box
    assert AssistantProfile.objects.count() == 0
    assert len(remote.beta.assistants.list(limit=100).data) == before


def test_metadata_must_be_a_small_object(admin_client: Client, remote: openai.OpenAI) -> None:
    many = json.dumps({f"k{i}": "v" for i in range(17)})
    response = admin_client.post(ADD, form(metadata=many))
    assert "at most 16 pairs" in " ".join(response.context["adminform"].form.errors["metadata"])
    response = admin_client.post(ADD, form(metadata="[1, 2]"))
    assert "must be a JSON object" in " ".join(
        response.context["adminform"].form.errors["metadata"]
    )
    assert AssistantProfile.objects.count() == 0


def test_api_down_keeps_the_row_out_of_sync_and_sync_now_fixes_it(
    admin_client: Client, remote: openai.OpenAI, settings: Any
) -> None:
    point_at(settings, f"http://127.0.0.1:{free_port()}/v1")  # nothing listens there
    response = admin_client.post(ADD, form())
    assert response.status_code == 302
    assert any("Saved here, but not on the Assistants API" in m for m in messages_of(response))
    profile = AssistantProfile.objects.get()
    assert profile.assistant_id == "" and "isn't answering" in profile.sync_error
    assert profile.instructions == "Cite the page."  # nothing entered is lost
    assert "✗ out of sync" in admin_client.get(LIST).content.decode()

    point_at(settings, remote.base_url.__str__().rstrip("/"))
    response = admin_client.post(
        LIST, {"action": "sync_now", "_selected_action": [str(profile.pk)]}
    )
    assert response.status_code == 302
    profile.refresh_from_db()
    assert profile.sync_error == "" and profile.assistant_id.startswith("asst_")
    assert remote.beta.assistants.retrieve(profile.assistant_id).name == "Legal helper"
    assert "✓ in sync" in admin_client.get(LIST).content.decode()


def test_the_api_refusing_shows_its_message(admin_client: Client, remote: openai.OpenAI) -> None:
    admin_client.post(ADD, form())
    profile = AssistantProfile.objects.get()
    profile.set_vector_store("vs_does_not_exist")  # say, deleted on the API side
    assert assistant_sync.push(profile)
    page = admin_client.get(LIST).content.decode()
    assert "✗ out of sync" in page
    change = admin_client.get(f"/admin/chat/assistantprofile/{profile.pk}/change/")
    assert "No vector store found" in profile.sync_error
    assert escape("The Assistants API said: " + profile.sync_error) in change.content.decode()


def test_knowledge_files_are_read_and_a_bad_one_shows_why(
    admin_client: Client, remote: openai.OpenAI
) -> None:
    pdf = SimpleUploadedFile("GeoBase.pdf", corpus("GeoBase_NHNC1_Data_Model_UML_EN.pdf"))
    broken = SimpleUploadedFile("broken.pdf", b"%PDF-1.4\nthis is not really a pdf\n%%EOF\n")
    notes = SimpleUploadedFile("notes.md", b"# Notes\n\nThe toponymy model is in chapter 5.\n")
    response = admin_client.post(ADD, form(knowledge_files=[pdf, broken, notes]))
    assert response.status_code == 302, response.context["adminform"].form.errors
    profile = AssistantProfile.objects.get()
    assert profile.vector_store_id.startswith("vs_")
    resources = remote.beta.assistants.retrieve(profile.assistant_id).tool_resources
    assert resources.file_search.vector_store_ids == [profile.vector_store_id]

    change = f"/admin/chat/assistantprofile/{profile.pk}/change/"
    knowledge = f"/admin/chat/assistantprofile/{profile.pk}/knowledge/"
    assert "GeoBase.pdf" in admin_client.get(knowledge).content.decode()

    states = {f.name: f for f in wait_for_files(profile)}
    assert states["GeoBase.pdf"].status == "completed"
    assert states["notes.md"].status == "completed"
    assert states["broken.pdf"].status == "failed" and states["broken.pdf"].last_error

    assert states["GeoBase.pdf"].pages == 19 and states["GeoBase.pdf"].chunks
    page = admin_client.get(change).content.decode()
    assert "✓ ready, 19 pages, " in page and "✗ failed: " in page
    assert "data-poll" not in page  # nothing processing: the page stops asking

    broken_row = states["broken.pdf"]
    reindex = f"/admin/chat/assistantprofile/{profile.pk}/knowledge/{broken_row.pk}/reindex/"
    assert admin_client.post(reindex).status_code == 302
    assert wait_for_files(profile)[1].status == "failed"
    remove = f"/admin/chat/assistantprofile/{profile.pk}/knowledge/{broken_row.pk}/remove/"
    assert admin_client.post(remove).status_code == 302
    assert not KnowledgeFile.objects.filter(pk=broken_row.pk).exists()
    with pytest.raises(openai.NotFoundError):
        remote.files.retrieve(broken_row.file_id)
    listed = remote.vector_stores.files.list(profile.vector_store_id)
    assert {f.id for f in listed} == {states["GeoBase.pdf"].file_id, states["notes.md"].file_id}


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        ("report.pdf", b"PK\x03\x04 a zip in disguise", "is not a PDF"),
        ("encrypted.pdf", corpus("encrypted-file.pdf"), "is encrypted"),
        ("tool.exe", b"MZ", "only PDF, text"),
    ],
)
def test_bad_knowledge_files_are_refused_at_the_field_and_nothing_is_saved(
    admin_client: Client, remote: openai.OpenAI, name: str, content: bytes, says: str
) -> None:
    good = SimpleUploadedFile("fine.md", b"# fine\n")
    bad = SimpleUploadedFile(name, content)
    files_before = len(remote.files.list().data)
    response = admin_client.post(ADD, form(knowledge_files=[good, bad]))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["knowledge_files"]
    assert says in " ".join(errors["knowledge_files"])
    assert AssistantProfile.objects.count() == 0
    assert KnowledgeFile.objects.count() == 0
    assert len(remote.files.list().data) == files_before


def test_a_file_over_the_limit_is_refused_at_the_field(
    admin_client: Client, remote: openai.OpenAI, settings: Any
) -> None:
    # Stands in for 600 MB against the 512 MB default: skipped as it arrives, never stored.
    settings.KNOWLEDGE_MAX_UPLOAD_BYTES = 1024
    big = SimpleUploadedFile("big.md", b"x" * 2048)
    response = admin_client.post(ADD, form(knowledge_files=[big]))
    assert "big.md is over the 1 KB limit" in " ".join(
        response.context["adminform"].form.errors["knowledge_files"]
    )
    assert response.wsgi_request.FILES.getlist("knowledge_files") == []  # never kept
    assert AssistantProfile.objects.count() == 0


def test_more_knowledge_files_than_one_save_takes_are_refused_at_the_field(
    admin_client: Client, remote: openai.OpenAI, settings: Any
) -> None:
    # The count bounds the request's size, which the server refuses beyond (config/bodies.py).
    settings.KNOWLEDGE_MAX_FILES = 2
    files = [SimpleUploadedFile(f"note{i}.md", b"# note\n") for i in range(3)]
    response = admin_client.post(ADD, form(knowledge_files=files))
    assert "Add at most 2 knowledge files at once (3 were chosen)" in " ".join(
        response.context["adminform"].form.errors["knowledge_files"]
    )
    assert AssistantProfile.objects.count() == 0


def test_import_from_api_makes_rows_for_assistants_not_mirrored(
    admin_client: Client, remote: openai.OpenAI
) -> None:
    store = remote.vector_stores.create(name="script's store")
    remote.vector_stores.files.upload_and_poll(
        vector_store_id=store.id, file=("facts.md", b"# Facts\n\nWater is wet.\n")
    )
    made = remote.beta.assistants.create(
        name="Made elsewhere",
        model="threadline-retrieval",
        instructions="<b>from a script</b>",
        tools=[{"type": "file_search"}, {"type": "function", "function": WEATHER}],
        tool_resources={"file_search": {"vector_store_ids": [store.id]}},
        metadata={"origin": "script"},
    )
    response = admin_client.post(f"{LIST}import/")
    assert response.status_code == 302
    assert any("Imported" in m for m in messages_of(response))
    profile = AssistantProfile.objects.get(assistant_id=made.id)
    assert profile.name == "Made elsewhere" and not profile.published
    assert profile.file_search and profile.functions[0]["name"] == "get_weather"
    assert profile.metadata == {"origin": "script"}
    assert not profile.needs_sync()
    assert profile.vector_store_id == store.id
    facts = profile.knowledge.get()
    assert (facts.name, facts.status) == ("facts.md", "completed")
    # Importing again adds nothing.
    count = AssistantProfile.objects.count()
    admin_client.post(f"{LIST}import/")
    assert AssistantProfile.objects.count() == count
    page = admin_client.get(f"/admin/chat/assistantprofile/{profile.pk}/change/").content.decode()
    assert "&lt;b&gt;from a script&lt;/b&gt;" in page


def test_deleting_shows_and_removes_the_remote_parts_and_keeps_threads(
    admin_client: Client, remote: openai.OpenAI, admin_user: Any
) -> None:
    notes = SimpleUploadedFile("notes.md", b"# Notes\n\nSomething to know.\n")
    admin_client.post(ADD, form(knowledge_files=[notes]))
    profile = AssistantProfile.objects.get()
    file = profile.knowledge.get()
    thread = Conversation.objects.create(
        owner=admin_user, thread_id="thread_x", assistant=profile, title="Kept"
    )
    delete = f"/admin/chat/assistantprofile/{profile.pk}/delete/"
    page = admin_client.get(delete).content.decode()
    assert f"Remote assistant: {profile.assistant_id}" in page
    assert f"Remote vector store: {profile.vector_store_id}" in page
    assert f"Remote file: notes.md ({file.file_id})" in page

    assert admin_client.post(delete, {"post": "yes"}).status_code == 302
    assert not AssistantProfile.objects.exists()
    with pytest.raises(openai.NotFoundError):
        remote.beta.assistants.retrieve(profile.assistant_id)
    with pytest.raises(openai.NotFoundError):
        remote.vector_stores.retrieve(profile.vector_store_id)
    with pytest.raises(openai.NotFoundError):
        remote.files.retrieve(file.file_id)
    thread.refresh_from_db()
    assert thread.assistant is None


def test_deleting_while_the_api_is_down_deletes_nothing(
    admin_client: Client, remote: openai.OpenAI, settings: Any
) -> None:
    admin_client.post(ADD, form())
    profile = AssistantProfile.objects.get()
    point_at(settings, f"http://127.0.0.1:{free_port()}/v1")
    response = admin_client.post(
        f"/admin/chat/assistantprofile/{profile.pk}/delete/", {"post": "1"}
    )
    assert response.status_code == 302
    assert any("was not deleted" in m for m in messages_of(response))
    assert AssistantProfile.objects.filter(pk=profile.pk).exists()

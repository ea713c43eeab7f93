"""Knowledge files added while the Assistants API is down or refuses them wait here, then go.

The admin runs in this process against the offline engine (a live server); "down" is a port
where nothing listens, "refuses" is an engine of our own with a small upload limit.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils.html import escape

from chat.admin import assistant_sync
from chat.models import AssistantProfile, KnowledgeFile
from tests.chat.conftest import corpus, point_at
from tests.chat.test_admin_assistants import ADD, LIST, form, messages_of, wait_for_files
from tests.servers import ThreadlineServer, free_port, sdk

# Transactional: the admin reaches the API once its transaction commits (on_commit).
pytestmark = pytest.mark.django_db(transaction=True)

PDF = "GeoBase_NHNC1_Data_Model_UML_EN.pdf"
NOTES = b"# Notes\n\nThe toponymy model is in chapter 5.\n"
UNREACHABLE = "The assistant service isn't answering right now."


def api_down(settings: Any) -> None:
    point_at(settings, f"http://127.0.0.1:{free_port()}/v1")  # nothing listens there


def api_up(settings: Any, remote: openai.OpenAI) -> None:
    point_at(settings, str(remote.base_url).rstrip("/"))


def files_on_disk(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def added_while_down(admin_client: Client, settings: Any) -> AssistantProfile:
    api_down(settings)
    pdf = SimpleUploadedFile(PDF, corpus(PDF))
    notes = SimpleUploadedFile("notes.md", NOTES)
    response = admin_client.post(ADD, form(knowledge_files=[pdf, notes]))
    assert response.status_code == 302, response.context["adminform"].form.errors
    said = messages_of(response)
    assert any("Saved here, but not on the Assistants API" in m for m in said), said
    assert any("2 knowledge file(s) are kept here, waiting to upload" in m for m in said), said
    return AssistantProfile.objects.get()


@pytest.mark.parametrize("retry", ["sync now", "save again"])
def test_files_added_while_the_api_is_down_wait_here_until_a_sync_uploads_them(
    admin_client: Client, remote: openai.OpenAI, settings: Any, waiting_dir: Path, retry: str
) -> None:
    profile = added_while_down(admin_client, settings)
    assert profile.assistant_id == "" and UNREACHABLE in profile.sync_error
    waiting = list(profile.knowledge.all())
    assert [(f.name, f.file_id, f.status) for f in waiting] == [
        (PDF, "", "waiting"),
        ("notes.md", "", "waiting"),
    ]
    assert all(UNREACHABLE in f.last_error for f in waiting)
    # Kept whole, under the data directory's folder for them.
    kept = files_on_disk(waiting_dir)
    assert {p.read_bytes() for p in kept} == {corpus(PDF), NOTES}
    assert all(Path(f.local_copy.path).is_relative_to(waiting_dir) for f in waiting)

    change = f"/admin/chat/assistantprofile/{profile.pk}/change/"
    page = admin_client.get(change).content.decode()
    assert f"waiting to upload: {escape(UNREACHABLE)}" in page
    assert f'aria-label="Remove {PDF}"' in page
    assert f'aria-label="Re-index {PDF}"' not in page  # nothing to re-index yet
    assert "✗ out of sync" in admin_client.get(LIST).content.decode()

    api_up(settings, remote)
    if retry == "sync now":
        action = {"action": "sync_now", "_selected_action": [str(profile.pk)]}
        response = admin_client.post(LIST, action)
    else:
        response = admin_client.post(change, form())
    assert response.status_code == 302
    assert any("2 knowledge file(s)" in m for m in messages_of(response)), messages_of(response)

    profile.refresh_from_db()
    assert profile.sync_error == "" and profile.assistant_id.startswith("asst_")
    uploaded = {f.name: f for f in profile.knowledge.all()}
    assert all(f.file_id.startswith("file-") and not f.local_copy for f in uploaded.values())
    assert files_on_disk(waiting_dir) == []  # the local copies went once the API had them
    listed = remote.vector_stores.files.list(profile.vector_store_id)
    assert {f.id for f in listed} == {f.file_id for f in uploaded.values()}
    assert remote.files.content(uploaded["notes.md"].file_id).read() == NOTES
    states = {f.name: f for f in wait_for_files(profile)}
    assert states[PDF].status == "completed" and states[PDF].pages == 19
    assert "✓ in sync" in admin_client.get(LIST).content.decode()


def test_removing_a_waiting_file_removes_only_its_local_copy(
    admin_client: Client, remote: openai.OpenAI, settings: Any, waiting_dir: Path
) -> None:
    profile = added_while_down(admin_client, settings)
    pdf, notes = profile.knowledge.all()
    base = f"/admin/chat/assistantprofile/{profile.pk}/knowledge/{pdf.pk}"

    response = admin_client.post(f"{base}/reindex/")
    assert any("is not uploaded yet" in m for m in messages_of(response))
    response = admin_client.post(f"{base}/remove/")  # the API is still down: no matter
    assert any(f"Removed {PDF} from the knowledge." in m for m in messages_of(response))
    assert list(profile.knowledge.all()) == [notes]
    assert [p.read_bytes() for p in files_on_disk(waiting_dir)] == [NOTES]

    api_up(settings, remote)
    admin_client.post(LIST, {"action": "sync_now", "_selected_action": [str(profile.pk)]})
    profile.refresh_from_db()
    listed = remote.vector_stores.files.list(profile.vector_store_id)
    assert [f.id for f in listed] == [profile.knowledge.get().file_id]  # only the one kept


@pytest.mark.parametrize("how", ["delete page", "delete selected"])
def test_deleting_an_assistant_removes_its_waiting_copies(
    admin_client: Client, remote: openai.OpenAI, settings: Any, waiting_dir: Path, how: str
) -> None:
    profile = added_while_down(admin_client, settings)
    assert len(files_on_disk(waiting_dir)) == 2
    # Never synced, so nothing remote to remove: deleting works with the API still down.
    if how == "delete page":
        url = f"/admin/chat/assistantprofile/{profile.pk}/delete/"
        response = admin_client.post(url, {"post": "yes"})
    else:
        selected = {"action": "delete_selected", "_selected_action": [str(profile.pk)]}
        response = admin_client.post(LIST, {**selected, "post": "yes"})
    assert response.status_code == 302
    assert not AssistantProfile.objects.exists() and not KnowledgeFile.objects.exists()
    assert files_on_disk(waiting_dir) == []


def test_bad_files_are_refused_while_the_api_is_down_too_and_nothing_is_kept(
    admin_client: Client, settings: Any, waiting_dir: Path
) -> None:
    api_down(settings)
    good = SimpleUploadedFile("fine.md", b"# fine\n")
    bad = SimpleUploadedFile("report.pdf", b"PK\x03\x04 a zip in disguise")
    response = admin_client.post(ADD, form(knowledge_files=[good, bad]))
    assert response.status_code == 200
    assert "is not a PDF" in " ".join(response.context["adminform"].form.errors["knowledge_files"])
    assert not AssistantProfile.objects.exists() and not KnowledgeFile.objects.exists()
    assert files_on_disk(waiting_dir) == []


@pytest.fixture(scope="module")
def strict_engine() -> Iterator[ThreadlineServer]:
    """An Assistants API that takes files of 4 KB at most: one that refuses some."""
    server = ThreadlineServer(env={"THREADLINE_MAX_UPLOAD_BYTES": "4096"}).start()
    yield server
    server.stop()


def test_a_file_the_api_refuses_waits_with_its_message_and_the_others_go(
    admin_client: Client, strict_engine: ThreadlineServer, settings: Any, waiting_dir: Path
) -> None:
    point_at(settings, strict_engine.api_url)
    big = SimpleUploadedFile("big.md", b"# Big\n\n" + b"words " * 2000)
    small = SimpleUploadedFile("small.md", NOTES)
    response = admin_client.post(ADD, form(knowledge_files=[big, small]))
    assert response.status_code == 302
    said = messages_of(response)
    assert any("Added 1 knowledge file(s)" in m for m in said), said
    assert any("1 knowledge file(s) are kept here" in m and "too large" in m for m in said), said

    profile = AssistantProfile.objects.get()
    big_row, small_row = profile.knowledge.all()
    assert small_row.file_id.startswith("file-") and not small_row.local_copy
    assert big_row.status == "waiting" and big_row.file_id == ""
    assert "The file is too large" in big_row.last_error  # the API's own words
    assert profile.sync_error.startswith("big.md was not uploaded: The file is too large")
    assert len(files_on_disk(waiting_dir)) == 1
    page = admin_client.get(f"/admin/chat/assistantprofile/{profile.pk}/change/")
    assert "waiting to upload: The file is too large" in page.content.decode()

    # Removing the refused file leaves the assistant with what the API took; a sync is clean.
    remove = f"/admin/chat/assistantprofile/{profile.pk}/knowledge/{big_row.pk}/remove/"
    admin_client.post(remove)
    admin_client.post(LIST, {"action": "sync_now", "_selected_action": [str(profile.pk)]})
    profile.refresh_from_db()
    assert profile.sync_error == "" and files_on_disk(waiting_dir) == []
    with sdk(strict_engine) as client:
        listed = client.vector_stores.files.list(profile.vector_store_id)
        assert [f.id for f in listed] == [small_row.file_id]


def test_a_missing_local_copy_is_reported_not_crashed_on(
    admin_client: Client, remote: openai.OpenAI, settings: Any, waiting_dir: Path
) -> None:
    profile = added_while_down(admin_client, settings)
    pdf = profile.knowledge.first()
    assert pdf is not None
    Path(pdf.local_copy.path).unlink()  # say, the data directory was cleaned by hand
    api_up(settings, remote)
    synced = assistant_sync.sync(profile)
    assert [f.name for f in synced.uploaded] == ["notes.md"]
    assert [f.name for f in synced.waiting] == [PDF]
    pdf.refresh_from_db()
    assert (pdf.status, pdf.file_id) == ("waiting", "")
    assert pdf.last_error == "The copy kept here is missing; add the file again."
    profile.refresh_from_db()
    assert profile.sync_error == f"{PDF} was not uploaded: {pdf.last_error}"


def test_a_file_that_cannot_be_stored_here_is_named_and_the_rest_are_kept(
    settings: Any, tmp_path: Path
) -> None:
    from chat.uploads import CheckedFile

    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the folder should be")
    profile = AssistantProfile.objects.create(name="Disk", model="threadline-retrieval")
    first = CheckedFile("a.md", len(NOTES), "text/markdown", SimpleUploadedFile("a.md", NOTES))
    settings.KNOWLEDGE_WAITING_DIR = blocked / "waiting"
    kept = assistant_sync.keep_files(profile, [first])
    assert kept.files == []
    assert kept.problems == ["a.md could not be stored on this server (Not a directory)."]
    assert not KnowledgeFile.objects.filter(profile=profile).exists()

    settings.KNOWLEDGE_WAITING_DIR = tmp_path / "waiting"
    second = CheckedFile("b.md", len(NOTES), "text/markdown", SimpleUploadedFile("b.md", NOTES))
    kept = assistant_sync.keep_files(profile, [second])
    assert [f.name for f in kept.files] == ["b.md"] and kept.problems == []

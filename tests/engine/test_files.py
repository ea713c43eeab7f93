"""/v1/files through the official SDK: upload, list, download, delete, limits and ownership."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import httpx2 as httpx
import openai
import pytest

from tests.conftest import sdk
from tests.engine.test_auth_and_projects import create_key
from tests.servers import ENGINE_KEY, ThreadlineServer


@pytest.fixture(scope="module")
def other_project(offline_engine: ThreadlineServer) -> Iterator[openai.OpenAI]:
    """A client of another project, which must not see anything of the default project."""
    with sdk(offline_engine, key=create_key(offline_engine, "files-other")) as client:
        yield client


def stored_names(server: ThreadlineServer) -> set[str]:
    files_dir = server.data_dir / "files"
    return {path.name for path in files_dir.iterdir()} if files_dir.exists() else set()


def test_upload_list_retrieve_and_download_round_trip(offline_client: openai.OpenAI) -> None:
    content = b"%PDF-1.4 not really a pdf, but bytes are bytes\n" * 100
    name = "Résumé 2026 (final).pdf"
    uploaded = offline_client.files.create(file=(name, content), purpose="assistants")
    assert uploaded.id.startswith("file-")
    assert (uploaded.filename, uploaded.bytes) == (name, len(content))
    assert uploaded.purpose == "assistants"
    assert offline_client.files.retrieve(uploaded.id) == uploaded

    download = offline_client.files.content(uploaded.id)
    assert download.content == content
    assert download.response.headers["content-type"] == "application/pdf"
    disposition = download.response.headers["content-disposition"]
    assert disposition.startswith("attachment;")
    assert f"filename*=utf-8''{quote(name)}" in disposition


def test_list_filters_by_purpose_and_paginates(offline_client: openai.OpenAI) -> None:
    batch = [
        offline_client.files.create(file=(f"data-{i}.jsonl", b"{}\n"), purpose="batch")
        for i in range(3)
    ]
    vision = offline_client.files.create(file=("cat.png", b"\x89PNG fake"), purpose="vision")

    listed = offline_client.files.list(purpose="batch", order="asc", limit=2)
    assert len(listed.data) == 2 and listed.has_more
    every_batch_file = [file.id for file in offline_client.files.list(purpose="batch", limit=2)]
    assert all(file.id in every_batch_file for file in batch)
    assert vision.id not in every_batch_file
    assert vision.id in [file.id for file in offline_client.files.list(purpose="vision")]


def test_the_file_name_is_metadata_never_a_path(
    offline_engine: ThreadlineServer, offline_client: openai.OpenAI
) -> None:
    before = stored_names(offline_engine)
    uploaded = offline_client.files.create(
        file=("../../../etc/evil.txt", b"owned?"), purpose="assistants"
    )
    assert uploaded.filename == "evil.txt"
    [new_name] = stored_names(offline_engine) - before
    assert "evil" not in new_name
    assert not (offline_engine.data_dir / "etc").exists()


def test_an_empty_file_uploads(offline_client: openai.OpenAI) -> None:
    uploaded = offline_client.files.create(file=("empty.txt", b""), purpose="user_data")
    assert uploaded.bytes == 0
    assert offline_client.files.content(uploaded.id).content == b""


def test_bad_purpose_is_a_clear_400(offline_client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        offline_client.files.create(file=("a.txt", b"a"), purpose="homework")  # type: ignore[arg-type]
    assert caught.value.body["param"] == "purpose"
    assert "'homework' is not one of assistants, vision" in caught.value.body["message"]


def test_missing_file_or_purpose_is_a_clear_400(offline_engine: ThreadlineServer) -> None:
    # The SDK insists on both fields, so send the forms by hand.
    headers = {"Authorization": f"Bearer {ENGINE_KEY}"}
    url = f"{offline_engine.api_url}/files"
    no_file = httpx.post(url, headers=headers, data={"purpose": "assistants"})
    assert no_file.status_code == 400
    assert no_file.json()["error"]["param"] == "file"
    assert "Missing required parameter: 'file'" in no_file.json()["error"]["message"]

    no_purpose = httpx.post(url, headers=headers, files={"file": ("a.txt", b"a")})
    assert no_purpose.status_code == 400
    assert no_purpose.json()["error"]["param"] == "purpose"


def test_a_failed_upload_leaves_no_bytes_behind(
    offline_engine: ThreadlineServer, offline_client: openai.OpenAI
) -> None:
    before = stored_names(offline_engine)
    with pytest.raises(openai.BadRequestError):
        offline_client.files.create(file=("a.txt", b"abc" * 1000), purpose="nope")  # type: ignore[arg-type]
    assert stored_names(offline_engine) == before


def test_delete_removes_the_bytes_and_every_store_membership(
    offline_engine: ThreadlineServer, offline_client: openai.OpenAI
) -> None:
    uploaded = offline_client.files.create(
        file=("zebra.txt", b"Zebras graze on the savanna near waterholes."), purpose="assistants"
    )
    stores = [offline_client.vector_stores.create(name=f"zebra {i}") for i in range(2)]
    for store in stores:
        done = offline_client.vector_stores.files.create_and_poll(
            file_id=uploaded.id, vector_store_id=store.id
        )
        assert done.status == "completed"
    assert offline_client.vector_stores.search(stores[0].id, query="zebras savanna").data
    stored = stored_names(offline_engine)

    deleted = offline_client.files.delete(uploaded.id)
    assert (deleted.id, deleted.deleted) == (uploaded.id, True)
    assert len(stored - stored_names(offline_engine)) == 1
    with pytest.raises(openai.NotFoundError):
        offline_client.files.retrieve(uploaded.id)
    with pytest.raises(openai.NotFoundError):
        offline_client.files.content(uploaded.id)
    for store in stores:
        assert offline_client.vector_stores.retrieve(store.id).file_counts.total == 0
        assert offline_client.vector_stores.retrieve(store.id).usage_bytes == 0
        assert offline_client.vector_stores.search(store.id, query="zebras savanna").data == []


def test_another_project_cannot_see_or_touch_my_files(
    offline_client: openai.OpenAI, other_project: openai.OpenAI
) -> None:
    mine = offline_client.files.create(file=("mine.txt", b"private"), purpose="assistants")
    assert mine.id not in [file.id for file in other_project.files.list()]
    for attempt in (
        other_project.files.retrieve,
        other_project.files.content,
        other_project.files.delete,
    ):
        with pytest.raises(openai.NotFoundError):
            attempt(mine.id)
    assert offline_client.files.retrieve(mine.id).id == mine.id


def test_uploads_over_the_limit_are_refused_with_413() -> None:
    server = ThreadlineServer(env={"THREADLINE_MAX_UPLOAD_BYTES": "1000"}).start()
    try:
        with sdk(server) as client:
            # Declared too large: refused from Content-Length, before the form is parsed.
            with pytest.raises(openai.APIStatusError) as declared:
                client.files.create(file=("big.txt", b"x" * 100_000), purpose="assistants")
            # Declared size within the multipart allowance: refused while the bytes arrive.
            with pytest.raises(openai.APIStatusError) as streamed:
                client.files.create(file=("big.txt", b"x" * 1001), purpose="assistants")
            for caught in (declared, streamed):
                assert caught.value.status_code == 413
                assert caught.value.body["code"] == "file_too_large"
                assert caught.value.body["param"] == "file"
                assert (
                    "the largest upload this server accepts is 1,000 bytes"
                    in (caught.value.body["message"])
                )
            assert stored_names(server) == set()
            at_the_limit = client.files.create(file=("ok.txt", b"x" * 1000), purpose="assistants")
            assert at_the_limit.bytes == 1000
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("name", "served_as"),
    [
        ("page.html", "application/octet-stream"),
        ("drawing.svg", "image/svg+xml"),
        ("feed.xml", "application/octet-stream"),
        ("script.js", "application/octet-stream"),
        ("notes.txt", "text/plain"),
        ("photo.png", "image/png"),
        ("report.pdf", "application/pdf"),
        ("no-extension", "application/octet-stream"),
    ],
)
def test_content_is_served_as_an_allowed_type_or_as_bytes(
    offline_client: openai.OpenAI, name: str, served_as: str
) -> None:
    if served_as == "image/svg+xml":
        served_as = "application/octet-stream"  # SVG runs scripts: never served as itself
    uploaded = offline_client.files.create(
        file=(name, b"<script>alert(1)</script>"), purpose="assistants"
    )
    headers = offline_client.files.content(uploaded.id).response.headers
    assert headers["content-type"].split(";")[0] == served_as
    assert headers["content-disposition"].startswith("attachment;")
    assert headers["content-security-policy"] == "sandbox"
    assert headers["x-content-type-options"] == "nosniff"


def test_expires_after_sets_expires_at_and_an_expired_file_is_gone() -> None:
    """A server of its own, restarted to see the sweep that a new process runs at once."""
    server = ThreadlineServer().start()
    try:
        with sdk(server) as client:
            kept = client.files.create(file=("kept.txt", b"stays"), purpose="assistants")
            assert kept.expires_at is None
            brief = client.files.create(
                file=("brief.txt", b"goes"),
                purpose="assistants",
                expires_after={"anchor": "created_at", "seconds": 3600},
            )
            assert brief.expires_at == brief.created_at + 3600
            batch = client.files.create(file=("in.jsonl", b"{}\n"), purpose="batch")
            assert batch.expires_at == batch.created_at + 30 * 24 * 3600
            store = client.vector_stores.create(file_ids=[brief.id])
            assert stored_names(server) and len(stored_names(server)) == 3

            # An hour later, as far as the file knows.
            server.manage(
                "shell",
                "-c",
                "from datetime import timedelta\n"
                "from django.utils import timezone\n"
                "from engine.models import File\n"
                f"File.with_expired.filter(pk='{brief.id}')"
                ".update(expires_at=timezone.now() - timedelta(seconds=1))",
            )
            with pytest.raises(openai.NotFoundError):
                client.files.retrieve(brief.id)
            with pytest.raises(openai.NotFoundError):
                client.vector_stores.files.create(vector_store_id=store.id, file_id=brief.id)
            listed = {file.id for file in client.files.list()}
            assert brief.id not in listed and kept.id in listed
        # A process sweeps at its first files request, then at most once a minute.
        server.stop()
        server.start()
        with sdk(server) as client:
            assert kept.id in {file.id for file in client.files.list()}
            # The sweep deleted its row, its store membership and its bytes.
            assert client.vector_stores.files.list(vector_store_id=store.id).data == []
            assert len(stored_names(server)) == 2
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"expires_after[anchor]": "last_active_at", "expires_after[seconds]": "3600"}, "anchor"),
        ({"expires_after[anchor]": "created_at", "expires_after[seconds]": "60"}, "seconds"),
        ({"expires_after[anchor]": "created_at"}, "seconds"),
        ({"expires_after[anchor]": "created_at", "expires_after[seconds]": "soon"}, "seconds"),
    ],
)
def test_a_bad_expires_after_is_a_400_naming_it(
    offline_engine: ThreadlineServer, fields: dict[str, str], param: str
) -> None:
    response = httpx.post(
        f"{offline_engine.api_url}/files",
        data={"purpose": "assistants", **fields},
        files={"file": ("a.txt", b"a")},
        headers={"Authorization": f"Bearer {ENGINE_KEY}"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == f"expires_after.{param}"

"""/v1/vector_stores: stores, their files, file batches and search, through the official SDK."""

from __future__ import annotations

import time
from collections.abc import Iterator

import openai
import pytest
from openai.types import FileObject, VectorStore

from tests.conftest import sdk
from tests.engine.test_auth_and_projects import create_key
from tests.engine.test_file_search_runs import GEOBASE
from tests.servers import ThreadlineServer

LIGHTHOUSE = {
    "alpha.txt": (
        "The lighthouse keeper writes the tide tables in the logbook every morning.",
        {"team": "ops", "year": 2024, "public": True},
    ),
    "beta.txt": (
        "The lighthouse beam turns once every ten seconds through the night.",
        {"team": "eng", "year": 2022, "public": False},
    ),
    "gamma.md": (
        "# Harbour\n\nThe harbour master plans repairs to the old lighthouse stairs.",
        {"team": "ops", "year": 2019},
    ),
}


def upload(client: openai.OpenAI, name: str, text: str | bytes) -> FileObject:
    data = text.encode() if isinstance(text, str) else text
    return client.files.create(file=(name, data), purpose="assistants")


def wait_until_ingested(client: openai.OpenAI, store_id: str, timeout: float = 15) -> VectorStore:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        store = client.vector_stores.retrieve(store_id)
        if store.file_counts.in_progress == 0:
            return store
        time.sleep(0.05)
    raise AssertionError(f"vector store {store_id} still ingesting after {timeout}s")


@pytest.fixture(scope="module")
def sdk_client(offline_engine: ThreadlineServer) -> Iterator[openai.OpenAI]:
    with sdk(offline_engine) as client:
        yield client


@pytest.fixture(scope="module")
def lighthouse(sdk_client: openai.OpenAI) -> tuple[VectorStore, dict[str, str]]:
    """Three small files with attributes, added as one batch with per-file attributes."""
    file_ids = {name: upload(sdk_client, name, text).id for name, (text, _) in LIGHTHOUSE.items()}
    store = sdk_client.vector_stores.create(name="lighthouse")
    batch = sdk_client.vector_stores.file_batches.create_and_poll(
        vector_store_id=store.id,
        files=[
            {"file_id": file_ids[name], "attributes": attributes}
            for name, (_, attributes) in LIGHTHOUSE.items()
        ],
    )
    assert (batch.status, batch.file_counts.completed) == ("completed", 3)
    return store, file_ids


@pytest.fixture(scope="module")
def other_project(offline_engine: ThreadlineServer) -> Iterator[openai.OpenAI]:
    """A client of another project, which must not see anything of the default project."""
    with sdk(offline_engine, key=create_key(offline_engine, "stores-other")) as client:
        yield client


def test_store_lifecycle(offline_client: openai.OpenAI) -> None:
    store = offline_client.vector_stores.create(
        name="handbook",
        metadata={"team": "hr"},
        expires_after={"anchor": "last_active_at", "days": 2},
    )
    assert store.id.startswith("vs_")
    assert (store.name, store.metadata, store.status) == ("handbook", {"team": "hr"}, "completed")
    assert store.expires_at == store.last_active_at + 2 * 86400
    assert store.id in [listed.id for listed in offline_client.vector_stores.list()]

    changed = offline_client.vector_stores.update(
        store.id, name="staff handbook", expires_after=None
    )
    assert (changed.name, changed.expires_after, changed.expires_at) == (
        "staff handbook",
        None,
        None,
    )
    assert changed.metadata == {"team": "hr"}

    deleted = offline_client.vector_stores.delete(store.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (
        store.id,
        True,
        "vector_store.deleted",
    )
    with pytest.raises(openai.NotFoundError):
        offline_client.vector_stores.retrieve(store.id)


def test_create_with_file_ids_ingests_them_with_the_effective_strategy(
    offline_client: openai.OpenAI,
) -> None:
    long_text = " ".join(f"Sentence number {i} talks about otters." for i in range(200))
    auto_file = upload(offline_client, "otters.txt", long_text)
    store = offline_client.vector_stores.create(name="otters", file_ids=[auto_file.id])
    static_store = offline_client.vector_stores.create(
        file_ids=[auto_file.id],
        chunking_strategy={
            "type": "static",
            "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 20},
        },
    )
    for vector_store, size, overlap in ((store, 800, 400), (static_store, 100, 20)):
        done = wait_until_ingested(offline_client, vector_store.id)
        assert (done.status, done.file_counts.completed) == ("completed", 1)
        assert done.usage_bytes > 0
        row = offline_client.vector_stores.files.retrieve(auto_file.id, vector_store_id=done.id)
        assert row.chunking_strategy.type == "static"
        assert row.chunking_strategy.static.max_chunk_size_tokens == size
        assert row.chunking_strategy.static.chunk_overlap_tokens == overlap
    small_chunks = offline_client.vector_stores.files.content(
        auto_file.id, vector_store_id=static_store.id
    )
    assert len(small_chunks.data) > 10
    assert all(part.type == "text" for part in small_chunks.data)

    # Deleting a store takes its chunks, not the files.
    offline_client.vector_stores.delete(store.id)
    assert offline_client.files.retrieve(auto_file.id).id == auto_file.id


def test_store_files_list_filter_content_attributes_and_delete(
    offline_client: openai.OpenAI,
) -> None:
    good = upload(offline_client, "walrus.txt", "The walrus sleeps on the ice floe.")
    empty = upload(offline_client, "nothing.txt", b"")
    store = offline_client.vector_stores.create(file_ids=[good.id, empty.id])
    wait_until_ingested(offline_client, store.id)

    files = offline_client.vector_stores.files
    assert [f.id for f in files.list(store.id, filter="completed")] == [good.id]
    assert [f.id for f in files.list(store.id, filter="failed")] == [empty.id]
    assert {f.id for f in files.list(store.id, limit=1)} == {good.id, empty.id}
    with pytest.raises(openai.BadRequestError) as caught:
        files.list(store.id, filter="stuck")  # type: ignore[arg-type]
    assert caught.value.body["param"] == "filter"

    content = files.content(good.id, vector_store_id=store.id)
    assert [(part.type, part.text) for part in content.data] == [
        ("text", "The walrus sleeps on the ice floe.")
    ]
    updated = files.update(good.id, vector_store_id=store.id, attributes={"animal": "walrus"})
    assert updated.attributes == {"animal": "walrus"}
    hit = offline_client.vector_stores.search(store.id, query="walrus ice").data[0]
    assert hit.attributes == {"animal": "walrus"}

    deleted = files.delete(good.id, vector_store_id=store.id)
    assert (deleted.id, deleted.deleted) == (good.id, True)
    assert offline_client.vector_stores.search(store.id, query="walrus ice").data == []
    assert offline_client.files.retrieve(good.id).id == good.id
    with pytest.raises(openai.NotFoundError):
        files.retrieve(good.id, vector_store_id=store.id)


def test_adding_a_file_twice_keeps_one_row_and_retries_a_failure(
    offline_client: openai.OpenAI,
) -> None:
    text = upload(offline_client, "heron.txt", "A grey heron waits in the reeds.")
    store = offline_client.vector_stores.create()
    first = offline_client.vector_stores.files.create_and_poll(
        file_id=text.id, vector_store_id=store.id
    )
    again = offline_client.vector_stores.files.create_and_poll(
        file_id=text.id, vector_store_id=store.id, attributes={"bird": "heron"}
    )
    assert (first.status, again.status, again.attributes) == (
        "completed",
        "completed",
        {"bird": "heron"},
    )
    assert offline_client.vector_stores.retrieve(store.id).file_counts.total == 1
    assert len(offline_client.vector_stores.search(store.id, query="heron reeds").data) == 1


def test_file_batches_upload_and_poll_and_list_their_files(offline_client: openai.OpenAI) -> None:
    store = offline_client.vector_stores.create(name="batch")
    batch = offline_client.vector_stores.file_batches.upload_and_poll(
        store.id,
        files=[
            ("one.txt", b"The first note mentions puffins."),
            ("two.md", b"# Second\n\nThe second note mentions gannets."),
            ("void.txt", b""),
        ],
    )
    assert batch.id.startswith("vsfb_")
    assert batch.status == "completed"
    assert (batch.file_counts.completed, batch.file_counts.failed, batch.file_counts.total) == (
        2,
        1,
        3,
    )
    batches = offline_client.vector_stores.file_batches
    in_batch = batches.list_files(batch.id, vector_store_id=store.id)
    assert len(in_batch.data) == 3
    failed = batches.list_files(batch.id, vector_store_id=store.id, filter="failed")
    assert [f.last_error.code for f in failed] == ["invalid_file"]


def test_cancelling_a_batch_stops_its_files_for_good(offline_client: openai.OpenAI) -> None:
    # Large enough that ingestion is still running when the cancel arrives.
    big = "The moon shines over the quiet bay. " * 60_000
    files = [upload(offline_client, f"moon-{i}.txt", big) for i in range(3)]
    store = offline_client.vector_stores.create()
    batches = offline_client.vector_stores.file_batches
    batch = batches.create(store.id, file_ids=[f.id for f in files])
    time.sleep(0.3)  # two workers are ingesting by now, and the third file waits for one
    cancelled = batches.cancel(batch.id, vector_store_id=store.id)
    assert cancelled.status == "cancelled"
    assert cancelled.file_counts.in_progress == 0
    assert cancelled.file_counts.cancelled >= 1

    # The jobs that were ingesting finish their work and must write none of it.
    time.sleep(2)
    later = batches.retrieve(batch.id, vector_store_id=store.id)
    assert later.file_counts == cancelled.file_counts
    for row in batches.list_files(batch.id, vector_store_id=store.id, filter="cancelled"):
        content = offline_client.vector_stores.files.content(row.id, vector_store_id=store.id)
        assert content.data == []
    if later.file_counts.completed == 0:
        assert offline_client.vector_stores.search(store.id, query="moon bay").data == []

    with pytest.raises(openai.BadRequestError):
        batches.cancel(batch.id, vector_store_id=store.id)


def test_batch_needs_exactly_one_list_of_files(offline_client: openai.OpenAI) -> None:
    store = offline_client.vector_stores.create()
    with pytest.raises(openai.BadRequestError):
        offline_client.vector_stores.file_batches.create(store.id)
    with pytest.raises(openai.NotFoundError) as caught:
        offline_client.vector_stores.file_batches.create(store.id, file_ids=["file-nope"])
    assert caught.value.body["param"] == "file_ids"


def test_search_returns_file_page_attributes_and_text(
    sdk_client: openai.OpenAI, lighthouse: tuple[VectorStore, dict[str, str]]
) -> None:
    store, file_ids = lighthouse
    page = sdk_client.vector_stores.search(store.id, query="Who writes the tide tables?")
    top = page.data[0]
    assert (top.file_id, top.filename) == (file_ids["alpha.txt"], "alpha.txt")
    assert top.model_extra == {"page": 1}
    assert top.attributes == {"team": "ops", "year": 2024, "public": True}
    assert top.content[0].type == "text"
    assert "tide tables" in top.content[0].text
    assert 0 < top.score <= 1


def test_filters_on_attributes_narrow_results(
    sdk_client: openai.OpenAI, lighthouse: tuple[VectorStore, dict[str, str]]
) -> None:
    store, _ = lighthouse

    def names(filters: object) -> set[str]:
        page = sdk_client.vector_stores.search(
            store.id,
            query="lighthouse",
            filters=filters,  # type: ignore[arg-type]
        )
        return {hit.filename for hit in page.data}

    assert names({"type": "eq", "key": "team", "value": "ops"}) == {"alpha.txt", "gamma.md"}
    assert names({"type": "ne", "key": "team", "value": "ops"}) == {"beta.txt"}
    assert names({"type": "gte", "key": "year", "value": 2022}) == {"alpha.txt", "beta.txt"}
    assert names({"type": "eq", "key": "public", "value": True}) == {"alpha.txt"}
    assert names({"type": "in", "key": "year", "value": [2019, 2022]}) == {"beta.txt", "gamma.md"}
    both = {
        "type": "and",
        "filters": [
            {"type": "eq", "key": "team", "value": "ops"},
            {"type": "lt", "key": "year", "value": 2020},
        ],
    }
    assert names(both) == {"gamma.md"}
    either = {
        "type": "or",
        "filters": [both, {"type": "eq", "key": "team", "value": "eng"}],
    }
    assert names(either) == {"gamma.md", "beta.txt"}
    assert names({"type": "eq", "key": "team", "value": "legal"}) == set()


def test_score_threshold_drops_weak_hits(
    sdk_client: openai.OpenAI, lighthouse: tuple[VectorStore, dict[str, str]]
) -> None:
    store, _ = lighthouse
    query = "lighthouse keeper tide logbook"
    everything = sdk_client.vector_stores.search(store.id, query=query).data
    scores = [hit.score for hit in everything]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)
    threshold = (scores[0] + scores[-1]) / 2
    strong = sdk_client.vector_stores.search(
        store.id, query=query, ranking_options={"score_threshold": threshold}
    ).data
    assert 1 <= len(strong) < 3
    assert all(hit.score >= threshold for hit in strong)


def test_several_queries_and_max_num_results(
    sdk_client: openai.OpenAI, lighthouse: tuple[VectorStore, dict[str, str]]
) -> None:
    store, _ = lighthouse
    page = sdk_client.vector_stores.search(
        store.id, query=["tide tables", "harbour master"], rewrite_query=True
    )
    assert {hit.filename for hit in page.data} >= {"alpha.txt", "gamma.md"}
    one = sdk_client.vector_stores.search(store.id, query="lighthouse", max_num_results=1)
    assert len(one.data) == 1
    with pytest.raises(openai.BadRequestError) as caught:
        sdk_client.vector_stores.search(store.id, query="lighthouse", max_num_results=51)
    assert caught.value.body["param"] == "max_num_results"


def test_a_word_most_chunks_hold_still_counts_for_the_chunk_that_holds_it() -> None:
    # Its own engine: what matters is the share of the whole index that holds "author".
    pages = {
        "ferry.txt": "The ferry leaves at dawn. The ferry returns at dusk. The ferry carries cars.",
        "notes.txt": "Ferry notes\nAuthor: Ruth Mills",
        "tides.txt": "Tide tables\nAuthor: Harbour office",
        "beam.txt": "Lighthouse beam\nAuthor: Harbour office",
        "stairs.txt": "The keeper climbs the stairs to trim the lamp.",
        "gulls.txt": "Gulls nest on the breakwater every spring.",
    }
    server = ThreadlineServer().start()
    try:
        with sdk(server) as client:
            store = client.vector_stores.create()
            batch = client.vector_stores.file_batches.create_and_poll(
                vector_store_id=store.id,
                file_ids=[upload(client, name, text).id for name, text in pages.items()],
            )
            assert batch.file_counts.completed == len(pages)
            hits = client.vector_stores.search(store.id, query="Who is the ferry's author?").data
    finally:
        server.stop()
    # Half the chunks say "Author:", so it tells less than "ferry" does, but it still counts.
    assert [hit.filename for hit in hits[:2]] == ["notes.txt", "ferry.txt"]
    assert hits[0].score > hits[1].score


def test_a_large_index_ranks_the_chunk_with_the_rare_words_first_and_keeps_to_its_store() -> None:
    # More chunks than PostgreSQL's search ranks at once (search.RANKED_ROWS): it ranks those
    # holding the rarest words (this one last on disk), and fills up from the others when its
    # store has too few.
    common = "The harbour keeper walks the harbour wall and logs the harbour boats at dawn."
    paragraphs = [f"{common} Entry {n}." for n in range(2800)]
    paragraphs[-20] = f"{common} A saffron kestrel nests under the harbour crane."
    small = {"type": "static", "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 0}}
    server = ThreadlineServer().start()
    try:
        with sdk(server) as client:
            big = client.vector_stores.create()
            done = client.vector_stores.files.create_and_poll(
                vector_store_id=big.id,
                file_id=upload(client, "log.txt", "\n\n".join(paragraphs)).id,
                chunking_strategy=small,  # type: ignore[arg-type]
                poll_interval_ms=100,
            )
            other = client.vector_stores.create()
            client.vector_stores.files.create_and_poll(
                vector_store_id=other.id,
                file_id=upload(client, "wall.txt", "The harbour wall is old.").id,
                poll_interval_ms=100,
            )
            hits = client.vector_stores.search(big.id, query="saffron kestrel harbour").data
            elsewhere = client.vector_stores.search(other.id, query="saffron kestrel harbour").data
    finally:
        server.stop()
    assert (done.model_extra or {})["chunks"] > 500
    assert "saffron kestrel" in hits[0].content[0].text
    assert len(hits) == 10  # the default max_num_results: chunks with "harbour" fill up
    assert [hit.filename for hit in elsewhere] == ["wall.txt"]


def test_searching_keeps_an_expiring_store_alive(offline_client: openai.OpenAI) -> None:
    store = offline_client.vector_stores.create(
        expires_after={"anchor": "last_active_at", "days": 1}
    )
    time.sleep(1.1)  # timestamps are whole seconds
    offline_client.vector_stores.search(store.id, query="anything")
    touched = offline_client.vector_stores.retrieve(store.id)
    assert touched.last_active_at > store.last_active_at
    assert touched.expires_at == touched.last_active_at + 86400


def test_message_attachments_go_to_the_threads_own_store(offline_client: openai.OpenAI) -> None:
    first = upload(offline_client, "recipe.txt", "Knead the dough for ten minutes.")
    second = upload(offline_client, "oven.txt", "Bake the loaf at 220 degrees.")
    thread = offline_client.beta.threads.create()
    for file in (first, second):
        offline_client.beta.threads.messages.create(
            thread.id,
            role="user",
            content="See attached.",
            attachments=[{"file_id": file.id, "tools": [{"type": "file_search"}]}],
        )
    resources = offline_client.beta.threads.retrieve(thread.id).tool_resources
    assert resources.file_search is not None
    [store_id] = resources.file_search.vector_store_ids
    store = wait_until_ingested(offline_client, store_id)
    assert store.file_counts.completed == 2
    assert store.expires_after.model_dump() == {"anchor": "last_active_at", "days": 7}
    hit = offline_client.vector_stores.search(store_id, query="bake loaf degrees").data[0]
    assert hit.file_id == second.id


def test_attachments_join_a_store_the_thread_already_has(offline_client: openai.OpenAI) -> None:
    store = offline_client.vector_stores.create(name="shared")
    file = upload(offline_client, "tea.txt", "Steep green tea for two minutes.")
    thread = offline_client.beta.threads.create(
        tool_resources={"file_search": {"vector_store_ids": [store.id]}}
    )
    offline_client.beta.threads.messages.create(
        thread.id,
        role="user",
        content="Tea notes.",
        attachments=[{"file_id": file.id, "tools": [{"type": "file_search"}]}],
    )
    resources = offline_client.beta.threads.retrieve(thread.id).tool_resources
    assert resources.file_search.vector_store_ids == [store.id]
    assert wait_until_ingested(offline_client, store.id).file_counts.completed == 1


def test_a_thread_can_ask_for_a_new_store_inline(offline_client: openai.OpenAI) -> None:
    file = upload(offline_client, "bees.txt", "Honey bees dance to show where flowers are.")
    thread = offline_client.beta.threads.create(
        tool_resources={
            "file_search": {"vector_stores": [{"file_ids": [file.id], "metadata": {"k": "v"}}]}
        }
    )
    [store_id] = thread.tool_resources.file_search.vector_store_ids
    store = wait_until_ingested(offline_client, store_id)
    assert (store.file_counts.completed, store.metadata) == (1, {"k": "v"})


def test_another_project_cannot_see_search_or_attach_my_stores_and_files(
    sdk_client: openai.OpenAI,
    lighthouse: tuple[VectorStore, dict[str, str]],
    other_project: openai.OpenAI,
) -> None:
    store, file_ids = lighthouse
    mine = file_ids["alpha.txt"]
    assert store.id not in [listed.id for listed in other_project.vector_stores.list()]
    for attempt in (
        lambda: other_project.vector_stores.retrieve(store.id),
        lambda: other_project.vector_stores.search(store.id, query="lighthouse"),
        lambda: other_project.vector_stores.files.list(store.id),
        lambda: other_project.vector_stores.files.retrieve(mine, vector_store_id=store.id),
        lambda: other_project.vector_stores.files.content(mine, vector_store_id=store.id),
        lambda: other_project.vector_stores.delete(store.id),
    ):
        with pytest.raises(openai.NotFoundError):
            attempt()

    theirs = other_project.vector_stores.create(name="theirs")
    with pytest.raises(openai.NotFoundError) as caught:
        other_project.vector_stores.files.create(vector_store_id=theirs.id, file_id=mine)
    assert caught.value.body["param"] == "file_id"
    with pytest.raises(openai.NotFoundError) as caught:
        other_project.vector_stores.create(file_ids=[mine])
    assert caught.value.body["param"] == "file_ids"
    thread = other_project.beta.threads.create()
    with pytest.raises(openai.NotFoundError) as caught:
        other_project.beta.threads.messages.create(
            thread.id,
            role="user",
            content="hi",
            attachments=[{"file_id": mine, "tools": [{"type": "file_search"}]}],
        )
    assert caught.value.body["param"] == "attachments.file_id"
    assert sdk_client.vector_stores.retrieve(store.id).file_counts.completed == 3


def test_store_file_says_how_many_pages_and_chunks_it_indexed(
    offline_client: openai.OpenAI,
) -> None:
    store = offline_client.vector_stores.create()
    with (GEOBASE.parent / "pdflatex-outline.pdf").open("rb") as f:
        done = offline_client.vector_stores.files.upload_and_poll(
            vector_store_id=store.id, file=f, poll_interval_ms=50
        )
    extra = done.model_extra or {}
    assert extra["pages"] == 4
    assert extra["chunks"] >= 4

"""Ingestion of vector store files in the background, and retrieval over the test corpus."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from openai.types.vector_stores import VectorStoreFile

from tests.conftest import sdk
from tests.engine.test_vector_stores import upload, wait_until_ingested
from tests.servers import ThreadlineServer

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"
FAILING = ("git.pdf", "encrypted-file.pdf")


class Corpus:
    def __init__(self, store_id: str, files: dict[str, VectorStoreFile]) -> None:
        self.store_id = store_id
        self.files = files  # by file name, as upload_and_poll left them


@pytest.fixture(scope="module")
def corpus_client(offline_engine: ThreadlineServer) -> Iterator[openai.OpenAI]:
    with sdk(offline_engine) as client:
        yield client


@pytest.fixture(scope="module")
def corpus(corpus_client: openai.OpenAI) -> Corpus:
    """Every corpus PDF in one store, each uploaded with `upload_and_poll`."""
    store = corpus_client.vector_stores.create(name="corpus")
    files = {}
    for path in sorted((CORPUS / "pdf").glob("*.pdf")):
        with path.open("rb") as handle:
            files[path.name] = corpus_client.vector_stores.files.upload_and_poll(
                vector_store_id=store.id, file=handle
            )
    return Corpus(store.id, files)


def fold(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def test_text_pdfs_complete_with_chunk_derived_usage(corpus: Corpus) -> None:
    texts = {name: row for name, row in corpus.files.items() if name not in FAILING}
    assert "two-different-pages.pdf" in texts  # a broken xref table that pypdf recovers from
    for name, row in texts.items():
        assert (name, row.status, row.last_error) == (name, "completed", None)
        assert row.usage_bytes > 0


def test_scanned_pdf_fails_saying_it_has_no_text_layer(corpus: Corpus) -> None:
    row = corpus.files["git.pdf"]
    assert row.status == "failed"
    assert row.last_error.code == "invalid_file"
    assert row.last_error.message.startswith("Scanned PDF: no extractable text")


def test_encrypted_pdf_fails_naming_encryption(corpus: Corpus) -> None:
    row = corpus.files["encrypted-file.pdf"]
    assert row.status == "failed"
    assert row.last_error.code == "invalid_file"
    assert "encrypted" in row.last_error.message


def test_store_usage_adds_up_its_files(corpus_client: openai.OpenAI, corpus: Corpus) -> None:
    store = corpus_client.vector_stores.retrieve(corpus.store_id)
    assert store.status == "completed"
    assert (store.file_counts.completed, store.file_counts.failed) == (7, 2)
    assert store.usage_bytes == sum(row.usage_bytes for row in corpus.files.values())


@pytest.mark.parametrize(
    ("question", "filename", "page"),
    [
        ("What is a cannister shot made of?", "Seige_of_Vicksburg_Sample_OCR.pdf", 3),
        ("What does the abbreviation LRM stand for?", "GeoBase_NHNC1_Data_Model_UML_EN.pdf", 5),
    ],
)
def test_search_finds_the_file_and_page(
    corpus_client: openai.OpenAI, corpus: Corpus, question: str, filename: str, page: int
) -> None:
    top = corpus_client.vector_stores.search(corpus.store_id, query=question).data[0]
    assert (top.filename, top.model_extra["page"]) == (filename, page)
    assert top.file_id == corpus.files[filename].id


def test_retrieval_hit_at_5_on_the_corpus_questions(
    corpus_client: openai.OpenAI, corpus: Corpus
) -> None:
    questions = [json.loads(line) for line in (CORPUS / "questions.jsonl").read_text().splitlines()]
    misses = []
    for question in questions:
        results = corpus_client.vector_stores.search(
            corpus.store_id, query=question["q"], max_num_results=5
        ).data
        if not any(
            hit.filename == question["file"]
            and hit.model_extra["page"] == question["page"]
            and fold(question["evidence"]) in fold(hit.content[0].text)
            for hit in results
        ):
            misses.append(question["q"])
    hit_rate = 1 - len(misses) / len(questions)
    print(f"\nhit@5 = {hit_rate:.0%} ({len(questions) - len(misses)}/{len(questions)})")
    assert hit_rate >= 0.9, f"missed: {misses}"


def test_a_binary_named_pdf_fails_as_unsupported(offline_client: openai.OpenAI) -> None:
    program = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + bytes(range(256)) * 8
    row = offline_client.vector_stores.files.upload_and_poll(
        vector_store_id=offline_client.vector_stores.create().id, file=("setup.pdf", program)
    )
    assert (row.status, row.last_error.code) == ("failed", "unsupported_file")
    assert "not supported" in row.last_error.message


def test_an_empty_file_fails_saying_so(offline_client: openai.OpenAI) -> None:
    row = offline_client.vector_stores.files.upload_and_poll(
        vector_store_id=offline_client.vector_stores.create().id, file=("empty.pdf", b"")
    )
    assert (row.status, row.last_error.code) == ("failed", "invalid_file")
    assert row.last_error.message == "The file is empty."


def test_text_and_markdown_files_complete(offline_client: openai.OpenAI) -> None:
    store = offline_client.vector_stores.create()
    for name, data in (
        ("notes.txt", b"Plain notes about kingfishers diving for fish."),
        ("guide.md", b"# Guide\n\n* Kingfishers nest in riverbank burrows."),
    ):
        row = offline_client.vector_stores.files.upload_and_poll(
            vector_store_id=store.id, file=(name, data)
        )
        assert (row.status, row.last_error) == ("completed", None)
        assert row.usage_bytes > 0
    hits = offline_client.vector_stores.search(store.id, query="kingfishers burrows").data
    assert hits[0].filename == "guide.md"


def test_a_bad_file_fails_alone_in_its_batch(offline_client: openai.OpenAI) -> None:
    store = offline_client.vector_stores.create()
    batch = offline_client.vector_stores.file_batches.upload_and_poll(
        store.id,
        files=[
            CORPUS / "pdf" / "crazyones.pdf",
            CORPUS / "pdf" / "git.pdf",
            ("fine.txt", b"Fine text."),
        ],
    )
    assert (batch.file_counts.completed, batch.file_counts.failed) == (2, 1)


def test_deleting_a_file_while_it_ingests_writes_nothing(offline_client: openai.OpenAI) -> None:
    big = upload(offline_client, "tides.txt", "The spring tide floods the marsh. " * 60_000)
    store = offline_client.vector_stores.create()
    offline_client.vector_stores.files.create(vector_store_id=store.id, file_id=big.id)
    time.sleep(0.3)  # a worker is ingesting it by now
    offline_client.files.delete(big.id)
    time.sleep(2)  # long enough for the job to have finished whatever it was doing
    after = offline_client.vector_stores.retrieve(store.id)
    assert (after.file_counts.total, after.usage_bytes) == (0, 0)
    assert offline_client.vector_stores.search(store.id, query="spring tide marsh").data == []


def test_ingestion_cut_short_by_a_crash_resumes_after_restart() -> None:
    server = ThreadlineServer(env={"THREADLINE_RUN_STALE_SECONDS": "1"}).start()
    try:
        with sdk(server) as client:
            big = upload(client, "estuary.txt", "Herons hunt along the estuary mud. " * 100_000)
            store = client.vector_stores.create()
            row = client.vector_stores.files.create(vector_store_id=store.id, file_id=big.id)
            assert row.status == "in_progress"
            server.kill()

        server.start()  # same data directory and database, a new process
        with sdk(server) as client:
            assert client.vector_stores.files.retrieve(big.id, vector_store_id=store.id).status == (
                "in_progress"
            )
            # Any ingestion request wakes the new process's ingestion, which resumes lost files.
            client.vector_stores.files.upload_and_poll(
                vector_store_id=client.vector_stores.create().id, file=("wake.txt", b"Wake up.")
            )
            done = wait_until_ingested(client, store.id, timeout=30)
            assert done.file_counts.completed == 1
            assert client.vector_stores.search(store.id, query="herons estuary").data
    finally:
        server.stop()

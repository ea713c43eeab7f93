"""The chat's uploads stream from disk to the Assistants API: never a whole file in memory.

The SDK sends an open file in chunks (and reads a path, or bytes, whole); these tests hold the
chat's three ways of uploading to that, with Python's own allocation tracing around each call.
bench/upload_memory.py measures the same at 100 MB, with resident memory too.
"""

from __future__ import annotations

import asyncio
import os
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest
from django.core.files.uploadedfile import TemporaryUploadedFile

from chat import assistants_api as api
from chat import uploads
from chat.admin import assistant_sync
from chat.models import AssistantProfile, KnowledgeFile

MB = 1024 * 1024
SIZE = 32 * MB
# What an upload may hold at once, whatever the file's size: buffers, not the file.
BOUND = 8 * MB


@pytest.fixture
def big_pdf() -> Iterator[TemporaryUploadedFile]:
    """A 32 MB upload as Django keeps one that size: a temporary file on disk."""
    upload = TemporaryUploadedFile("big.pdf", uploads.PDF, SIZE, None)
    upload.write(b"%PDF-1.4\n")
    block = os.urandom(MB)
    while (written := upload.tell()) < SIZE:
        upload.write(block[: SIZE - written])
    upload.seek(0)
    upload.size = SIZE
    yield upload
    upload.close()


@pytest.fixture
def loaded(remote: openai.OpenAI) -> openai.OpenAI:
    """The SDK imports each resource's modules on first use, some 20 MB that stay: done before
    measuring, so that the measure is the upload's."""
    client = api.sync_client()
    for resource in (client.files, client.vector_stores, client.beta.assistants):
        assert resource is not None
    return remote


def peak_allocated(call: Callable[[], Any]) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        result = call()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_knowledge_file_is_checked_and_uploaded_in_chunks(
    loaded: openai.OpenAI, big_pdf: TemporaryUploadedFile
) -> None:
    store_id = api.create_vector_store("memory")

    def add() -> str:
        checked = uploads.check(big_pdf, SIZE)
        return api.add_knowledge(store_id, checked.name, checked.file, checked.content_type)

    file_id, peak = peak_allocated(add)
    assert loaded.files.retrieve(file_id).bytes == SIZE
    assert peak < BOUND, f"{peak / MB:.1f} MB held at once"


def test_a_chat_attachment_is_uploaded_in_chunks(
    loaded: openai.OpenAI, big_pdf: TemporaryUploadedFile
) -> None:
    async def attach() -> str:
        try:
            return await api.upload_file("big.pdf", big_pdf, uploads.PDF)
        finally:
            await api.close_async_client()

    file_id, peak = peak_allocated(lambda: asyncio.run(attach()))
    assert loaded.files.retrieve(file_id).bytes == SIZE
    assert peak < BOUND, f"{peak / MB:.1f} MB held at once"


@pytest.mark.django_db(transaction=True)
def test_a_waiting_knowledge_file_is_kept_and_uploaded_in_chunks(
    loaded: openai.OpenAI, big_pdf: TemporaryUploadedFile
) -> None:
    profile = AssistantProfile.objects.create(name="Big", model="threadline-retrieval")
    checked = uploads.check(big_pdf, SIZE)
    result, peak = peak_allocated(lambda: assistant_sync.keep_files(profile, [checked]))
    (kept,) = result.files
    assert kept.local_copy.size == SIZE
    assert peak < BOUND, f"keeping it held {peak / MB:.1f} MB at once"

    synced, peak = peak_allocated(lambda: assistant_sync.sync(profile))
    assert [f.pk for f in synced.uploaded] == [kept.pk]
    assert loaded.files.retrieve(KnowledgeFile.objects.get().file_id).bytes == SIZE
    assert peak < BOUND, f"uploading it held {peak / MB:.1f} MB at once"

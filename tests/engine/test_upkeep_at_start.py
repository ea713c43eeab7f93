"""A server process takes up what a dead one left as soon as it starts, not on its first run."""

from __future__ import annotations

import io
import time

from tests.servers import ThreadlineServer, sdk, shell

# What a process killed while ingesting the file leaves: the file claimed long ago, unfinished.
LEFT_MID_INGESTION = """
import json
from datetime import timedelta
from django.utils import timezone
from engine.models import Chunk, VectorStoreFile
Chunk.objects.all().delete()
VectorStoreFile.objects.update(
    status="in_progress", chunk_count=0, claimed_at=timezone.now() - timedelta(hours=1)
)
print(json.dumps(VectorStoreFile.objects.count()))
"""


def test_ingestion_a_dead_process_left_resumes_when_the_next_one_starts() -> None:
    server = ThreadlineServer(env={"THREADLINE_RUN_STALE_SECONDS": "2"}).start()
    try:
        with sdk(server) as client:
            text = io.BytesIO(b"The lighthouse keeper counts 412 gulls every morning.\n" * 20)
            file = client.files.create(file=("notes.txt", text), purpose="assistants")
            store = client.vector_stores.create(name="notes", file_ids=[file.id])
        server.kill()
        assert shell(server, LEFT_MID_INGESTION) == 1

        server.start()  # no run, no upload: nothing asks this process to look
        with sdk(server) as client:
            deadline = time.monotonic() + 20
            entry = client.vector_stores.files.retrieve(file.id, vector_store_id=store.id)
            while entry.status == "in_progress" and time.monotonic() < deadline:
                time.sleep(0.2)
                entry = client.vector_stores.files.retrieve(file.id, vector_store_id=store.id)
            assert entry.status == "completed", entry
            found = client.vector_stores.search(store.id, query="lighthouse gulls")
            assert found.data, "the file is searchable again"
    finally:
        server.stop()

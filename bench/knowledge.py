"""Knowledge benchmark: ingestion pages per second, and search latency at 10k and 100k chunks.

Ingestion goes through the real product over HTTP with the official SDK (upload, then poll the
vector store file until it is processed): the test corpus as one batch, then a generated
500-page text PDF. Search is timed in-process on the engine's own search function over a
database filled with 10k and then 100k chunks of corpus-like text, with the corpus questions as
queries: on SQLite (FTS5, the default), and on PostgreSQL when THREADLINE_BENCH_POSTGRES names a
server's maintenance database (postgres://user:pass@host/postgres; a database of its own is made
and dropped). Run: `python bench/knowledge.py [--ingestion-only | --search-only]`.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CORPUS = ROOT.parent / "shared" / "corpus"
warnings.filterwarnings("ignore", category=DeprecationWarning)

TEXT_PAGES = {  # text pages per corpus PDF that ingests (the others fail by design)
    "GeoBase_NHNC1_Data_Model_UML_EN.pdf": 19,
    "Seige_of_Vicksburg_Sample_OCR.pdf": 6,
    "crazyones.pdf": 1,
    "multilang.pdf": 1,
    "pdflatex-outline.pdf": 4,
    "example.pdf": 1,
    "two-different-pages.pdf": 2,
}


def measure_ingestion() -> list[tuple[str, str, str]]:
    from tests.engine.test_extract import make_text_pdf
    from tests.servers import ThreadlineServer, sdk

    rows = []
    server = ThreadlineServer().start()
    try:
        with sdk(server) as client:
            # The first batch also starts the server's extraction processes; the second is warm.
            for label in ("corpus batch, cold server", "corpus batch, warm server"):
                store = client.vector_stores.create(name="bench")
                files = [(CORPUS / "pdf" / name).open("rb") for name in TEXT_PAGES]
                try:
                    started = time.perf_counter()
                    batch = client.vector_stores.file_batches.upload_and_poll(
                        vector_store_id=store.id, files=files, poll_interval_ms=20
                    )
                    seconds = time.perf_counter() - started
                finally:
                    for f in files:
                        f.close()
                pages = sum(TEXT_PAGES.values())
                rows.append((label, f"{pages} pages", rate(pages, seconds)))
                assert batch.file_counts.completed == len(TEXT_PAGES), batch.file_counts

            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "generated-500.pdf"
                make_text_pdf(path, 500)
                with path.open("rb") as f:
                    started = time.perf_counter()
                    done = client.vector_stores.files.upload_and_poll(
                        vector_store_id=store.id, file=f, poll_interval_ms=50
                    )
                    seconds = time.perf_counter() - started
            assert done.status == "completed", done.last_error
            rows.append(("generated 500-page PDF", "500 pages", rate(500, seconds)))
    finally:
        server.stop()
    return rows


def rate(pages: int, seconds: float) -> str:
    return f"{pages / seconds:,.0f} pages/s ({seconds:.2f} s)"


def measure_search(sizes: list[int], database_url: str | None = None) -> list[tuple[str, str, str]]:
    data_dir = tempfile.mkdtemp(prefix="threadline-bench-")
    os.environ["THREADLINE_DATA_DIR"] = data_dir
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from engine.knowledge import search
    from engine.knowledge.chunking import chunk_pages
    from engine.knowledge.extraction.extract import extract_pages

    questions = [json.loads(line) for line in (CORPUS / "questions.jsonl").open()]
    passages = []
    for name in TEXT_PAGES:
        pages = extract_pages(CORPUS / "pdf" / name, name)
        passages += [chunk.text for chunk in chunk_pages(pages, 200, 50)]
    vocabulary = " ".join(passages).split()
    store_id = fill_store(0, passages, vocabulary)
    rows = []
    have = len(passages)
    database = "PostgreSQL" if database_url else "SQLite"
    for size in sizes:
        fill_store(size - have, passages, vocabulary, store_id)
        search.refresh_statistics()  # as ingestion does after a file
        have = size
        timings = []
        for _ in range(5):
            for question in questions:
                started = time.perf_counter()
                search.search([store_id], question["q"], max_results=10)
                timings.append((time.perf_counter() - started) * 1000)
        timings.sort()
        p50 = statistics.median(timings)
        p99 = timings[int(len(timings) * 0.99) - 1]
        label = f"search, {database}"
        rows.append((label, f"{size:,} chunks", f"p50 {p50:.1f} ms / p99 {p99:.1f} ms"))
    return rows


def measure_search_on_postgres(sizes: list[int], maintenance: str) -> list[tuple[str, str, str]]:
    """The same in a child process (Django is set up once per process), on a new database."""
    import uuid

    import psycopg

    name = f"threadline_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(maintenance, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        url = maintenance.rsplit("/", 1)[0] + "/" + name
        sizes_arg = ",".join(map(str, sizes))
        child = subprocess.run(
            [sys.executable, __file__, "--search-child", sizes_arg, url],
            capture_output=True,
            text=True,
            check=True,
        )
        return [tuple(row) for row in json.loads(child.stdout.splitlines()[-1])]
    finally:
        with psycopg.connect(maintenance, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def fill_store(
    extra: int, passages: list[str], vocabulary: list[str], store_id: str | None = None
) -> str:
    """Add corpus chunks (first call) or `extra` synthetic chunks of corpus words to one store."""
    from engine.knowledge.search import index_text
    from engine.models import Chunk, File, Project, VectorStore, VectorStoreFile

    project = Project.default()
    if store_id is None:
        store = VectorStore.objects.create(project=project, name="bench")
        texts = passages
    else:
        store = VectorStore.objects.get(pk=store_id)
        rng = random.Random(extra)
        texts = [" ".join(rng.choices(vocabulary, k=150)) for _ in range(extra)]
    file = File.objects.create(project=project, filename="bench.txt", purpose="assistants")
    store_file = VectorStoreFile.objects.create(vector_store=store, file=file, status="completed")
    batch = 5000
    for start in range(0, len(texts), batch):
        Chunk.objects.bulk_create(
            Chunk(
                store_file=store_file,
                vector_store_id=store.id,
                file_id=file.id,
                page=1,
                index=start + i,
                text=text,
                search_text=index_text(text),
                tokens=len(text) // 4,
            )
            for i, text in enumerate(texts[start : start + batch])
        )
    return store.id


def main() -> None:
    if sys.argv[1:2] == ["--search-child"]:
        sizes = [int(size) for size in sys.argv[2].split(",")]
        print(json.dumps(measure_search(sizes, sys.argv[3])))
        return
    print("Knowledge benchmark. NOISY MACHINE: 2 shared cores; read figures as rough.\n")
    sizes = [10_000, 100_000]
    rows = [] if "--search-only" in sys.argv else measure_ingestion()
    if "--ingestion-only" not in sys.argv:
        postgres = os.environ.get("THREADLINE_BENCH_POSTGRES")
        if postgres:
            rows += measure_search_on_postgres(sizes, postgres)
        rows += measure_search(sizes)
    width = max(len(r[0]) for r in rows)
    print(f"{'scenario':<{width}} | {'size':<14} | result")
    print("-" * (width + 50))
    for scenario, size, result in rows:
        print(f"{scenario:<{width}} | {size:<14} | {result}")
    print("\nTargets: ingestion >= 50 text pages/s; search p99 < 50 ms at 100k chunks.")


if __name__ == "__main__":
    main()

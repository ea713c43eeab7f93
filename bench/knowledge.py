"""Knowledge benchmark: retrieval quality, ingestion speed, search latency, embedding model cost.

Every figure is measured side by side in one run, embeddings off (full-text search, as before
issue 17) against on (the default local model, hybrid search):

- Retrieval: hit@5 on the paraphrased questions (tests/data/paraphrase_questions.jsonl: few
  words shared with their page; its even lines are the half the ranking's constants were tuned
  on, its odd lines the half held out), on paraphrased questions written after tuning
  (paraphrase_questions_new.jsonl), and on the corpus's keyword questions, in-process over the
  corpus's text PDFs chunked as the engine does (800 / 400 tokens).
- Ingestion through the real product over HTTP with the official SDK (upload, then poll until
  processed): the corpus as one batch on a cold and a warm server, then a generated 500-page
  text PDF; one server with THREADLINE_EMBEDDINGS=off, one with local.
- Search latency in-process on the engine's search functions over one store filled with 10k,
  then 100k chunks of corpus-like text, with the corpus questions as queries: on SQLite, and on
  PostgreSQL when THREADLINE_BENCH_POSTGRES (or THREADLINE_TEST_POSTGRES) names a server's
  maintenance database.
- The local embedding model: memory added to a process, load time, chunks embedded a second.

Run: `python bench/knowledge.py [--quick]` (--quick: 10k chunks only, no PostgreSQL).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CORPUS = ROOT.parent / "shared" / "corpus"
if not CORPUS.exists():
    CORPUS = Path("/work/shared/corpus")
PARAPHRASES = ROOT / "tests" / "data" / "paraphrase_questions.jsonl"
# Written after the ranking was tuned, and never tuned on: how the ranking does on new questions.
NEW_PARAPHRASES = ROOT / "tests" / "data" / "paraphrase_questions_new.jsonl"
warnings.filterwarnings("ignore", category=DeprecationWarning)

from bench.report import percentile, table, verdict  # noqa: E402

TEXT_PAGES = {  # text pages per corpus PDF that ingests (the others fail by design)
    "GeoBase_NHNC1_Data_Model_UML_EN.pdf": 19,
    "Seige_of_Vicksburg_Sample_OCR.pdf": 6,
    "crazyones.pdf": 1,
    "multilang.pdf": 1,
    "pdflatex-outline.pdf": 4,
    "example.pdf": 1,
    "two-different-pages.pdf": 2,
}


def questions(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --- Ingestion through the API ------------------------------------------------------------------


def measure_ingestion(embeddings: str) -> dict[str, float]:
    """Pages per second for each scenario, on a server with THREADLINE_EMBEDDINGS=embeddings."""
    from tests.engine.test_extract import make_text_pdf
    from tests.servers import ThreadlineServer, sdk

    rates = {}
    server = ThreadlineServer(env={"THREADLINE_EMBEDDINGS": embeddings}).start()
    try:
        with sdk(server) as client:
            # The first batch also starts the server's extraction processes (and loads the
            # embedding model); the second is warm.
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
                assert batch.file_counts.completed == len(TEXT_PAGES), batch.file_counts
                rates[label] = sum(TEXT_PAGES.values()) / seconds

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
            rates["generated 500-page PDF"] = 500 / seconds
    finally:
        server.stop()
    return rates


# --- In-process parts: one child process per database -------------------------------------------


def setup_django(database_url: str | None) -> None:
    os.environ["THREADLINE_DATA_DIR"] = tempfile.mkdtemp(prefix="threadline-bench-")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def corpus_chunks(max_tokens: int = 800, overlap: int = 400) -> list[tuple[str, int, str]]:
    from engine.knowledge.chunking import chunk_pages
    from engine.knowledge.extraction.extract import extract_pages

    chunks = []
    for name in TEXT_PAGES:
        pages = extract_pages(CORPUS / "pdf" / name, name)
        chunks += [(name, c.page, c.text) for c in chunk_pages(pages, max_tokens, overlap)]
    return chunks


def add_chunks(store_id: str | None, filename: str, rows: list[tuple[int, str]]) -> str:
    """Chunks (page, text) of one new file in a store (created when None), with vectors."""
    from django.db import transaction

    from engine.knowledge import vectors
    from engine.knowledge.search import index_text
    from engine.models import Chunk, File, Project, VectorStore, VectorStoreFile

    project = Project.default()
    store = (
        VectorStore.objects.get(pk=store_id)
        if store_id
        else VectorStore.objects.create(project=project, name="bench")
    )
    file = File.objects.create(project=project, filename=filename, purpose="assistants")
    store_file = VectorStoreFile.objects.create(vector_store=store, file=file, status="completed")
    step = 5000
    for start in range(0, len(rows), step):
        part = [
            Chunk(
                store_file=store_file,
                vector_store_id=store.id,
                file_id=file.id,
                page=page,
                index=start + i,
                text=text,
                search_text=index_text(text),
                tokens=len(text) // 4,
            )
            for i, (page, text) in enumerate(rows[start : start + step])
        ]
        embedded = vectors.embed_for_ingestion([chunk.text for chunk in part])
        with transaction.atomic():  # as ingestion writes them: chunks and vectors together
            Chunk.objects.bulk_create(part)
            if embedded is not None:
                vectors.save(part, embedded)
    return store.id


def measure_quality() -> list[list[str]]:
    setup_django(None)
    from engine.knowledge import hybrid, search

    store_id = None
    by_file: dict[str, list[tuple[int, str]]] = {}
    for name, page, text in corpus_chunks():
        by_file.setdefault(name, []).append((page, text))
    for name, rows in by_file.items():
        store_id = add_chunks(store_id, name, rows)
    assert store_id is not None

    def fold(text: str) -> str:
        return " ".join(text.split())

    def rate(asked: list[dict[str, Any]], run: Any) -> tuple[int, int]:
        found = 0
        for q in asked:
            hits = run(q["q"])[:5]
            evidence = fold(q["evidence"])
            found += any(
                h.filename == q["file"] and h.page == q["page"] and evidence in fold(h.text)
                for h in hits
            )
        return found, len(asked)

    def words_only(query: str) -> list[Any]:
        return search.search([store_id], query, max_results=5)

    def both(query: str) -> list[Any]:
        return hybrid.hybrid_search([store_id], query, max_results=5)

    paraphrases = questions(PARAPHRASES)
    sets = (
        ("paraphrase, tuning half", paraphrases[0::2]),
        ("paraphrase, held-out half", paraphrases[1::2]),
        ("paraphrase, all", paraphrases),
        ("paraphrase, written after tuning", questions(NEW_PARAPHRASES)),
        ("keyword", questions(CORPUS / "questions.jsonl")),
    )
    rows = []
    for label, asked in sets:
        cells = []
        for run in (words_only, both):
            found, total = rate(asked, run)
            cells.append(f"{found}/{total} = {found / total:.0%}")
        rows.append([f"hit@5, {label}", *cells])
    return rows


def measure_search(sizes: list[int], database_url: str | None) -> list[list[str]]:
    setup_django(database_url)
    from engine.knowledge import hybrid, search

    asked = [q["q"] for q in questions(CORPUS / "questions.jsonl")]
    asked += [q["q"] for q in questions(PARAPHRASES)]
    passages = [text for _, _, text in corpus_chunks(200, 50)]
    vocabulary = " ".join(passages).split()
    store_id = add_chunks(None, "corpus.txt", [(1, text) for text in passages])
    have = len(passages)
    rows = []
    for size in sizes:
        rng = random.Random(size)
        extra = [(1, " ".join(rng.choices(vocabulary, k=150))) for _ in range(size - have)]
        add_chunks(store_id, "bench.txt", extra)
        search.refresh_statistics()  # as ingestion does after a file
        have = size
        cells = []
        for run in (
            lambda q: search.search([store_id], q, max_results=10),
            lambda q: hybrid.hybrid_search([store_id], q, max_results=10),
        ):
            run(asked[0])  # the first search loads the process's vector index
            timings = []
            for _ in range(3):
                for query in asked:
                    started = time.perf_counter()
                    run(query)
                    timings.append((time.perf_counter() - started) * 1000)
            p50, p99 = percentile(timings, 50), percentile(timings, 99)
            cells.append(f"{p50:.1f} / {p99:.1f} ms {verdict(p99 < 50)}")
        rows.append([f"search p50 / p99, {size:,} chunks", *cells])
    return rows


def measure_model() -> list[list[str]]:
    def rss() -> float:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    texts = [text for _, _, text in corpus_chunks()] * 20
    before = rss()
    started = time.perf_counter()
    from engine.knowledge.embeddings import LocalEmbedder

    model = LocalEmbedder()
    loaded = time.perf_counter() - started
    model.embed(texts[:8])
    started = time.perf_counter()
    model.embed(texts)
    rate = len(texts) / (time.perf_counter() - started)
    added = rss() - before
    return [
        ["local model: memory added to a process", f"{added:.0f} MB {verdict(added <= 200)}"],
        ["local model: load time", f"{loaded:.2f} s"],
        ["local model: 800-token chunks embedded", f"{rate:,.0f} per second (one thread)"],
    ]


def in_child(part: str, *args: str) -> list[list[str]]:
    """Run one in-process part in a fresh Python (each needs its own Django setup)."""
    result = subprocess.run(
        [sys.executable, __file__, "--part", part, *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{part} failed:\n{result.stderr[-3000:]}")
    rows: list[list[str]] = json.loads(result.stdout.strip().splitlines()[-1])
    return rows


def main() -> None:
    if "--part" in sys.argv:
        part = sys.argv[sys.argv.index("--part") + 1]
        rest = sys.argv[sys.argv.index("--part") + 2 :]
        if part == "quality":
            rows = measure_quality()
        elif part == "model":
            rows = measure_model()
        else:
            sizes = [int(size) for size in rest[0].split(",")]
            rows = measure_search(sizes, rest[1] if len(rest) > 1 else None)
        print(json.dumps(rows))
        return

    quick = "--quick" in sys.argv
    print("Knowledge benchmark. NOISY MACHINE: 2 shared cores; read figures as rough.\n")
    print(table(["retrieval", "full-text only", "hybrid"],
                in_child("quality")))  # fmt: skip
    print("Targets: paraphrase hit@5 >= 90%; keyword questions 100%.\n")

    before, after = measure_ingestion("off"), measure_ingestion("local")
    rows = [
        [label, f"{before[label]:,.0f} pages/s", f"{after[label]:,.0f} pages/s "
         f"{verdict(after[label] >= 50)}"]
        for label in before
    ]  # fmt: skip
    print(table(["ingestion through the API", "embeddings off", "embeddings local"], rows))
    print("Target: >= 50 text pages/s with embeddings.\n")

    sizes = "10000" if quick else "10000,100000"
    header = ["search", "full-text only", "hybrid"]
    print(table(["SQLite " + header[0], *header[1:]], in_child("search", sizes)))
    postgres = os.environ.get("THREADLINE_BENCH_POSTGRES") or os.environ.get(
        "THREADLINE_TEST_POSTGRES"
    )
    if postgres and not quick:
        from tests.servers import fresh_postgres_database

        rows = in_child("search", sizes, fresh_postgres_database(postgres))
        print(table(["PostgreSQL " + header[0], *header[1:]], rows))
    print("Target: search p99 < 50 ms at 100k chunks.\n")

    print(table(["embedding model", "figure"], in_child("model")))
    print("Target: memory added by the model <= 200 MB per process.")


if __name__ == "__main__":
    main()

"""On PostgreSQL, each chunk's search words as a stored tsvector with a GIN index.

Search computed `to_tsvector('simple', search_text)` for every chunk of the table on every query
(and once more per query term, to weigh it): 1.5 s per search at 100k chunks (bench/knowledge.py).
A stored generated column is parsed once, when the chunk is written, and the index finds the
chunks holding a term without reading the others. The model does not name the column: the
database fills it, and SQLite has its own FTS5 index (engine.knowledge.search).
"""

from django.db import migrations

COLUMN = (
    "ALTER TABLE engine_chunk ADD COLUMN search_vector tsvector "
    "GENERATED ALWAYS AS (to_tsvector('simple', search_text)) STORED"
)
INDEX = "CREATE INDEX engine_chunk_search_vector ON engine_chunk USING gin (search_vector)"


def add(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(COLUMN)
        schema_editor.execute(INDEX)


def remove(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX engine_chunk_search_vector")
        schema_editor.execute("ALTER TABLE engine_chunk DROP COLUMN search_vector")


class Migration(migrations.Migration):
    dependencies = [("engine", "0008_api_key_rate_limit")]

    operations = [migrations.RunPython(add, remove)]

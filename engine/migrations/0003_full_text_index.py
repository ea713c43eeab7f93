"""The full-text index over chunks: SQLite FTS5 by default, PostgreSQL full-text search there."""

from django.db import migrations

SQLITE_CREATE = [
    # External content: the index reads text from engine_chunk; triggers keep it in step.
    """CREATE VIRTUAL TABLE engine_chunk_fts USING fts5(
        search_text, content='engine_chunk', content_rowid='id',
        tokenize='unicode61 remove_diacritics 2'
    )""",
    """CREATE TRIGGER engine_chunk_fts_insert AFTER INSERT ON engine_chunk BEGIN
        INSERT INTO engine_chunk_fts(rowid, search_text) VALUES (new.id, new.search_text);
    END""",
    """CREATE TRIGGER engine_chunk_fts_delete AFTER DELETE ON engine_chunk BEGIN
        INSERT INTO engine_chunk_fts(engine_chunk_fts, rowid, search_text)
        VALUES ('delete', old.id, old.search_text);
    END""",
    """CREATE TRIGGER engine_chunk_fts_update AFTER UPDATE ON engine_chunk BEGIN
        INSERT INTO engine_chunk_fts(engine_chunk_fts, rowid, search_text)
        VALUES ('delete', old.id, old.search_text);
        INSERT INTO engine_chunk_fts(rowid, search_text) VALUES (new.id, new.search_text);
    END""",
]
SQLITE_DROP = [
    "DROP TRIGGER engine_chunk_fts_update",
    "DROP TRIGGER engine_chunk_fts_delete",
    "DROP TRIGGER engine_chunk_fts_insert",
    "DROP TABLE engine_chunk_fts",
]
POSTGRES_CREATE = [
    "CREATE INDEX engine_chunk_search ON engine_chunk "
    "USING GIN (to_tsvector('simple', search_text))",
]
POSTGRES_DROP = ["DROP INDEX engine_chunk_search"]


def create(apps, schema_editor):
    statements = {"sqlite": SQLITE_CREATE, "postgresql": POSTGRES_CREATE}
    for sql in statements.get(schema_editor.connection.vendor, []):
        schema_editor.execute(sql)


def drop(apps, schema_editor):
    statements = {"sqlite": SQLITE_DROP, "postgresql": POSTGRES_DROP}
    for sql in statements.get(schema_editor.connection.vendor, []):
        schema_editor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [("engine", "0002_chunk_search_text")]
    operations = [migrations.RunPython(create, drop)]

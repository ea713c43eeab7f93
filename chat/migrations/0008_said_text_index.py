"""The full-text index of what conversations said: SQLite FTS5, or PostgreSQL full-text search.

The same kinds of index as the engine's over chunks (engine/migrations/0003), for the same
reasons: both databases ship one, so search needs no other service.
"""

from django.db import migrations

SQLITE_CREATE = [
    # External content: the index reads text from chat_saidtext; triggers keep it in step.
    """CREATE VIRTUAL TABLE chat_saidtext_fts USING fts5(
        text, content='chat_saidtext', content_rowid='id',
        tokenize='unicode61 remove_diacritics 2'
    )""",
    """CREATE TRIGGER chat_saidtext_fts_insert AFTER INSERT ON chat_saidtext BEGIN
        INSERT INTO chat_saidtext_fts(rowid, text) VALUES (new.id, new.text);
    END""",
    """CREATE TRIGGER chat_saidtext_fts_delete AFTER DELETE ON chat_saidtext BEGIN
        INSERT INTO chat_saidtext_fts(chat_saidtext_fts, rowid, text)
        VALUES ('delete', old.id, old.text);
    END""",
    """CREATE TRIGGER chat_saidtext_fts_update AFTER UPDATE ON chat_saidtext BEGIN
        INSERT INTO chat_saidtext_fts(chat_saidtext_fts, rowid, text)
        VALUES ('delete', old.id, old.text);
        INSERT INTO chat_saidtext_fts(rowid, text) VALUES (new.id, new.text);
    END""",
]
SQLITE_DROP = [
    "DROP TRIGGER chat_saidtext_fts_update",
    "DROP TRIGGER chat_saidtext_fts_delete",
    "DROP TRIGGER chat_saidtext_fts_insert",
    "DROP TABLE chat_saidtext_fts",
]
POSTGRES_CREATE = [
    "CREATE INDEX chat_saidtext_search ON chat_saidtext USING GIN (to_tsvector('simple', text))",
]
POSTGRES_DROP = ["DROP INDEX chat_saidtext_search"]


def create(apps, schema_editor):
    statements = {"sqlite": SQLITE_CREATE, "postgresql": POSTGRES_CREATE}
    for sql in statements.get(schema_editor.connection.vendor, []):
        schema_editor.execute(sql)


def drop(apps, schema_editor):
    statements = {"sqlite": SQLITE_DROP, "postgresql": POSTGRES_DROP}
    for sql in statements.get(schema_editor.connection.vendor, []):
        schema_editor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [("chat", "0007_titles_and_said_text")]
    operations = [migrations.RunPython(create, drop)]

"""A read-only view of the full-text index's terms and how many chunks hold each (SQLite)."""

from django.db import migrations


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        schema_editor.execute(
            "CREATE VIRTUAL TABLE engine_chunk_vocab USING fts5vocab(engine_chunk_fts, 'row')"
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        schema_editor.execute("DROP TABLE engine_chunk_vocab")


class Migration(migrations.Migration):
    dependencies = [("engine", "0003_full_text_index")]
    operations = [migrations.RunPython(create, drop)]

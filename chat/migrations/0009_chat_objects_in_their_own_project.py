"""The chat's objects move from the engine's default project into a project of the chat's own.

Until now the chat frontend's engine key (made by `make run`, or THREADLINE_ASSISTANTS_KEY when it
is one of THREADLINE_API_KEYS) opened the default project, which every script's key opens too:
any of them could read every person's threads and files. From now on that key opens the
project "chat". Here its key and what the chat made with it (the threads its conversations
mirror, with their messages, runs and steps; its assistants; their vector stores and files; the
files people attached) move there, so every conversation goes on as before. What scripts made
stays in the default project.

A migration is the one place where the chat's tables and the engine's meet outside the HTTP
API: only the chat knows which remote objects are its own, only the engine's tables can move
them, and it happens once. With the chat on a remote Assistants server nothing here matches.
"""

import hashlib
import secrets
import string
from collections.abc import Iterable, Iterator

from django.conf import settings
from django.db import migrations

BATCH = 500  # ids per IN (…), well inside SQLite's limit on query parameters


def batches(ids: Iterable[str]) -> Iterator[list[str]]:
    ids = sorted(ids)
    for start in range(0, len(ids), BATCH):
        yield ids[start : start + BATCH]


def chat_keys() -> list[str]:
    keys = [settings.ASSISTANTS_KEY]
    if settings.ASSISTANTS_KEY_FILE.exists():
        keys.append(settings.ASSISTANTS_KEY_FILE.read_text().strip())
    return [key for key in keys if key]


def store_ids_in(resources: dict) -> set[str]:
    return set(((resources or {}).get("file_search") or {}).get("vector_store_ids") or [])


def move_to_chat_project(apps, schema_editor):  # type: ignore[no-untyped-def]
    Project = apps.get_model("engine", "Project")
    ApiKey = apps.get_model("engine", "ApiKey")
    default = Project.objects.filter(name="default").first()
    if default is None:
        return  # a new install: nothing was made in the default project yet
    keys = chat_keys()
    hashes = [hashlib.sha256(key.encode()).hexdigest() for key in keys]
    frontend_keys = ApiKey.objects.filter(project=default, key_hash__in=hashes)
    env_key = bool(set(keys) & set(settings.THREADLINE_API_KEYS))
    if not frontend_keys.exists() and not env_key:
        return  # the chat's key opens some other project (or a remote server): it stays so

    chat = Project.objects.filter(name="chat").first()
    if chat is None:
        alphabet = string.digits + string.ascii_letters
        chat = Project.objects.create(
            id="proj_" + "".join(secrets.choice(alphabet) for _ in range(24)), name="chat"
        )
    frontend_keys.update(project=chat)

    Conversation = apps.get_model("chat", "Conversation")
    AssistantProfile = apps.get_model("chat", "AssistantProfile")
    KnowledgeFile = apps.get_model("chat", "KnowledgeFile")
    Upload = apps.get_model("chat", "Upload")
    Thread = apps.get_model("engine", "Thread")
    Message = apps.get_model("engine", "Message")
    Run = apps.get_model("engine", "Run")
    RunStep = apps.get_model("engine", "RunStep")
    Assistant = apps.get_model("engine", "Assistant")
    VectorStore = apps.get_model("engine", "VectorStore")
    VectorStoreFile = apps.get_model("engine", "VectorStoreFile")
    FileBatch = apps.get_model("engine", "FileBatch")
    File = apps.get_model("engine", "File")

    thread_ids = set(Conversation.objects.values_list("thread_id", flat=True))
    assistant_ids = set(AssistantProfile.objects.values_list("assistant_id", flat=True)) - {""}
    store_ids = set(AssistantProfile.objects.values_list("vector_store_id", flat=True)) - {""}
    file_ids = set(KnowledgeFile.objects.values_list("file_id", flat=True)) - {""}
    file_ids |= set(Upload.objects.values_list("file_id", flat=True))

    # What those reach: the stores of their threads and assistants, the files in the stores and
    # in the threads' messages.
    for batch in batches(thread_ids):
        threads = Thread.objects.filter(project=default, pk__in=batch)
        for resources in threads.values_list("tool_resources", flat=True):
            store_ids |= store_ids_in(resources)
        stores = VectorStore.objects.filter(project=default, owner_thread_id__in=batch)
        store_ids |= set(stores.values_list("id", flat=True))
        messages = Message.objects.filter(project=default, thread_id__in=batch)
        for attachments in messages.values_list("attachments", flat=True):
            file_ids |= {a["file_id"] for a in attachments or [] if a.get("file_id")}
    for batch in batches(assistant_ids):
        assistants = Assistant.objects.filter(project=default, pk__in=batch)
        for resources in assistants.values_list("tool_resources", flat=True):
            store_ids |= store_ids_in(resources)
    for batch in batches(store_ids):
        in_stores = VectorStoreFile.objects.filter(vector_store_id__in=batch)
        file_ids |= set(in_stores.values_list("file_id", flat=True))

    for batch in batches(thread_ids):
        Thread.objects.filter(project=default, pk__in=batch).update(project=chat)
        Message.objects.filter(project=default, thread_id__in=batch).update(project=chat)
        Run.objects.filter(project=default, thread_id__in=batch).update(project=chat)
        RunStep.objects.filter(project=default, run__thread_id__in=batch).update(project=chat)
    for batch in batches(assistant_ids):
        Assistant.objects.filter(project=default, pk__in=batch).update(project=chat)
    for batch in batches(store_ids):
        VectorStore.objects.filter(project=default, pk__in=batch).update(project=chat)
        FileBatch.objects.filter(project=default, vector_store_id__in=batch).update(project=chat)
    for batch in batches(file_ids):
        File.objects.filter(project=default, pk__in=batch).update(project=chat)


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0008_said_text_index"),
        ("engine", "0007_run_status_choices"),
    ]

    operations = [migrations.RunPython(move_to_chat_project, migrations.RunPython.noop)]

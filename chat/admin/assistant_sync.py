"""Keeping assistant profiles and their knowledge in line with the Assistants API, for the admin.

Each function does the remote work through `assistants_api` (the assistant itself through
`chat.remote_assistant`, which the chat's first use shares) and records the outcome on the
profile; none needs a request, so tests call them directly. A refusal or an outage never loses
what an admin entered: the profile stays saved, marked out of sync with the API's message, and
knowledge files wait here (`keep_files`) until a sync uploads them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from chat import assistants_api as api
from chat import remote_assistant, uploads
from chat.models import AssistantProfile, KnowledgeFile
from chat.uploads import CheckedFile

log = logging.getLogger(__name__)


def push(profile: AssistantProfile) -> str | None:
    """Create or update the remote assistant; None when synced, else the API's message (also
    kept on the profile as `sync_error`)."""
    try:
        remote_assistant.save(profile)
    except api.AssistantsError as error:
        profile.mark_unsynced(str(error) or "The Assistants API refused the change.")
        return profile.sync_error
    return None


def ensure_vector_store(profile: AssistantProfile) -> str:
    """The profile's vector store, made (and given to the remote assistant) if it has none."""
    if profile.vector_store_id:
        return profile.vector_store_id
    store_id = api.create_vector_store(f"{profile.name} knowledge")
    profile.set_vector_store(store_id)
    if profile.assistant_id:
        push(profile)
    return store_id


@dataclass
class Kept:
    files: list[KnowledgeFile]
    problems: list[str]  # files that could not be stored here, each with why


def keep_files(profile: AssistantProfile, files: list[CheckedFile]) -> Kept:
    """Keep checked files here, waiting to upload, so that nothing added is lost whatever the
    API does next; `sync` uploads them. A temporary upload is moved, never read into memory."""
    kept = Kept([], [])
    for file in files:
        row = KnowledgeFile(
            profile=profile, name=file.name, size=file.size, status=KnowledgeFile.Status.WAITING
        )
        try:
            # The upload itself, not a wrapper: storage moves a temporary file, not copies it.
            row.local_copy.save(file.name, file.file, save=False)
        except OSError as error:  # a full or read-only disk: say so, keep the rest
            log.exception("Keeping knowledge file %s failed", file.name)
            reason = error.strerror or type(error).__name__
            kept.problems.append(f"{file.name} could not be stored on this server ({reason}).")
            continue
        row.save()
        kept.files.append(row)
    return kept


@dataclass
class Synced:
    error: str | None  # the API's message if the assistant itself is not in sync
    uploaded: list[KnowledgeFile]  # knowledge files the API took now
    waiting: list[KnowledgeFile]  # knowledge files still kept here, each with the API's message


def sync(profile: AssistantProfile) -> Synced:
    """Bring the remote assistant in line, then upload the knowledge files waiting here.

    What saving does once committed, and what "Sync now" does. Files go once the assistant
    itself is synced, one by one: a refusal leaves that file waiting with the API's message and
    the next goes on; an outage leaves the rest waiting. Any file left waiting keeps the profile
    out of sync.
    """
    waiting = list(profile.knowledge.filter(file_id=""))
    error = push(profile)
    if error:
        for file in waiting:
            file.wait(error)
        return Synced(error, [], waiting)
    uploaded: list[KnowledgeFile] = []
    left: list[KnowledgeFile] = []
    stopped = None  # why none of the rest can go (the API is away, or there is no store)
    try:
        store_id = ensure_vector_store(profile) if waiting else ""
    except api.AssistantsError as store_error:
        stopped = str(store_error)
    for file in waiting:
        if stopped:
            file.wait(stopped)
            left.append(file)
            continue
        try:
            upload(store_id, file)
        except api.Unreachable as outage:
            stopped = str(outage)
            file.wait(stopped)
            left.append(file)
        except (api.AssistantsError, MissingCopy) as refusal:
            file.wait(str(refusal))
            left.append(file)
        else:
            uploaded.append(file)
    if left:
        profile.mark_unsynced(f"{left[0].name} was not uploaded: {left[0].last_error}")
    return Synced(None, uploaded, left)


class MissingCopy(Exception):
    """The copy kept here went missing (say, the data directory was cleaned by hand)."""


def upload(store_id: str, file: KnowledgeFile) -> None:
    """One waiting file into the vector store, read from its local copy as it is sent."""
    kind = uploads.kind_of(file.name)
    content_type = kind.content_type if kind else "application/octet-stream"
    try:
        content = file.local_copy.open("rb")
    except (OSError, ValueError):  # ValueError: no copy at all
        raise MissingCopy("The copy kept here is missing; add the file again.") from None
    with content:
        # An open file, not a path: the SDK reads a path whole into memory, a file in chunks.
        file_id = api.add_knowledge(store_id, file.name, content, content_type)
    file.uploaded(file_id)


def refresh(profile: AssistantProfile, *, save: bool = True) -> list[KnowledgeFile]:
    """The profile's files with their ingestion state asked afresh where it may still change.

    `save=False` inside a transaction that must not write (see admin): on SQLite the embedded
    engine would wait for our lock.
    """
    files = list(profile.knowledge.all())
    for file in files:
        if file.status != KnowledgeFile.Status.IN_PROGRESS or not profile.vector_store_id:
            continue
        try:
            state = api.ingestion(profile.vector_store_id, file.file_id)
        except api.AssistantsError:
            break  # the API is away: show the last known state
        file.status = "failed" if state.status == "gone" else state.status
        file.last_error = state.last_error
        file.usage_bytes = state.usage_bytes
        file.pages, file.chunks = state.pages, state.chunks
        if save:
            file.save(update_fields=["status", "last_error", "usage_bytes", "pages", "chunks"])
    return files


def reindex(file: KnowledgeFile) -> None:
    api.reindex_knowledge(file.profile.vector_store_id, file.file_id)
    file.status = KnowledgeFile.Status.IN_PROGRESS
    file.last_error = ""
    file.usage_bytes = file.pages = file.chunks = None
    file.save(update_fields=["status", "last_error", "usage_bytes", "pages", "chunks"])


def remove_file(file: KnowledgeFile) -> None:
    """Remove the file remotely, then here: if the API fails, nothing is forgotten. A file still
    waiting to upload is only here: its row and local copy go."""
    if not file.waiting:
        api.remove_knowledge(file.profile.vector_store_id, file.file_id)
    file.delete()


@dataclass(frozen=True)
class RemoteParts:
    """What deleting a profile removes from the API."""

    assistant_id: str
    vector_store_id: str
    files: list[tuple[str, str]]  # (file id, name)

    def describe(self) -> list[str]:
        parts = []
        if self.assistant_id:
            parts.append(f"Remote assistant: {self.assistant_id}")
        if self.vector_store_id:
            parts.append(f"Remote vector store: {self.vector_store_id}")
        parts.extend(f"Remote file: {name} ({file_id})" for file_id, name in self.files)
        return parts


def remote_parts(profile: AssistantProfile) -> RemoteParts:
    return RemoteParts(
        profile.assistant_id,
        profile.vector_store_id,
        list(profile.knowledge.exclude(file_id="").values_list("file_id", "name")),
    )


def delete(profile: AssistantProfile) -> None:
    """Remove the remote assistant, its vector store and files, then the profile.

    Conversations that used it stay (their assistant becomes empty). AssistantsError if the
    API fails; what was removed so far stays removed, the profile stays.
    """
    remove_remote(profile)
    profile.delete()


def remove_remote(profile: AssistantProfile) -> None:
    """The remote half of `delete`: call it outside a transaction that writes (see admin)."""
    parts = remote_parts(profile)
    if parts.assistant_id:
        api.remove_assistant(parts.assistant_id)
    for file_id, _ in parts.files:
        api.remove_knowledge(parts.vector_store_id, file_id)
    if parts.vector_store_id:
        api.remove_vector_store(parts.vector_store_id)


@dataclass(frozen=True)
class Remote:
    """A remote assistant as a profile would mirror it: its values and its knowledge."""

    assistant_id: str
    values: dict[str, Any]  # AssistantProfile fields (see profile_values)
    files: list[api.StoredFile]  # what its vector store holds

    @property
    def vector_store_id(self) -> str:
        return str(self.values["vector_store_id"])


def remote(assistant_id: str) -> Remote:
    """The remote assistant with this id; NotFound if the API has none."""
    return mirror_of(api.remote_assistant(assistant_id))


def mirror_of(assistant: dict[str, Any]) -> Remote:
    values = profile_values(assistant)
    store_id = values["vector_store_id"]
    return Remote(assistant["id"], values, api.vector_store_files(store_id) if store_id else [])


def adopt_knowledge(profile: AssistantProfile, mirrored: Remote) -> None:
    """Rows for the files already in the mirrored assistant's vector store, which becomes the
    profile's (local writes only: the API was asked before)."""
    profile.set_vector_store(mirrored.vector_store_id)
    KnowledgeFile.objects.bulk_create(
        KnowledgeFile(
            profile=profile,
            file_id=file.file_id,
            name=file.name,
            size=file.size,
            status=file.ingestion.status,
            last_error=file.ingestion.last_error,
            usage_bytes=file.ingestion.usage_bytes,
            pages=file.ingestion.pages,
            chunks=file.ingestion.chunks,
        )
        for file in mirrored.files
    )


def import_remote() -> list[AssistantProfile]:
    """Profiles for the remote assistants that no profile mirrors yet (unpublished)."""
    known = set(
        AssistantProfile.objects.exclude(assistant_id="").values_list("assistant_id", flat=True)
    )
    made = []
    for assistant in api.remote_assistants():
        if assistant["id"] in known:
            continue
        mirrored = mirror_of(assistant)
        with transaction.atomic():
            profile = AssistantProfile.objects.create(
                **mirrored.values, assistant_id=mirrored.assistant_id
            )
            profile.mark_synced(mirrored.assistant_id, profile.updated_at)
            adopt_knowledge(profile, mirrored)
        made.append(profile)
    return made


def profile_values(remote: dict[str, Any]) -> dict[str, Any]:
    tools = remote.get("tools") or []
    resources = remote.get("tool_resources") or {}
    store_ids = (resources.get("file_search") or {}).get("vector_store_ids") or []
    response_format = remote.get("response_format") or "auto"
    if isinstance(response_format, dict):
        response_format = response_format.get("type", "auto")
    if response_format not in AssistantProfile.ResponseFormat.values:
        response_format = "auto"
    return {
        "name": remote.get("name") or remote["id"],
        "description": remote.get("description") or "",
        "model": remote.get("model") or "",
        "instructions": remote.get("instructions") or "",
        "temperature": remote.get("temperature"),
        "top_p": remote.get("top_p"),
        "response_format": response_format,
        "file_search": any(t.get("type") == "file_search" for t in tools),
        "code_interpreter": any(t.get("type") == "code_interpreter" for t in tools),
        "functions": [
            {k: v for k, v in t["function"].items() if v is not None}
            for t in tools
            if t.get("type") == "function"
        ],
        "metadata": remote.get("metadata") or {},
        "vector_store_id": store_ids[0] if store_ids else "",
        "published": False,
    }

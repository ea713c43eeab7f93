"""The Assistants API's objects, with OpenAI's nouns, fields and status values.

Each model serialises itself with `to_api()`, a near-identity mapping to the wire format.
Every object belongs to a project; every lookup is scoped to one
(see `engine.api.access.get_owned`).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Now
from django.utils import timezone

from engine.ids import new_id
from engine.rates import Rate, parse, rate_for


def auto() -> str:
    return "auto"


def unix(moment: datetime | None) -> int | None:
    return int(moment.timestamp()) if moment else None


class Project(models.Model):
    id = models.CharField(primary_key=True, max_length=40, editable=False)
    name = models.CharField(max_length=200, unique=True)
    created_at = models.DateTimeField(default=timezone.now)

    # Scripts' project: THREADLINE_API_KEYS, and keys made without naming a project.
    DEFAULT_NAME = "default"
    # The chat frontend's own: its people's threads and files, its assistants. No other key
    # sees them unless an admin makes one for this project.
    CHAT_NAME = "chat"

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self.id:
            self.id = new_id("proj_")
        super().save(*args, **kwargs)

    @classmethod
    def named(cls, name: str) -> Project:
        project, _ = cls.objects.get_or_create(name=name, defaults={"id": new_id("proj_")})
        return project

    @classmethod
    def default(cls) -> Project:
        return cls.named(cls.DEFAULT_NAME)

    @classmethod
    def chat(cls) -> Project:
        return cls.named(cls.CHAT_NAME)


def validate_rate_limit(text: str) -> None:
    try:
        parse(text)
    except ValueError as error:
        raise ValidationError(str(error)) from None


class ApiKey(models.Model):
    """A bearer key an admin created; only its SHA-256 is stored."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=200)
    prefix = models.CharField(max_length=16, help_text="The first characters, to recognise it.")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    rate_limit = models.CharField(
        max_length=32,
        blank=True,
        validators=[validate_rate_limit],
        help_text=(
            'Requests per second, minute or hour, e.g. "60/minute"; "none" for no limit. '
            "Empty: THREADLINE_API_RATE_LIMIT (no limit when that is unset)."
        ),
    )

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @staticmethod
    def hash(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()

    def set_new_key(self) -> str:
        """Give this record a fresh key and return it: the only time its plaintext exists."""
        plaintext = "tl-" + secrets.token_urlsafe(32)
        self.prefix = plaintext[:10]
        self.key_hash = self.hash(plaintext)
        return plaintext

    def rate(self) -> Rate | None:
        return rate_for(self.rate_limit)

    @classmethod
    def issue(cls, project: Project, name: str, rate_limit: str = "") -> tuple[ApiKey, str]:
        key = cls(project=project, name=name, rate_limit=rate_limit)
        plaintext = key.set_new_key()
        key.save()
        return key, plaintext


class ApiObject(models.Model):
    """Fields every Assistants API object shares."""

    ID_PREFIX = ""

    id = models.CharField(primary_key=True, max_length=64, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        abstract = True
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.id

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self.id:
            self.id = new_id(self.ID_PREFIX)
        super().save(*args, **kwargs)


class Assistant(ApiObject):
    ID_PREFIX = "asst_"

    name = models.CharField(max_length=256, null=True, blank=True)
    description = models.CharField(max_length=512, null=True, blank=True)
    model = models.CharField(max_length=256)
    instructions = models.TextField(null=True, blank=True)
    tools = models.JSONField(default=list)
    tool_resources = models.JSONField(default=dict)
    metadata = models.JSONField(default=dict)
    temperature = models.FloatField(null=True)
    top_p = models.FloatField(null=True)
    response_format = models.JSONField(default=auto)

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "assistant",
            "created_at": unix(self.created_at),
            "name": self.name,
            "description": self.description,
            "model": self.model,
            "instructions": self.instructions,
            "tools": self.tools,
            "tool_resources": self.tool_resources,
            "metadata": self.metadata,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "response_format": self.response_format,
        }


class Thread(ApiObject):
    ID_PREFIX = "thread_"

    metadata = models.JSONField(default=dict)
    tool_resources = models.JSONField(default=dict)

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "thread",
            "created_at": unix(self.created_at),
            "metadata": self.metadata,
            "tool_resources": self.tool_resources,
        }


class Message(ApiObject):
    ID_PREFIX = "msg_"

    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=16)
    content = models.JSONField(default=list)
    status = models.CharField(max_length=16, default="completed")
    incomplete_details = models.JSONField(null=True)
    completed_at = models.DateTimeField(null=True)
    incomplete_at = models.DateTimeField(null=True)
    assistant_id = models.CharField(max_length=64, null=True)
    run_id = models.CharField(max_length=64, null=True, db_index=True)
    attachments = models.JSONField(default=list)
    metadata = models.JSONField(default=dict)

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "thread.message",
            "created_at": unix(self.created_at),
            "thread_id": self.thread_id,
            "status": self.status,
            "incomplete_details": self.incomplete_details,
            "completed_at": unix(self.completed_at),
            "incomplete_at": unix(self.incomplete_at),
            "role": self.role,
            "content": self.content,
            "assistant_id": self.assistant_id,
            "run_id": self.run_id,
            "attachments": self.attachments,
            "metadata": self.metadata,
        }

    def text(self) -> str:
        return "\n\n".join(
            part["text"]["value"] for part in self.content if part.get("type") == "text"
        )


class Run(ApiObject):
    """A run's status moves only through `transition()`; see there why."""

    ID_PREFIX = "run_"

    class Status(models.TextChoices):
        QUEUED = "queued"
        IN_PROGRESS = "in_progress"
        REQUIRES_ACTION = "requires_action"
        CANCELLING = "cancelling"
        CANCELLED = "cancelled"
        FAILED = "failed"
        COMPLETED = "completed"
        INCOMPLETE = "incomplete"
        EXPIRED = "expired"

    # The run holds its thread: no new message or run until it ends (as OpenAI did).
    ACTIVE = (Status.QUEUED, Status.IN_PROGRESS, Status.REQUIRES_ACTION, Status.CANCELLING)
    # States in which a worker is (or should be) executing the run.
    EXECUTING = (Status.QUEUED, Status.IN_PROGRESS, Status.CANCELLING)
    # Executing, and nobody has asked it to stop.
    UNDER_WAY = (Status.QUEUED, Status.IN_PROGRESS)
    TERMINAL = (
        Status.COMPLETED,
        Status.CANCELLED,
        Status.FAILED,
        Status.INCOMPLETE,
        Status.EXPIRED,
    )

    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="runs")
    assistant_id = models.CharField(max_length=64)
    status = models.CharField(
        max_length=20, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    required_action = models.JSONField(null=True)
    last_error = models.JSONField(null=True)
    expires_at = models.DateTimeField(null=True)
    started_at = models.DateTimeField(null=True)
    cancelled_at = models.DateTimeField(null=True)
    failed_at = models.DateTimeField(null=True)
    completed_at = models.DateTimeField(null=True)
    incomplete_details = models.JSONField(null=True)
    model = models.CharField(max_length=256)
    instructions = models.TextField(default="", blank=True)
    tools = models.JSONField(default=list)
    metadata = models.JSONField(default=dict)
    usage = models.JSONField(null=True)
    temperature = models.FloatField(null=True)
    top_p = models.FloatField(null=True)
    max_prompt_tokens = models.IntegerField(null=True)
    max_completion_tokens = models.IntegerField(null=True)
    truncation_strategy = models.JSONField(default=dict)
    tool_choice = models.JSONField(default=auto)
    parallel_tool_calls = models.BooleanField(default=True)
    response_format = models.JSONField(default=auto)
    # Not part of the API: which worker executes the run and when it last said so.
    heartbeat_at = models.DateTimeField(null=True, db_index=True)

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "thread.run",
            "created_at": unix(self.created_at),
            "thread_id": self.thread_id,
            "assistant_id": self.assistant_id,
            "status": self.status,
            "required_action": self.required_action,
            "last_error": self.last_error,
            "expires_at": unix(self.expires_at) if self.status in self.ACTIVE else None,
            "started_at": unix(self.started_at),
            "cancelled_at": unix(self.cancelled_at),
            "failed_at": unix(self.failed_at),
            "completed_at": unix(self.completed_at),
            "incomplete_details": self.incomplete_details,
            "model": self.model,
            "instructions": self.instructions,
            "tools": self.tools,
            "metadata": self.metadata,
            "usage": self.usage,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_prompt_tokens": self.max_prompt_tokens,
            "max_completion_tokens": self.max_completion_tokens,
            "truncation_strategy": self.truncation_strategy,
            "tool_choice": self.tool_choice,
            "parallel_tool_calls": self.parallel_tool_calls,
            "response_format": self.response_format,
        }

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    def transition(self, source: str | Iterable[str], target: Status, **fields: Any) -> bool:
        """Move the run from one of the `source` states to `target`, setting `fields`, and say
        whether it moved. One conditional UPDATE (`… WHERE status IN source`), so a cancel from
        another request or process and the worker executing the run never overwrite each other:
        whichever writes second finds the status changed and moves nothing. When it moved, this
        instance follows."""
        sources = [source] if isinstance(source, str) else list(source)
        moved = Run.objects.filter(pk=self.pk, status__in=sources).update(status=target, **fields)
        if moved:
            self.status = target
            for name, value in fields.items():
                setattr(self, name, value)
        return bool(moved)

    def end_open_parts(self, outcome: Status, now: datetime) -> None:
        """Close the steps and messages the run left open when it ended without its worker:
        `outcome` is failed, cancelled or expired."""
        dated = {"failed": "failed_at", "cancelled": "cancelled_at", "expired": "expired_at"}
        RunStep.objects.filter(run=self, status="in_progress").update(
            status=outcome, **{dated[outcome]: now}
        )
        Message.objects.filter(run_id=self.id, status="in_progress").update(
            status="incomplete", incomplete_at=now, incomplete_details={"reason": f"run_{outcome}"}
        )


class RunStep(ApiObject):
    ID_PREFIX = "step_"

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="steps")
    thread_id = models.CharField(max_length=64)
    assistant_id = models.CharField(max_length=64)
    type = models.CharField(max_length=20)
    status = models.CharField(max_length=20, default="in_progress")
    step_details = models.JSONField(default=dict)
    last_error = models.JSONField(null=True)
    expired_at = models.DateTimeField(null=True)
    cancelled_at = models.DateTimeField(null=True)
    failed_at = models.DateTimeField(null=True)
    completed_at = models.DateTimeField(null=True)
    usage = models.JSONField(null=True)
    metadata = models.JSONField(default=dict)

    def to_api(self, include_search_content: bool = False) -> dict[str, Any]:
        details = self.step_details
        if self.type == "tool_calls" and not include_search_content:
            details = without_search_content(details)
        return {
            "id": self.id,
            "object": "thread.run.step",
            "created_at": unix(self.created_at),
            "assistant_id": self.assistant_id,
            "thread_id": self.thread_id,
            "run_id": self.run_id,
            "type": self.type,
            "status": self.status,
            "step_details": details,
            "last_error": self.last_error,
            "expired_at": unix(self.expired_at),
            "cancelled_at": unix(self.cancelled_at),
            "failed_at": unix(self.failed_at),
            "completed_at": unix(self.completed_at),
            "metadata": self.metadata,
            "usage": self.usage,
        }


def without_search_content(details: dict[str, Any]) -> dict[str, Any]:
    """Drop file_search result text, which OpenAI returns only when asked with `include[]`."""
    calls = []
    for call in details.get("tool_calls", []):
        if call.get("type") == "file_search" and "results" in call.get("file_search", {}):
            search = dict(call["file_search"])
            search["results"] = [
                {k: v for k, v in result.items() if k != "content"} for result in search["results"]
            ]
            call = {**call, "file_search": search}
        calls.append(call)
    return {**details, "tool_calls": calls}


class LiveFiles(models.Manager["File"]):
    """Files that have not expired. An expired file is gone, as on OpenAI, from the moment it
    expires; `engine.knowledge.stores.delete_expired_files` deletes its row and bytes later."""

    def get_queryset(self) -> models.QuerySet[File]:
        unexpired = models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=Now())
        return super().get_queryset().filter(unexpired)


class File(ApiObject):
    ID_PREFIX = "file-"

    filename = models.CharField(max_length=512)
    bytes = models.BigIntegerField(default=0)
    purpose = models.CharField(max_length=32)
    # Where the bytes live under FILES_DIR: a random name, never the user's file name.
    storage_name = models.CharField(max_length=128, editable=False)
    expires_at = models.DateTimeField(null=True)

    objects = LiveFiles()
    with_expired = models.Manager["File"]()

    def to_api(self) -> dict[str, Any]:
        data = {
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": unix(self.created_at),
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            # `status_details` is deprecated, and a string when present: left out.
        }
        # An integer when the file expires; the spec has no null for it, so it is left out.
        if self.expires_at is not None:
            data["expires_at"] = unix(self.expires_at)
        return data


class VectorStore(ApiObject):
    ID_PREFIX = "vs_"

    name = models.CharField(max_length=256, null=True, blank=True)
    # Accepted on create as the spec allows; the vector store object does not return it.
    description = models.CharField(max_length=512, null=True, blank=True)
    metadata = models.JSONField(default=dict)
    expires_after = models.JSONField(null=True)
    expires_at = models.DateTimeField(null=True)
    last_active_at = models.DateTimeField(default=timezone.now)
    # The thread whose message attachments created this store, if any.
    owner_thread_id = models.CharField(max_length=64, null=True, blank=True)

    def file_counts(self) -> dict[str, int]:
        return count_statuses(self.files.all())

    def to_api(self) -> dict[str, Any]:
        counts = self.file_counts()
        expired = self.expires_at is not None and self.expires_at <= timezone.now()
        if expired:
            status = "expired"
        elif counts["in_progress"]:
            status = "in_progress"
        else:
            status = "completed"
        usage = self.files.aggregate(total=models.Sum("usage_bytes"))["total"] or 0
        data = {
            "id": self.id,
            "object": "vector_store",
            "created_at": unix(self.created_at),
            # The spec and the SDKs type it as a string: an unnamed store's is empty.
            "name": self.name or "",
            "usage_bytes": usage,
            "file_counts": counts,
            "status": status,
            "expires_at": unix(self.expires_at),
            "last_active_at": unix(self.last_active_at),
            "metadata": self.metadata,
        }
        # An object when there is a policy; the spec has no null for it, so it is left out.
        if self.expires_after:
            data["expires_after"] = self.expires_after
        return data


def count_statuses(files: models.QuerySet[VectorStoreFile]) -> dict[str, int]:
    counts = {"in_progress": 0, "completed": 0, "failed": 0, "cancelled": 0}
    for row in files.values("status").annotate(n=models.Count("pk")):
        counts[row["status"]] = row["n"]
    counts["total"] = sum(counts.values())
    return counts


class FileBatch(ApiObject):
    ID_PREFIX = "vsfb_"

    vector_store = models.ForeignKey(VectorStore, on_delete=models.CASCADE, related_name="batches")
    cancelled = models.BooleanField(default=False)

    def to_api(self) -> dict[str, Any]:
        counts = count_statuses(self.files.all())
        if counts["in_progress"]:
            status = "cancelling" if self.cancelled else "in_progress"
        elif self.cancelled:
            status = "cancelled"
        elif counts["failed"] and not counts["completed"]:
            status = "failed"
        else:
            status = "completed"
        return {
            "id": self.id,
            "object": "vector_store.files_batch",
            "created_at": unix(self.created_at),
            "vector_store_id": self.vector_store_id,
            "status": status,
            "file_counts": counts,
        }


class VectorStoreFile(models.Model):
    """A file in a vector store; its API id is the file's id."""

    vector_store = models.ForeignKey(VectorStore, on_delete=models.CASCADE, related_name="files")
    file = models.ForeignKey(File, on_delete=models.CASCADE, related_name="memberships")
    batch = models.ForeignKey(FileBatch, on_delete=models.SET_NULL, null=True, related_name="files")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    status = models.CharField(max_length=20, default="in_progress", db_index=True)
    last_error = models.JSONField(null=True)
    usage_bytes = models.BigIntegerField(default=0)
    chunking_strategy = models.JSONField(default=dict)
    attributes = models.JSONField(default=dict)
    pages = models.IntegerField(default=0)
    chunk_count = models.IntegerField(default=0)
    # Which worker ingests the file and when it last said so; a stale claim is taken over.
    claimed_at = models.DateTimeField(null=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["vector_store", "file"], name="unique_store_file")
        ]
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"{self.vector_store_id}/{self.file_id}"

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.file_id,
            "object": "vector_store.file",
            "usage_bytes": self.usage_bytes,
            "created_at": unix(self.created_at),
            "vector_store_id": self.vector_store_id,
            "status": self.status,
            "last_error": self.last_error,
            "chunking_strategy": self.chunking_strategy,
            "attributes": self.attributes,
            # Ours, beside the spec's fields (standard clients ignore them): what was indexed.
            "pages": self.pages,
            "chunks": self.chunk_count,
        }


class Chunk(models.Model):
    """A piece of a vector store file's text, on one page; the unit file_search ranks."""

    store_file = models.ForeignKey(VectorStoreFile, on_delete=models.CASCADE, related_name="chunks")
    vector_store_id = models.CharField(max_length=64, db_index=True)
    file_id = models.CharField(max_length=64)
    page = models.IntegerField()
    index = models.IntegerField()
    text = models.TextField()
    # The text as the full-text index sees it (scripts without spaces cut into characters).
    search_text = models.TextField(default="")
    tokens = models.IntegerField()

    class Meta:
        ordering = ["store_file", "index"]

    def __str__(self) -> str:
        return f"{self.file_id} p.{self.page} #{self.index}"


class ChunkVector(models.Model):
    """A chunk's embedding under one model (engine.knowledge.embeddings), for semantic search.

    `vector` holds float16 values, little-endian, unit length. A chunk has at most one; when
    THREADLINE_EMBEDDINGS changes, the background re-embedding replaces it with a new row (a new
    id, which is how each process's in-memory index sees what changed).
    """

    chunk = models.OneToOneField(Chunk, on_delete=models.CASCADE, related_name="vector")
    model = models.CharField(max_length=200, db_index=True)
    vector = models.BinaryField()

    def __str__(self) -> str:
        return f"{self.chunk_id} ({self.model})"

"""What the chat keeps of its own: assistants as admins set them up, and who owns which thread.

Messages are not copied here: the Assistants API is their source of truth.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.files.storage import FileSystemStorage
from django.core.validators import MaxLengthValidator, MaxValueValidator, MinValueValidator
from django.db import models, transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django.utils import timezone
from django.utils.deconstruct import deconstructible

# How long a page waits for a title the model is writing before it stops asking.
TITLE_PATIENCE = timedelta(seconds=60)


class AssistantProfile(models.Model):
    """An assistant as admins edit it, mirrored to a remote one when saved (or on first use)."""

    INSTRUCTIONS_LIMIT = 256_000  # the Assistants API's own limit

    class ResponseFormat(models.TextChoices):
        AUTO = "auto", "auto"
        TEXT = "text", "text"
        JSON_OBJECT = "json_object", "JSON object"

    name = models.CharField(max_length=256)
    description = models.TextField(blank=True, max_length=512)
    assistant_id = models.CharField(
        "remote assistant id",
        max_length=128,
        blank=True,
        help_text="Filled in by the first sync (or given when the profile was added), then fixed.",
    )
    model = models.CharField(max_length=256)
    instructions = models.TextField(blank=True, validators=[MaxLengthValidator(INSTRUCTIONS_LIMIT)])
    temperature = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0), MaxValueValidator(2)],
        help_text="0 to 2; empty: the API's default.",
    )
    top_p = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0), MaxValueValidator(1)],
        help_text="0 to 1; empty: the API's default.",
    )
    response_format = models.CharField(
        max_length=16, choices=ResponseFormat.choices, default=ResponseFormat.AUTO
    )
    file_search = models.BooleanField(
        default=True, help_text="Let the assistant search attached files and its knowledge."
    )
    code_interpreter = models.BooleanField(default=False)
    # [{"name", "description", "parameters"}]; None: not managed here, the remote assistant's
    # function tools stay as they are (profiles that mirror an assistant set up elsewhere).
    functions = models.JSONField(null=True, blank=True, default=None)
    # Functions from the registry (chat.tools), offered besides `functions`.
    registry_functions = models.ManyToManyField(
        "chat.Function",
        blank=True,
        related_name="assistants",
        verbose_name="functions from the registry",
    )
    metadata = models.JSONField(default=dict, blank=True)
    published = models.BooleanField(default=False, help_text="Offered to people in the chat.")
    groups = models.ManyToManyField(
        Group, blank=True, help_text="Who may use it. None selected: everyone signed in."
    )
    # The remote vector store holding the assistant's knowledge files, made on first upload.
    vector_store_id = models.CharField(max_length=128, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # The `updated_at` the remote assistant was last brought in line with.
    synced_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Why the last sync failed, as the API said it; "" once a sync succeeds.
    sync_error = models.TextField(blank=True, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def needs_sync(self) -> bool:
        return not self.assistant_id or self.synced_at != self.updated_at

    # The remote id and the sync mark change by compare-and-set (`update()` of the row as it
    # was read), never by `save()`: several processes may sync one profile at once (see
    # chat.remote_assistant), and `updated_at` must stay the version that was edited.

    def claim_remote(self, assistant_id: str) -> bool:
        """Record a newly created remote assistant, unless another process recorded one first."""
        claimed = AssistantProfile.objects.filter(pk=self.pk, assistant_id="").update(
            assistant_id=assistant_id
        )
        if claimed:
            self.assistant_id = assistant_id
        return bool(claimed)

    def forget_remote(self, assistant_id: str) -> None:
        """Its remote assistant is gone; a replacement another process recorded stays."""
        AssistantProfile.objects.filter(pk=self.pk, assistant_id=assistant_id).update(
            assistant_id=""
        )

    def mark_synced(self, assistant_id: str, version: datetime) -> bool:
        """Record that the remote assistant holds `version` of the profile; False, and nothing
        recorded, if the profile has changed since (another remote id, or a newer edit)."""
        marked = AssistantProfile.objects.filter(
            pk=self.pk, assistant_id=assistant_id, updated_at=version
        ).update(synced_at=version, sync_error="")
        if marked:
            self.assistant_id, self.synced_at, self.sync_error = assistant_id, version, ""
        return bool(marked)

    def mark_unsynced(self, error: str) -> None:
        AssistantProfile.objects.filter(pk=self.pk).update(sync_error=error)
        self.sync_error = error

    def set_vector_store(self, vector_store_id: str) -> None:
        AssistantProfile.objects.filter(pk=self.pk).update(vector_store_id=vector_store_id)
        self.vector_store_id = vector_store_id


@deconstructible(path="chat.models.WaitingFileStorage")
class WaitingFileStorage(FileSystemStorage):
    """Knowledge files the Assistants API has not taken yet: under the data directory, which
    nothing serves, readable by this process alone. The place follows the setting (tests move it).
    """

    def __init__(self) -> None:
        super().__init__(file_permissions_mode=0o600, directory_permissions_mode=0o700)

    @property
    def base_location(self) -> str:
        return str(settings.KNOWLEDGE_WAITING_DIR)

    @property
    def location(self) -> str:
        return os.path.abspath(self.base_location)


def waiting_path(file: KnowledgeFile, name: str) -> str:
    return f"{file.profile_id}/{name}"


class KnowledgeFile(models.Model):
    """A file in an assistant's vector store; `status` caches the API's ingestion state.

    A file the API did not take when it was added waits here (`local_copy`, no `file_id`) until
    a sync uploads it.
    """

    class Status(models.TextChoices):
        WAITING = "waiting", "waiting to upload"
        IN_PROGRESS = "in_progress", "processing"
        COMPLETED = "completed", "ready"
        FAILED = "failed", "failed"
        CANCELLED = "cancelled", "cancelled"

    profile = models.ForeignKey(
        AssistantProfile, on_delete=models.CASCADE, related_name="knowledge"
    )
    file_id = models.CharField("remote file id", max_length=128, blank=True)
    name = models.CharField(max_length=255)
    size = models.BigIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.IN_PROGRESS)
    # Why it failed to be read, or (waiting) why the API did not take it, as the API said.
    last_error = models.TextField(blank=True)
    usage_bytes = models.BigIntegerField(null=True, blank=True)
    pages = models.IntegerField(null=True, blank=True)
    chunks = models.IntegerField(null=True, blank=True)
    # The file itself while it waits to be uploaded; emptied (and deleted) once the API has it.
    local_copy = models.FileField(
        storage=WaitingFileStorage(), upload_to=waiting_path, max_length=255, blank=True
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["profile", "file_id"],
                condition=~models.Q(file_id=""),
                name="one_knowledge_per_file",
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def waiting(self) -> bool:
        return not self.file_id

    def wait(self, error: str) -> None:
        self.status = KnowledgeFile.Status.WAITING
        self.last_error = error
        self.save(update_fields=["status", "last_error"])

    def uploaded(self, file_id: str) -> None:
        """The API has the file now: forget the local copy (once this is committed)."""
        self.file_id = file_id
        self.status = KnowledgeFile.Status.IN_PROGRESS
        self.last_error = ""
        storage, name = self.local_copy.storage, self.local_copy.name
        self.local_copy = ""
        self.save(update_fields=["file_id", "status", "last_error", "local_copy"])
        if name:
            transaction.on_commit(lambda: storage.delete(name))


# A local copy goes with its row however the row goes: removed alone, or with its profile
# (a cascade, which calls no delete() of the files). After the commit, so a rollback keeps it.
@receiver(post_delete, sender=KnowledgeFile)
def delete_local_copy(sender: Any, instance: KnowledgeFile, **kwargs: Any) -> None:
    storage, name = instance.local_copy.storage, instance.local_copy.name
    if name:
        transaction.on_commit(lambda: storage.delete(name))


class Conversation(models.Model):
    """One of a person's threads."""

    TITLE_CHARS = 80

    class TitleSource(models.TextChoices):
        MESSAGE = "message", "the first message"
        GENERATING = "generating", "being written by the model"
        GENERATED = "generated", "written by the model"
        PERSON = "person", "given by its owner"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    thread_id = models.CharField("remote thread id", max_length=128)
    # SET_NULL: a thread stays readable after its assistant is deleted.
    assistant = models.ForeignKey(
        AssistantProfile,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="conversations",
    )
    title = models.CharField(max_length=200)
    title_source = models.CharField(
        max_length=16, choices=TitleSource.choices, default=TitleSource.MESSAGE
    )
    # When the model was asked for a title: a page waits for it a little while, not forever.
    title_asked_at = models.DateTimeField(null=True, blank=True)
    # The run whose answer is streaming now, "" when none: what a reload reconnects to.
    active_run_id = models.CharField(max_length=128, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Moves when a message is sent, so the list shows the threads in use first.
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-updated_at", "-pk"]
        indexes = [models.Index(fields=["owner", "-updated_at"])]

    def __str__(self) -> str:
        return self.title

    @classmethod
    def title_from(cls, text: str) -> str:
        """A title from plain text: one line, cut at a word."""
        line = " ".join(text.split())
        if len(line) <= cls.TITLE_CHARS:
            return line or "New chat"
        return line[: cls.TITLE_CHARS - 1].rsplit(" ", 1)[0] + "…"

    def rename(self, title: str) -> None:
        """The owner's own title, which a title being generated no longer replaces."""
        self.title = " ".join(title.split())[:200] or self.title
        self.title_source = Conversation.TitleSource.PERSON
        self.save(update_fields=["title", "title_source"])

    @property
    def title_pending(self) -> bool:
        """The model is writing a title, and has not taken too long about it."""
        return (
            self.title_source == Conversation.TitleSource.GENERATING
            and self.title_asked_at is not None
            and timezone.now() - self.title_asked_at < TITLE_PATIENCE
        )

    def ask_title(self) -> bool:
        """Mark the title as being generated, unless it is already or was given; False then."""
        now = timezone.now()
        asked = Conversation.objects.filter(
            pk=self.pk, title_source=Conversation.TitleSource.MESSAGE
        ).update(title_source=Conversation.TitleSource.GENERATING, title_asked_at=now)
        if asked:
            self.title_source, self.title_asked_at = Conversation.TitleSource.GENERATING, now
        return bool(asked)

    @classmethod
    def set_generated_title(cls, conversation_id: int, title: str) -> None:
        """The model's title, or ("") none: keeps the first message's; a rename meanwhile wins."""
        fields: dict[str, Any] = {"title_source": cls.TitleSource.GENERATED}
        if title:
            fields["title"] = title
        cls.objects.filter(pk=conversation_id, title_source=cls.TitleSource.GENERATING).update(
            **fields
        )

    def start_run(self, run_id: str) -> None:
        self.active_run_id = run_id
        self.updated_at = timezone.now()
        self.save(update_fields=["active_run_id", "updated_at"])

    @classmethod
    def resume_run(cls, conversation_id: int, run_id: str) -> None:
        """Another relay follows the run now (chat.tools.recovery): a reload shows it live."""
        cls.objects.filter(pk=conversation_id, active_run_id__in=["", run_id]).update(
            active_run_id=run_id
        )

    @classmethod
    def end_run(cls, conversation_id: int, run_id: str) -> None:
        """The run's answer is over; leaves a newer run alone."""
        cls.objects.filter(pk=conversation_id, active_run_id=run_id).update(active_run_id="")


class SaidText(models.Model):
    """The text of one message of a conversation, as the chat showed it: what search looks in.

    A copy kept only for searching (the API stays the messages' source of truth), in a full-text
    index: SQLite FTS5, or PostgreSQL's full-text search (migration 0007).
    """

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="said")
    message_id = models.CharField("remote message id", max_length=128)
    text = models.TextField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["conversation", "message_id"], name="one_text_per_message"
            )
        ]

    def __str__(self) -> str:
        return self.text[:80]


class Upload(models.Model):
    """A file a person attached: lets the file route tell their uploads from anyone else's."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="uploads"
    )
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="uploads")
    file_id = models.CharField("remote file id", max_length=128)
    name = models.CharField(max_length=255)
    size = models.BigIntegerField()
    content_type = models.CharField(max_length=128)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["conversation", "file_id"], name="one_upload_per_file")
        ]

    def __str__(self) -> str:
        return self.name


class UsageLimits(models.Model):
    """Limits an admin set for one person, for one group, or for everyone (neither given).

    An empty field sets nothing here; `chat.limits.rules` says how a person's rows combine.
    """

    class Scope(models.TextChoices):
        EVERYONE = "everyone", "everyone"
        GROUP = "group", "group"
        USER = "user", "person"

    # Follows from `user` and `group` (see save()); it lets the database keep one "everyone" row.
    scope = models.CharField(max_length=8, choices=Scope.choices, editable=False)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="usage_limits",
        help_text="Limits of this person's own: where set, they win over their groups'.",
    )
    group = models.OneToOneField(
        Group,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="usage_limits",
        help_text="Limits for the group's members. Neither person nor group: everyone's default.",
    )
    messages_per_hour = models.PositiveIntegerField(
        null=True, blank=True, help_text="Messages sent (and retries) in any 60 minutes."
    )
    messages_per_day = models.PositiveIntegerField(
        null=True, blank=True, help_text="Messages sent (and retries) in any 24 hours."
    )
    answers_at_once = models.PositiveIntegerField("answers running at once", null=True, blank=True)
    tokens_per_day = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Tokens the answers used in any 24 hours."
    )
    tokens_per_month = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Tokens the answers used in the calendar month (UTC)."
    )
    upload_mb_per_day = models.PositiveIntegerField(
        "upload MB per day", null=True, blank=True, help_text="Attached files in any 24 hours."
    )
    stored_mb = models.PositiveIntegerField(
        "stored MB",
        null=True,
        blank=True,
        help_text="Attached files kept in all of the person's conversations together.",
    )

    class Meta:
        verbose_name = "usage limits"
        verbose_name_plural = "usage limits"
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(user__isnull=False, group__isnull=False),
                name="usage_limits_for_a_person_or_a_group",
                violation_error_message="Limits are for a person or for a group, not both.",
            ),
            models.UniqueConstraint(
                fields=["scope"],
                condition=models.Q(scope="everyone"),
                name="one_usage_limits_for_everyone",
                violation_error_message="Everyone's limits exist already: change those instead.",
            ),
        ]

    def __str__(self) -> str:
        if self.user_id is not None:
            return f"Limits of {self.user}"
        if self.group_id is not None:
            return f"Limits of the group {self.group}"
        return "Limits for everyone"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.scope = self.scope_of()
        super().save(*args, **kwargs)

    def validate_constraints(self, exclude: Any = None) -> None:
        # Forms leave `scope` out (it is not editable) and so would skip its constraint.
        self.scope = self.scope_of()
        super().validate_constraints(set(exclude or ()) - {"scope"})

    def scope_of(self) -> str:
        if self.user_id is not None:
            return UsageLimits.Scope.USER
        if self.group_id is not None:
            return UsageLimits.Scope.GROUP
        return UsageLimits.Scope.EVERYONE


class AnswerUsage(models.Model):
    """One answer a person asked for (a message sent, or a retry): what their limits count.

    Recorded before anything reaches the Assistants API, in the transaction that checked the
    limits, and removed again if nothing was sent (chat.limits.admission). Kept when its
    conversation is deleted: what was used today stays used.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="answer_usage"
    )
    conversation = models.ForeignKey(
        Conversation, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Empty until the run has started; with them, a process can ask the API how a run ended
    # whose relay died with another process.
    thread_id = models.CharField(max_length=128, blank=True)
    run_id = models.CharField(max_length=128, blank=True, db_index=True)
    # Bytes of the files attached to the message.
    upload_bytes = models.BigIntegerField(default=0)
    started_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)
    # The run's usage as the API reported it; None until it ends (or when it never said).
    prompt_tokens = models.PositiveBigIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveBigIntegerField(null=True, blank=True)
    total_tokens = models.PositiveBigIntegerField(null=True, blank=True)

    class Meta:
        verbose_name = "usage"
        verbose_name_plural = "usage"
        indexes = [models.Index(fields=["user", "started_at"])]

    def __str__(self) -> str:
        return f"{self.user} at {self.started_at:%Y-%m-%d %H:%M}"


# The function registry and call records live with the chat's tools; imported here so that Django
# finds them with the app's other models (the `as` re-exports them).
from chat.tools.mcp_models import CallFile as CallFile  # noqa: E402
from chat.tools.mcp_models import Elicitation as Elicitation  # noqa: E402
from chat.tools.mcp_models import McpServer as McpServer  # noqa: E402
from chat.tools.mcp_models import McpUserSecret as McpUserSecret  # noqa: E402
from chat.tools.models import CallRound as CallRound  # noqa: E402
from chat.tools.models import Function as Function  # noqa: E402
from chat.tools.models import FunctionCall as FunctionCall  # noqa: E402

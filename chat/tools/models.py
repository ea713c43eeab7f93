"""The function registry and the record of every call the chat answers.

`Function` is what admins register. `CallRound` is one `requires_action` of a run: the calls the
run waits on, and which relay (process) answers them, renewed like a lease so that another process
can take over if that one dies. `FunctionCall` is one call, recorded before anything runs; its
status only moves by conditional updates, so two processes never run or answer one call twice.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone

# The Assistants API's rule for a function's name.
NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
NAME_RULE = "letters, digits, _ or -, at most 64 characters"


def empty_parameters() -> dict[str, Any]:
    return {"type": "object", "properties": {}}


def new_secret() -> str:
    return secrets.token_urlsafe(32)


class Function(models.Model):
    """A function assistants may call, and how the chat answers it."""

    class Kind(models.TextChoices):
        PYTHON = "python", "Python function on this server"
        WEBHOOK = "webhook", "HTTP webhook"
        USER = "user", "answered by the user"
        MCP = "mcp", "tool of an MCP server"

    name = models.CharField(
        max_length=64,
        unique=True,
        validators=[RegexValidator(NAME, f"A function's name is {NAME_RULE}.")],
        help_text=f"As the model calls it: {NAME_RULE}.",
    )
    description = models.TextField(
        blank=True, max_length=1024, help_text="What it does and when to call it, for the model."
    )
    parameters = models.JSONField(default=empty_parameters)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.USER)
    url = models.URLField("webhook URL", max_length=2000, blank=True)
    # A tool of an MCP server (chat.tools.mcp_catalog): the server, and the tool's own name there.
    mcp_server = models.ForeignKey(
        "chat.McpServer",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="functions",
        verbose_name="MCP server",
    )
    mcp_tool = models.CharField("MCP tool", max_length=256, blank=True)
    # Signs each webhook request (README: "Webhooks"). Write-only in the admin.
    secret = models.CharField(max_length=256, default=new_secret)
    # Extra request headers {name: value}; the values may be secrets, so write-only in the admin.
    headers = models.JSONField(default=dict, blank=True)
    timeout_seconds = models.PositiveIntegerField(
        default=30,
        validators=[MinValueValidator(1), MaxValueValidator(600)],
        help_text="How long a Python function or a webhook may take (1 to 600 seconds).",
    )
    approval = models.BooleanField(
        "ask the user before running",
        default=False,
        help_text="The user sees the call and its arguments and chooses Allow or Deny.",
    )
    groups = models.ManyToManyField(
        Group,
        blank=True,
        related_name="functions",
        help_text="Who may run it. None selected: everyone who may use the assistant.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def definition(self) -> dict[str, Any]:
        """The function tool's `function` object, as assistants are given it."""
        return {"name": self.name, "description": self.description, "parameters": self.parameters}

    @property
    def runs_on_server(self) -> bool:
        return self.kind in (Function.Kind.PYTHON, Function.Kind.WEBHOOK, Function.Kind.MCP)


class CallRound(models.Model):
    """The calls of one `requires_action` of a run, and the relay that answers them."""

    class Status(models.TextChoices):
        OPEN = "open", "waiting for outputs"
        SUBMITTED = "submitted", "outputs submitted"
        ENDED = "ended", "the run ended first"

    conversation = models.ForeignKey(
        "chat.Conversation", on_delete=models.CASCADE, related_name="call_rounds"
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="call_rounds"
    )
    run_id = models.CharField(max_length=128)
    thread_id = models.CharField(max_length=128)
    step_id = models.CharField(max_length=128)
    assistant_id = models.CharField(max_length=128, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    # When the run stops waiting (the run's expires_at); None if the API did not say.
    expires_at = models.DateTimeField(null=True, blank=True)
    # The relay answering the round and when it last said it still does (chat.tools.recovery).
    relay = models.CharField(max_length=64)
    relay_seen_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run_id", "step_id"], name="one_round_per_step")
        ]
        indexes = [models.Index(fields=["status", "relay_seen_at"])]

    def __str__(self) -> str:
        return f"{self.run_id} / {self.step_id}"


class FunctionCall(models.Model):
    """One call of a function by a run, from the moment it is known to its output."""

    class Status(models.TextChoices):
        WAITING_APPROVAL = "waiting_approval", "waiting for approval"
        WAITING_ANSWER = "waiting_answer", "waiting for an answer"
        QUEUED = "queued", "about to run"
        RUNNING = "running", "running"
        DONE = "done", "done"
        FAILED = "failed", "failed"
        DENIED = "denied", "denied by the user"
        ANSWERED = "answered", "answered"
        REFUSED = "refused", "refused, never ran"
        INTERRUPTED = "interrupted", "interrupted"
        ENDED = "ended", "not answered: the run ended"

    # Settled: the call has its output and waits for nothing more.
    SETTLED = (
        Status.DONE,
        Status.FAILED,
        Status.DENIED,
        Status.ANSWERED,
        Status.REFUSED,
        Status.INTERRUPTED,
    )
    WAITING = (Status.WAITING_APPROVAL, Status.WAITING_ANSWER)

    class Kind(models.TextChoices):
        PYTHON = "python", "Python"
        WEBHOOK = "webhook", "webhook"
        USER = "user", "user"
        MCP = "mcp", "MCP server"
        NONE = "none", "nothing"

    round = models.ForeignKey(CallRound, on_delete=models.CASCADE, related_name="calls")
    run_id = models.CharField(max_length=128)
    call_id = models.CharField(max_length=128)
    position = models.PositiveIntegerField(default=0)
    name = models.CharField(max_length=256)
    arguments = models.TextField(blank=True)
    function = models.ForeignKey(
        Function, on_delete=models.SET_NULL, null=True, blank=True, related_name="calls"
    )
    # What answers it, decided once when recorded (chat.tools.decide).
    kind = models.CharField(max_length=16, choices=Kind.choices)
    # The definition the form is built from, for a user-answered call ({} otherwise).
    definition = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices)
    # What the model gets; `error` marks outputs that say what went wrong.
    output = models.TextField(blank=True)
    error = models.BooleanField(default=False)
    # What the person sees when it went wrong, in words (the model gets `output`).
    problem = models.TextField(blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="function_calls"
    )
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "position"]
        constraints = [
            models.UniqueConstraint(fields=["run_id", "call_id"], name="one_record_per_call")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.call_id})"

    @property
    def settled(self) -> bool:
        return self.status in FunctionCall.SETTLED

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    def move(self, source: str | tuple[str, ...], target: str, **fields: Any) -> bool:
        """Move from one of the `source` statuses to `target`, setting `fields`, in one
        conditional update; False (and nothing changed) if another request or process moved it
        first. When it moved, this instance follows."""
        sources = [source] if isinstance(source, str) else list(source)
        moved = FunctionCall.objects.filter(pk=self.pk, status__in=sources).update(
            status=target, **fields
        )
        if moved:
            self.status = target
            for name, value in fields.items():
                setattr(self, name, value)
        return bool(moved)

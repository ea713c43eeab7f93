"""MCP servers the admin connects, the secrets people give them, and what their calls leave:
questions a server asked the person during a call (elicitation) and images it answered with.

A server's tools become registry functions (`Function`, kind `mcp`) when the admin offers them;
the listing here is what the server said at the last refresh, kept to show what changed.
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

# Short enough that `<server>__<tool>` leaves a tool most of the API's 64 characters.
SERVER_NAME = re.compile(r"^[A-Za-z0-9-]{1,24}$")
SERVER_NAME_RULE = "letters, digits or -, at most 24 characters"
HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,100}$")


class McpServer(models.Model):
    """A Model Context Protocol server reached over Streamable HTTP."""

    class Auth(models.TextChoices):
        NONE = "none", "none"
        DEPLOYMENT = "deployment", "one secret for the whole deployment"
        PER_USER = "per_user", "a secret each person enters in their settings"

    name = models.CharField(
        max_length=24,
        unique=True,
        validators=[RegexValidator(SERVER_NAME, f"A server's name is {SERVER_NAME_RULE}.")],
        help_text=f"Its tools become functions called name__tool: {SERVER_NAME_RULE}.",
    )
    url = models.URLField(
        "Streamable HTTP URL",
        max_length=2000,
        help_text="The server's MCP endpoint, e.g. https://tools.example.com/mcp.",
    )
    auth = models.CharField(
        "authentication", max_length=16, choices=Auth.choices, default=Auth.NONE
    )
    header = models.CharField(
        "secret's header",
        max_length=100,
        default="Authorization",
        validators=[RegexValidator(HEADER_NAME, "A header's name: letters, digits and -.")],
    )
    scheme = models.CharField(
        "before the secret",
        max_length=30,
        blank=True,
        default="Bearer",
        help_text="The header's value is this, a space, then the secret (as in “Bearer abc123”); "
        "empty sends the secret alone.",
    )
    # The deployment's secret (auth "deployment"); write-only in the admin.
    secret = models.CharField(max_length=4096, blank=True)
    # The server's tools at the last refresh: [{name, description, input_schema, annotations}].
    tools = models.JSONField(default=list, blank=True)
    # What that refresh changed: {"added": [...], "removed": [...], "changed": [...]}.
    changes = models.JSONField(default=dict, blank=True)
    refreshed_at = models.DateTimeField(null=True, blank=True)
    # Whether the server answered the last time it was asked, and if not, why.
    available = models.BooleanField(default=True)
    problem = models.TextField(blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "MCP server"

    def __str__(self) -> str:
        return self.name

    def header_value(self, secret: str) -> str:
        return f"{self.scheme} {secret}" if self.scheme else secret

    def listed(self, tool: str) -> dict[str, Any] | None:
        """The tool as the last refresh listed it; None if the server no longer offers it."""
        return next((t for t in self.tools if t.get("name") == tool), None)


class McpUserSecret(models.Model):
    """The secret one person gave a server of auth "per_user"; never shown again."""

    server = models.ForeignKey(McpServer, on_delete=models.CASCADE, related_name="user_secrets")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="mcp_secrets"
    )
    secret = models.CharField(max_length=4096)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["server", "user"], name="one_secret_per_server_user")
        ]

    def __str__(self) -> str:
        return f"{self.server} / {self.user}"


class Elicitation(models.Model):
    """A question a server asked the person during a call; the call waits for the answer."""

    class Status(models.TextChoices):
        WAITING = "waiting", "waiting for the person"
        ACCEPTED = "accepted", "answered"
        DECLINED = "declined", "declined"
        CANCELLED = "cancelled", "not answered"

    call = models.ForeignKey(
        "chat.FunctionCall", on_delete=models.CASCADE, related_name="elicitations"
    )
    message = models.TextField()
    # The flat JSON Schema of the answer, as the server sent it.
    schema = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.WAITING)
    content = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    answered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"{self.call} asks: {self.message[:40]}"


class CallFile(models.Model):
    """A file a call answered with (an MCP tool's image), kept as a file of the Assistants API
    and shown in the chat through the ownership-checked file route."""

    call = models.ForeignKey("chat.FunctionCall", on_delete=models.CASCADE, related_name="files")
    file_id = models.CharField(max_length=128, db_index=True)
    name = models.CharField(max_length=200)
    content_type = models.CharField(max_length=100)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["position"]

    def __str__(self) -> str:
        return self.name

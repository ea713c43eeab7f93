"""The secrets people give MCP servers of auth "per_user", on their own settings page.

A secret is written once and never shown again, to anyone: the page says only whether one is
saved. Each person sees and changes only their own.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import User
from django.http import Http404

from chat.tools.mcp_models import McpServer, McpUserSecret

MAX_SECRET_CHARS = 4096


@dataclass(frozen=True)
class Entry:
    server: McpServer
    saved: bool


def entries_for(user: User) -> list[Entry]:
    """The servers that take a secret of the person's own (with tools offered), and whether
    theirs is saved."""
    servers = McpServer.objects.filter(
        auth=McpServer.Auth.PER_USER, functions__isnull=False
    ).distinct()
    saved = set(McpUserSecret.objects.filter(user=user).values_list("server_id", flat=True))
    return [Entry(server, server.pk in saved) for server in servers]


def server_for(server_id: str | int) -> McpServer:
    try:
        return McpServer.objects.get(pk=int(server_id), auth=McpServer.Auth.PER_USER)
    except (McpServer.DoesNotExist, ValueError):
        raise Http404("No such server.") from None


def save(user: User, server_id: str, secret: str) -> str:
    """Keep the person's secret for the server; what is wrong with it, or ""."""
    server = server_for(server_id)
    secret = secret.strip()
    if not secret:
        return f"Enter your key for {server.name} first."
    if len(secret) > MAX_SECRET_CHARS or any(c in secret for c in "\r\n\0"):
        return f"That is not a key {server.name} can be sent (too long, or on several lines)."
    McpUserSecret.objects.update_or_create(server=server, user=user, defaults={"secret": secret})
    return ""


def forget(user: User, server_id: str) -> None:
    McpUserSecret.objects.filter(server=server_for(server_id), user=user).delete()

"""An MCP server's tools in the registry: refreshing the listing, and offering tools as functions.

A tool offered becomes a `Function` of kind `mcp` named `<server>__<tool>`. Where that breaks
the API's rule (too long, or characters it refuses), the name keeps what fits and ends with a
short hash of the tool's own name, so two tools never share one. A name some other function
already has is refused: the admin decides which to rename. The server's annotations are kept
to show; approval is the admin's choice alone.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from chat.models import AssistantProfile
from chat.tools import mcp_client
from chat.tools.mcp_client import USER_HEADER, McpFailure, Target
from chat.tools.mcp_models import McpServer, McpUserSecret
from chat.tools.models import NAME, Function

LISTING_TIMEOUT = 30
DESCRIPTION_CHARS = 1024


def function_name(server: str, tool: str) -> str:
    plain = f"{server}__{tool}"
    if NAME.match(plain):
        return plain
    digest = hashlib.sha256(tool.encode()).hexdigest()[:8]
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "_", tool)
    room = 64 - len(server) - len("__") - len("_") - len(digest)
    return f"{server}__{cleaned[:room]}_{digest}"


def parameters_of(tool: dict[str, Any]) -> dict[str, Any]:
    """The tool's input schema as function parameters (always an object schema)."""
    schema = tool.get("input_schema")
    schema = dict(schema) if isinstance(schema, dict) else {}
    schema["type"] = "object"
    schema.setdefault("properties", {})
    return schema


def target_for(
    server: McpServer, user: User | None, timeout: float, listing: bool = False
) -> Target:
    """Where and how to connect for `user`; McpFailure when the person has no secret yet. A
    listing for the admin sends their own secret if they saved one, else none."""
    headers: dict[str, str] = {}
    if user is not None:
        headers[USER_HEADER] = str(user.pk)
    if server.auth == McpServer.Auth.DEPLOYMENT and server.secret:
        headers[server.header] = server.header_value(server.secret)
    elif server.auth == McpServer.Auth.PER_USER:
        own = McpUserSecret.objects.filter(server=server, user=user).first() if user else None
        if own is None and not listing:
            raise McpFailure(
                f"{server.name} needs your own key: enter it once under Settings "
                "(your name, at the bottom of the thread list), then ask again."
            )
        if own is not None:
            headers[server.header] = server.header_value(own.secret)
    return Target(server.name, server.url, headers, timeout)


def changes_between(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> dict[str, list[str]]:
    before = {tool["name"]: tool for tool in old}
    after = {tool["name"]: tool for tool in new}
    return {
        "added": sorted(set(after) - set(before)),
        "removed": sorted(set(before) - set(after)),
        "changed": sorted(
            name
            for name in set(before) & set(after)
            if (before[name].get("description"), before[name].get("input_schema"))
            != (after[name].get("description"), after[name].get("input_schema"))
        ),
    }


def refresh(server: McpServer, user: User | None) -> list[int]:
    """Ask the server for its tools and record what changed; the offered functions follow
    their tools' new descriptions and schemas, and the ids of the assistant profiles offering
    a function that changed are returned (they re-sync). A server that cannot be asked is
    marked unavailable, with why."""
    now = timezone.now()
    try:
        target = target_for(server, user, LISTING_TIMEOUT, listing=True)
        tools = async_to_sync(mcp_client.list_tools)(target)
    except McpFailure as failure:
        mark(server, available=False, problem=str(failure), checked_at=now)
        return []
    server.changes = changes_between(server.tools, tools)
    server.tools = tools
    server.refreshed_at = now
    server.save(update_fields=["changes", "tools", "refreshed_at", "updated_at"])
    mark(server, available=True, problem="", checked_at=now)
    changed = []
    for function in Function.objects.filter(mcp_server=server):
        tool = server.listed(function.mcp_tool)
        if tool is None:
            continue
        definition = (tool["description"][:DESCRIPTION_CHARS], parameters_of(tool))
        if definition != (function.description, function.parameters):
            function.description, function.parameters = definition
            function.save(update_fields=["description", "parameters", "updated_at"])
            changed.append(function.pk)
    return profiles_offering(Function.objects.filter(pk__in=changed))


def profiles_offering(functions: QuerySet[Function]) -> list[int]:
    """The assistant profiles that offer any of `functions`."""
    found = AssistantProfile.objects.filter(registry_functions__in=functions).distinct()
    return sorted(found.values_list("pk", flat=True))


def mark(server: McpServer, **fields: Any) -> None:
    McpServer.objects.filter(pk=server.pk).update(**fields)
    for name, value in fields.items():
        setattr(server, name, value)


def offered(server: McpServer) -> list[str]:
    return list(Function.objects.filter(mcp_server=server).values_list("mcp_tool", flat=True))


def collisions(server: McpServer, tools: list[str]) -> list[str]:
    """Why some of `tools` cannot become functions: a name another function has already."""
    problems = []
    for tool in tools:
        name = function_name(server.name, tool)
        other = Function.objects.filter(name=name).exclude(mcp_server=server, mcp_tool=tool)
        if other.exists():
            problems.append(
                f"{tool} would be the function {name}, a name another function has; "
                "rename that one first."
            )
    return problems


def offer(server: McpServer, tools: list[str]) -> list[int]:
    """Make `tools` (of the last listing) the server's functions, and only those; the ids of
    the assistant profiles offering any of them before or after (they re-sync)."""

    def offering() -> set[int]:
        return set(profiles_offering(Function.objects.filter(mcp_server=server)))

    profiles = offering()
    with transaction.atomic():
        Function.objects.filter(mcp_server=server).exclude(mcp_tool__in=tools).delete()
        for tool_name in tools:
            tool = server.listed(tool_name) or {"name": tool_name}
            Function.objects.update_or_create(
                mcp_server=server,
                mcp_tool=tool_name,
                defaults={
                    "name": function_name(server.name, tool_name),
                    "kind": Function.Kind.MCP,
                    "description": str(tool.get("description") or "")[:DESCRIPTION_CHARS],
                    "parameters": parameters_of(tool),
                },
            )
    return sorted(profiles | offering())

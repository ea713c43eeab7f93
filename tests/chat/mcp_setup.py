"""Helpers for the MCP tests: a server registered in a live Threadline's database, its tools
offered as functions and given to an assistant, the way the admin does it."""

from __future__ import annotations

import json
import secrets
from typing import Any

from tests.servers import ThreadlineServer, shell

CONNECT = """
import json
from chat.models import AssistantProfile, McpServer
from chat.tools import mcp_catalog
server, _ = McpServer.objects.update_or_create(
    name={name!r}, defaults={{"url": {url!r}, "auth": {auth!r}, "secret": {secret!r}}}
)
mcp_catalog.refresh(server, None)
mcp_catalog.offer(server, json.loads({tools!r}))
functions = list(server.functions.all())
for function in functions:
    function.timeout_seconds = {timeout}
    function.approval = {approval}
    function.save()
profile = AssistantProfile.objects.get(pk={profile})
profile.registry_functions.add(*functions)
profile.save()
print(json.dumps({{
    "id": server.pk,
    "available": server.available,
    "problem": server.problem,
    "functions": {{f.mcp_tool: f.name for f in functions}},
}}))
"""


def server_name() -> str:
    """Server names are unique; each test connects one of its own."""
    return f"t{secrets.token_hex(3)}"


def connect(
    server: ThreadlineServer,
    profile_id: int,
    url: str,
    tools: list[str],
    *,
    name: str | None = None,
    auth: str = "none",
    secret: str = "",
    timeout: int = 30,
    approval: bool = False,
) -> dict[str, Any]:
    """Register the MCP server, refresh it, offer `tools` and give them to the assistant:
    {"id", "available", "problem", "functions": {tool: function name}}."""
    return shell(
        server,
        CONNECT.format(
            name=name or server_name(),
            url=url,
            auth=auth,
            secret=secret,
            tools=json.dumps(tools),
            timeout=timeout,
            approval=approval,
            profile=profile_id,
        ),
    )


def user_id(server: ThreadlineServer, username: str) -> int:
    code = (
        "import json\nfrom django.contrib.auth.models import User\n"
        f"print(json.dumps(User.objects.get(username={username!r}).pk))"
    )
    return int(shell(server, code))

"""MCP servers in the admin, over HTTP as an admin's browser sends the forms: registering a
server (its tools listed at once), offering tools as functions, names that collide, URLs the
address rules refuse, what a refresh changed, a server that cannot be reached, and secrets that
are never shown again."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.chat.conftest import ChatClient, ChatServer, Scripted
from tests.chat.mcp_setup import connect, server_name
from tests.mcp_server import McpTestServer
from tests.servers import free_port, shell

ADD = "/admin/chat/mcpserver/add/"


@pytest.fixture(scope="module")
def mcp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[McpTestServer]:
    server = McpTestServer(tmp_path_factory.mktemp("mcp-admin")).start()
    yield server
    server.stop()


@pytest.fixture
def admin(chat_server: ChatServer) -> Iterator[ChatClient]:
    """The deployment's admin: a superuser who registers servers."""
    client = ChatClient(chat_server.url)
    client.login("admin")
    yield client
    client.close()


def form(name: str, url: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "url": url,
        "auth": "none",
        "header": "Authorization",
        "scheme": "Bearer",
        "new_secret": "",
        "_save": "Save",
        **extra,
    }


def register(admin: ChatClient, name: str, url: str, **extra: Any) -> int:
    response = admin.post(ADD, form(name, url, **extra))
    assert response.status_code == 302, text(response.text)
    return server_id(admin, name)


def server_id(admin: ChatClient, name: str) -> int:
    listing = admin.get(f"/admin/chat/mcpserver/?q={name}").text
    found = re.search(r'href="/admin/chat/mcpserver/(\d+)/change/', listing)
    assert found, "the server is listed"
    return int(found.group(1))


def text(page: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def errors(page: str) -> str:
    return " ".join(
        text(error) for error in re.findall(r'<ul class="errorlist[^"]*".*?</ul>', page, re.S)
    )


def test_a_new_server_lists_its_tools_and_offered_tools_become_functions(
    admin: ChatClient, chat_server: ChatServer, mcp_server: McpTestServer
) -> None:
    name = server_name()
    pk = register(admin, name, mcp_server.url)
    change = f"/admin/chat/mcpserver/{pk}/change/"
    page = text(admin.get(change).text)
    assert "Add two numbers." in page and "Order office supplies; asks the person how many." in page
    assert '"required": [ "a", "b" ]' in " ".join(page.split())  # the input schema, shown
    # The server's annotations are shown, and said not to decide approval.
    assert "The server says: readOnlyHint: False, destructiveHint: True" in page
    assert "approval is set here" in page
    assert f"not offered (would be {name}__order)" in page

    offered = admin.post(change, {**form(name, mcp_server.url), "offered_tools": ["add", "order"]})
    assert offered.status_code == 302
    functions = shell(
        chat_server.server,
        "import json\nfrom chat.models import Function\n"
        f"print(json.dumps({{f.name: [f.kind, f.mcp_tool, f.approval, f.parameters] for f in "
        f"Function.objects.filter(mcp_server_id={pk})}}))",
    )
    assert set(functions) == {f"{name}__add", f"{name}__order"}
    kind, tool, approval, parameters = functions[f"{name}__order"]
    assert (kind, tool, approval) == ("mcp", "order", False), "annotations never set approval"
    assert parameters["properties"]["item"]["type"] == "string"
    assert f"offered as {name}__add" in text(admin.get(change).text)

    # Unticked, a tool's function goes.
    fewer = admin.post(change, {**form(name, mcp_server.url), "offered_tools": ["add"]})
    assert fewer.status_code == 302
    assert f"not offered (would be {name}__order)" in text(admin.get(change).text)


def test_a_name_another_function_has_is_refused(
    admin: ChatClient, chat_server: ChatServer, mcp_server: McpTestServer
) -> None:
    name = server_name()
    pk = register(admin, name, mcp_server.url)
    shell(
        chat_server.server,
        "import json\nfrom chat.models import Function\n"
        f"Function.objects.create(name='{name}__whoami', kind='user')\nprint(1)",
    )
    change = f"/admin/chat/mcpserver/{pk}/change/"
    refused = admin.post(change, {**form(name, mcp_server.url), "offered_tools": ["whoami"]})
    assert refused.status_code == 200
    assert "a name another function has; rename that one first" in errors(refused.text)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://10.1.2.3/mcp", "an internal address; list the host in"),
        ("http://169.254.169.254/mcp", "a link-local or metadata address, never reached"),
        ("http://user:pw@tools.example.com/mcp", "must not hold a user name or password"),
    ],
)
def test_urls_the_address_rules_refuse_are_refused_at_the_field(
    admin: ChatClient, url: str, problem: str
) -> None:
    refused = admin.post(ADD, form(server_name(), url))
    assert refused.status_code == 200
    assert problem in errors(refused.text)


def test_a_refresh_says_what_changed(
    admin: ChatClient, chat_server: ChatServer, mcp_server: McpTestServer
) -> None:
    name = server_name()
    pk = register(admin, name, mcp_server.url)
    # What the server listed before, as if it had changed since: one tool fewer, one described
    # otherwise, one more (which the real server does not have).
    shell(
        chat_server.server,
        "from chat.models import McpServer\n"
        f"s = McpServer.objects.get(pk={pk})\n"
        "s.tools = [t for t in s.tools if t['name'] != 'huge']\n"
        "s.tools.append({'name': 'fax', 'description': ''})\n"
        "next(t for t in s.tools if t['name'] == 'add')['description'] = 'Old words.'\n"
        "s.save()\nprint(1)",
    )
    change = f"/admin/chat/mcpserver/{pk}/change/"
    refreshed = admin.post(change, {**form(name, mcp_server.url), "_refresh": "Refresh tools"})
    assert refreshed.status_code == 302 and refreshed.headers["location"] == change
    page = text(admin.get(change).text)
    assert "1 new, 1 gone, 1 changed since the refresh before" in page
    assert "new: huge; gone: fax; changed: add" in page


def test_a_server_that_cannot_be_reached_is_marked_unavailable(admin: ChatClient) -> None:
    name = server_name()
    pk = register(admin, name, f"http://127.0.0.1:{free_port()}/mcp")
    page = text(admin.get(f"/admin/chat/mcpserver/{pk}/change/").text)
    assert "could not be reached" in page
    listing = text(admin.get(f"/admin/chat/mcpserver/?q={name}").text)
    assert "unavailable" in listing


def test_the_deployment_secret_is_kept_and_never_shown_again(
    admin: ChatClient, chat_server: ChatServer, mcp_server: McpTestServer
) -> None:
    name = server_name()
    pk = register(
        admin, name, mcp_server.url, auth="deployment", new_secret="deploy-s3cret", scheme=""
    )
    change = f"/admin/chat/mcpserver/{pk}/change/"
    page = admin.get(change).text
    assert "deploy-s3cret" not in page and "set (hidden)" in page
    # Saving again with the field empty keeps it.
    kept = admin.post(change, form(name, mcp_server.url, auth="deployment", scheme=""))
    assert kept.status_code == 302
    secret = shell(
        chat_server.server,
        "import json\nfrom chat.models import McpServer\n"
        f"print(json.dumps(McpServer.objects.get(pk={pk}).secret))",
    )
    assert secret == "deploy-s3cret"
    assert json.dumps(secret) not in admin.get(f"/admin/chat/mcpserver/?q={name}").text


REMOTE_TOOLS = """
import json
from chat import assistants_api as api
from chat.models import AssistantProfile
profile = AssistantProfile.objects.get(pk={profile})
tools = api.remote_assistant(profile.assistant_id)["tools"]
print(json.dumps({{t["function"]["name"]: t["function"]["description"]
    for t in tools if t["type"] == "function"}}))
"""

AGE = """
from chat import remote_assistant
from chat.models import AssistantProfile, Function
Function.objects.filter(name={name!r}).update(description="Old words.")
# Its function tools are managed here (None would leave the remote ones as they are).
AssistantProfile.objects.filter(pk={profile}).update(functions=[])
remote_assistant.save(AssistantProfile.objects.get(pk={profile}))
print(1)
"""


def test_a_refresh_and_a_delete_bring_the_assistants_in_line(
    admin: ChatClient, chat_server: ChatServer, scripted: Scripted, mcp_server: McpTestServer
) -> None:
    setup = connect(chat_server.server, scripted.profile_id, mcp_server.url, ["add"])
    function = setup["functions"]["add"]
    # The assistant's remote copy says what the server said before (as if it had changed).
    shell(chat_server.server, AGE.format(name=function, profile=scripted.profile_id))
    remote = REMOTE_TOOLS.format(profile=scripted.profile_id)
    assert shell(chat_server.server, remote)[function] == "Old words."

    change = f"/admin/chat/mcpserver/{setup['id']}/change/"
    name = function.split("__")[0]
    refreshed = admin.post(
        change,
        {**form(name, mcp_server.url), "offered_tools": ["add"], "_refresh": "Refresh tools"},
    )
    assert refreshed.status_code == 302
    assert shell(chat_server.server, remote)[function] == "Add two numbers."

    deleted = admin.post(f"/admin/chat/mcpserver/{setup['id']}/delete/", {"post": "yes"})
    assert deleted.status_code == 302
    assert function not in shell(chat_server.server, remote)

"""Tools of MCP servers, through the real engine with the scripted model calling them, against a
real MCP server (the `mcp` SDK's own, over Streamable HTTP, in a subprocess): results of each
kind, a question the server asks the person, who the server is told the user is, and what goes
wrong (a server down, a timeout, too much output, an error the tool reports)."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chat.conftest import ChatClient, ChatServer, Scripted, text_of
from tests.chat.functions_setup import action_url, read_until_waiting, tool_outputs
from tests.chat.mcp_setup import connect, user_id
from tests.fake_model import FakeModelServer, Reply, ToolCall
from tests.mcp_server import LONG_TOOL, McpTestServer
from tests.servers import shell


@pytest.fixture(scope="module")
def mcp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[McpTestServer]:
    server = McpTestServer(tmp_path_factory.mktemp("mcp")).start()
    yield server
    server.stop()


def answer_to_end(client: ChatClient, url: str, after: int | None = None) -> str:
    status, events = client.events(url, last_event_id=after)
    assert status == 200
    assert events[-1].event == "end"
    return events[-2].data


def calls(*pairs: tuple[str, dict[str, Any]]) -> Reply:
    return Reply(tool_calls=[ToolCall(name, json.dumps(arguments)) for name, arguments in pairs])


def test_text_and_structured_results_reach_the_model_and_the_server_knows_the_user(
    owner: ChatClient,
    scripted: Scripted,
    chat_server: ChatServer,
    chat_model: FakeModelServer,
    mcp_server: McpTestServer,
) -> None:
    setup = connect(chat_server.server, scripted.profile_id, mcp_server.url, ["add", "whoami"])
    assert setup["available"], setup["problem"]
    add, whoami = setup["functions"]["add"], setup["functions"]["whoami"]
    assert add.endswith("__add")
    scripted.script(calls((add, {"a": 2, "b": 3}), (whoami, {})), Reply("Five, and I know you."))
    sent = owner.send("Add 2 and 3", assistant=scripted.profile_id)
    assert sent.events_url
    final = answer_to_end(owner, sent.events_url)
    assert f"Ran {add}" in final and "Five, and I know you." in final
    structured, text = tool_outputs(chat_model.requests, scripted.model)
    assert json.loads(structured) == {"result": 5}
    owner_id = user_id(chat_server.server, "owner")
    assert text == f"user {owner_id} with None"
    (logged,) = [c for c in mcp_server.calls("add") if c["a"] == 2 and c["b"] == 3]
    assert logged["user"] == str(owner_id)


def test_an_image_is_kept_as_a_file_shown_in_the_chat_to_its_owner_only(
    owner: ChatClient,
    other: ChatClient,
    scripted: Scripted,
    chat_server: ChatServer,
    chat_model: FakeModelServer,
    mcp_server: McpTestServer,
) -> None:
    chart = connect(chat_server.server, scripted.profile_id, mcp_server.url, ["chart"])[
        "functions"
    ]["chart"]
    scripted.script(calls((chart, {})), Reply("Here is the chart."))
    sent = owner.send("Chart please", assistant=scripted.profile_id)
    assert sent.events_url
    final = answer_to_end(owner, sent.events_url)
    (src,) = re.findall(r'<img src="([^"]+)"', final)
    assert src.startswith(f"/c/{sent.conversation_id}/files/file-")
    image = owner.get(src)
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert other.get(src).status_code == 404, "another person's image is a 404"
    (output,) = tool_outputs(chat_model.requests, scripted.model)
    assert output.startswith("Sales rose 12% this quarter.")
    assert re.search(r"\[image .+-1\.png: shown to the user\]", output)
    # A reload shows the image in the history too, and the admin's transcript through its own
    # file route.
    assert src in owner.get(f"/c/{sent.conversation_id}/").text
    admin = ChatClient(chat_server.url)
    admin.login("admin")
    transcript = admin.get(f"/admin/chat/conversation/{sent.conversation_id}/transcript/").text
    (seen,) = re.findall(r'<img src="([^"]+)"', transcript)
    assert seen.startswith(f"/admin/chat/conversation/{sent.conversation_id}/files/file-")
    assert admin.get(seen).content.startswith(b"\x89PNG")
    admin.close()


@pytest.mark.parametrize("choice", ["reply", "decline"])
def test_a_question_the_server_asks_is_a_form_and_the_answer_reaches_the_server(
    choice: str,
    owner: ChatClient,
    other: ChatClient,
    scripted: Scripted,
    chat_server: ChatServer,
    chat_model: FakeModelServer,
    mcp_server: McpTestServer,
) -> None:
    order = connect(chat_server.server, scripted.profile_id, mcp_server.url, ["order"])[
        "functions"
    ]["order"]
    item = f"pens-{choice}"
    scripted.script(calls((order, {"item": item})), Reply("Your order is in."))
    sent = owner.send("Order pens", assistant=scripted.profile_id)
    assert sent.events_url
    events = read_until_waiting(owner, sent.events_url)
    form = events[-1].data
    assert f"How many boxes of {item} should I order?" in html.unescape(form)
    assert 'type="number"' in form and 'min="1"' in form and 'max="20"' in form
    assert 'type="radio"' in form and 'value="black"' in form and 'type="checkbox"' in form
    url = action_url(form)
    assert other.post(url, {"action": "reply", "quantity": "3"}).status_code == 404
    if choice == "reply":
        too_many = owner.post(url, {"action": "reply", "quantity": "50", "colour": "red"})
        assert "50 is greater than the maximum of 20" in html.unescape(too_many.text)
        answered = owner.post(
            url, {"action": "reply", "quantity": "3", "colour": "red", "gift_wrap": "on"}
        )
        assert answered.status_code == 200 and f"Running {order}" in text_of(answered.text)
    else:
        owner.post(url, {"action": "decline"})
    again = owner.post(url, {"action": "reply", "quantity": "4", "colour": "blue"})
    assert "answered already" in again.text
    final = answer_to_end(owner, sent.events_url, after=events[-1].id)
    assert "Your order is in." in final
    (logged,) = [c for c in mcp_server.calls("order") if c["item"] == item]
    (output,) = tool_outputs(chat_model.requests, scripted.model)
    if choice == "reply":
        assert logged["data"] == {"quantity": 3, "colour": "red", "gift_wrap": True}
        assert json.loads(output) == {"result": f"Ordered 3 red {item}, gift-wrapped."}
    else:
        assert logged["action"] == "decline" and logged["data"] is None
        assert "the person chose decline" in output


def test_an_error_the_tool_reports_is_an_error_output(
    owner: ChatClient,
    scripted: Scripted,
    chat_server: ChatServer,
    chat_model: FakeModelServer,
    mcp_server: McpTestServer,
) -> None:
    broken = connect(chat_server.server, scripted.profile_id, mcp_server.url, ["broken"])[
        "functions"
    ]["broken"]
    scripted.script(calls((broken, {})), Reply("The tool broke."))
    sent = owner.send("Print", assistant=scripted.profile_id)
    assert sent.events_url
    final = answer_to_end(owner, sent.events_url)
    assert f"{broken} failed" in final and "the printer is on fire" in final
    (output,) = tool_outputs(chat_model.requests, scripted.model)
    assert "the printer is on fire" in json.loads(output)["error"]


def test_a_per_user_secret_reaches_the_server_only_for_its_owner(
    owner: ChatClient,
    other: ChatClient,
    scripted: Scripted,
    chat_server: ChatServer,
    chat_model: FakeModelServer,
    mcp_server: McpTestServer,
) -> None:
    setup = connect(
        chat_server.server, scripted.profile_id, mcp_server.url, ["whoami"], auth="per_user"
    )
    whoami = setup["functions"]["whoami"]
    # The owner enters their key once, on their own settings page; it is never shown again.
    page = owner.get("/settings")
    assert page.status_code == 200 and "No key saved yet" in page.text
    saved = owner.http.post(
        "/settings",
        data={"server": setup["id"], "action": "save", "secret": "owner-key-123"},
        headers={"X-CSRFToken": owner.http.cookies["csrftoken"]},
    )
    assert saved.status_code == 302
    page = owner.get("/settings").text
    assert "Your key is saved." in page and "owner-key-123" not in page
    assert "No key saved yet" in other.get("/settings").text

    scripted.script(calls((whoami, {})), Reply("I asked."))
    sent = owner.send("Who am I?", assistant=scripted.profile_id)
    assert sent.events_url
    answer_to_end(owner, sent.events_url)
    (output,) = tool_outputs(chat_model.requests, scripted.model)
    owner_id = user_id(chat_server.server, "owner")
    assert output == f"user {owner_id} with Bearer owner-key-123"

    before = len(mcp_server.calls("whoami"))
    scripted.script(calls((whoami, {})), Reply("You have no key."))
    sent = other.send("Who am I?", assistant=scripted.profile_id)
    assert sent.events_url
    final = answer_to_end(other, sent.events_url)
    assert "needs your own key" in final and "Settings" in final
    (output,) = tool_outputs(chat_model.requests, scripted.model)
    assert "needs your own key" in json.loads(output)["error"]
    assert len(mcp_server.calls("whoami")) == before, "nothing reached the server for them"


def test_a_slow_tool_times_out_and_a_huge_answer_is_refused(
    owner: ChatClient,
    scripted: Scripted,
    chat_server: ChatServer,
    chat_model: FakeModelServer,
    mcp_server: McpTestServer,
) -> None:
    names = connect(
        chat_server.server, scripted.profile_id, mcp_server.url, ["slow", "huge"], timeout=1
    )["functions"]
    scripted.script(calls((names["slow"], {"seconds": 5}), (names["huge"], {})), Reply("Hm."))
    sent = owner.send("Try both", assistant=scripted.profile_id)
    assert sent.events_url
    final = answer_to_end(owner, sent.events_url)
    slow, huge = (json.loads(o)["error"] for o in tool_outputs(chat_model.requests, scripted.model))
    assert slow == f"{names['slow']} did not finish within 1 seconds."
    assert "bytes, the limit" in huge
    assert "did not finish within 1 seconds" in final and "Hm." in final


def test_a_server_that_is_down_gives_an_error_output_and_is_marked_unavailable(
    owner: ChatClient,
    scripted: Scripted,
    chat_server: ChatServer,
    chat_model: FakeModelServer,
    tmp_path: Path,
) -> None:
    gone = McpTestServer(tmp_path).start()
    setup = connect(chat_server.server, scripted.profile_id, gone.url, ["add"])
    assert setup["available"]
    gone.stop()
    add = setup["functions"]["add"]
    scripted.script(calls((add, {"a": 1, "b": 1})), Reply("The server is down."))
    sent = owner.send("1+1", assistant=scripted.profile_id)
    assert sent.events_url
    final = answer_to_end(owner, sent.events_url)
    assert "could not be reached" in final and "The server is down." in final
    (output,) = tool_outputs(chat_model.requests, scripted.model)
    assert "could not be reached" in json.loads(output)["error"]
    state = shell(
        chat_server.server,
        "import json\nfrom chat.models import McpServer\n"
        f"s = McpServer.objects.get(pk={setup['id']})\n"
        "print(json.dumps([s.available, s.problem]))",
    )
    assert state[0] is False and "could not be reached" in state[1]


def test_a_long_tool_name_becomes_a_function_name_within_the_rule(
    chat_server: ChatServer, scripted: Scripted, mcp_server: McpTestServer
) -> None:
    name = connect(chat_server.server, scripted.profile_id, mcp_server.url, [LONG_TOOL])[
        "functions"
    ][LONG_TOOL]
    assert len(name) <= 64 and re.fullmatch(r"[A-Za-z0-9_-]+", name)
    assert name.startswith("t") and "__summarise_the_quarterly" in name


def test_the_deployment_secret_goes_in_the_configured_header(
    owner: ChatClient,
    scripted: Scripted,
    chat_server: ChatServer,
    chat_model: FakeModelServer,
    mcp_server: McpTestServer,
) -> None:
    whoami = connect(
        chat_server.server,
        scripted.profile_id,
        mcp_server.url,
        ["whoami"],
        auth="deployment",
        secret="deploy-s3cret",
    )["functions"]["whoami"]
    scripted.script(calls((whoami, {})), Reply("Done."))
    sent = owner.send("Who?", assistant=scripted.profile_id)
    assert sent.events_url
    answer_to_end(owner, sent.events_url)
    (output,) = tool_outputs(chat_model.requests, scripted.model)
    assert output.endswith("with Bearer deploy-s3cret")

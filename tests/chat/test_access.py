"""Another person's thread, run or file is a 404 at every URL, never a 403."""

from __future__ import annotations

import re

import pytest

from tests.chat.conftest import ChatClient, Scripted, corpus
from tests.fake_model import Reply, ToolCall


@pytest.fixture
def owned(owner: ChatClient, scripted: Scripted) -> dict[str, str]:
    """A thread of the owner's with an answer, a run and an attached file."""
    scripted.script(Reply("Mine alone."))
    sent = owner.send(
        "My secret",
        assistant=scripted.profile_id,
        files=[("notes.txt", b"secret notes", "text/plain")],
    )
    assert sent.events_url and sent.conversation_id
    owner.events(sent.events_url)
    page = owner.get(f"/c/{sent.conversation_id}/").text
    file_url = re.search(r'href="(/c/\d+/files/[^"#]+)"', page)
    assert file_url, page
    return {
        "conversation": f"/c/{sent.conversation_id}/",
        "events": sent.events_url,
        "file": file_url.group(1),
        "run_id": sent.events_url.split("/")[4],
        "file_id": file_url.group(1).rsplit("/", 1)[1],
    }


def test_owner_reaches_everything(owner: ChatClient, owned: dict[str, str]) -> None:
    assert owner.get(owned["conversation"]).status_code == 200
    assert owner.get(owned["file"]).content == b"secret notes"
    status, events = owner.events(owned["events"])
    assert status == 200 and events[-1].event == "end"


def test_other_user_gets_404_everywhere(other: ChatClient, owned: dict[str, str]) -> None:
    base = owned["conversation"]
    assert other.get(base).status_code == 404
    assert other.get(base + "?older=msg_x").status_code == 404
    assert other.get(owned["file"]).status_code == 404
    assert other.events(owned["events"])[0] == 404
    for action in ("send", "stop", "retry", "rename", "delete"):
        response = other.post(base + action, {"text": "hi", "title": "mine now"})
        assert response.status_code == 404, action
    # The owner's thread is untouched.
    assert "mine now" not in other.get("/").text


def test_own_conversation_does_not_open_someone_elses_run_or_file(
    other: ChatClient, owned: dict[str, str], scripted: Scripted
) -> None:
    scripted.script(Reply("Other's answer."))
    sent = other.send("Other's own thread", assistant=scripted.profile_id)
    assert sent.events_url and sent.conversation_id
    other.events(sent.events_url)
    own = f"/c/{sent.conversation_id}"
    assert other.events(f"{own}/runs/{owned['run_id']}/events")[0] == 404
    assert other.get(f"{own}/files/{owned['file_id']}").status_code == 404


def test_anonymous_visitors_are_sent_to_sign_in(owned: dict[str, str], owner: ChatClient) -> None:
    anonymous = ChatClient(str(owner.http.base_url))
    try:
        page = anonymous.get(owned["conversation"])
        assert page.status_code == 302 and page.headers["location"].startswith("/accounts/login/")
        assert anonymous.events(owned["events"])[0] == 404
        assert anonymous.get(owned["file"]).status_code == 302
    finally:
        anonymous.close()


def test_unknown_run_of_own_conversation_is_404(owner: ChatClient, owned: dict[str, str]) -> None:
    assert owner.events(owned["conversation"] + "runs/run_nope/events")[0] == 404
    assert owner.get(owned["conversation"] + "files/file-nope").status_code == 404


def test_cited_knowledge_file_opens_only_from_the_thread_that_cites_it(
    owner: ChatClient, other: ChatClient, scripted: Scripted
) -> None:
    name = "crazyones.pdf"
    scripted.script(
        Reply(tool_calls=[ToolCall("file_search", '{"query": "crazy ones"}')]),
        Reply(f"Here's to the crazy ones 【0:0†{name}】."),
    )
    sent = owner.send(
        "Quote it", assistant=scripted.profile_id, files=[(name, corpus(name), "application/pdf")]
    )
    assert sent.events_url
    owner.events(sent.events_url)
    page = owner.get(f"/c/{sent.conversation_id}/").text
    cite = re.search(r'<sup class="cite"><a href="(/c/\d+/files/[^"#]+)#page=1"', page)
    assert cite, page
    pdf = owner.get(cite.group(1))
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")
    assert pdf.headers["content-type"] == "application/pdf"
    assert "inline" in pdf.headers["content-disposition"]
    assert other.get(cite.group(1)).status_code == 404

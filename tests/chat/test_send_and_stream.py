"""Sending a message and following the answer's stream, over HTTP against the live product."""

from __future__ import annotations

import re

from tests.chat.conftest import ChatClient, Scripted, text_of
from tests.fake_model import Reply


def tokens(count: int, prefix: str = "w") -> str:
    return " ".join(f"{prefix}{i}" for i in range(count))


def test_new_chat_streams_the_answer_then_the_page_shows_it(
    owner: ChatClient, scripted: Scripted
) -> None:
    scripted.script(Reply("Hello **there**, how can I help?", chunk_delay=0.01))
    sent = owner.send("Hi!", assistant=scripted.profile_id)
    assert sent.response.status_code == 200
    assert sent.events_url is not None

    status, events = owner.events(sent.events_url)
    assert status == 200
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert events[-1].event == "end"
    final = events[-2].data
    assert "<strong>there</strong>" in final
    assert 'hx-swap-oob="true"' in final and "sse-connect" not in final

    page = owner.get(f"/c/{sent.conversation_id}/")
    assert page.status_code == 200
    assert "<strong>there</strong>" in page.text
    assert "sse-connect" not in page.text  # the answer is over: no live section
    assert re.search(r'aria-current="page"[^>]*>Hi!</a>', page.text)


def test_stream_headers_and_ids(owner: ChatClient, scripted: Scripted) -> None:
    scripted.script(Reply("one two three"))
    sent = owner.send("count", assistant=scripted.profile_id)
    assert sent.events_url
    with owner.http.stream("GET", sent.events_url) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-accel-buffering"] == "no"
        assert response.headers["cache-control"].startswith("no-cache")
        body = response.read().decode()
    blocks = [b for b in body.split("\n\n") if b and not b.startswith(":")]
    assert all(block.startswith("id: ") for block in blocks)


def test_answer_grows_in_several_events_with_escaped_text(
    owner: ChatClient, scripted: Scripted
) -> None:
    words = tokens(30)
    scripted.script(Reply(words + " <b>not bold</b>", chunk_delay=0.03))
    sent = owner.send("Talk slowly", assistant=scripted.profile_id)
    assert sent.events_url
    _, events = owner.events(sent.events_url)
    pieces = [e for e in events if "-tail" in e.data and "beforeend" in e.data]
    assert len(pieces) >= 5, "the text should arrive in many small events"
    assert pieces[-1].at - pieces[0].at > 0.3
    streamed = "".join(
        m.group(1) for e in pieces for m in re.finditer(r'-tail">(.*?)</span>', e.data, re.S)
    )
    assert streamed.split() == (words + " &lt;b&gt;not bold&lt;/b&gt;").split()


def test_reconnecting_with_last_event_id_gets_the_rest_exactly_once(
    owner: ChatClient, scripted: Scripted
) -> None:
    scripted.script(Reply(tokens(40), chunk_delay=0.03))
    sent = owner.send("Count slowly", assistant=scripted.profile_id)
    assert sent.events_url
    _, first = owner.events(sent.events_url, stop_after=4)
    _, rest = owner.events(sent.events_url, last_event_id=first[-1].id)
    ids = [e.id for e in first + rest]
    assert ids == list(range(1, ids[-1] + 1)), "no gap and no repeat across the reconnect"
    assert rest[-1].event == "end"

    # A tab opened later (no Last-Event-ID) replays from a snapshot and sees the whole answer.
    _, late = owner.events(sent.events_url)
    assert late[-1].event == "end"
    assert text_of(late[-2].data).split().count("w39") == 1

    # One that has seen everything is told not to come back.
    status, _ = owner.events(sent.events_url, last_event_id=rest[-1].id)
    assert status == 204


def test_second_message_while_answering_is_refused_and_kept(
    owner: ChatClient, scripted: Scripted
) -> None:
    scripted.script(Reply(tokens(60), chunk_delay=0.05))
    sent = owner.send("Take your time", assistant=scripted.profile_id)
    busy = owner.send("And another thing", conversation_id=sent.conversation_id)
    assert busy.response.status_code == 200
    assert "still answering" in busy.response.text
    assert "And another thing</textarea>" in busy.response.text
    assert 'form="stop-form"' in busy.response.text  # Stop is offered
    assert sent.events_url
    owner.events(sent.events_url)

    page = owner.get(f"/c/{sent.conversation_id}/")
    assert "And another thing" not in page.text


def test_empty_and_overlong_messages_are_refused_with_the_limit(
    owner: ChatClient, assistant: tuple[int, str]
) -> None:
    empty = owner.send("   ", assistant=assistant[0])
    assert "Write a message first." in empty.response.text
    assert empty.response.headers.get("HX-Push-Url") is None

    long_text = "x" * 100_000
    long = owner.send(long_text, assistant=assistant[0])
    assert "100,000 characters long; the limit is 32,000" in long.response.text
    assert long_text in long.response.text  # the text stays in the box
    assert long.response.headers.get("HX-Push-Url") is None


def test_without_javascript_send_redirects_to_the_thread(
    owner: ChatClient, scripted: Scripted
) -> None:
    scripted.script(Reply("Plain HTML works too."))
    owner.get("/")
    response = owner.http.post(
        "/c/new/send",
        data={
            "text": "no js",
            "assistant": str(scripted.profile_id),
            "csrfmiddlewaretoken": owner.http.cookies["csrftoken"],
        },
    )
    assert response.status_code == 302
    assert re.fullmatch(r"/c/\d+/", response.headers["location"])

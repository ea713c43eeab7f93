"""Stopping an answer keeps what it wrote; a failed answer explains itself and can be retried."""

from __future__ import annotations

import time

from tests.chat.conftest import ChatClient, Scripted, events_url
from tests.fake_model import Fail, Reply


def test_stop_keeps_the_partial_answer_and_frees_the_thread(
    owner: ChatClient, scripted: Scripted
) -> None:
    scripted.script(
        Reply(" ".join(f"s{i}" for i in range(300)), chunk_delay=0.02), Reply("Next answer.")
    )
    sent = owner.send("Go", assistant=scripted.profile_id)
    assert sent.events_url and sent.conversation_id
    # Stop only once some of the answer has streamed, however slow the machine is.
    started: list = []
    for _ in range(100):
        _, started = owner.events(sent.events_url, stop_after=len(started) + 4)
        if any("s2" in event.data for event in started):
            break
    assert any("s2" in event.data for event in started)
    stop = owner.post(f"/c/{sent.conversation_id}/stop")
    assert stop.status_code == 204
    _, rest = owner.events(sent.events_url, last_event_id=started[-1].id)
    final = rest[-2].data
    assert "Stopped." in final and "The answer stopped here." in final
    assert "s299" not in final
    page = owner.get(f"/c/{sent.conversation_id}/").text
    assert "s1 " in page and "s299" not in page
    after = owner.send("Carry on", conversation_id=sent.conversation_id)
    assert after.events_url, after.response.text
    assert "Next answer." in owner.events(after.events_url)[1][-2].data


def test_closing_the_stream_does_not_stop_the_answer(owner: ChatClient, scripted: Scripted) -> None:
    scripted.script(Reply(" ".join(f"k{i}" for i in range(30)), chunk_delay=0.02))
    sent = owner.send("Keep going without me", assistant=scripted.profile_id)
    assert sent.events_url
    owner.events(sent.events_url, stop_after=2)  # the tab is closed
    time.sleep(1.5)
    page = owner.get(f"/c/{sent.conversation_id}/").text
    assert "k29" in page and "sse-connect" not in page


def test_a_failed_answer_explains_and_retry_answers(owner: ChatClient, scripted: Scripted) -> None:
    scripted.script(Fail(400, "Bad request, model says no."), Reply("Worked this time."))
    sent = owner.send("Please", assistant=scripted.profile_id)
    assert sent.events_url
    _, events = owner.events(sent.events_url)
    assert "The answer failed" in events[-2].data and "model says no" in events[-2].data

    page = owner.get(f"/c/{sent.conversation_id}/").text  # after a reload too
    assert "The answer failed" in page and ">Retry</button>" in page
    assert 'name="csrfmiddlewaretoken"' in page.split(">Retry</button>")[0][-600:]

    retried = owner.post(f"/c/{sent.conversation_id}/retry")
    assert retried.status_code == 200
    assert 'hx-swap-oob="delete:form.retry"' in retried.text
    url = events_url(retried.text)
    assert url
    assert "Worked this time." in owner.events(url)[1][-2].data
    assert "The answer failed" not in owner.get(f"/c/{sent.conversation_id}/").text


def test_retry_while_answering_is_refused(owner: ChatClient, scripted: Scripted) -> None:
    scripted.script(Reply(" ".join(f"r{i}" for i in range(40)), chunk_delay=0.03))
    sent = owner.send("Slowly", assistant=scripted.profile_id)
    retried = owner.post(f"/c/{sent.conversation_id}/retry")
    assert retried.headers["HX-Retarget"] == "#alerts"
    assert "still answering" in retried.text
    assert sent.events_url
    owner.events(sent.events_url)

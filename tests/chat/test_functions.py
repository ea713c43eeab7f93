"""Function calls answered by the chat, through the real engine with the scripted model calling
each kind: Python functions, webhooks (a real receiver on 127.0.0.1 that checks the signature),
and calls the person answers or approves, over HTTP as the page makes them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.chat.conftest import ChatClient, ChatServer, Scripted, text_of
from tests.chat.functions_setup import (
    QUIZ,
    QUIZ_ARGUMENTS,
    WEBHOOK_SECRET,
    action_url,
    give_functions,
    read_until_waiting,
    tool_outputs,
    unique,
)
from tests.fake_model import FakeModelServer, Reply, ToolCall
from tests.servers import free_port
from tests.webhook_receiver import WebhookReceiver


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver(WEBHOOK_SECRET).start()
    yield server
    server.stop()


def answer_to_end(client: ChatClient, url: str, after: int | None = None) -> str:
    """Read the answer's stream to its end; the final HTML of the answer."""
    status, events = client.events(url, last_event_id=after)
    assert status == 200
    assert events[-1].event == "end"
    return events[-2].data


def call_then_reply(name: str, arguments: Any, reply: str = "Done.") -> list[Reply]:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return [Reply(tool_calls=[ToolCall(name, text)]), Reply(reply)]


# --- Server-side functions ------------------------------------------------------------------------


def test_python_function_runs_with_the_user_as_context_and_the_answer_goes_on(
    owner: ChatClient, scripted: Scripted, chat_server: ChatServer, chat_model: FakeModelServer
) -> None:
    give_functions(
        chat_server.server,
        scripted.profile_id,
        registry=[{"name": "local_time", "kind": "python", "description": "Time in a city"}],
    )
    scripted.script(*call_then_reply("local_time", {"city": "Oslo"}, "It is noon in Oslo."))
    sent = owner.send("What time is it in Oslo?", assistant=scripted.profile_id)
    assert sent.events_url
    final = answer_to_end(owner, sent.events_url)
    assert "Ran local_time" in final
    assert "It is noon in Oslo." in final
    (output,) = tool_outputs(chat_model.requests, scripted.model)
    assert json.loads(output) == {
        "city": "Oslo",
        "time": "12:00",
        "asked_by": "owner",
        "conversation": sent.conversation_id,
    }
    # After a reload the history shows the call and its result, from the run's steps.
    page = owner.get(f"/c/{sent.conversation_id}/").text
    assert "Ran local_time" in page and "&quot;asked_by&quot;: &quot;owner&quot;" in page


def test_webhook_gets_the_call_signed_with_the_user_and_its_answer_is_the_output(
    owner: ChatClient,
    scripted: Scripted,
    chat_server: ChatServer,
    chat_model: FakeModelServer,
    receiver: WebhookReceiver,
) -> None:
    name = unique("weather")
    give_functions(
        chat_server.server,
        scripted.profile_id,
        registry=[{"name": name, "kind": "webhook", "url": receiver.url(f"/ok?{name}")}],
    )
    scripted.script(*call_then_reply(name, {"city": "Lima"}, "Clear skies in Lima."))
    sent = owner.send("Weather in Lima?", assistant=scripted.profile_id)
    assert sent.events_url
    final = answer_to_end(owner, sent.events_url)
    assert "Clear skies in Lima." in final
    (request,) = receiver.received(f"/ok?{name}")
    assert request["signed"], "the signature verifies with the function's secret"
    payload = request["payload"]
    assert payload["function"] == name
    assert payload["arguments"] == {"city": "Lima"}
    assert payload["user"]["username"] == "owner"
    assert payload["thread_id"].startswith("thread_") and payload["run_id"].startswith("run_")
    (output,) = tool_outputs(chat_model.requests, scripted.model)
    assert json.loads(output) == {"city": "Lima", "sky": "clear", "for": "owner"}


def test_calls_of_one_step_run_in_parallel_and_go_back_together(
    owner: ChatClient,
    scripted: Scripted,
    chat_server: ChatServer,
    chat_model: FakeModelServer,
    receiver: WebhookReceiver,
) -> None:
    name = unique("slow")
    receiver.slow_seconds = 1.5
    give_functions(
        chat_server.server,
        scripted.profile_id,
        registry=[{"name": name, "kind": "webhook", "url": receiver.url(f"/slow?{name}")}],
    )
    calls = [ToolCall(name, json.dumps({"city": c})) for c in ("A", "B", "C")]
    scripted.script(Reply(tool_calls=calls), Reply("All three."))
    sent = owner.send("Three at once", assistant=scripted.profile_id)
    assert sent.events_url
    final = answer_to_end(owner, sent.events_url)
    assert "All three." in final
    arrivals = [request["at"] for request in receiver.received(f"/slow?{name}")]
    assert len(arrivals) == 3
    assert max(arrivals) - min(arrivals) < 1.5, "all three started before the first answered"
    assert len(tool_outputs(chat_model.requests, scripted.model)) == 3


# --- Calls the person answers ---------------------------------------------------------------------


def test_display_quiz_as_pasted_is_answered_by_the_user_and_the_same_answer_goes_on(
    owner: ChatClient,
    other: ChatClient,
    scripted: Scripted,
    chat_server: ChatServer,
    chat_model: FakeModelServer,
) -> None:
    give_functions(chat_server.server, scripted.profile_id, raw=[QUIZ])
    scripted.script(*call_then_reply("display_quiz", QUIZ_ARGUMENTS, "Well done: 3/4 is right."))
    sent = owner.send("Quiz me", assistant=scripted.profile_id)
    assert sent.events_url
    events = read_until_waiting(owner, sent.events_url)
    form = events[-1].data
    assert 'type="radio"' in form and "What is 1/2 + 1/4?" in form and "Explain why." in form
    assert "Answer before" in form  # the time left before the run expires
    url = action_url(form)

    # Someone else cannot answer: the conversation is not theirs.
    assert other.post(url, {"action": "answer", "q-0": "2/6", "q-1": "?"}).status_code == 404
    # A reload shows the same pending form (from the replay log; the state is in the database).
    reloaded = owner.get(f"/c/{sent.conversation_id}/").text
    assert "sse-connect" in reloaded

    incomplete = owner.post(url, {"action": "answer", "q-1": "Because."})
    assert "Choose an answer to question 1." in incomplete.text
    answered = owner.post(url, {"action": "answer", "q-0": "3/4", "q-1": "Quarters add up."})
    assert answered.status_code == 200
    assert "You answered" in text_of(answered.text)
    again = owner.post(url, {"action": "answer", "q-0": "1/8", "q-1": "Changed my mind."})
    assert "answered already" in again.text

    final = answer_to_end(owner, sent.events_url, after=events[-1].id)
    assert "Well done: 3/4 is right." in final
    (output,) = tool_outputs(chat_model.requests, scripted.model)
    assert json.loads(output) == ["3/4", "Quarters add up."]
    # The thread takes a new message.
    scripted.script(Reply("Next question?"))
    more = owner.send("Again", conversation_id=sent.conversation_id)
    assert more.events_url and "Next question?" in answer_to_end(owner, more.events_url)


def test_a_raw_definition_of_another_shape_takes_a_text_answer(
    owner: ChatClient, scripted: Scripted, chat_server: ChatServer, chat_model: FakeModelServer
) -> None:
    ask = {"name": "ask_user", "parameters": {"type": "object", "properties": {}}}
    give_functions(chat_server.server, scripted.profile_id, raw=[ask])
    scripted.script(*call_then_reply("ask_user", {"question": "Which colour?"}, "Blue it is."))
    sent = owner.send("Paint", assistant=scripted.profile_id)
    assert sent.events_url
    events = read_until_waiting(owner, sent.events_url)
    assert "Which colour?" in events[-1].data and "Your answer" in events[-1].data
    owner.post(action_url(events[-1].data), {"action": "answer", "answer": "Blue"})
    assert "Blue it is." in answer_to_end(owner, sent.events_url, after=events[-1].id)
    assert tool_outputs(chat_model.requests, scripted.model) == ["Blue"]


@pytest.mark.parametrize("choice", ["allow", "deny"])
def test_approval_allows_or_denies_before_anything_runs(
    choice: str,
    owner: ChatClient,
    scripted: Scripted,
    chat_server: ChatServer,
    chat_model: FakeModelServer,
    receiver: WebhookReceiver,
) -> None:
    name = unique("send_mail")
    url = receiver.url(f"/ok?{name}")
    give_functions(
        chat_server.server,
        scripted.profile_id,
        registry=[{"name": name, "kind": "webhook", "url": url, "approval": True}],
    )
    scripted.script(*call_then_reply(name, {"city": "Rome"}, "Handled."))
    sent = owner.send("Mail Rome", assistant=scripted.profile_id)
    assert sent.events_url
    events = read_until_waiting(owner, sent.events_url)
    card = events[-1].data
    assert f"{name} needs your approval" in card and "Rome" in card
    assert receiver.received(f"/ok?{name}") == [], "nothing runs before the user allows it"
    owner.post(action_url(card), {"action": choice})
    assert "Handled." in answer_to_end(owner, sent.events_url, after=events[-1].id)
    (output,) = tool_outputs(chat_model.requests, scripted.model)
    if choice == "allow":
        assert len(receiver.received(f"/ok?{name}")) == 1
        assert json.loads(output)["city"] == "Rome"
    else:
        assert receiver.received(f"/ok?{name}") == []
        assert json.loads(output) == {"error": f"The user declined to run {name}."}


# --- Bad input: a clear message, an error output the model reads, and a usable thread ----------


BAD_CASES: dict[str, tuple[dict[str, Any] | None, str, str]] = {
    # case: (registry function, the call's arguments, what the person and the model are told)
    "unknown_function": (None, "{}", "There is no function called"),
    "arguments_not_json": (
        {"kind": "python", "name": "local_time"},
        "{city: Oslo",
        "not valid JSON",
    ),
    "arguments_off_schema": (
        {"kind": "python", "name": "local_time"},
        '{"town": "Oslo"}',
        "do not match its parameters",
    ),
    "python_raises": ({"kind": "python", "name": "explode"}, "{}", "ValueError: the sky fell"),
    "python_hangs": (
        {"kind": "python", "name": "doze", "timeout_seconds": 1},
        '{"seconds": 4}',
        "did not finish within 1 seconds",
    ),
    "webhook_times_out": (
        {"kind": "webhook", "path": "/slow", "timeout_seconds": 1},
        '{"city": "X"}',
        "within 1 seconds",
    ),
    "webhook_answers_500": ({"kind": "webhook", "path": "/error"}, '{"city": "X"}', "answered 500"),
    "webhook_answers_50_mb": (
        {"kind": "webhook", "path": "/huge"},
        '{"city": "X"}',
        "larger than 262,144 bytes",
    ),
    "webhook_redirects_to_metadata": (
        {"kind": "webhook", "path": "/redirect"},
        '{"city": "X"}',
        "redirect to http://169.254.169.254/latest/meta-data/, which is not followed",
    ),
    "webhook_host_not_allowlisted": (
        {"kind": "webhook", "path": "/ok", "host": "localhost"},
        '{"city": "X"}',
        "THREADLINE_WEBHOOK_ALLOWED_HOSTS",
    ),
    "webhook_refuses_the_connection": (
        {"kind": "webhook", "path": "/ok", "port": "closed"},
        '{"city": "X"}',
        "could not be reached",
    ),
    "not_granted_to_the_users_groups": (
        {"kind": "webhook", "path": "/ok", "groups": ["weather-team"]},
        '{"city": "Oslo"}',
        "owner may not run",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_calls_end_in_a_clear_message_and_a_usable_thread(
    case: str,
    owner: ChatClient,
    scripted: Scripted,
    chat_server: ChatServer,
    chat_model: FakeModelServer,
    receiver: WebhookReceiver,
) -> None:
    spec, arguments, told = BAD_CASES[case]
    receiver.slow_seconds = 3
    name, path = "not_there", ""
    if spec is not None:
        spec = dict(spec)
        if spec["kind"] == "webhook":
            spec["name"] = unique("hook")
            path = spec.pop("path") + f"?{spec['name']}"
            spec["url"] = receiver.url(path, spec.pop("host", "127.0.0.1"))
            if spec.pop("port", None):
                spec["url"] = f"http://127.0.0.1:{free_port()}{path}"  # nothing listens there
        elif spec["name"] != "local_time":
            spec["parameters"] = {"type": "object", "properties": {}}
        name = spec["name"]
        give_functions(chat_server.server, scripted.profile_id, registry=[spec])
    scripted.script(Reply(tool_calls=[ToolCall(name, arguments)]), Reply("I will manage."))
    sent = owner.send(f"Try {case}", assistant=scripted.profile_id)
    assert sent.events_url
    final = answer_to_end(owner, sent.events_url)
    assert told in text_of(final).replace("&#x27;", "'"), text_of(final)
    assert "I will manage." in final
    (output,) = tool_outputs(chat_model.requests, scripted.model)
    assert told in json.loads(output)["error"]
    reached = case not in (
        "webhook_host_not_allowlisted",
        "not_granted_to_the_users_groups",
        "webhook_refuses_the_connection",
    )
    if path:
        assert len(receiver.received(path)) == (1 if reached else 0)
    scripted.script(Reply("Still here."))
    more = owner.send("Still there?", conversation_id=sent.conversation_id)
    assert more.events_url and "Still here." in answer_to_end(owner, more.events_url)


def test_stop_while_a_form_waits_ends_the_answer_and_the_call(
    owner: ChatClient, scripted: Scripted, chat_server: ChatServer
) -> None:
    give_functions(chat_server.server, scripted.profile_id, raw=[QUIZ])
    scripted.script(Reply(tool_calls=[ToolCall("display_quiz", json.dumps(QUIZ_ARGUMENTS))]))
    sent = owner.send("Quiz me", assistant=scripted.profile_id)
    assert sent.events_url
    events = read_until_waiting(owner, sent.events_url)
    assert owner.post(f"/c/{sent.conversation_id}/stop").status_code == 204
    final = answer_to_end(owner, sent.events_url, after=events[-1].id)
    assert "Stopped." in final and "display_quiz was not answered" in final
    late = owner.post(action_url(events[-1].data), {"action": "answer", "q-0": "3/4", "q-1": "x"})
    assert "stopped waiting" in late.text


def test_the_admin_transcript_shows_the_calls_and_their_results(
    owner: ChatClient, scripted: Scripted, chat_server: ChatServer
) -> None:
    give_functions(
        chat_server.server,
        scripted.profile_id,
        registry=[{"name": "local_time", "kind": "python", "approval": False}],
    )
    scripted.script(*call_then_reply("local_time", {"city": "Quito"}, "Noon in Quito."))
    sent = owner.send("Time in Quito?", assistant=scripted.profile_id)
    assert sent.events_url
    answer_to_end(owner, sent.events_url)
    admin = ChatClient(chat_server.url)
    try:
        admin.login("admin")
        page = admin.get(f"/admin/chat/conversation/{sent.conversation_id}/transcript/").text
    finally:
        admin.close()
    assert "Ran local_time" in page and "Quito" in page and "Noon in Quito." in page

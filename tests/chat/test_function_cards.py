"""How the live answer shows function calls from their records, without a server."""

from __future__ import annotations

import json
from dataclasses import replace

from django.http import QueryDict

from chat.live.answer import RunView
from chat.tools import user
from chat.tools.cards import Card

QUIZ = {
    "title": "Fractions",
    "questions": [
        {
            "question_text": "1/2 + 1/4?",
            "question_type": "MULTIPLE_CHOICE",
            "choices": ["3/4", "1"],
        },
        {"question_text": "Why?", "question_type": "FREE_RESPONSE"},
    ],
}


def step_event(step_id: str, call_ids: list[str]) -> dict:
    calls = [
        {"id": c, "type": "function", "function": {"name": "f", "arguments": "{}"}}
        for c in call_ids
    ]
    return {"id": step_id, "step_details": {"type": "tool_calls", "tool_calls": calls}}


def test_cards_replace_the_step_once_then_change_one_by_one() -> None:
    view = RunView(conversation_id=3, run_id="run_1")
    view.apply("thread.run.step.created", step_event("step_1", ["call_a", "call_b"]))
    assert view.step_with({"call_b"}) == "step_1"
    waiting = Card("call_a", "f", "waiting_answer", "user", form=user.form_for("{}"))
    running = Card("call_b", "f", "running", "python")
    (first,) = view.show_cards("step_1", [waiting, running])
    assert 'id="s-step_1" hx-swap-oob="true"' in first  # the step whole, its calls as cards
    # Later, only the card that changed: a form half filled in next to it stays as it is.
    (changed,) = view.show_cards("step_1", [waiting, replace(running, status="done")])
    assert 'id="call-call_b" hx-swap-oob="true"' in changed
    assert "Send answer" not in changed
    assert view.show_cards("step_1", [waiting, replace(running, status="done")]) == []


def test_the_quiz_shape_becomes_questions_and_its_answer_a_list() -> None:
    form = user.form_for(json.dumps(QUIZ))
    assert form.quiz and form.title == "Fractions"
    assert [q.choices for q in form.questions] == [["3/4", "1"], []]
    answer = user.output_for(json.dumps(QUIZ), QueryDict("q-0=3%2F4&q-1=Quarters"))
    assert json.loads(answer) == ["3/4", "Quarters"]


def test_other_arguments_read_as_lines() -> None:
    assert user.readable('{"city": "Oslo", "days": [1, 2]}') == [
        ("city", "Oslo"),
        ("days", "[\n  1,\n  2\n]"),
    ]
    assert not user.form_for('{"city": "Oslo"}').quiz

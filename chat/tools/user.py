"""Calls the user answers: the form the page shows for one, and the output an answer makes.

Arguments in the shape of OpenAI's cookbook `display_quiz` (`questions[]`, each with
`question_text` and `question_type` MULTIPLE_CHOICE with `choices`, or FREE_RESPONSE) become a
quiz with radio buttons and text areas, answered as the cookbook's function answered: a JSON
list of the answers in order. Anything else shows its arguments readably and takes one text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from django.http import QueryDict

MAX_ANSWER_CHARS = 20_000


@dataclass(frozen=True)
class Question:
    name: str  # the form field's name
    text: str
    choices: list[str] = field(default_factory=list)  # empty: a free response

    @property
    def multiple_choice(self) -> bool:
        return bool(self.choices)


@dataclass(frozen=True)
class Form:
    """What the user is asked: a quiz's questions, or else one text answer."""

    title: str
    questions: list[Question]

    @property
    def quiz(self) -> bool:
        return bool(self.questions)


def parsed(arguments: str) -> Any:
    try:
        return json.loads(arguments or "{}")
    except ValueError:
        return None


def form_for(arguments: str) -> Form:
    value = parsed(arguments)
    if not isinstance(value, dict):
        return Form("", [])
    title = str(value["title"]) if isinstance(value.get("title"), str) else ""
    questions = value.get("questions")
    if not isinstance(questions, list) or not questions:
        return Form(title, [])
    asked = []
    for index, item in enumerate(questions):
        if not isinstance(item, dict) or not isinstance(item.get("question_text"), str):
            return Form(title, [])  # not the quiz shape after all: ask for one text
        choices = item.get("choices") if item.get("question_type") == "MULTIPLE_CHOICE" else []
        if not isinstance(choices, list):
            choices = []
        asked.append(Question(f"q-{index}", item["question_text"], [str(c) for c in choices]))
    return Form(title, asked)


class Incomplete(Exception):
    """The answer leaves something out; the message says what."""


def output_for(arguments: str, data: QueryDict) -> str:
    """The output an answer (the form's POST) makes; Incomplete if it lacks something."""
    form = form_for(arguments)
    if not form.quiz:
        answer = data.get("answer", "").strip()
        if not answer:
            raise Incomplete("Write an answer first.")
        if len(answer) > MAX_ANSWER_CHARS:
            raise Incomplete(f"An answer holds at most {MAX_ANSWER_CHARS:,} characters.")
        return answer
    answers = []
    for number, question in enumerate(form.questions, start=1):
        answer = data.get(question.name, "").strip()
        if question.multiple_choice and answer not in question.choices:
            raise Incomplete(f"Choose an answer to question {number}.")
        if not answer:
            raise Incomplete(f"Answer question {number} first.")
        answers.append(answer[:MAX_ANSWER_CHARS])
    return json.dumps(answers, ensure_ascii=False)


def readable(arguments: str) -> list[tuple[str, str]]:
    """The arguments as (name, value) lines a person reads; values that are not text as JSON."""
    value = parsed(arguments)
    if not isinstance(value, dict):
        return [("arguments", arguments)] if arguments.strip() else []
    lines = []
    for name, item in value.items():
        text = item if isinstance(item, str) else json.dumps(item, indent=2, ensure_ascii=False)
        lines.append((str(name), text))
    return lines


def readable_output(output: str) -> str:
    """An output as a person reads it: JSON indented, text as it is."""
    value = parsed(output) if output.lstrip()[:1] in ("{", "[") else None
    if value is None:
        return output
    return json.dumps(value, indent=2, ensure_ascii=False)

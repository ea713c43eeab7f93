"""A function call as the page shows it: a card made from its record, for the live answer and
for the history alike."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.urls import reverse

from chat.rendering import OWNER_FILES, dom_id, file_url
from chat.tools import elicitation, user
from chat.tools.models import FunctionCall

Status = FunctionCall.Status


@dataclass(frozen=True)
class Card:
    call_id: str
    name: str
    status: str
    kind: str
    arguments: list[tuple[str, str]] = field(default_factory=list)
    output: str = ""  # readable
    problem: str = ""  # what went wrong, in words
    form: user.Form | None = None  # a user-answered call still waiting
    action_url: str = ""
    expires_at: datetime | None = None
    question: elicitation.Question | None = None  # an MCP server asks the person, mid-call
    images: list[tuple[str, str]] = field(default_factory=list)  # (url, name) the call gave

    @property
    def label(self) -> str:
        name = self.name
        if self.question is not None:
            return f"{name} asks you"
        labels: dict[str, str] = {
            Status.WAITING_APPROVAL: f"{name} needs your approval",
            Status.WAITING_ANSWER: f"The assistant asks you ({name})",
            Status.QUEUED: f"Running {name}…",
            Status.RUNNING: f"Running {name}…",
            Status.DONE: f"Ran {name}",
            Status.FAILED: f"{name} failed",
            Status.DENIED: f"You denied {name}",
            Status.ANSWERED: f"You answered ({name})",
            Status.REFUSED: f"{name} was not run",
            Status.INTERRUPTED: f"{name} was interrupted",
            Status.ENDED: f"{name} was not answered",
        }
        return labels.get(self.status, name)

    @property
    def running(self) -> bool:
        return self.status in (Status.QUEUED, Status.RUNNING)

    @property
    def waiting_approval(self) -> bool:
        return self.status == Status.WAITING_APPROVAL

    @property
    def waiting_answer(self) -> bool:
        return self.status == Status.WAITING_ANSWER

    @property
    def failed(self) -> bool:
        return self.status in (Status.FAILED, Status.REFUSED, Status.INTERRUPTED, Status.ENDED)

    @property
    def dom_id(self) -> str:
        return f"call-{dom_id(self.call_id)}"

    @property
    def expires_iso(self) -> str:
        return self.expires_at.isoformat() if self.expires_at else ""


def card_of(
    call: FunctionCall,
    conversation_id: int,
    expires_at: datetime | None,
    file_route: str = OWNER_FILES,
) -> Card:
    asked = elicitation.waiting_question(call)
    waiting = call.status in FunctionCall.WAITING or asked is not None
    images = [
        (file_url(conversation_id, kept.file_id, route=file_route), kept.name)
        for kept in call.files.all()
    ]
    return Card(
        call_id=call.call_id,
        name=call.name,
        status=call.status,
        kind=call.kind,
        arguments=user.readable(call.arguments),
        output="" if call.error else user.readable_output(call.output),
        problem=call.problem,
        form=user.form_for(call.arguments) if call.status == Status.WAITING_ANSWER else None,
        action_url=reverse("chat:call", args=[conversation_id, call.run_id, call.call_id])
        if waiting
        else "",
        expires_at=expires_at if waiting else None,
        question=elicitation.question_of(asked) if asked is not None else None,
        images=images,
    )

"""What the person does with a call that waits on them: allow it, deny it, or answer it.

Each is one conditional update of the call's record, so a second answer (another tab, another
process, a double click) finds the call moved on and is refused with a message. The relay that
follows the run is then told (`rounds.notify`); it runs an allowed call, and submits the outputs
once every call of the step has one.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.http import Http404, QueryDict
from django.utils import timezone

from chat.models import Conversation
from chat.tools import elicitation, user
from chat.tools.cards import Card, card_of
from chat.tools.decide import error_output, may_run
from chat.tools.models import FunctionCall

Status = FunctionCall.Status
ALLOW, DENY, ANSWER = "allow", "deny", "answer"
# Answers to a question an MCP server asks during a call (chat.tools.elicitation).
REPLY, DECLINE = "reply", "decline"


@dataclass
class Done:
    card: Card
    message: str = ""  # why nothing changed, when nothing did


def call_for(conversation: Conversation, run_id: str, call_id: str) -> FunctionCall:
    """The call of the conversation's run; Http404 for anyone else's (the conversation is the
    person's own: `access.conversation_for` found it)."""
    call = (
        FunctionCall.objects.select_related("round", "function")
        .prefetch_related("elicitations", "files")
        .filter(round__conversation=conversation, run_id=run_id, call_id=call_id)
        .first()
    )
    if call is None:
        raise Http404("No such call.")
    return call


def act(conversation: Conversation, run_id: str, call_id: str, data: QueryDict) -> Done:
    call = call_for(conversation, run_id, call_id)
    action = data.get("action", "")
    message = ""
    if action == ALLOW and call.status == Status.WAITING_APPROVAL:
        message = allow(call)
    elif action == DENY and call.status == Status.WAITING_APPROVAL:
        message = deny(call)
    elif action == ANSWER and call.status == Status.WAITING_ANSWER:
        message = answer(call, data)
    elif action == REPLY:
        message = elicitation.reply(call, data)
    elif action == DECLINE:
        message = elicitation.decline(call)
    elif action not in (ALLOW, DENY, ANSWER):
        message = "That is not something one can do with a call."
    else:
        message = already(call)
    call.refresh_from_db()
    return Done(card_of(call, conversation.pk, call.round.expires_at), message)


def allow(call: FunctionCall) -> str:
    assert call.function is not None, "only registry functions ask for approval"
    if not may_run(call.user, call.function):  # the groups may have changed since it was asked
        problem = f"{call.user.get_username()} may not run {call.name}; it was not run."
        moved = call.move(
            Status.WAITING_APPROVAL,
            Status.REFUSED,
            output=error_output(problem),
            problem=problem,
            error=True,
            finished_at=timezone.now(),
        )
        return problem if moved else already(call)
    return "" if call.move(Status.WAITING_APPROVAL, Status.QUEUED) else already(call)


def deny(call: FunctionCall) -> str:
    problem = f"The user declined to run {call.name}."
    moved = call.move(
        Status.WAITING_APPROVAL,
        Status.DENIED,
        output=error_output(problem),
        error=True,
        finished_at=timezone.now(),
    )
    return "" if moved else already(call)


def answer(call: FunctionCall, data: QueryDict) -> str:
    try:
        output = user.output_for(call.arguments, data)
    except user.Incomplete as incomplete:
        return str(incomplete)
    moved = call.move(
        Status.WAITING_ANSWER,
        Status.ANSWERED,
        output=output,
        started_at=call.created_at,
        finished_at=timezone.now(),
    )
    return "" if moved else already(call)


def already(call: FunctionCall) -> str:
    call.refresh_from_db()
    if call.status == Status.ENDED:
        return "The assistant stopped waiting for this; send a new message to go on."
    return "This was answered already; the first answer counts."

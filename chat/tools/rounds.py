"""Answering one `requires_action` of a run, from the calls it names to `submit_tool_outputs`.

The relay that follows the run calls `answer`. Every call is recorded with what answers it before
anything runs (`record`); the server-side ones then run in parallel, each claimed once
(`chat.tools.execute`); approvals and answers come from the person's requests, which may reach
any process: those record them and `notify` the relay, which also looks at the records on every
tick. Once every call is settled, all outputs of the step go back together, as a stream, and the
same live answer goes on with it.

The relay holds the round like a lease (`CallRound.relay`, renewed each tick): if its process
dies, another takes the round over (`chat.tools.recovery`). Anything that changes a round checks
the lease, so a relay that lost it stops.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from chat import assistants_api as api
from chat.models import Conversation
from chat.tools import execute
from chat.tools.cards import Card, card_of
from chat.tools.decide import decide, error_output, offered_functions
from chat.tools.models import CallRound, FunctionCall

# How a run's relay hears that its calls changed; named here too, where they used to live.
from chat.tools.notices import Notifications as Notifications
from chat.tools.notices import group_name as group_name
from chat.tools.notices import notify as notify

log = logging.getLogger(__name__)
Status = FunctionCall.Status
# This process, in the relay tokens it hands out: recovery tells its own relays from others'.
PROCESS = secrets.token_hex(8)

Show = Callable[[list[Card], "datetime | None"], Awaitable[None]]


def tick_seconds() -> float:
    """How often a waiting relay renews its lease and looks at the run: a third of the time
    after which another process takes the round over."""
    return max(1.0, settings.RUN_STALE_SECONDS / 3)


def relay_token() -> str:
    return f"{PROCESS}:{secrets.token_hex(6)}"


@dataclass(frozen=True)
class Where:
    """The run a round belongs to."""

    conversation_id: int
    thread_id: str
    run_id: str
    assistant_id: str


@dataclass
class Outcome:
    events: AsyncIterator[api.RunEvent] | None = None  # the run goes on: its stream
    run: dict[str, Any] | None = None  # the run stopped waiting (expired, cancelled) as it is
    lost: bool = False  # another relay holds the round now


# --- Records --------------------------------------------------------------------------------------


def expiry(run: dict[str, Any]) -> datetime | None:
    expires = run.get("expires_at")
    return datetime.fromtimestamp(expires, tz=UTC) if expires else None


def record(where: Where, run: dict[str, Any], step_id: str, token: str) -> int | None:
    """Record the round and each call with what answers it; the round's id. Idempotent per
    step: a round already recorded is returned as it is, None if another relay holds it."""
    conversation = Conversation.objects.select_related("owner").get(pk=where.conversation_id)
    calls = ((run.get("required_action") or {}).get("submit_tool_outputs") or {}).get(
        "tool_calls"
    ) or []
    offered = offered_functions(run)
    with transaction.atomic():
        found, created = CallRound.objects.get_or_create(
            run_id=where.run_id,
            step_id=step_id,
            defaults={
                "conversation": conversation,
                "owner": conversation.owner,
                "thread_id": where.thread_id,
                "assistant_id": where.assistant_id,
                "expires_at": expiry(run),
                "relay": token,
            },
        )
        if not created:
            return found.pk if found.relay == token else None
        for position, call in enumerate(calls):
            function = call.get("function") or {}
            name, arguments = str(function.get("name") or ""), str(function.get("arguments") or "")
            decision = decide(name, arguments, conversation.owner, offered)
            FunctionCall.objects.create(
                round=found,
                run_id=where.run_id,
                call_id=call["id"],
                position=position,
                name=name[:256],
                arguments=arguments,
                function=decision.function,
                kind=decision.kind,
                definition=decision.definition,
                status=decision.status,
                output=decision.output,
                problem=decision.problem,
                error=bool(decision.output),
                user=conversation.owner,
                finished_at=timezone.now() if decision.output else None,
            )
    return found.pk


@dataclass
class State:
    round: CallRound
    calls: list[FunctionCall]

    @property
    def settled(self) -> bool:
        return all(call.settled for call in self.calls)

    def cards(self) -> list[Card]:
        return [
            card_of(call, self.round.conversation_id, self.round.expires_at) for call in self.calls
        ]


def load(round_pk: int) -> State:
    found = CallRound.objects.get(pk=round_pk)
    calls = found.calls.select_related("function").prefetch_related("elicitations", "files")
    return State(found, list(calls.order_by("position")))


def renew(round_pk: int, token: str) -> bool:
    return bool(
        CallRound.objects.filter(pk=round_pk, relay=token, status=CallRound.Status.OPEN).update(
            relay_seen_at=timezone.now()
        )
    )


def mark_submitted(round_pk: int, token: str) -> None:
    CallRound.objects.filter(pk=round_pk, relay=token).update(status=CallRound.Status.SUBMITTED)


def release(run_id: str, token: str) -> None:
    """The relay is done with the run: a round it still holds open will not be answered (the
    run ended some other way), and must not look orphaned to the sweeper."""
    for round_pk in CallRound.objects.filter(
        run_id=run_id, relay=token, status=CallRound.Status.OPEN
    ).values_list("pk", flat=True):
        end(round_pk, token)


def end(round_pk: int, token: str) -> None:
    """The run stopped waiting: the calls still open will never be answered."""
    with transaction.atomic():
        if not CallRound.objects.filter(pk=round_pk, relay=token).update(
            status=CallRound.Status.ENDED
        ):
            return
        FunctionCall.objects.filter(round_id=round_pk).exclude(
            status__in=FunctionCall.SETTLED
        ).update(status=Status.ENDED, finished_at=timezone.now())


# --- The relay's side -----------------------------------------------------------------------------


async def answer(
    where: Where, run: dict[str, Any], step_id: str, token: str, show: Show
) -> Outcome:
    """Record the run's calls, answer them, and submit their outputs; see the module's doc."""
    round_pk = await sync_to_async(record)(where, run, step_id, token)
    if round_pk is None:
        return Outcome(lost=True)
    listener = Notifications(group_name(where.run_id))
    await listener.start()
    running: dict[int, asyncio.Task[None]] = {}
    try:
        return await Waiting(where, round_pk, token, show, listener, running).until_settled()
    finally:
        await listener.stop()
        for task in running.values():
            task.cancel()
        await asyncio.gather(*running.values(), return_exceptions=True)


@dataclass
class Waiting:
    where: Where
    round_pk: int
    token: str
    show: Show
    listener: Notifications
    running: dict[int, asyncio.Task[None]]

    async def until_settled(self) -> Outcome:
        loop = asyncio.get_running_loop()
        shown: list[Card] | None = None
        next_tick = loop.time() + tick_seconds()
        look_at_run = False
        while True:
            state = await sync_to_async(load)(self.round_pk)
            if state.round.relay != self.token:
                return Outcome(lost=True)
            cards = state.cards()
            if cards != shown:
                await self.show(cards, state.round.expires_at)
                shown = cards
            for call in state.calls:
                if call.status == Status.QUEUED and call.pk not in self.running:
                    self.running[call.pk] = asyncio.create_task(execute.run(call.pk))
            if state.settled:
                return await self.submit(state)
            if look_at_run or loop.time() >= next_tick:
                if loop.time() >= next_tick:
                    next_tick = loop.time() + tick_seconds()
                    if not await sync_to_async(renew)(self.round_pk, self.token):
                        return Outcome(lost=True)
                ended = await self.run_ended()
                if ended is not None:
                    return ended
            look_at_run = await self.wait(next_tick, state.round.expires_at)

    async def wait(self, until: float, expires_at: datetime | None) -> bool:
        """Sleep until a call finishes here, someone notifies, the next tick or the expiry;
        True if the run itself should be looked at (a notice, or the expiry)."""
        loop = asyncio.get_running_loop()
        timeout = until - loop.time()
        if expires_at is not None:
            # The engine expires the run when someone looks at it after this.
            left = (expires_at - timezone.now()).total_seconds() + 0.5
            timeout = min(timeout, max(left, 0.1))
        notified = asyncio.ensure_future(self.listener.event.wait())
        busy = [task for task in self.running.values() if not task.done()]
        done, _ = await asyncio.wait(
            [notified, *busy], timeout=max(timeout, 0.05), return_when=asyncio.FIRST_COMPLETED
        )
        notified.cancel()
        self.listener.event.clear()
        return notified in done or not done

    async def run_ended(self) -> Outcome | None:
        try:
            run = await api.retrieve_run(self.where.thread_id, self.where.run_id)
        except api.AssistantsError as error:
            log.warning("Run %s: could not look at the run: %s", self.where.run_id, error)
            return None
        if run["status"] == "requires_action":
            return None
        await sync_to_async(end)(self.round_pk, self.token)
        state = await sync_to_async(load)(self.round_pk)
        await self.show(state.cards(), None)
        return Outcome(run=run)

    async def submit(self, state: State) -> Outcome:
        outputs = [{"tool_call_id": call.call_id, "output": call.output} for call in state.calls]
        try:
            events = await api.submit_tool_outputs(self.where.thread_id, self.where.run_id, outputs)
        except api.AssistantsError as error:
            log.warning("Run %s: submitting tool outputs failed: %s", self.where.run_id, error)
            ended = await self.run_ended()
            if ended is None:
                await asyncio.sleep(tick_seconds())  # the relay tries again, not at once
            return ended if ended is not None else Outcome()
        await sync_to_async(mark_submitted)(self.round_pk, self.token)
        return Outcome(events=events)


def stale_before() -> datetime:
    return timezone.now() - timedelta(seconds=settings.RUN_STALE_SECONDS)


def interrupted_output(name: str) -> tuple[str, str]:
    problem = (
        f"{name} was interrupted: the server running it stopped before it finished, so it "
        "may or may not have taken effect."
    )
    return error_output(problem), problem

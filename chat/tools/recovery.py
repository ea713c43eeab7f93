"""Taking over the function calls of a relay whose process died.

A relay renews its round's lease every third of `THREADLINE_RUN_STALE_SECONDS`. Any process that
finds a round whose lease is older than that takes it over: one conditional update hands the
lease to a relay of its own, and in the same transaction every call that was `running` becomes
`interrupted`, an error output saying it may or may not have taken effect. Such a call is never
run again (a webhook could then act twice). Calls waiting on the person stay answerable, calls
not started yet run here, and the new relay goes on with the answer's replay log.

Without Redis one server process serves the chat, so a round held by any other process's relay
is taken over at once (the process restarted). Every process sweeps when it serves its first
chat request, then every third of `THREADLINE_RUN_STALE_SECONDS`; the person's answer sweeps too.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from chat.live import relay, replay
from chat.models import Conversation
from chat.tools import rounds
from chat.tools.models import CallRound, FunctionCall

log = logging.getLogger(__name__)
Status = FunctionCall.Status


def orphaned() -> list[CallRound]:
    """Open rounds whose relay has stopped renewing its lease (or, with one process, is gone)."""
    gone = Q(relay_seen_at__lt=rounds.stale_before())
    if not settings.REDIS_URL:
        gone |= ~Q(relay__startswith=f"{rounds.PROCESS}:")
    return list(CallRound.objects.filter(gone, status=CallRound.Status.OPEN))


def take_over(found: CallRound, token: str) -> bool:
    with transaction.atomic():
        if not CallRound.objects.filter(
            pk=found.pk, relay=found.relay, status=CallRound.Status.OPEN
        ).update(relay=token, relay_seen_at=timezone.now()):
            return False  # another process took it first
        for call in FunctionCall.objects.filter(round=found, status=Status.RUNNING):
            output, problem = rounds.interrupted_output(call.name)
            call.move(
                Status.RUNNING,
                Status.INTERRUPTED,
                output=output,
                problem=problem,
                error=True,
                finished_at=timezone.now(),
            )
    found.relay = token
    return True


def claim_orphans() -> list[tuple[CallRound, str]]:
    claimed = []
    for found in orphaned():
        token = rounds.relay_token()
        if take_over(found, token):
            log.warning("Taking over the function calls of run %s", found.run_id)
            claimed.append((found, token))
    return claimed


async def sweep() -> None:
    """Take over orphaned rounds, each with a relay of this process."""
    for found, token in await sync_to_async(claim_orphans)():
        # Before anything is awaited again: a page shown from now on finds the answer live.
        last_seq = await replay.call(replay.resume_log, found.run_id, found.conversation_id)
        await sync_to_async(Conversation.resume_run)(found.conversation_id, found.run_id)
        relay.start(
            relay.RunStart(
                conversation_id=found.conversation_id,
                thread_id=found.thread_id,
                assistant_id=found.assistant_id,
                run_id=found.run_id,
                events=None,
                taken_over=True,
                token=token,
                last_seq=last_seq,
            )
        )


_sweeper: asyncio.Task[None] | None = None


async def sweep_forever() -> None:
    while True:
        await asyncio.sleep(rounds.tick_seconds())
        try:
            await sweep()
        except Exception:
            log.exception("Sweeping for orphaned function calls failed; trying again")


class SweepingApplication:
    """The ASGI application, with this process's sweeper started on its first request: after
    one sweep, so that a restarted process follows its old runs before it shows any page."""

    def __init__(self, application: Any) -> None:
        self.application = application
        self.lock = asyncio.Lock()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        global _sweeper
        # Only a process that serves the chat sweeps: one that only serves the engine's API (the
        # split layout in the README) must not take over the chat process's calls.
        chat = scope.get("type") == "http" and not str(scope.get("path", "")).startswith("/v1/")
        if _sweeper is None and chat:
            async with self.lock:
                if _sweeper is None:
                    try:
                        await sweep()
                    except Exception:
                        log.exception("Sweeping for orphaned function calls failed")
                    _sweeper = asyncio.get_running_loop().create_task(sweep_forever())
        await self.application(scope, receive, send)

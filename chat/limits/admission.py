"""Counting what people use against their limits, and refusing a message that would go over.

`admit` checks and records in one transaction that first locks the person's row (FOR NO KEY
UPDATE on PostgreSQL; on SQLite every write transaction is IMMEDIATE, so they run one at a
time). Two sends at once, in one process or in several, are therefore counted one after the
other: a limit of one lets exactly one through. The record (an `AnswerUsage`) is written before
anything reaches the Assistants API, so an answer counts from the moment it was let through;
`release` takes it back if nothing was sent after all.

Tokens are known only once an answer ends: the relay records them from the run's last event
(`ended`), and `settle_lost` asks the API about answers whose relay died with its process.
A token limit therefore stops the next message, not the answer that crosses it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from chat import assistants_api as api
from chat.limits.rules import Limits, limits_for
from chat.models import AnswerUsage, Conversation, Upload
from chat.uploads import human_size

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
# A send that has not started its run after this long died on the way (its process stopped).
PENDING_AT_MOST = timedelta(minutes=10)
# An answer still open after this long may have lost its relay: ask the API how it is.
SETTLE_AFTER = timedelta(minutes=1)
TURNED_OFF = "Sending messages is turned off for your account. An administrator can turn it on."


class OverLimit(Exception):
    """A limit refuses the message; `str()` says which and when it resets, for the person."""

    def __init__(self, message: str, resets_at: datetime | None = None) -> None:
        super().__init__(message)
        self.resets_at = resets_at


# --- The person's side ----------------------------------------------------------------------------


def admit(user: User, upload_bytes: int = 0, now: datetime | None = None) -> int:
    """Record one more answer for `user`, with `upload_bytes` of attachments; its id.

    OverLimit, and nothing recorded, if that would take the person over a limit.
    """
    now = now or timezone.now()
    with transaction.atomic():
        list(User.objects.select_for_update(no_key=True).filter(pk=user.pk).values_list("pk"))
        limits = limits_for(user)
        if limits.any:
            refusal = Meter(user, now).refusal(limits, upload_bytes)
            if refusal is not None:
                raise refusal
        return AnswerUsage.objects.create(user=user, upload_bytes=upload_bytes, started_at=now).pk


def release(usage_id: int) -> None:
    """Nothing was sent after all: the answer does not count."""
    AnswerUsage.objects.filter(pk=usage_id).delete()


def started(usage_id: int, conversation: Conversation, run_id: str) -> None:
    """The answer's run has started (in the transaction that records the send)."""
    AnswerUsage.objects.filter(pk=usage_id).update(
        conversation=conversation, thread_id=conversation.thread_id, run_id=run_id
    )


def ended(run_id: str, run: dict[str, Any], now: datetime | None = None) -> None:
    """The run is over; `run` is the API's run object, with its `usage`."""
    usage = run.get("usage") or {}
    AnswerUsage.objects.filter(run_id=run_id, ended_at__isnull=True).update(
        ended_at=now or timezone.now(),
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
        total_tokens=usage.get("total_tokens"),
    )


async def settle_lost(user: User) -> None:
    """Ask the API how the person's long-open answers ended: a relay that died with its process
    never said, and its answer would count as running for ever."""
    for thread_id, run_id in await sync_to_async(long_open)(user):
        try:
            run = await api.retrieve_run(thread_id, run_id)
        except api.NotFound:
            run = {"status": "gone"}
        except api.AssistantsError:
            return  # the API is away: the send will say so
        if run["status"] not in api.ACTIVE_STATUSES:
            await sync_to_async(ended)(run_id, run)


def long_open(user: User) -> list[tuple[str, str]]:
    return list(
        AnswerUsage.objects.filter(
            user=user,
            ended_at__isnull=True,
            started_at__lt=timezone.now() - SETTLE_AFTER,
        )
        .exclude(run_id="")
        .values_list("thread_id", "run_id")
    )


# --- Counting -------------------------------------------------------------------------------------


def month_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month(now: datetime) -> datetime:
    start = month_start(now)
    return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)


def running(now: datetime) -> Q:
    """Answers running now: started and not ended, or let through a moment ago and starting."""
    return Q(ended_at__isnull=True) & (~Q(run_id="") | Q(started_at__gt=now - PENDING_AT_MOST))


def stored_bytes(user: User, now: datetime) -> int:
    """The person's attached files: those kept with their conversations, and those of sends
    that are uploading them now."""
    kept = Upload.objects.filter(owner=user).aggregate(total=Sum("size"))["total"] or 0
    uploading = AnswerUsage.objects.filter(
        user=user, run_id="", ended_at__isnull=True, started_at__gt=now - PENDING_AT_MOST
    ).aggregate(total=Sum("upload_bytes"))["total"]
    return int(kept) + int(uploading or 0)


def must_age_out(amounts: Sequence[int], room: int) -> int:
    """How many of the oldest entries (`amounts`, oldest first) must leave the window before
    what is left fits in `room` (at least 0)."""
    used = sum(amounts)
    for count, amount in enumerate(amounts):
        if used <= room:
            return count
        used -= amount
    return len(amounts)


class Meter:
    """One person's use, read once per admission, and the limit it would break (if any)."""

    def __init__(self, user: User, now: datetime) -> None:
        self.user = user
        self.now = now
        self.mine = AnswerUsage.objects.filter(user=user)
        recent = self.mine.filter(started_at__gt=now - DAY).order_by("started_at", "pk")
        self.recent = list(recent.values_list("started_at", "total_tokens", "upload_bytes"))

    def refusal(self, limits: Limits, upload_bytes: int) -> OverLimit | None:
        """The broken limit that resets last (a person told "in 5 minutes" must not find a
        daily limit then), or None."""
        found = [
            over
            for over in (
                self.messages(limits.messages_per_hour, HOUR, "an hour"),
                self.messages(limits.messages_per_day, DAY, "a day"),
                self.answers(limits.answers_at_once),
                self.tokens_today(limits.tokens_per_day),
                self.tokens_this_month(limits.tokens_per_month),
                self.uploads_today(limits.upload_bytes_per_day, upload_bytes),
                self.stored(limits.stored_bytes, upload_bytes),
            )
            if over is not None
        ]
        if not found:
            return None
        never = datetime.max.replace(tzinfo=UTC)
        return max(found, key=lambda over: over.resets_at or never)

    def in_window(self, window: timedelta) -> list[tuple[datetime, int | None, int]]:
        return [entry for entry in self.recent if entry[0] > self.now - window]

    def messages(self, limit: int | None, window: timedelta, per: str) -> OverLimit | None:
        if limit is None:
            return None
        times = [started for started, _, _ in self.in_window(window)]
        if len(times) < limit:
            return None
        if limit == 0:
            return OverLimit(TURNED_OFF)
        resets = times[len(times) - limit] + window
        return OverLimit(
            f"You have reached your limit of {plural(limit, 'message')} {per}. "
            f"You can send again {when(resets, self.now)}.",
            resets,
        )

    def answers(self, limit: int | None) -> OverLimit | None:
        if limit is None:
            return None
        writing = self.mine.filter(running(self.now)).count()
        if writing < limit:
            return None
        if limit == 0:
            return OverLimit(TURNED_OFF)
        return OverLimit(
            f"You already have {plural(writing, 'answer')} being written, as many as you may "
            "have at once. You can send this as soon as one of them has finished."
        )

    def tokens_today(self, limit: int | None) -> OverLimit | None:
        if limit is None:
            return None
        entries = self.in_window(DAY)
        amounts = [tokens or 0 for _, tokens, _ in entries]
        used = sum(amounts)
        if used < limit:
            return None
        if limit == 0:
            return OverLimit(TURNED_OFF)
        # Another answer needs at least a token of room.
        resets = entries[must_age_out(amounts, limit - 1) - 1][0] + DAY
        return OverLimit(
            f"Your answers in the last 24 hours used {used:,} tokens; your limit is "
            f"{limit:,} a day. You can send again {when(resets, self.now)}.",
            resets,
        )

    def tokens_this_month(self, limit: int | None) -> OverLimit | None:
        if limit is None:
            return None
        this_month = self.mine.filter(started_at__gte=month_start(self.now))
        used = this_month.aggregate(total=Sum("total_tokens"))["total"] or 0
        if used < limit:
            return None
        if limit == 0:
            return OverLimit(TURNED_OFF)
        resets = next_month(self.now)
        return OverLimit(
            f"Your answers this month used {used:,} tokens; your limit is {limit:,} a month. "
            f"You can send again {when(resets, self.now)}.",
            resets,
        )

    def uploads_today(self, limit: int | None, adding: int) -> OverLimit | None:
        if limit is None or adding == 0:
            return None
        entries = [(started, size) for started, _, size in self.in_window(DAY) if size]
        amounts = [size for _, size in entries]
        used = sum(amounts)
        if used + adding <= limit:
            return None
        if limit == 0:
            return OverLimit("Attaching files is turned off for your account.")
        if adding > limit:
            return OverLimit(
                f"These files ({human_size(adding)}) are more than you may attach in a day "
                f"({human_size(limit)}). Attach fewer or smaller files, or send without them."
            )
        resets = entries[must_age_out(amounts, limit - adding) - 1][0] + DAY
        return OverLimit(
            f"You have attached {human_size(used)} of files in the last 24 hours; with these "
            f"({human_size(adding)}) that would be more than your limit of "
            f"{human_size(limit)} a day. You can attach them {when(resets, self.now)}, or "
            "send your message without them now.",
            resets,
        )

    def stored(self, limit: int | None, adding: int) -> OverLimit | None:
        if limit is None or adding == 0:
            return None
        kept = stored_bytes(self.user, self.now)
        if kept + adding <= limit:
            return None
        return OverLimit(
            f"Your conversations keep {human_size(kept)} of attached files; with these "
            f"({human_size(adding)}) that would be more than your limit of {human_size(limit)}. "
            "Delete conversations whose files you no longer need, or send without files."
        )


# --- Saying when ----------------------------------------------------------------------------------


def plural(count: int, word: str) -> str:
    return f"{count:,} {word}" if count == 1 else f"{count:,} {word}s"


def when(moment: datetime, now: datetime) -> str:
    """When a limit resets, to the minute (rounded up: at the time shown, it has reset), with
    how long that is from now, as people read it."""
    whole = moment.replace(second=0, microsecond=0)
    if whole < moment:
        whole += timedelta(minutes=1)
    local, today = timezone.localtime(whole), timezone.localdate(now)
    at = f"{local:%H:%M} {local.tzname()}"
    minutes = max(1, math.ceil((moment - now).total_seconds() / 60))
    hours, rest = divmod(minutes, 60)
    span = plural(hours, "hour") if hours else ""
    span = f"{span} {plural(rest, 'minute')}" if rest else span
    if local.date() == today:
        return f"at {at} (in {span.strip()})"
    if local.date() == today + timedelta(days=1):
        return f"at {at} tomorrow (in {span.strip()})"
    return f"on {local.day} {local:%B} at {at}"

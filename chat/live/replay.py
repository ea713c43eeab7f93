"""A live answer's replay log, kept in the Django cache: what a late or reconnecting browser missed.

Each event is stored under its own key (`…:<seq>`), so appending costs the same for the first
event and the thousandth. Some events are snapshots: they replace the whole answer in the page,
so whoever is further behind than the latest snapshot (the log's "base") needs only that snapshot
and what follows it. The relay writes a new snapshot every `COMPACT_EVERY` events and drops the
keys before it; the log stays bounded however long the answer. The relay writes an event here
before it publishes it, and a subscriber joins the group before it reads here, so between the two
nothing falls through.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.core.cache import cache, caches
from django.core.cache.backends.locmem import LocMemCache

KEEP_SECONDS = 6 * 3600  # while the answer streams; runs end long before (they expire)
KEEP_AFTER_END_SECONDS = 15 * 60  # for a page rendered just before the end to catch up
COMPACT_EVERY = 400
# Keys asked for per cache read: few at first, since a subscriber mostly reads near the live
# end, where one or two events wait; doubling up to the most. Every key asked for costs the
# cache's key check (Django's, a Python loop over its characters: 8% of a chat send's CPU
# samples when each read asked for 200), and bytes on the wire with Redis.
FIRST_READ = 8
READ_CHUNK = 200

T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    seq: int
    event: str
    data: str


@dataclass(frozen=True)
class Meta:
    conversation_id: int
    base: int  # the latest snapshot's seq: events before it are gone
    end: int | None  # the seq of the "end" event, once there is one


def key(run_id: str, part: str | int) -> str:
    return f"chat:run:{run_id}:{part}"


def open_log(run_id: str, conversation_id: int) -> None:
    cache.set(key(run_id, "meta"), Meta(conversation_id, 0, None), KEEP_SECONDS)


def resume_log(run_id: str, conversation_id: int) -> int:
    """A relay taking the run over from another process goes on with its log: the seq of the
    log's last event. A log that is gone (one process, restarted) starts again, numbered above
    anything the lost one reached, so a browser reconnecting with an old Last-Event-ID reads the
    new log from its first snapshot."""
    current = meta(run_id)
    if current is None or current.conversation_id != conversation_id:
        first = int(time.time() * 1000)
        cache.set(key(run_id, "meta"), Meta(conversation_id, first, None), KEEP_SECONDS)
        return first - 1
    _, entries = read_after(run_id, current.base - 1)
    last = entries[-1].seq if entries else current.base
    cache.set(key(run_id, "meta"), Meta(conversation_id, current.base, None), KEEP_SECONDS)
    return last


def meta(run_id: str) -> Meta | None:
    found: Meta | None = cache.get(key(run_id, "meta"))
    return found


def append(run_id: str, entries: list[Entry]) -> None:
    cache.set_many({key(run_id, e.seq): e for e in entries}, KEEP_SECONDS)


def rebase(run_id: str, snapshot: Entry, *, end: int | None = None) -> None:
    """Make `snapshot` (already appended) the log's base and forget what came before it."""
    current = meta(run_id)
    if current is None:
        return
    timeout = KEEP_SECONDS if end is None else KEEP_AFTER_END_SECONDS
    cache.set(key(run_id, "meta"), Meta(current.conversation_id, snapshot.seq, end), timeout)
    cache.delete_many([key(run_id, seq) for seq in range(current.base, snapshot.seq)])
    if end is not None:
        # What is left (the final snapshot and the end) only has to outlive late page loads.
        for seq in range(snapshot.seq, end + 1):
            cache.touch(key(run_id, seq), timeout)


def read_after(run_id: str, after: int) -> tuple[Meta | None, list[Entry]]:
    """The entries a subscriber that has seen up to `after` needs, in order.

    Someone behind the base gets the base snapshot first. Reading stops at the first missing
    key (the newest write, or a compaction racing this read); the caller reads again when a
    live event shows a gap.
    """
    current = meta(run_id)
    if current is None:
        return None, []
    start = max(after + 1, current.base)
    entries: list[Entry] = []
    size = FIRST_READ
    while True:
        wanted = [key(run_id, seq) for seq in range(start, start + size)]
        found = cache.get_many(wanted)
        for name in wanted:
            entry = found.get(name)
            if entry is None:
                return current, entries
            entries.append(entry)
        start += size
        size = min(size * 2, READ_CHUNK)


# LocMemCache is a dict behind a lock: calling it from the event loop costs microseconds, less
# than handing the call to a thread. Any other backend does network I/O and gets a thread.
_inline = isinstance(caches["default"], LocMemCache)


async def call(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    if _inline:
        return function(*args, **kwargs)
    return await sync_to_async(function, thread_sensitive=False)(*args, **kwargs)

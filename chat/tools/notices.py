"""Telling the relay of a run, wherever it is, that its calls changed: a group per run on the
channel layer. A person's answer notifies it; so does a call whose MCP server asks the person
something; both the relay and a call waiting on the person listen. Anyone who misses a notice
looks again on their next tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from channels.layers import get_channel_layer

from chat.rendering import dom_id

log = logging.getLogger(__name__)


def group_name(run_id: str) -> str:
    return f"chat.calls.{dom_id(run_id)}"


async def notify(run_id: str) -> None:
    """Tell the run's relay, wherever it is, that its calls changed (it also looks each tick)."""
    try:
        await get_channel_layer().group_send(group_name(run_id), {"type": "calls.changed"})
    except Exception:
        log.warning("Could not notify the relay of run %s; it will look on its next tick", run_id)


class Notifications:
    """The run's group on the channel layer: an answer recorded anywhere wakes the relay."""

    def __init__(self, group: str) -> None:
        self.group = group
        self.event = asyncio.Event()
        self.layer = get_channel_layer()
        self.channel = ""
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        try:
            self.channel = await self.layer.new_channel()
            await self.layer.group_add(self.group, self.channel)
        except Exception:
            log.warning("No notifications for %s; the relay looks each tick", self.group)
            return
        self.task = asyncio.create_task(self.listen())

    async def listen(self) -> None:
        while True:
            try:
                await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("Notifications for %s broke; the relay looks each tick", self.group)
                return
            self.event.set()

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        if self.channel:
            with contextlib.suppress(Exception):
                await self.layer.group_discard(self.group, self.channel)

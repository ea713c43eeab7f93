"""The channel layer for one server process (no REDIS_URL).

Channels' InMemoryChannelLayer was most of the cost of publishing an event with a few hundred
answers streaming (bench/chat_stream.py): it sweeps every channel and group for expired messages
on every send and receive, deep-copies the message for each receiver, builds a new queue per send
and receive even when the channel has one, and fans a group send out through a task per
receiver. This one
sweeps at most once a second (messages still expire, a second later at worst), gives each
receiver a shallow copy (the relay's messages are flat: strings and numbers), and puts a group's
messages straight into its receivers' queues.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer

SWEEP_SECONDS = 1.0
# A channel's messages, each with when it expires.
Queue = asyncio.Queue[tuple[float, dict[str, Any]]]


# channels ships no type information: its classes are Any to mypy.
class LocalChannelLayer(InMemoryChannelLayer):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._swept = 0.0

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now - self._swept < SWEEP_SECONDS:
            return
        self._swept = now
        super()._clean_expired()

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_channel_name(channel)
        assert "__asgi_channel__" not in message
        self._put(channel, message)

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        for channel in list(self.groups.get(group, ())):
            # As Channels does, a full receiver misses the message (the SSE reader catches up).
            with contextlib.suppress(ChannelFull):
                self._put(channel, message)

    async def receive(self, channel: str) -> dict[str, Any]:
        self.require_valid_channel_name(channel)
        self._clean_expired()
        queue = self._queue(channel)
        try:
            _, message = await queue.get()
        finally:
            if queue.empty():
                self.channels.pop(channel, None)
        return message

    def _queue(self, channel: str) -> Queue:
        queue: Queue | None = self.channels.get(channel)
        if queue is None:
            queue = self.channels[channel] = asyncio.Queue(maxsize=self.get_capacity(channel))
        return queue

    def _put(self, channel: str, message: dict[str, Any]) -> None:
        try:
            self._queue(channel).put_nowait((time.time() + self.expiry, dict(message)))
        except asyncio.QueueFull:
            raise ChannelFull(channel) from None

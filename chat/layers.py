"""The channel layer for one server process (no REDIS_URL).

Channels' InMemoryChannelLayer sweeps every channel and group for expired messages on every
send and receive: with a few hundred answers streaming, that sweep was most of the cost of
publishing an event (bench/chat_stream.py). This one sweeps at most once a second; messages
still expire, a second later at worst.
"""

from __future__ import annotations

import time
from typing import Any

from channels.layers import InMemoryChannelLayer

SWEEP_SECONDS = 1.0


class LocalChannelLayer(InMemoryChannelLayer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._swept = 0.0

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now - self._swept < SWEEP_SECONDS:
            return
        self._swept = now
        super()._clean_expired()

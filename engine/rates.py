"""Request rates as admins and the setting write them ("60/minute"), per key or by default."""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.conf import settings

UNITS = {"second": 1, "minute": 60, "hour": 3600}
NO_LIMIT = "none"
FORMAT = re.compile(r"^\s*(\d+)\s*/\s*(second|minute|hour)s?\s*$")
HELP = 'a number of requests per second, minute or hour, e.g. "60/minute", or "none"'


@dataclass(frozen=True)
class Rate:
    requests: int
    unit: str

    @property
    def seconds(self) -> int:
        return UNITS[self.unit]

    def __str__(self) -> str:
        return f"{self.requests}/{self.unit}"


def parse(text: str) -> Rate | None:
    """A rate as admins and the setting write it ("60/minute"); None for "none". ValueError
    names the format for anything else."""
    if text.strip().lower() == NO_LIMIT:
        return None
    found = FORMAT.match(text.lower())
    if found is None:
        raise ValueError(f"{text!r} is not a rate limit: write {HELP}.")
    return Rate(int(found.group(1)), found.group(2))


def default_rate() -> Rate | None:
    """The setting's rate, for keys with none of their own ("" in the setting: no limit)."""
    return parse(settings.API_RATE_LIMIT) if settings.API_RATE_LIMIT.strip() else None


def rate_for(own: str) -> Rate | None:
    """A stored key's rate: its own where set, else the setting's."""
    return parse(own) if own.strip() else default_rate()

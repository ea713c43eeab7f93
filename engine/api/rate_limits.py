"""Requests per key: counted in fixed windows in Django's cache and refused over the limit with
OpenAI's 429, a `Retry-After`, and the `x-ratelimit-*` headers OpenAI sends.

The cache is Redis with REDIS_URL, so every server process counts into the same window (an
INCR is atomic: of N requests at once against a limit of L, exactly L pass). Windows are
aligned to the clock, so processes agree on when one ends without talking. Without Redis the
cache is the process's memory, which is right for one process.
"""

from __future__ import annotations

import logging
import math
import time

from django.core.cache import cache

from engine.api.errors import ApiError
from engine.rates import Rate

log = logging.getLogger(__name__)

ABBREVIATIONS = {"second": "RPS", "minute": "RPM", "hour": "RPH"}


def admit(key_id: str, rate: Rate | None, now: float | None = None) -> dict[str, str]:
    """Count one request by the key; the headers that tell the client where it stands.

    ApiError (429) when the key has used its window up. The cache failing lets requests through:
    the API stays up while Redis is away, unthrottled, and the log says so.
    """
    if rate is None:
        return {}
    now = time.time() if now is None else now
    window = int(now // rate.seconds)
    resets_in = (window + 1) * rate.seconds - now
    try:
        used = count(f"engine:rate:{key_id}:{rate.seconds}:{window}", rate.seconds)
    except Exception:
        log.exception("Counting requests for rate limits failed; letting the request through")
        return {}
    headers = {
        "x-ratelimit-limit-requests": str(rate.requests),
        "x-ratelimit-remaining-requests": str(max(rate.requests - used, 0)),
        "x-ratelimit-reset-requests": f"{resets_in:.3f}s",
    }
    if used <= rate.requests:
        return headers
    wait = max(math.ceil(resets_in), 1)
    raise ApiError(
        429,
        f"Rate limit reached for this API key on requests per {rate.unit} "
        f"({ABBREVIATIONS[rate.unit]}): Limit {rate.requests}, Used {rate.requests}, "
        f"Requested 1. Please try again in {wait}s.",
        type="requests",
        code="rate_limit_exceeded",
        headers={
            **headers,
            "Retry-After": str(wait),
            "retry-after-ms": str(max(math.ceil(resets_in * 1000), 1)),
        },
    )


def count(key: str, window_seconds: int) -> int:
    """One more in the window's counter; its new value."""
    try:
        return cache.incr(key)
    except ValueError:  # the window's first request (here, or anywhere)
        if cache.add(key, 1, timeout=window_seconds + 60):
            return 1
        return cache.incr(key)

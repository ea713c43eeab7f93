"""Django's middleware chain settled in one mode: sync, entered on one thread per request.

Django adapts its chain wherever a middleware supports one mode only. WhiteNoise is sync only,
so every middleware inside it ran async, and Django's own (sessions, CSRF, authentication,
messages, clickjacking) then crossed to a thread and back for each hook: about a dozen round
trips per request, each a few hundred microseconds of CPU when hundreds of requests arrive at
once. This middleware, sync only and innermost, settles the whole chain in sync mode: the
request crosses to its thread once for the chain, and Django's view handling crosses back to the
event loop once (then to that same thread for CSRF's view check and for a sync view): about
three round trips (tests/test_middleware_mode.py counts them). `bench/run_starts.py`, side by
side on a noisy machine: CPU per chat send 0.84x in one session and 0.92x in the next (medians),
per engine run start 0.81x, then no change beyond the noise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest


def one_mode_chain(get_response: Callable[[HttpRequest], Any]) -> Callable[[HttpRequest], Any]:
    # Neither sync_capable nor async_capable is set: Django takes it for sync only.
    return get_response

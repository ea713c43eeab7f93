"""Sign-in throttling, on the chat's sign-in page and the admin's alike.

django-axes counts failed sign-ins per account and per address in the database, so every server
process sees the same counts. From the `SLOW_AFTER`th failure on, each failed answer waits
longer (1, 2, 4, at most 8 seconds); at `AXES_FAILURE_LIMIT` the account or the address is locked
until `AXES_COOLOFF_TIME` after its last failure, and the page says until when. Attempts while
locked are refused without checking the password, and do not move that time.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import iscoroutinefunction
from axes.helpers import get_client_username, get_cool_off
from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import Max, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.decorators import sync_and_async_middleware

SLOW_AFTER = 3
MAX_DELAY_SECONDS = 8.0


def client_address(request: HttpRequest) -> str:
    """Who is signing in: the address that connected, or behind `THREADLINE_PROXIES` proxies,
    the one the nearest of them saw (each appends what it saw to X-Forwarded-For)."""
    proxies = settings.PROXIES
    if proxies:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
        hops = [hop.strip() for hop in forwarded if hop.strip()]
        if len(hops) >= proxies:
            return str(hops[-proxies])
    return str(request.META.get("REMOTE_ADDR", ""))


def delay_for(failures: int | None) -> float:
    if not failures or failures < SLOW_AFTER:
        return 0.0
    return min(2.0 ** (failures - SLOW_AFTER), MAX_DELAY_SECONDS)


def locked_until(request: HttpRequest, credentials: dict[str, Any] | None) -> datetime:
    """When the lock ends: the lock time after the last failure counted for this account or
    from this address."""
    username = get_client_username(request, credentials)
    address = getattr(request, "axes_ip_address", None) or client_address(request)
    last = AccessAttempt.objects.filter(Q(username=username) | Q(ip_address=address)).aggregate(
        last=Max("attempt_time")
    )["last"]
    cool_off: timedelta = get_cool_off(request)
    since: datetime = last or timezone.now()
    return since + cool_off


def locked_out(
    request: HttpRequest, response: HttpResponse | None, credentials: dict[str, Any] | None
) -> HttpResponse:
    """The answer to a sign-in while locked (django-axes' AXES_LOCKOUT_CALLABLE)."""
    until = locked_until(request, credentials)
    seconds = max(1, math.ceil((until - timezone.now()).total_seconds()))
    admin = request.path.startswith(reverse("admin:index"))
    context = {
        "until": until,
        "minutes": math.ceil(seconds / 60),
        "sign_in_url": reverse("admin:login") if admin else reverse("login"),
    }
    locked = render(request, "chat/locked.html", context, status=429)
    locked["Retry-After"] = str(seconds)
    return locked


@sync_and_async_middleware
def slow_failed_sign_ins(get_response: Callable[[HttpRequest], Any]) -> Any:
    """Hold the answer to a failed sign-in a little longer each time (see `delay_for`); async,
    so a held answer holds no thread."""
    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> Any:
            response = await get_response(request)
            delay = held_for(request)
            if delay:
                await asyncio.sleep(delay)
            return response

        return async_middleware

    def middleware(request: HttpRequest) -> Any:
        response = get_response(request)
        delay = held_for(request)
        if delay:
            time.sleep(delay)
        return response

    return middleware


def held_for(request: HttpRequest) -> float:
    if getattr(request, "axes_locked_out", False):
        return 0.0  # the lock says when to come back; no need to wait for that
    return delay_for(getattr(request, "axes_failures_since_start", None))

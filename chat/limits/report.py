"""What the admin's usage page shows: each person's use against their limits, and a chart of
tokens per day, drawn here as plain numbers for an SVG the template writes out (no script)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from django.contrib.auth.models import User
from django.core.paginator import Page, Paginator
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from chat.limits.admission import DAY, HOUR, month_start, running
from chat.limits.rules import Limits, limits_for_people
from chat.models import AnswerUsage, Upload
from chat.uploads import human_size

PERIODS = (7, 30, 90)
PEOPLE_PER_PAGE = 50
NEAR = 0.8  # a cell is marked from this share of its limit on


@dataclass(frozen=True)
class Cell:
    """One use against its limit, as the table shows it: "12 / 20"."""

    used: str
    limit: str  # "" when there is none
    state: str  # "" | "near" | "over"


def cell(used: int, limit: int | None, shown: str | None = None) -> Cell:
    text = shown if shown is not None else f"{used:,}"
    if limit is None:
        return Cell(text, "", "")
    state = "over" if used >= limit else "near" if used >= NEAR * limit else ""
    return Cell(text, f"{limit:,}", state)


def bytes_cell(used: int, limit: int | None) -> Cell:
    found = cell(used, limit, human_size(used))
    return Cell(found.used, human_size(limit) if limit is not None else "", found.state)


@dataclass(frozen=True)
class Row:
    user_id: int
    username: str
    messages_hour: Cell
    messages_day: Cell
    running: Cell
    tokens_day: Cell
    tokens_month: Cell
    uploads_day: Cell
    stored: Cell
    tokens_period: int

    @property
    def cells(self) -> list[Cell]:
        """The figures against limits, in the table's order."""
        return [
            self.messages_hour,
            self.messages_day,
            self.running,
            self.tokens_day,
            self.tokens_month,
            self.uploads_day,
            self.stored,
        ]


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    day: date
    tokens: int


@dataclass(frozen=True)
class Tick:
    position: float  # x for day labels, y for token labels
    label: str


@dataclass(frozen=True)
class Chart:
    """Tokens per day in SVG user units (the viewBox is `WIDTH` x `HEIGHT`)."""

    bars: list[Bar]
    days: list[Tick]
    levels: list[Tick]
    total: int
    left: float
    right: float
    base: float
    top: float

    @property
    def level_x(self) -> float:
        return self.left - 6  # token labels end just left of the plot

    @property
    def day_y(self) -> float:
        return self.base + 22  # day labels sit under the bars


WIDTH, HEIGHT = 720.0, 240.0
LEFT, RIGHT, TOP, BOTTOM = 76.0, 24.0, 12.0, 32.0


def nice_ceiling(value: int) -> int:
    """The axis's top: 1, 2 or 5 times a power of ten, at least `value`."""
    if value <= 0:
        return 10
    power: int = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= value)


def chart(per_day: dict[date, int], first: date, days: int) -> Chart:
    dates = [first + timedelta(days=i) for i in range(days)]
    top = nice_ceiling(max(per_day.values(), default=0))
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_width / days
    base = TOP + plot_height
    bars = []
    for index, day in enumerate(dates):
        tokens = per_day.get(day, 0)
        height = plot_height * tokens / top
        bars.append(
            Bar(
                round(LEFT + index * step + step * 0.15, 2),
                round(base - height, 2),
                round(step * 0.7, 2),
                round(height, 2),
                day,
                tokens,
            )
        )
    every = 1 if days <= 10 else 7 if days <= 60 else 14
    labels = [
        Tick(round(LEFT + (index + 0.5) * step, 2), f"{day:%-d %b}")
        for index, day in enumerate(dates)
        if (days - 1 - index) % every == 0
    ]
    levels = [
        Tick(round(base - plot_height * share, 2), f"{round(top * share):,}")
        for share in (0, 0.5, 1)
    ]
    return Chart(bars, labels, levels, sum(per_day.values()), LEFT, WIDTH - RIGHT, base, TOP)


@dataclass(frozen=True)
class Report:
    days: int
    periods: tuple[int, ...]
    person: User | None  # the chart is this person's; None: everyone's
    chart: Chart
    page: Page[Any]  # the pages of people, for the page links
    rows: list[Row]  # the people on this page
    now: datetime


def tokens_per_day(since: datetime, user_id: int | None) -> dict[date, int]:
    rows = AnswerUsage.objects.filter(started_at__gte=since)
    if user_id is not None:
        rows = rows.filter(user_id=user_id)
    by_day = (
        rows.annotate(day=TruncDate("started_at"))
        .values("day")
        .annotate(tokens=Sum("total_tokens"))
        .values_list("day", "tokens")
    )
    return {day: tokens or 0 for day, tokens in by_day}


def people(
    since: datetime, now: datetime, page_number: str | int | None
) -> tuple[Page[Any], list[Row]]:
    """Everyone who asked for an answer in the period (or this month, or has one running), the
    biggest users of tokens first."""
    month = month_start(now)
    now_running = running(now)
    totals = (
        AnswerUsage.objects.filter(Q(started_at__gte=min(since, month, now - DAY)) | now_running)
        .values("user_id")
        .annotate(
            period_tokens=Sum("total_tokens", filter=Q(started_at__gte=since), default=0),
            messages_hour=Count("pk", filter=Q(started_at__gt=now - HOUR)),
            messages_day=Count("pk", filter=Q(started_at__gt=now - DAY)),
            running=Count("pk", filter=now_running),
            tokens_day=Sum("total_tokens", filter=Q(started_at__gt=now - DAY), default=0),
            tokens_month=Sum("total_tokens", filter=Q(started_at__gte=month), default=0),
            uploads_day=Sum("upload_bytes", filter=Q(started_at__gt=now - DAY), default=0),
        )
        .order_by("-period_tokens", "user_id")
    )
    page = Paginator(totals, PEOPLE_PER_PAGE).get_page(page_number)
    ids = [entry["user_id"] for entry in page.object_list]
    names = dict(User.objects.filter(pk__in=ids).values_list("pk", "username"))
    stored = dict(
        Upload.objects.filter(owner_id__in=ids)
        .values("owner_id")
        .annotate(total=Sum("size"))
        .values_list("owner_id", "total")
    )
    limits = limits_for_people(ids)
    rows = [
        row(entry, names.get(entry["user_id"], "?"), stored.get(entry["user_id"]) or 0, limits)
        for entry in page.object_list
    ]
    return page, rows


def row(entry: Mapping[str, Any], username: str, stored: int, limits: dict[int, Limits]) -> Row:
    mine = limits[entry["user_id"]]
    return Row(
        entry["user_id"],
        username,
        cell(entry["messages_hour"], mine.messages_per_hour),
        cell(entry["messages_day"], mine.messages_per_day),
        cell(entry["running"], mine.answers_at_once),
        cell(entry["tokens_day"], mine.tokens_per_day),
        cell(entry["tokens_month"], mine.tokens_per_month),
        bytes_cell(entry["uploads_day"], mine.upload_bytes_per_day),
        bytes_cell(stored, mine.stored_bytes),
        entry["period_tokens"],
    )


def report(
    days: int, person: User | None, page_number: str | int | None, now: datetime | None = None
) -> Report:
    now = now or timezone.now()
    days = days if days in PERIODS else 30
    first = timezone.localdate(now) - timedelta(days=days - 1)
    since = datetime.combine(first, datetime.min.time(), tzinfo=timezone.get_current_timezone())
    per_day = tokens_per_day(since, person.pk if person is not None else None)
    page, rows = people(since, now, page_number)
    return Report(days, PERIODS, person, chart(per_day, first, days), page, rows, now)

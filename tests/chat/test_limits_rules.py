"""The rules behind limits, as plain Python: how a person's limits combine, how far a window must
move for room, and how a reset time reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from chat.limits.admission import month_start, must_age_out, next_month, when
from chat.limits.rules import Limits, combine
from chat.models import UsageLimits

NOW = datetime(2026, 3, 14, 9, 26, 30, tzinfo=UTC)


def test_own_limits_win_then_the_most_generous_group_then_everyone() -> None:
    own = UsageLimits(messages_per_hour=5)
    students = UsageLimits(messages_per_hour=20, tokens_per_day=10_000)
    staff = UsageLimits(messages_per_hour=200, stored_mb=100)
    everyone = UsageLimits(messages_per_hour=10, tokens_per_day=1_000, answers_at_once=2)
    assert combine(own, [students, staff], everyone) == Limits(
        messages_per_hour=5,  # their own, though lower than every group's
        tokens_per_day=10_000,  # the one group that sets it, over everyone's
        stored_mb=100,
        answers_at_once=2,  # no group says: everyone's
    )
    assert combine(None, [students, staff], everyone).messages_per_hour == 200
    assert combine(None, [], everyone).messages_per_hour == 10
    assert combine(None, [], None) == Limits() and not Limits().any


def test_a_zero_limit_is_a_limit_not_an_absence() -> None:
    assert combine(UsageLimits(upload_mb_per_day=0), [], None).upload_bytes_per_day == 0
    assert combine(None, [UsageLimits(messages_per_day=0)], None).messages_per_day == 0


def test_how_many_of_the_oldest_must_leave_the_window() -> None:
    assert must_age_out([100, 50, 30], room=99) == 1  # 80 left
    assert must_age_out([100, 50, 30], room=79) == 2  # 30 left
    assert must_age_out([10, 10], room=-1) == 2


def test_months_turn_over_in_utc() -> None:
    assert month_start(NOW) == datetime(2026, 3, 1, tzinfo=UTC)
    assert next_month(datetime(2026, 12, 31, 23, 0, tzinfo=UTC)) == datetime(2027, 1, 1, tzinfo=UTC)


def test_a_reset_time_reads_as_people_read_clocks() -> None:
    # Rounded up to the minute: at the time shown, the limit has reset.
    assert when(NOW + timedelta(minutes=12), NOW) == "at 09:39 UTC (in 12 minutes)"
    assert when(NOW + timedelta(seconds=5), NOW) == "at 09:27 UTC (in 1 minute)"
    assert when(NOW + timedelta(hours=3, minutes=5), NOW) == "at 12:32 UTC (in 3 hours 5 minutes)"
    assert when(NOW + timedelta(hours=24), NOW) == "at 09:27 UTC tomorrow (in 24 hours)"
    assert when(datetime(2026, 4, 1, tzinfo=UTC), NOW) == "on 1 April at 00:00 UTC"

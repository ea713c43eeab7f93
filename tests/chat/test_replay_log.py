"""The replay log read directly: every entry after a point, in order, however many there are
(reads ask for a few keys first, then more: chat.live.replay.read_after)."""

from __future__ import annotations

import pytest

from chat.live import replay

RUN = "run_replay_log"


@pytest.fixture(autouse=True)
def empty_log() -> None:
    replay.open_log(RUN, 1)


@pytest.mark.parametrize("count", [0, 1, replay.FIRST_READ, replay.FIRST_READ + 1, 1000])
def test_everything_after_a_point_is_read_in_order(count: int) -> None:
    replay.append(RUN, [replay.Entry(seq, "delta", f"d{seq}") for seq in range(count)])
    _, entries = replay.read_after(RUN, -1)
    assert [entry.seq for entry in entries] == list(range(count))
    _, rest = replay.read_after(RUN, count - 3)
    assert [entry.data for entry in rest] == [f"d{seq}" for seq in range(max(0, count - 2), count)]


def test_reading_stops_at_the_first_missing_entry() -> None:
    replay.append(RUN, [replay.Entry(seq, "delta", "") for seq in [*range(300), *range(301, 310)]])
    _, entries = replay.read_after(RUN, -1)
    assert [entry.seq for entry in entries] == list(range(300))

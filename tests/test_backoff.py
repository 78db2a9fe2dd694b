"""Per-calendar fault isolation: backoff, last good copy, recovery."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from connectors.base import EMPTY_STATE, CalendarState, ConnectorError
from daemon.backoff import GuardedReader, backoff_delay
from schedules.events import Interval, Snapshot

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
WINDOW = Interval(T0, T0 + timedelta(days=7))
GOOD = Snapshot(busy=(Interval(T0, T0 + timedelta(hours=1)),))


class FlakyCalendar:
    """A real Reader whose answers are scripted: a snapshot, or an exception to raise."""

    def __init__(self, answers: list[Snapshot | ConnectorError]) -> None:
        self.name = "work"
        self.answers = answers
        self.calls = 0

    def read(self, window: Interval, state: CalendarState = EMPTY_STATE) -> Snapshot:
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        if isinstance(answer, ConnectorError):
            raise answer
        return answer


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def test_backoff_grows_and_is_capped() -> None:
    rng = random.Random(1)
    base, cap = timedelta(minutes=1), timedelta(hours=1)
    delays = [backoff_delay(n, base=base, cap=cap, rng=rng) for n in range(1, 12)]
    assert timedelta(seconds=30) <= delays[0] <= base
    assert all(d <= cap for d in delays)
    assert delays[-1] >= cap / 2  # saturated at the cap (full jitter keeps at least half)


def test_failure_uses_last_good_copy_and_skips_attempts_while_backing_off() -> None:
    inner = FlakyCalendar([GOOD, ConnectorError("work", "HTTP 500")])
    clock = Clock()
    guarded = GuardedReader(inner, clock=clock, seed=3)
    assert guarded.read(WINDOW) == GOOD and guarded.health.ok
    fallback = guarded.read(WINDOW)
    assert fallback.busy == GOOD.busy and fallback.stale == "HTTP 500"
    assert guarded.health.failures == 1 and guarded.health.last_error == "HTTP 500"
    assert guarded.health.next_attempt_at is not None and guarded.health.next_attempt_at > clock.now
    calls = inner.calls
    guarded.read(WINDOW)  # still inside the backoff window: the calendar is not asked again
    assert inner.calls == calls


def test_recovery_resets_health() -> None:
    inner = FlakyCalendar([GOOD, ConnectorError("work", "timeout"), GOOD])
    clock = Clock()
    guarded = GuardedReader(inner, clock=clock, seed=3)
    guarded.read(WINDOW)
    guarded.read(WINDOW)
    assert not guarded.health.ok
    clock.now = T0 + timedelta(hours=2)
    assert guarded.read(WINDOW) == GOOD
    assert guarded.health.ok and guarded.health.ok_at == clock.now


def test_a_stale_snapshot_from_the_back_end_counts_as_a_failure() -> None:
    stale = Snapshot(busy=GOOD.busy, stale="HTTP 503")
    guarded = GuardedReader(FlakyCalendar([stale]), clock=Clock(), seed=1)
    assert guarded.read(WINDOW) == stale
    assert guarded.health.failures == 1


def test_no_good_copy_at_all_raises() -> None:
    guarded = GuardedReader(FlakyCalendar([ConnectorError("work", "refused")]), clock=Clock())
    with pytest.raises(ConnectorError, match="refused"):
        guarded.read(WINDOW)
    assert guarded.health.failures == 1

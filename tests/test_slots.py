"""Free time: working hours minus busy time, quarter-hour starts, and the slot preferences."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from schedules.events import Interval
from schedules.model import WorkingHours
from schedules.slots import (
    Occupancy,
    Slots,
    align_to_quarter,
    floor_to_quarter,
    local_instant,
    working_spans,
)

LONDON = ZoneInfo("Europe/London")
KOLKATA = ZoneInfo("Asia/Kolkata")
WEEKDAYS = WorkingHours(frozenset(range(5)), time(9), time(17, 30))
HALF_HOUR = timedelta(minutes=30)
HOUR = timedelta(hours=1)
MONDAY = date(2026, 11, 23)  # London is on GMT, so local == UTC and expectations read plainly


def at(day: date, hour: int, minute: int = 0, zone: ZoneInfo = LONDON) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=zone).astimezone(UTC)


def span(day: date, start: tuple[int, int], end: tuple[int, int]) -> Interval:
    return Interval(at(day, *start), at(day, *end))


def slots(
    busy: list[Interval] | None = None,
    now: datetime | None = None,
    days: int = 14,
    hours: WorkingHours = WEEKDAYS,
) -> Slots:
    start = now or at(MONDAY, 0)
    return Slots.build(hours, LONDON, busy or [], start, start + timedelta(days=days))


def day_after(day: date, n: int = 1) -> date:
    return day + timedelta(days=n)


# --- working windows -------------------------------------------------------------------------------


def test_working_hours_are_the_local_hours_in_utc() -> None:
    assert working_spans(WEEKDAYS, LONDON, MONDAY) == (
        Interval(datetime(2026, 11, 23, 9, tzinfo=UTC), datetime(2026, 11, 23, 17, 30, tzinfo=UTC)),
    )


def test_working_hours_follow_summer_time() -> None:
    summer = date(2026, 7, 6)
    assert working_spans(WEEKDAYS, LONDON, summer) == (
        Interval(datetime(2026, 7, 6, 8, tzinfo=UTC), datetime(2026, 7, 6, 16, 30, tzinfo=UTC)),
    )


def test_working_hours_in_a_zone_with_a_half_hour_offset() -> None:
    assert working_spans(WEEKDAYS, KOLKATA, MONDAY) == (
        Interval(datetime(2026, 11, 23, 3, 30, tzinfo=UTC), datetime(2026, 11, 23, 12, tzinfo=UTC)),
    )


def test_no_working_hours_on_a_day_off() -> None:
    assert working_spans(WEEKDAYS, LONDON, date(2026, 11, 28)) == ()
    assert working_spans(WEEKDAYS, LONDON, date(2026, 11, 29)) == ()


def test_local_instant_is_plain_on_an_ordinary_day() -> None:
    assert local_instant(MONDAY, time(10), KOLKATA) == datetime(2026, 11, 23, 4, 30, tzinfo=UTC)


def test_floor_to_quarter() -> None:
    assert floor_to_quarter(time(10, 14, 59)) == time(10)
    assert floor_to_quarter(time(10, 15)) == time(10, 15)
    assert floor_to_quarter(time(23, 59, 1, 5)) == time(23, 45)


# --- quarter-hour alignment ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("minute", "expected"),
    [(0, (10, 0)), (1, (10, 15)), (7, (10, 15)), (15, (10, 15)), (44, (10, 45)), (46, (11, 0))],
)
def test_align_to_quarter_rounds_up(minute: int, expected: tuple[int, int]) -> None:
    assert align_to_quarter(at(MONDAY, 10, minute), LONDON) == at(MONDAY, *expected)


def test_align_to_quarter_drops_seconds() -> None:
    moment = at(MONDAY, 10) + timedelta(seconds=1)
    assert align_to_quarter(moment, LONDON) == at(MONDAY, 10, 15)


def test_align_to_quarter_uses_the_local_clock_not_utc() -> None:
    # 03:40 UTC is 09:10 in Kolkata (+05:30); the next local quarter is 09:15 = 03:45 UTC.
    moment = datetime(2026, 11, 23, 3, 40, tzinfo=UTC)
    aligned = align_to_quarter(moment, KOLKATA)
    assert aligned == datetime(2026, 11, 23, 3, 45, tzinfo=UTC)
    assert aligned.astimezone(KOLKATA).time() == time(9, 15)


# --- occupancy -----------------------------------------------------------------------------------------


def test_occupancy_merges_overlapping_and_touching_intervals() -> None:
    taken = Occupancy(
        [
            span(MONDAY, (11, 0), (12, 0)),
            span(MONDAY, (9, 0), (10, 0)),
            span(MONDAY, (9, 30), (10, 30)),
            span(MONDAY, (10, 30), (10, 45)),
            span(MONDAY, (13, 0), (13, 0)),  # empty: ignored
        ]
    )
    assert list(taken) == [span(MONDAY, (9, 0), (10, 45)), span(MONDAY, (11, 0), (12, 0))]


def test_occupancy_add_bridges_neighbours() -> None:
    taken = Occupancy([span(MONDAY, (9, 0), (10, 0)), span(MONDAY, (11, 0), (12, 0))])
    taken.add(span(MONDAY, (10, 0), (11, 0)))
    assert list(taken) == [span(MONDAY, (9, 0), (12, 0))]
    taken.add(span(MONDAY, (14, 0), (15, 0)))
    taken.add(span(MONDAY, (8, 0), (8, 30)))
    assert list(taken) == [
        span(MONDAY, (8, 0), (8, 30)),
        span(MONDAY, (9, 0), (12, 0)),
        span(MONDAY, (14, 0), (15, 0)),
    ]


def test_free_is_half_open_at_both_edges() -> None:
    taken = Occupancy([span(MONDAY, (10, 0), (11, 0))])
    assert taken.is_free(span(MONDAY, (9, 0), (10, 0)))
    assert taken.is_free(span(MONDAY, (11, 0), (12, 0)))
    assert not taken.is_free(span(MONDAY, (9, 45), (10, 15)))
    assert not taken.is_free(span(MONDAY, (10, 45), (11, 15)))
    assert not taken.is_free(span(MONDAY, (10, 15), (10, 30)))
    assert not taken.is_free(span(MONDAY, (9, 0), (12, 0)))


def test_gaps_subtract_busy_time_from_the_window() -> None:
    taken = Occupancy(
        [span(MONDAY, (8, 0), (9, 30)), span(MONDAY, (12, 0), (13, 0)), span(MONDAY, (17, 0), (18, 0))]
    )
    assert taken.gaps(span(MONDAY, (9, 0), (17, 30))) == [
        span(MONDAY, (9, 30), (12, 0)),
        span(MONDAY, (13, 0), (17, 0)),
    ]
    assert Occupancy().gaps(span(MONDAY, (9, 0), (10, 0))) == [span(MONDAY, (9, 0), (10, 0))]
    assert Occupancy([span(MONDAY, (0, 0), (23, 0))]).gaps(span(MONDAY, (9, 0), (10, 0))) == []


# --- finding slots -------------------------------------------------------------------------------------


def test_first_slot_of_an_empty_day_is_the_start_of_working_hours() -> None:
    assert slots().first_on(MONDAY, HOUR) == span(MONDAY, (9, 0), (10, 0))


def test_busy_time_is_skipped_and_the_next_start_is_on_a_quarter_hour() -> None:
    free = slots([span(MONDAY, (9, 0), (9, 50))])
    assert free.first_on(MONDAY, HALF_HOUR) == span(MONDAY, (10, 0), (10, 30))


def test_a_slot_can_start_exactly_when_busy_time_ends() -> None:
    free = slots([span(MONDAY, (9, 0), (10, 0))])
    assert free.first_on(MONDAY, HALF_HOUR) == span(MONDAY, (10, 0), (10, 30))


def test_a_gap_too_short_is_passed_over() -> None:
    free = slots([span(MONDAY, (9, 0), (10, 0)), span(MONDAY, (10, 45), (12, 0))])
    assert free.first_on(MONDAY, HOUR) == span(MONDAY, (12, 0), (13, 0))


def test_a_slot_can_end_exactly_at_the_end_of_working_hours() -> None:
    free = slots([span(MONDAY, (9, 0), (16, 30))])
    assert free.first_on(MONDAY, HOUR) == span(MONDAY, (16, 30), (17, 30))
    assert free.first_on(MONDAY, HOUR + timedelta(minutes=15)) is None


def test_never_before_now_even_mid_day() -> None:
    free = slots(now=at(MONDAY, 10, 7))
    assert free.first_on(MONDAY, HALF_HOUR) == span(MONDAY, (10, 15), (10, 45))


def test_now_after_working_hours_moves_to_the_next_working_day() -> None:
    free = slots(now=at(MONDAY, 17, 10))
    assert free.first_on(MONDAY, HALF_HOUR) is None
    assert free.earliest(MONDAY, HALF_HOUR) == span(day_after(MONDAY), (9, 0), (9, 30))


def test_a_full_day_moves_to_the_next_day() -> None:
    free = slots([span(MONDAY, (8, 0), (18, 0))])
    assert free.earliest(MONDAY, HALF_HOUR) == span(day_after(MONDAY), (9, 0), (9, 30))


def test_a_friday_with_no_room_moves_to_monday() -> None:
    friday = date(2026, 11, 27)
    free = slots([span(friday, (9, 0), (17, 30))], now=at(friday, 8))
    assert free.earliest(friday, HALF_HOUR) == span(day_after(friday, 3), (9, 0), (9, 30))


def test_working_hours_shorter_than_the_duration_give_nothing() -> None:
    short = WorkingHours(frozenset(range(5)), time(9), time(9, 30))
    free = slots(hours=short)
    assert free.earliest(MONDAY, HOUR) is None
    assert free.earliest(MONDAY, HALF_HOUR) == span(MONDAY, (9, 0), (9, 30))


def test_a_horizon_without_working_days_ends_the_search() -> None:
    saturdays = WorkingHours(frozenset({5}), time(9), time(17))
    free = slots(hours=saturdays, days=5)
    assert free.earliest(MONDAY, HALF_HOUR) is None
    assert free.spread(MONDAY, HALF_HOUR) is None


def test_the_planning_window_end_clips_the_last_day() -> None:
    free = slots(now=at(MONDAY, 8), days=0)  # ends at 08:00: nothing
    assert free.earliest(MONDAY, HALF_HOUR) is None
    free = Slots.build(WEEKDAYS, LONDON, [], at(MONDAY, 8), at(MONDAY, 10))
    assert free.earliest(MONDAY, HOUR) == span(MONDAY, (9, 0), (10, 0))
    assert free.earliest(MONDAY, HOUR + HALF_HOUR) is None


def test_fits_checks_hours_busy_time_and_now() -> None:
    free = slots([span(MONDAY, (12, 0), (13, 0))], now=at(MONDAY, 10))
    assert free.fits(span(MONDAY, (10, 0), (11, 0)))
    assert not free.fits(span(MONDAY, (9, 30), (10, 30)))  # before now
    assert not free.fits(span(MONDAY, (12, 30), (13, 30)))  # busy
    assert not free.fits(span(MONDAY, (17, 0), (18, 0)))  # past the end of the day
    assert not free.fits(span(date(2026, 11, 28), (10, 0), (11, 0)))  # Saturday


def test_reserve_takes_the_time_and_marks_the_day() -> None:
    free = slots()
    first = free.earliest(MONDAY, HOUR)
    assert first is not None
    free.reserve(first)
    assert free.used_days == {MONDAY}
    assert free.earliest(MONDAY, HOUR) == span(MONDAY, (10, 0), (11, 0))


# --- preferences ---------------------------------------------------------------------------------------


def test_spread_prefers_a_day_without_an_occurrence() -> None:
    free = slots()
    for _ in range(3):
        slot = free.spread(MONDAY, HALF_HOUR)
        assert slot is not None
        free.reserve(slot)
    assert free.used_days == {MONDAY, day_after(MONDAY), day_after(MONDAY, 2)}


def test_spread_doubles_up_only_when_no_other_day_has_room() -> None:
    tuesday = day_after(MONDAY)
    busy = [Interval(at(tuesday, 0), at(day_after(MONDAY, 30), 0))]
    free = slots(busy)
    first = free.spread(MONDAY, HALF_HOUR)
    assert first == span(MONDAY, (9, 0), (9, 30))
    free.reserve(first)
    assert free.spread(MONDAY, HALF_HOUR) == span(MONDAY, (9, 30), (10, 0))


def test_spread_looks_at_most_a_week_ahead() -> None:
    free = slots(days=30)
    for offset in range(8):  # every working day from Monday 23 to Monday 30 November holds one
        day = day_after(MONDAY, offset)
        if day.weekday() < 5:
            free.reserve(span(day, (9, 0), (9, 30)))
    # Seen from Monday, the free Tuesday 1 December is 8 days away: double up on Monday instead.
    assert free.spread(MONDAY, HALF_HOUR) == span(MONDAY, (9, 30), (10, 0))
    # Seen from Tuesday 24, it is within the week.
    assert free.spread(day_after(MONDAY), HALF_HOUR) == span(date(2026, 12, 1), (9, 0), (9, 30))


def test_stable_slot_is_the_same_weekday_and_time_in_the_due_week() -> None:
    free = slots(days=30)
    thursday = date(2026, 11, 26)
    assert free.stable(MONDAY, HALF_HOUR, thursday.weekday(), time(14, 10)) == span(
        thursday, (14, 0), (14, 30)
    )


def test_stable_slot_is_refused_when_busy_or_outside_hours() -> None:
    thursday = date(2026, 11, 26)
    free = slots([span(thursday, (14, 0), (15, 0))], days=30)
    assert free.stable(MONDAY, HALF_HOUR, thursday.weekday(), time(14)) is None
    assert free.stable(MONDAY, HALF_HOUR, thursday.weekday(), time(17, 15)) is None
    assert free.stable(MONDAY, HALF_HOUR, 5, time(10)) is None  # Saturday is not a working day

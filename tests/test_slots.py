"""Free time: working hours minus busy time, quarter-hour starts, and the slot preferences."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schedules.events import Interval
from schedules.model import Window, WorkingHours
from schedules.slots import (
    Occupancy,
    Slots,
    align_to_quarter,
    clip_windows,
    floor_to_quarter,
    public_holidays,
    whole_days_blocked,
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
# These were `first_on`/`earliest` (the first free minute); `on` now lists every fitting quarter-hour start
# and the planner chooses among them, so each old expectation reads as "the first slot `on` lists".


def first_on(free: Slots, day: date, duration: timedelta) -> Interval | None:
    found = free.on(day, duration)
    return found[0] if found else None


def earliest(free: Slots, day: date, duration: timedelta) -> Interval | None:
    return next((slot for d in free.open_days(day) for slot in free.on(d, duration)), None)


def test_first_slot_of_an_empty_day_is_the_start_of_working_hours() -> None:
    assert first_on(slots(), MONDAY, HOUR) == span(MONDAY, (9, 0), (10, 0))


def test_every_quarter_hour_start_that_fits_is_listed() -> None:
    free = slots([span(MONDAY, (9, 45), (17, 0))])
    assert free.on(MONDAY, HALF_HOUR) == [
        span(MONDAY, (9, 0), (9, 30)),
        span(MONDAY, (9, 15), (9, 45)),
        span(MONDAY, (17, 0), (17, 30)),
    ]


def test_busy_time_is_skipped_and_the_next_start_is_on_a_quarter_hour() -> None:
    free = slots([span(MONDAY, (9, 0), (9, 50))])
    assert first_on(free, MONDAY, HALF_HOUR) == span(MONDAY, (10, 0), (10, 30))


def test_a_slot_can_start_exactly_when_busy_time_ends() -> None:
    free = slots([span(MONDAY, (9, 0), (10, 0))])
    assert first_on(free, MONDAY, HALF_HOUR) == span(MONDAY, (10, 0), (10, 30))


def test_a_gap_too_short_is_passed_over() -> None:
    free = slots([span(MONDAY, (9, 0), (10, 0)), span(MONDAY, (10, 45), (12, 0))])
    assert first_on(free, MONDAY, HOUR) == span(MONDAY, (12, 0), (13, 0))


def test_a_slot_can_end_exactly_at_the_end_of_working_hours() -> None:
    free = slots([span(MONDAY, (9, 0), (16, 30))])
    assert first_on(free, MONDAY, HOUR) == span(MONDAY, (16, 30), (17, 30))
    assert first_on(free, MONDAY, HOUR + timedelta(minutes=15)) is None


def test_never_before_now_even_mid_day() -> None:
    free = slots(now=at(MONDAY, 10, 7))
    assert first_on(free, MONDAY, HALF_HOUR) == span(MONDAY, (10, 15), (10, 45))


def test_now_after_working_hours_moves_to_the_next_working_day() -> None:
    free = slots(now=at(MONDAY, 17, 10))
    assert first_on(free, MONDAY, HALF_HOUR) is None
    assert earliest(free, MONDAY, HALF_HOUR) == span(day_after(MONDAY), (9, 0), (9, 30))


def test_a_full_day_moves_to_the_next_day() -> None:
    free = slots([span(MONDAY, (8, 0), (18, 0))])
    assert earliest(free, MONDAY, HALF_HOUR) == span(day_after(MONDAY), (9, 0), (9, 30))


def test_a_friday_with_no_room_moves_to_monday() -> None:
    friday = date(2026, 11, 27)
    free = slots([span(friday, (9, 0), (17, 30))], now=at(friday, 8))
    assert earliest(free, friday, HALF_HOUR) == span(day_after(friday, 3), (9, 0), (9, 30))


def test_working_hours_shorter_than_the_duration_give_nothing() -> None:
    short = WorkingHours(frozenset(range(5)), time(9), time(9, 30))
    free = slots(hours=short)
    assert earliest(free, MONDAY, HOUR) is None
    assert earliest(free, MONDAY, HALF_HOUR) == span(MONDAY, (9, 0), (9, 30))


def test_a_horizon_without_working_days_ends_the_search() -> None:
    saturdays = WorkingHours(frozenset({5}), time(9), time(17))
    free = slots(hours=saturdays, days=5)
    assert list(free.open_days(MONDAY)) == []
    assert earliest(free, MONDAY, HALF_HOUR) is None


def test_the_planning_window_end_clips_the_last_day() -> None:
    free = slots(now=at(MONDAY, 8), days=0)  # ends at 08:00: nothing
    assert earliest(free, MONDAY, HALF_HOUR) is None
    free = Slots.build(WEEKDAYS, LONDON, [], at(MONDAY, 8), at(MONDAY, 10))
    assert earliest(free, MONDAY, HOUR) == span(MONDAY, (9, 0), (10, 0))
    assert earliest(free, MONDAY, HOUR + HALF_HOUR) is None


def test_fits_checks_hours_busy_time_and_now() -> None:
    free = slots([span(MONDAY, (12, 0), (13, 0))], now=at(MONDAY, 10))
    assert free.fits(span(MONDAY, (10, 0), (11, 0)))
    assert not free.fits(span(MONDAY, (9, 30), (10, 30)))  # before now
    assert not free.fits(span(MONDAY, (12, 30), (13, 30)))  # busy
    assert not free.fits(span(MONDAY, (17, 0), (18, 0)))  # past the end of the day
    assert not free.fits(span(date(2026, 11, 28), (10, 0), (11, 0)))  # Saturday


def test_reserve_takes_the_time_and_counts_the_day() -> None:
    free = slots()
    first = first_on(free, MONDAY, HOUR)
    assert first is not None
    free.reserve(first)
    assert free.per_day == {MONDAY: 1}
    assert first_on(free, MONDAY, HOUR) == span(MONDAY, (10, 0), (11, 0))


# --- buffers -------------------------------------------------------------------------------------------


def buffered(busy: list[Interval], buffer: timedelta = timedelta(minutes=15)) -> Slots:
    start = at(MONDAY, 0)
    return Slots.build(WEEKDAYS, LONDON, busy, start, start + timedelta(days=14), buffer=buffer)


def test_a_buffer_is_kept_after_and_before_other_meetings() -> None:
    free = buffered([span(MONDAY, (9, 0), (10, 0)), span(MONDAY, (11, 15), (17, 30))])
    # 10:00 is taken by the buffer; 10:15-10:45 and 10:30-11:00 keep 15 minutes on both sides.
    assert free.on(MONDAY, HALF_HOUR) == [span(MONDAY, (10, 15), (10, 45)), span(MONDAY, (10, 30), (11, 0))]
    assert not free.fits(span(MONDAY, (10, 0), (10, 30)))
    assert not free.fits(span(MONDAY, (10, 45), (11, 15)))


def test_a_buffer_is_not_needed_at_the_edges_of_working_hours() -> None:
    free = buffered([])
    assert first_on(free, MONDAY, HALF_HOUR) == span(MONDAY, (9, 0), (9, 30))
    assert free.on(MONDAY, HALF_HOUR)[-1] == span(MONDAY, (17, 0), (17, 30))


def test_a_meeting_before_working_hours_still_gets_its_buffer() -> None:
    free = buffered([span(MONDAY, (8, 0), (9, 0))])
    assert first_on(free, MONDAY, HALF_HOUR) == span(MONDAY, (9, 15), (9, 45))


def test_placed_events_keep_the_buffer_between_each_other() -> None:
    free = buffered([])
    free.reserve(span(MONDAY, (9, 0), (9, 30)))
    assert first_on(free, MONDAY, HALF_HOUR) == span(MONDAY, (9, 45), (10, 15))


def test_a_gap_that_only_fits_without_the_buffer_is_passed_over() -> None:
    free = buffered([span(MONDAY, (9, 0), (10, 0)), span(MONDAY, (10, 30), (17, 30))])
    assert free.on(MONDAY, HALF_HOUR) == []


# --- closed days: holidays and all-day out of office ----------------------------------------------------


def test_public_holidays_of_a_country_and_a_subdivision() -> None:
    december = public_holidays("GB", date(2026, 12, 1), date(2027, 1, 31))
    # Boxing Day falls on a Saturday: the 28th is the day off it gives.
    assert december == {date(2026, 12, 25), date(2026, 12, 26), date(2026, 12, 28), date(2027, 1, 1)}
    scotland = public_holidays("GB-SCT", date(2026, 11, 1), date(2027, 1, 31))
    assert {date(2026, 11, 30), date(2027, 1, 4)} <= scotland  # St Andrew's Day, 2 January observed
    assert public_holidays(None, date(2026, 12, 1), date(2026, 12, 31)) == frozenset()


def test_christmas_eve_is_closed_where_the_country_takes_it_off() -> None:
    # Sweden: a de-facto holiday (the package's category). Great Britain works it.
    assert date(2026, 12, 24) in public_holidays("SE", date(2026, 12, 1), date(2026, 12, 31))
    assert date(2026, 12, 24) not in public_holidays("GB", date(2026, 12, 1), date(2026, 12, 31))


def test_a_holiday_is_not_an_open_day() -> None:
    christmas = date(2026, 12, 25)
    free = Slots.build(
        WEEKDAYS, LONDON, [], at(christmas, 0) - timedelta(days=3), at(christmas, 0) + timedelta(days=7),
        holidays=[christmas],
    )  # fmt: skip
    assert not free.is_open(christmas)
    assert free.on(christmas, HALF_HOUR) == []
    assert not free.fits(span(christmas, (10, 0), (10, 30)))
    assert christmas not in list(free.open_days(christmas - timedelta(days=3)))


def test_an_all_day_busy_event_closes_the_day_even_across_zones() -> None:
    tuesday = day_after(MONDAY)
    # An all-day out-of-office read in New York's zone: 05:00 UTC Tuesday to 05:00 UTC Wednesday.
    ny = ZoneInfo("America/New_York")
    ooo = Interval(
        datetime.combine(tuesday, time(0), tzinfo=ny).astimezone(UTC),
        datetime.combine(day_after(tuesday), time(0), tzinfo=ny).astimezone(UTC),
    )
    assert whole_days_blocked([ooo], WEEKDAYS, LONDON) == {tuesday}
    free = slots([ooo])
    assert not free.is_open(tuesday)
    assert free.on(tuesday, HALF_HOUR) == []
    assert free.is_open(day_after(tuesday))


def test_a_week_out_of_office_closes_every_working_day_in_it() -> None:
    week = Interval(at(MONDAY, 0), at(day_after(MONDAY, 7), 0))
    assert whole_days_blocked([week], WEEKDAYS, LONDON) == {day_after(MONDAY, n) for n in range(5)}


def test_long_meetings_and_overnight_stretches_close_no_day() -> None:
    workshop = span(MONDAY, (9, 0), (17, 30))  # busy all day, but a meeting: the day stays a working day
    weekend = Interval(at(date(2026, 11, 27), 18), at(day_after(MONDAY, 7), 8))  # Fri 18:00 to Mon 08:00
    assert whole_days_blocked([workshop, weekend], WEEKDAYS, LONDON) == frozenset()


# --- preferred windows ----------------------------------------------------------------------------------


def test_windows_are_clipped_to_working_hours_or_give_the_whole_day() -> None:
    early = WorkingHours(frozenset(range(5)), time(7), time(13))
    windows = (Window(time(10), time(12)), Window(time(14), time(16, 30)))
    assert clip_windows(windows, early) == (Window(time(10), time(12)),)
    night = WorkingHours(frozenset(range(5)), time(18), time(23))
    assert clip_windows(windows, night) == (Window(time(18), time(23)),)


def test_inside_a_window_is_wholly_inside_it() -> None:
    free = slots()
    windows = (Window(time(10), time(12)),)
    assert free.inside(span(MONDAY, (10, 0), (10, 30)), windows)
    assert free.inside(span(MONDAY, (11, 30), (12, 0)), windows)
    assert not free.inside(span(MONDAY, (11, 45), (12, 15)), windows)
    assert not free.inside(span(MONDAY, (9, 45), (10, 15)), windows)


def test_a_stretch_of_centuries_is_read_only_inside_the_planning_window() -> None:
    forever = Interval(datetime(1900, 1, 1, tzinfo=UTC), datetime(2900, 1, 1, tzinfo=UTC))
    free = slots([forever], days=7)
    # Monday to Friday, and the next Monday (the window ends at its midnight).
    assert free.closed == {day_after(MONDAY, n) for n in (0, 1, 2, 3, 4, 7)}
    assert whole_days_blocked([forever], WEEKDAYS, LONDON, MONDAY, day_after(MONDAY)) == {
        MONDAY,
        day_after(MONDAY),
    }


# --- the slot walk, against its definition ------------------------------------------------------------

ZONES = [
    LONDON,
    KOLKATA,
    ZoneInfo("America/New_York"),
    ZoneInfo("Asia/Kathmandu"),
    ZoneInfo("Australia/Lord_Howe"),
]
ALL_DAY = WorkingHours(frozenset(range(7)), time(0), time(23, 59))
# Days on which these zones change their clocks (and ordinary days around them).
CLOCK_CHANGE_DAYS = [
    date(2026, 3, 8),
    date(2026, 3, 29),
    date(2026, 4, 5),
    date(2026, 10, 4),
    date(2026, 10, 25),
]


def _by_definition(free: Slots, day: date, duration: timedelta) -> list[Interval]:
    """Every minute of the day's spans, kept when it starts on a local quarter hour and the slot fits."""
    out = []
    for piece in free.spans(day):
        moment = piece.start.replace(second=0, microsecond=0)
        while moment + duration <= piece.end:
            local = moment.astimezone(free.zone)
            slot = Interval(moment, moment + duration)
            if moment >= piece.start and local.minute % 15 == 0 and free.clear(slot):
                out.append(slot)
            moment += timedelta(minutes=1)
    return out


@settings(max_examples=60, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    day=st.sampled_from(CLOCK_CHANGE_DAYS).flatmap(lambda d: st.sampled_from([d - timedelta(days=1), d])),
    busy=st.lists(st.tuples(st.integers(0, 24 * 60 - 1), st.integers(5, 180)), max_size=8),
    buffer=st.sampled_from([0, 10, 15]),
    minutes=st.sampled_from([30, 45, 60]),
)
def test_the_slots_of_a_day_are_every_local_quarter_hour_that_fits(
    zone: ZoneInfo, day: date, busy: list[tuple[int, int]], buffer: int, minutes: int
) -> None:
    midnight = datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
    taken = [Interval(midnight + timedelta(minutes=s), midnight + timedelta(minutes=s + n)) for s, n in busy]
    free = Slots.build(
        ALL_DAY,
        zone,
        taken,
        midnight - timedelta(days=1),
        midnight + timedelta(days=2),
        buffer=timedelta(minutes=buffer),
    )
    duration = timedelta(minutes=minutes)
    expected = _by_definition(free, day, duration)
    assert free.on(day, duration) == expected
    assert free.has_room(day, duration) == bool(expected)

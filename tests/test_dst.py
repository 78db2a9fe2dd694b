"""Daylight-saving changes in London and New York: working hours and rhythms stay on the wall clock."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from schedules.cadence import parse_cadence
from schedules.events import Interaction, Interval
from schedules.model import Connection, ConnectionKind, Owner, Placement, Plan, Review, Stage, WorkingHours
from schedules.occurrence import Occurrence
from schedules.planner import plan_placement
from schedules.slots import align_to_quarter, working_spans

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
EVERY_DAY = frozenset(range(7))
OFFICE = WorkingHours(EVERY_DAY, time(9), time(17, 30))

# (zone, the Sunday the clocks change, real hours in that day's 09:00-17:30 window)
TRANSITIONS = [
    pytest.param(LONDON, date(2026, 10, 25), id="london-autumn-2026"),
    pytest.param(LONDON, date(2027, 3, 28), id="london-spring-2027"),
    pytest.param(NEW_YORK, date(2026, 11, 1), id="new-york-autumn-2026"),
    pytest.param(NEW_YORK, date(2027, 3, 14), id="new-york-spring-2027"),
]
# (zone, the Sunday, real length of the 00:00-04:00 window: an hour more in autumn, an hour less in spring)
NIGHT_SHIFTS = [
    pytest.param(LONDON, date(2026, 10, 25), 5, id="london-autumn-2026"),
    pytest.param(LONDON, date(2027, 3, 28), 3, id="london-spring-2027"),
    pytest.param(NEW_YORK, date(2026, 11, 1), 5, id="new-york-autumn-2026"),
    pytest.param(NEW_YORK, date(2027, 3, 14), 3, id="new-york-spring-2027"),
]


def local(moment: datetime, zone: ZoneInfo) -> datetime:
    return moment.astimezone(zone)


def assert_inside_hours(occ: Occurrence, hours: WorkingHours, zone: ZoneInfo) -> None:
    """Every instant of the occurrence shows a wall-clock time within working hours on one day.

    Checking the displayed end time would be wrong across a change: [00:30Z, 01:00Z) on 25 October 2026
    in London is 01:30-02:00 BST, but its (exclusive) end instant shows 01:00 GMT.
    """
    day = local(occ.start, zone).date()
    moment = occ.start
    while moment < occ.end:
        assert local(moment, zone).date() == day, occ
        assert hours.start <= local(moment, zone).time() < hours.end, occ
        moment += timedelta(minutes=15)
    last = local(occ.end - timedelta(microseconds=1), zone)
    assert last.date() == day and hours.start <= last.time() < hours.end, occ


def connection(name: str, every: str = "week", minutes: int = 30) -> Connection:
    return Connection(
        name=name,
        kind=ConnectionKind.PERSON,
        stage=Stage.NURTURE,
        every=parse_cadence(every),
        duration=timedelta(minutes=minutes),
        next_action="Ask how the launch went",
    )


def plan(zone: ZoneInfo, hours: WorkingHours, *connections: Connection) -> Plan:
    return Plan(
        owner=Owner("Ada Lovelace"),
        timezone=zone.key,
        mindset="Relationships first.",
        working_hours=hours,
        review=Review(parse_cadence("quarter"), timedelta(minutes=30), kickoff=False),
        connections=connections,
    )


def packed(p: Plan) -> Plan:
    """No buffer between events: these tests fill every real hour of a night back to back (issue 8 keeps
    15 minutes between events by default)."""
    return dataclasses.replace(p, placement=Placement(buffer=timedelta(0)))


def run(p: Plan, now: datetime, horizon: timedelta, interactions: list[Interaction]) -> list[Occurrence]:
    return list(
        plan_placement(
            p, interactions=interactions, reviews_done=[now], busy=[], now=now, horizon=horizon
        ).occurrences
    )


@pytest.mark.parametrize(("zone", "sunday"), TRANSITIONS)
def test_a_working_day_keeps_its_wall_clock_hours_on_the_day_of_the_change(
    zone: ZoneInfo, sunday: date
) -> None:
    (window,) = working_spans(OFFICE, zone, sunday)
    assert local(window.start, zone).time() == time(9)
    assert local(window.end, zone).time() == time(17, 30)
    assert window.duration == timedelta(hours=8, minutes=30)


@pytest.mark.parametrize(("zone", "sunday", "hours"), NIGHT_SHIFTS)
def test_a_window_across_the_change_has_the_real_length(zone: ZoneInfo, sunday: date, hours: int) -> None:
    night = WorkingHours(EVERY_DAY, time(0), time(4))
    (window,) = working_spans(night, zone, sunday)
    assert window.duration == timedelta(hours=hours)
    assert local(window.start, zone).time() == time(0)
    assert local(window.end, zone).time() == time(4)


@pytest.mark.parametrize(("zone", "sunday", "hours"), NIGHT_SHIFTS)
def test_one_hour_touchpoints_fill_the_real_hours_of_a_changing_night(
    zone: ZoneInfo, sunday: date, hours: int
) -> None:
    night = WorkingHours(frozenset({6}), time(0), time(4))  # Sundays only
    five = [connection(f"Person {n}", minutes=60) for n in range(5)]
    now = datetime.combine(sunday - timedelta(days=1), time(12), tzinfo=zone).astimezone(UTC)
    got = run(packed(plan(zone, night, *five)), now, timedelta(days=2), [])
    assert len(got) == hours
    for occ in got:
        assert local(occ.start, zone).date() == sunday
        assert local(occ.start, zone).minute == 0
        assert_inside_hours(occ, night, zone)
    assert all(a.end <= b.start for a, b in itertools.pairwise(got))


def test_working_hours_starting_inside_the_spring_gap_start_when_the_clock_jumps() -> None:
    # Every instant from the jump on shows 02:00 or later, which is within hours that start at 01:30.
    late_start = WorkingHours(EVERY_DAY, time(1, 30), time(5))
    (window,) = working_spans(late_start, LONDON, date(2027, 3, 28))
    assert window.start == datetime(2027, 3, 28, 1, 0, tzinfo=UTC)
    assert local(window.start, LONDON).time() == time(2)
    assert window.duration == timedelta(hours=3)


def test_working_hours_ending_inside_the_spring_gap_end_when_the_clock_jumps() -> None:
    early_end = WorkingHours(EVERY_DAY, time(0), time(2, 30))  # 02:30 does not exist in New York
    (window,) = working_spans(early_end, NEW_YORK, date(2027, 3, 14))
    assert window.end == datetime(2027, 3, 14, 7, 0, tzinfo=UTC)  # 02:00 EST, the jump to 03:00 EDT
    assert local(window.end - timedelta(seconds=1), NEW_YORK).time() < time(2, 30)
    assert window.duration == timedelta(hours=2)


def test_the_repeated_hour_is_left_out_when_it_falls_before_working_hours() -> None:
    # London, 25 October 2026: 01:00-02:00 BST, then 01:00-02:00 GMT again. Hours from 01:30 hold the
    # second half of each pass, and the GMT 01:00-01:30 in between is outside them.
    night = WorkingHours(EVERY_DAY, time(1, 30), time(3))
    assert working_spans(night, LONDON, date(2026, 10, 25)) == (
        Interval(datetime(2026, 10, 25, 0, 30, tzinfo=UTC), datetime(2026, 10, 25, 1, 0, tzinfo=UTC)),
        Interval(datetime(2026, 10, 25, 1, 30, tzinfo=UTC), datetime(2026, 10, 25, 3, 0, tzinfo=UTC)),
    )


def test_slots_in_the_repeated_hour_stay_inside_working_hours() -> None:
    night = WorkingHours(frozenset({6}), time(1, 30), time(3))
    people = [connection(f"Person {n}", minutes=30) for n in range(5)]
    now = datetime(2026, 10, 24, 12, tzinfo=UTC)
    got = run(packed(plan(LONDON, night, *people)), now, timedelta(days=2), [])
    assert [(o.start.strftime("%H:%M"), local(o.start, LONDON).strftime("%H:%M %Z")) for o in got] == [
        ("00:30", "01:30 BST"),
        ("01:30", "01:30 GMT"),
        ("02:00", "02:00 GMT"),
        ("02:30", "02:30 GMT"),
    ]
    for occ in got:
        assert_inside_hours(occ, night, LONDON)


def test_quarter_alignment_across_the_gap() -> None:
    just_before = datetime(2027, 3, 28, 0, 50, tzinfo=UTC)  # 00:50 GMT, ten minutes before the jump
    aligned = align_to_quarter(just_before, LONDON)
    assert aligned == datetime(2027, 3, 28, 1, 0, tzinfo=UTC)
    assert local(aligned, LONDON).time() == time(2, 0)


WEEKLY_ACROSS = [
    pytest.param(LONDON, date(2026, 10, 12), date(2026, 10, 5), id="london-autumn-2026"),
    pytest.param(LONDON, date(2027, 3, 15), date(2027, 3, 8), id="london-spring-2027"),
    pytest.param(NEW_YORK, date(2026, 10, 19), date(2026, 10, 12), id="new-york-autumn-2026"),
    pytest.param(NEW_YORK, date(2027, 3, 1), date(2027, 2, 22), id="new-york-spring-2027"),
]


@pytest.mark.parametrize(("zone", "monday", "last_met"), WEEKLY_ACROSS)
def test_a_weekly_touchpoint_stays_at_ten_across_the_change(
    zone: ZoneInfo, monday: date, last_met: date
) -> None:
    weekdays = WorkingHours(frozenset(range(5)), time(9), time(17, 30))
    grace = connection("Grace Hopper")
    met = Interaction("Grace Hopper", datetime.combine(last_met, time(10), tzinfo=zone))
    now = datetime.combine(monday, time(8), tzinfo=zone).astimezone(UTC)
    got = run(plan(zone, weekdays, grace), now, timedelta(weeks=5), [met])
    assert [local(o.start, zone).date() for o in got] == [monday + timedelta(weeks=k) for k in range(5)]
    assert {local(o.start, zone).time() for o in got} == {time(10)}
    assert {local(o.end, zone).time() for o in got} == {time(10, 30)}
    # The UTC instant moves by the hour the clocks moved: the wall clock is what stays.
    assert len({o.start.astimezone(UTC).time() for o in got}) == 2


def test_a_weekly_touchpoint_planned_in_late_2026_keeps_ten_oclock_into_british_summer_time() -> None:
    weekdays = WorkingHours(frozenset(range(5)), time(9), time(17, 30))
    met = Interaction("Grace Hopper", datetime(2026, 11, 16, 10, tzinfo=LONDON))
    now = datetime(2026, 11, 23, 8, tzinfo=UTC)
    got = run(plan(LONDON, weekdays, connection("Grace Hopper")), now, timedelta(weeks=22), [met])
    got = [o for o in got if o.connection == "Grace Hopper"]  # not the quarterly review in February
    assert len(got) == 22
    assert {(local(o.start, LONDON).weekday(), local(o.start, LONDON).time()) for o in got} == {(0, time(10))}
    assert {o.start.astimezone(UTC).hour for o in got} == {9, 10}  # 10:00 GMT, then 10:00 BST = 09:00Z

"""Properties of placement over generated plans, calendars and clocks.

Zones are chosen for their traps: DST on both hemispheres, a 30-minute DST shift (Lord Howe), and
offsets that are not whole hours (Kolkata, Kathmandu, Chatham).
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schedules.cadence import parse_cadence
from schedules.events import Interaction, Interval
from schedules.model import (
    Connection,
    ConnectionKind,
    Owner,
    Placement,
    Plan,
    Review,
    Stage,
    Window,
    WorkingHours,
)
from schedules.occurrence import Occurrence, OccurrenceKind
from schedules.planner import plan_placement
from schedules.slots import working_spans

ZONES = [
    "Europe/London",
    "America/New_York",
    "Australia/Sydney",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Pacific/Chatham",
    "UTC",
]
CADENCES = ["week", "2 weeks", "3 weeks", "month", "2 months", "quarter"]
NAMES = ["Grace Hopper", "Women in Tech London", "Alan Turing", "Katherine Johnson", "Barbara Liskov"]
KEY_RE = re.compile(r"^(touchpoint:[^:]+:\d{4}-(W\d{2}|\d{2})|review:(kickoff|\d{4}-\d{2}))$")
PROPERTY = settings(max_examples=150, deadline=None)


@dataclass(frozen=True)
class Case:
    plan: Plan
    interactions: tuple[Interaction, ...]
    reviews_done: tuple[datetime, ...]
    busy: tuple[Interval, ...]
    now: datetime
    horizon: timedelta

    def run(self, previous: dict[str, Occurrence] | None = None) -> list[Occurrence]:
        return list(
            plan_placement(
                self.plan,
                interactions=self.interactions,
                reviews_done=self.reviews_done,
                busy=self.busy,
                now=self.now,
                horizon=self.horizon,
                previous=previous or {},
            ).occurrences
        )


def minutes(low: int, high: int, step: int = 1) -> st.SearchStrategy[timedelta]:
    return st.integers(low // step, high // step).map(lambda n: timedelta(minutes=n * step))


@st.composite
def working_hours(draw: st.DrawFn) -> WorkingHours:
    days = draw(st.frozensets(st.integers(0, 6), min_size=1))
    start = draw(st.integers(0, 23 * 60 - 5))
    end = draw(st.integers(start + 5, 24 * 60 - 1))
    return WorkingHours(days, time(start // 60, start % 60), time(end // 60, end % 60))


@st.composite
def connections(draw: st.DrawFn, *, longest: int = 120) -> tuple[Connection, ...]:
    count = draw(st.integers(1, 5))
    return tuple(
        Connection(
            name=NAMES[i],
            kind=ConnectionKind.PERSON,
            stage=draw(st.sampled_from(list(Stage))),
            every=parse_cadence(draw(st.sampled_from(CADENCES))),
            duration=draw(minutes(15, longest, 5)),
            next_action="Share the article",
            target=i == 0,
        )
        for i in range(count)
    )


def plan_of(
    zone: str,
    hours: WorkingHours,
    people: tuple[Connection, ...],
    review: Review,
    mindset: str = "Give first.",
) -> Plan:
    return Plan(Owner("Ada Lovelace"), zone, mindset, hours, review, people)


instants = st.datetimes(
    min_value=datetime(2026, 9, 1), max_value=datetime(2027, 6, 30), timezones=st.just(UTC)
)
reviews = st.builds(
    Review,
    every=st.sampled_from(["month", "quarter"]).map(parse_cadence),
    duration=minutes(15, 90, 15),
    kickoff=st.booleans(),
)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    zone = draw(st.sampled_from(ZONES))
    people = draw(connections())
    now = draw(instants)
    horizon = draw(minutes(0, 120 * 24 * 60))
    busy = tuple(
        Interval(now + offset, now + offset + length)
        for offset, length in draw(
            st.lists(st.tuples(minutes(-24 * 60, 120 * 24 * 60), minutes(1, 12 * 60)), max_size=40)
        )
    )
    interactions = tuple(
        Interaction(
            draw(st.sampled_from([c.name, c.name.upper()])), now - draw(minutes(-3 * 24 * 60, 200 * 24 * 60))
        )
        for c in people
        if draw(st.booleans())
    )
    done = tuple(now - draw(minutes(0, 200 * 24 * 60)) for _ in range(draw(st.integers(0, 2))))
    plan = plan_of(zone, draw(working_hours()), people, draw(reviews))
    return Case(plan, interactions, done, busy, now, horizon)


def duration_of(plan: Plan, occ: Occurrence) -> timedelta:
    if occ.connection is None:
        return timedelta(minutes=30) if occ.key == "review:kickoff" else plan.review.duration
    person = plan.connection(occ.connection)
    assert person is not None
    return person.duration


def check_inside_working_hours(plan: Plan, occ: Occurrence) -> None:
    """Every instant of the occurrence shows a wall-clock time within working hours, on a working day.

    Instants are sampled every quarter hour plus the last one: offsets change on quarter hours. The
    displayed end is not checked, since across a change the exclusive end instant can show another hour.
    """
    zone = ZoneInfo(plan.timezone)
    hours = plan.working_hours
    day = occ.start.astimezone(zone).date()
    assert day.weekday() in hours.days, occ
    samples = [
        occ.start + k * timedelta(minutes=15)
        for k in range(int((occ.end - occ.start) / timedelta(minutes=15)))
    ]
    for moment in [*samples, occ.end - timedelta(microseconds=1)]:
        local = moment.astimezone(zone)
        assert local.date() == day, occ
        assert hours.start <= local.time() < hours.end, occ


@given(cases())
@PROPERTY
def test_never_outside_working_hours_nor_over_busy_time_nor_each_other(case: Case) -> None:
    got = case.run()
    zone = ZoneInfo(case.plan.timezone)
    assert [o.start for o in got] == sorted(o.start for o in got)
    for occ in got:
        check_inside_working_hours(case.plan, occ)
        assert case.now <= occ.start and occ.end <= case.now + case.horizon
        local = occ.start.astimezone(zone)
        assert local.minute % 15 == 0 and local.second == 0 and local.microsecond == 0
        assert occ.end - occ.start == duration_of(case.plan, occ)
        slot = Interval(occ.start, occ.end)
        assert not any(slot.overlaps(b) for b in case.busy), occ
    for before, after in itertools.pairwise(got):
        assert before.end <= after.start, (before, after)


@given(cases(), st.randoms(use_true_random=False))
@PROPERTY
def test_deterministic_ids_and_placement(case: Case, rng: random.Random) -> None:
    got = case.run()
    assert got == case.run()
    shuffled = Case(
        case.plan,
        tuple(rng.sample(case.interactions, len(case.interactions))),
        tuple(rng.sample(case.reviews_done, len(case.reviews_done))),
        tuple(rng.sample(case.busy, len(case.busy))),
        case.now,
        case.horizon,
    )
    assert shuffled.run() == got
    keys = [o.key for o in got]
    assert len(set(keys)) == len(keys)
    assert len({o.uid for o in got}) == len(keys)
    for occ in got:
        assert KEY_RE.match(occ.key), occ.key
        if occ.kind is OccurrenceKind.TOUCHPOINT:
            person = case.plan.connection(occ.connection or "")
            assert person is not None
            assert occ.key == f"touchpoint:{person.name.casefold()}:{person.every.period_label(occ.due)}"
            assert occ.title.endswith(person.name)
    # Fed its own output as what is already placed, the planner changes nothing.
    assert case.run({o.key: o for o in got}) == got


@st.composite
def year_cases(draw: st.DrawFn) -> Case:
    """Roomy office hours and no busy time, so placement never has to stray from the due week."""
    zone = draw(st.sampled_from(ZONES))
    people = draw(connections(longest=60))
    now = draw(instants)
    interactions = []
    for person in people:
        if draw(st.booleans()):
            # Within the last cadence, so the first touchpoint is not overdue.
            days = draw(st.integers(0, int(person.every.approx_days()) - 4))
            interactions.append(
                Interaction(person.name, now - timedelta(days=days, minutes=draw(st.integers(0, 600))))
            )
    office = WorkingHours(frozenset(range(5)), time(9), time(17, 30))
    plan = plan_of(zone, office, people, draw(reviews))
    return Case(plan, tuple(interactions), (), (), now, timedelta(days=365))


@pytest.mark.slow
@given(year_cases())
@PROPERTY
def test_cadence_respected_over_a_year(case: Case) -> None:
    got = case.run()
    zone = ZoneInfo(case.plan.timezone)
    today = case.now.astimezone(zone).date()
    last_day = (case.now + case.horizon).astimezone(zone).date()
    met = {i.connection.casefold(): i.at.astimezone(zone).date() for i in case.interactions}
    for person in case.plan.connections:
        mine = sorted((o for o in got if o.connection == person.name), key=lambda o: o.due)
        since, step = (met[person.name.casefold()], 1) if person.name.casefold() in met else (today, 0)
        expected = [person.every.add(since, k) for k in range(step, step + 60)]
        expected = [d for d in expected if d <= last_day]
        dues = [o.due for o in mine]
        # Consecutive touchpoints are exactly one cadence apart, counted from the last real meeting;
        # only the last week of the horizon may be left for a later run to place.
        assert dues == expected[: len(dues)]
        assert len(dues) >= len([d for d in expected if d <= last_day - timedelta(days=7)])
        for occ in mine:
            placed_on = occ.start.astimezone(zone).date()
            assert occ.due <= placed_on <= occ.due + timedelta(days=7), occ
            assert not occ.overdue
        starts = [o.start for o in mine]
        assert starts == sorted(starts)


@given(cases(), st.data())
@PROPERTY
def test_new_busy_time_elsewhere_moves_nothing(case: Case, data: st.DataObject) -> None:
    got = case.run()
    offset = data.draw(minutes(0, max(0, int(case.horizon.total_seconds() // 60))), label="offset")
    length = data.draw(minutes(1, 8 * 60), label="length")
    extra = Interval(case.now + offset, case.now + offset + length)
    # Issue 8: a placed event keeps a buffer from other meetings, so "elsewhere" means outside it too.
    buffer = case.plan.placement.buffer
    if any(extra.overlaps(Interval(o.start - buffer, o.end + buffer)) for o in got):
        # In the past, and out of reach of any buffer: overlaps nothing planned.
        extra = Interval(case.now - buffer - length, case.now - buffer)
    busier = Case(
        case.plan, case.interactions, case.reviews_done, (*case.busy, extra), case.now, case.horizon
    )
    assert busier.run({o.key: o for o in got}) == got


# --- placement a busy person would choose (issue 8) ----------------------------------------------------
# Checked against a plain reference (every UTC quarter hour of the day's working spans; all zones here
# have offsets in whole quarter hours, so UTC quarters are local quarters), not against `Slots`.

HOLIDAY_CODES = [None, "GB", "GB-SCT", "US", "US-CA", "DE-BY", "SE", "NZ", "IN"]


@st.composite
def windows_inside(draw: st.DrawFn, hours: WorkingHours) -> tuple[Window, ...]:
    first, last = hours.start.hour * 4 + hours.start.minute // 15, hours.end.hour * 4 + hours.end.minute // 15
    out = []
    for _ in range(draw(st.integers(1, 2))):
        start = draw(st.integers(first, max(first, last - 1)))
        end = draw(st.integers(min(start + 1, last), last))
        if start < end:
            out.append(Window(time(start // 4, start % 4 * 15), time(end // 4, end % 4 * 15)))
    return tuple(out) or (Window(hours.start, hours.end),)


@st.composite
def busy_cases(draw: st.DrawFn) -> Case:
    """A daytime office (hours within 06:00-20:00, so no buffer reaches into another day), meetings, days
    out of office, a holiday country, and placement settings."""
    zone_name = draw(st.sampled_from(ZONES))
    zone = ZoneInfo(zone_name)
    start = draw(st.integers(6 * 4, 12 * 4))
    end = draw(st.integers(start + 4, 20 * 4))
    days = draw(st.sampled_from([frozenset(range(5)), frozenset(range(6)), frozenset({0, 1, 3, 4})]))
    hours = WorkingHours(days, time(start // 4, start % 4 * 15), time(end // 4, end % 4 * 15))
    people = list(draw(connections(longest=90)))
    for index, person in enumerate(people):
        if draw(st.booleans()):
            people[index] = dataclasses.replace(person, prefer=draw(windows_inside(hours)))
    now = draw(instants)
    horizon = timedelta(days=draw(st.integers(7, 70)))
    meetings = [
        Interval(now + offset, now + offset + length)
        for offset, length in draw(
            st.lists(st.tuples(minutes(-24 * 60, 70 * 24 * 60, 5), minutes(15, 4 * 60, 5)), max_size=80)
        )
    ]
    away = []
    for _ in range(draw(st.integers(0, 3))):
        first = now.astimezone(zone).date() + timedelta(days=draw(st.integers(0, 60)))
        length = draw(st.integers(1, 7))
        # All-day events read in the calendar's own zone, which need not be the plan's: up to half a day off.
        shift = timedelta(hours=draw(st.integers(-12, 12)))
        away.append(
            Interval(
                datetime.combine(first, time(0), tzinfo=zone).astimezone(UTC) + shift,
                datetime.combine(first + timedelta(days=length), time(0), tzinfo=zone).astimezone(UTC)
                + shift,
            )
        )
    placement = Placement(
        prefer=draw(windows_inside(hours)) if draw(st.booleans()) else Placement().prefer,
        buffer=draw(minutes(0, 30, 5)),
        max_per_day=draw(st.integers(1, 2)),
        holidays=draw(st.sampled_from(HOLIDAY_CODES)),
    )
    interactions = tuple(
        Interaction(c.name, now - draw(minutes(0, 120 * 24 * 60))) for c in people if draw(st.booleans())
    )
    plan = dataclasses.replace(plan_of(zone_name, hours, tuple(people), draw(reviews)), placement=placement)
    done = tuple(now - draw(minutes(0, 100 * 24 * 60)) for _ in range(draw(st.integers(0, 1))))
    return Case(plan, interactions, done, tuple(meetings + away), now, horizon)


class Reference:
    """What a planning run could have done, worked out plainly from the case and the result."""

    def __init__(self, case: Case, got: list[Occurrence]) -> None:
        self.case, self.got = case, got
        self.zone = ZoneInfo(case.plan.timezone)
        self.today = case.now.astimezone(self.zone).date()
        self.last = (case.now + case.horizon).astimezone(self.zone).date()
        code = case.plan.placement.holidays
        self.holidays: set[date] = set()
        if code is not None:
            country, _, subdivision = code.partition("-")
            years = range(self.today.year, self.last.year + 1)
            for category in ("public", "half_day", "de_facto"):
                try:
                    found = holidays.country_holidays(
                        country, subdiv=subdivision or None, years=years, categories=(category,)
                    )
                except ValueError:  # the country does not have this category
                    continue
                self.holidays |= set(found)
        self.away = [b for b in case.busy if b.end - b.start >= timedelta(hours=23)]
        self.per_day = Counter(self.day_of(o) for o in got)

    def day_of(self, occ: Occurrence) -> date:
        return occ.start.astimezone(self.zone).date()

    def spans(self, day: date) -> list[Interval]:
        end = self.case.now + self.case.horizon
        return [
            Interval(max(s.start, self.case.now), min(s.end, end))
            for s in working_spans(self.case.plan.working_hours, self.zone, day)
            if max(s.start, self.case.now) < min(s.end, end)
        ]

    def is_open(self, day: date) -> bool:
        """A working day, not a holiday, not reached by a whole day away, with hours left in the window."""
        spans = working_spans(self.case.plan.working_hours, self.zone, day)
        return (
            day not in self.holidays
            and not any(a.overlaps(s) for a in self.away for s in spans)
            and bool(self.spans(day))
        )

    def open_days(self, first: date) -> list[date]:
        days, day = [], max(first, self.today)
        while day <= self.last:
            if self.is_open(day):
                days.append(day)
            day += timedelta(days=1)
        return days

    def free_slots(self, day: date, duration: timedelta, without: Occurrence) -> list[Interval]:
        """Quarter-hour slots on `day` clear of busy time and of every other placed event, with buffer."""
        buffer = self.case.plan.placement.buffer
        taken = [*self.case.busy, *(Interval(o.start, o.end) for o in self.got if o is not without)]
        out = []
        for span in self.spans(day):
            start = span.start + (-(span.start - datetime(2000, 1, 1, tzinfo=UTC))) % timedelta(minutes=15)
            while start + duration <= span.end:
                guarded = Interval(start - buffer, start + duration + buffer)
                if not any(guarded.overlaps(t) for t in taken):
                    out.append(Interval(start, start + duration))
                start += timedelta(minutes=15)
        return out

    def windows(self, occ: Occurrence) -> tuple[Window, ...]:
        person = self.case.plan.connection(occ.connection) if occ.connection else None
        own = person.prefer if person is not None else None
        hours = self.case.plan.working_hours
        chosen = own or self.case.plan.placement.prefer
        clipped = tuple(
            Window(max(w.start, hours.start), min(w.end, hours.end))
            for w in chosen
            if max(w.start, hours.start) < min(w.end, hours.end)
        )
        return clipped or (Window(hours.start, hours.end),)

    def inside(self, slot: Interval, windows: tuple[Window, ...]) -> bool:
        start, end = slot.start.astimezone(self.zone), slot.end.astimezone(self.zone)
        return any(
            w.start <= start.time() and end.time() <= w.end and end.date() == start.date() for w in windows
        )

    def days_it_could_take(self, occ: Occurrence) -> list[date]:
        """Open days from the first one on or after its due date (today if overdue) where it still fits
        at the end of the run; the run placed it when at least as much was free."""
        first = self.today if occ.overdue else max(occ.due, self.today)
        duration = occ.end - occ.start
        days = self.open_days(first)
        start = next(
            i for i, d in enumerate(days) if self.free_slots(d, duration, occ) or d == self.day_of(occ)
        )
        return days[start:]


def regular(occ: Occurrence) -> bool:
    return occ.key != "review:kickoff"


@given(busy_cases())
@PROPERTY
def test_never_in_a_buffer_nor_on_a_holiday_nor_on_a_day_away(case: Case) -> None:
    got = case.run()
    ref = Reference(case, got)
    buffer = case.plan.placement.buffer
    for occ in got:
        guarded = Interval(occ.start - buffer, occ.end + buffer)
        assert not any(guarded.overlaps(b) for b in case.busy), occ
        assert ref.day_of(occ) not in ref.holidays, occ
        assert ref.is_open(ref.day_of(occ)), occ
        check_inside_working_hours(case.plan, occ)
    for before, after in itertools.pairwise(got):
        assert before.end + buffer <= after.start, (before, after)


@given(busy_cases())
@PROPERTY
def test_never_more_than_two_working_days_late_when_a_slot_exists(case: Case) -> None:
    """Late counts the days it could have taken: open, with room for it, and holding none of circleback's
    events (as they were when it was placed). The daily limit alone may push it on, a working week at
    most, past days that are full."""
    got = case.run()
    ref = Reference(case, got)
    for occ in filter(regular, got):
        day = ref.day_of(occ)
        days = ref.days_it_could_take(occ)
        assert day in days[:5], (occ, days[:6])
        skipped = [
            other
            for other in days
            if other < day and ref.per_day[other] == 0 and ref.free_slots(other, occ.end - occ.start, occ)
        ]
        assert len(skipped) <= 2, (occ, skipped)


def could_have_gone_earlier(ref: Reference, occ: Occurrence) -> bool:
    """Whether an open day before its own, among those it could take, holds none of circleback's events
    and has room for it (such a day had exactly this free time when `occ` was placed)."""
    day = ref.day_of(occ)
    return any(
        ref.per_day[other] == 0 and ref.free_slots(other, occ.end - occ.start, occ)
        for other in ref.days_it_could_take(occ)
        if other < day
    )


@given(busy_cases())
@PROPERTY
def test_never_over_the_daily_limit_while_an_earlier_day_has_room(case: Case) -> None:
    got = case.run()
    ref = Reference(case, got)
    limit = case.plan.placement.max_per_day
    for day, count in ref.per_day.items():
        if count <= limit:
            continue
        # At least count - limit of the day's events were placed once it was full; none of those may have
        # had an empty day with room before it. (Which ones came first is not in the output.)
        mine = [o for o in got if ref.day_of(o) == day and regular(o)]
        assert sum(could_have_gone_earlier(ref, o) for o in mine) <= limit, (day, mine)


@given(busy_cases())
@PROPERTY
def test_inside_a_preferred_window_whenever_one_is_free(case: Case) -> None:
    got = case.run()
    ref = Reference(case, got)
    for occ in filter(regular, got):
        windows = ref.windows(occ)
        slot = Interval(occ.start, occ.end)
        if ref.inside(slot, windows):
            continue
        day = ref.day_of(occ)
        duration = occ.end - occ.start
        # Not on its own day...
        assert not any(ref.inside(s, windows) for s in ref.free_slots(day, duration, occ)), occ
        # ...nor, when it is alone on its day (so the day was empty when it was placed), on an earlier day
        # it could take that was as empty then as it is now.
        for other in ref.days_it_could_take(occ):
            if other >= day:
                break
            if ref.per_day[other] == 0 and ref.per_day[day] == 1:
                assert not any(ref.inside(s, windows) for s in ref.free_slots(other, duration, occ)), (
                    occ,
                    other,
                )

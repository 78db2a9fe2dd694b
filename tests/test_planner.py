"""The planner on fixed inputs: what is due, where it lands, what it is called and what it carries."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from builders import connection, london_plan

from schedules.cadence import parse_cadence
from schedules.describe import ago, review_description, touchpoint_description, touchpoint_title
from schedules.events import Interaction, Interval
from schedules.model import Connection, Plan, Review, Window, WorkingHours
from schedules.occurrence import Occurrence, OccurrenceKind
from schedules.planner import due_dates, plan_placement

LONDON = ZoneInfo("Europe/London")
MINDSET = "Relationships are the currency of leadership; I build them before I need them."
MONDAY = date(2026, 11, 23)  # "today"; London is on GMT, so local clock times equal UTC ones
NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
QUARTER_YEAR = timedelta(weeks=13)

GRACE = connection(
    "Grace Hopper",
    next_action="Send her the compiler article she asked about",
    email="grace@example.com",
)
WITL = connection(
    "Women in Tech London",
    group=True,
    stage="find",
    every="month",
    duration="1h",
    next_action="Attend the next meetup and meet two organisers",
    target=True,
)
ALAN = connection(
    "Alan Turing",
    stage="elevate",
    every="week",
    duration="45m",
    next_action="Ask him to sponsor the Manchester bid",
    notes="Runs at lunchtime; cares about morphogenesis",
)
ADA = london_plan(GRACE, WITL, mindset=MINDSET)


def plan_with(
    *connections: Connection, kickoff: bool = False, every: str = "month", hours: WorkingHours | None = None
) -> Plan:
    return dataclasses.replace(
        ADA,
        connections=connections,
        review=Review(parse_cadence(every), timedelta(minutes=30), kickoff=kickoff),
        working_hours=hours or ADA.working_hours,
    )


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=LONDON).astimezone(UTC)


def block(day: date, start: tuple[int, int], end: tuple[int, int]) -> Interval:
    return Interval(at(day, *start), at(day, *end))


def run(
    plan: Plan = ADA,
    *,
    interactions: Sequence[Interaction] = (),
    reviews_done: Sequence[datetime] = (),
    busy: Sequence[Interval] = (),
    now: datetime = NOW,
    horizon: timedelta = QUARTER_YEAR,
    previous: dict[str, Occurrence] | None = None,
) -> list[Occurrence]:
    return list(
        plan_placement(
            plan,
            interactions=interactions,
            reviews_done=reviews_done,
            busy=busy,
            now=now,
            horizon=horizon,
            previous=previous or {},
        ).occurrences
    )


def local(occ: Occurrence) -> str:
    start, end = occ.start.astimezone(LONDON), occ.end.astimezone(LONDON)
    return f"{start:%a %Y-%m-%d %H:%M}-{end:%H:%M}"


def summary(occurrences: Sequence[Occurrence]) -> list[tuple[str, str, str]]:
    return [(local(o), o.key, o.title) for o in occurrences]


def of(occurrences: Sequence[Occurrence], connection: str | None) -> list[Occurrence]:
    return [o for o in occurrences if o.connection == connection]


def met(name: str, day: date, hour: int = 10, minute: int = 0) -> Interaction:
    return Interaction(name, at(day, hour, minute))


# --- the example plan ---------------------------------------------------------------------------------


def test_ada_plan_on_a_monday_morning() -> None:
    # Issue 8: no longer the first free minute (09:00) but the start of the first preferred window
    # (10:00 by default); one event a day, so the kickoff, Grace and the group take Monday to Wednesday.
    got = run()
    assert summary(got)[:8] == [
        ("Mon 2026-11-23 10:00-10:30", "review:kickoff", "Review: relationship plan (kickoff)"),
        ("Tue 2026-11-24 10:00-10:30", "touchpoint:grace hopper:2026-W48", "Nurture: Grace Hopper"),
        (
            "Wed 2026-11-25 10:00-11:00",
            "touchpoint:women in tech london:2026-11",
            "Find: Women in Tech London",
        ),
        ("Tue 2026-12-08 10:00-10:30", "touchpoint:grace hopper:2026-W50", "Nurture: Grace Hopper"),
        ("Tue 2026-12-22 10:00-10:30", "touchpoint:grace hopper:2026-W52", "Nurture: Grace Hopper"),
        ("Wed 2026-12-23 10:00-10:30", "review:2026-12", "Review: relationship plan"),
        (
            "Thu 2026-12-24 10:00-11:00",
            "touchpoint:women in tech london:2026-12",
            "Find: Women in Tech London",
        ),
        ("Tue 2027-01-05 10:00-10:30", "touchpoint:grace hopper:2027-W01", "Nurture: Grace Hopper"),
    ]
    assert [o.start for o in got] == sorted(o.start for o in got)
    assert all(o.start >= NOW and o.end <= NOW + QUARTER_YEAR for o in got)
    assert not any(o.overdue for o in got)


def test_ada_plan_dues_and_kinds() -> None:
    got = run()
    grace = of(got, "Grace Hopper")
    assert [o.due for o in grace] == [MONDAY + timedelta(weeks=2 * k) for k in range(len(grace))]
    assert {o.kind for o in grace} == {OccurrenceKind.TOUCHPOINT}
    reviews = of(got, None)
    assert [o.key for o in reviews] == ["review:kickoff", "review:2026-12", "review:2027-01"]
    assert {o.kind for o in reviews} == {OccurrenceKind.REVIEW}
    assert [o.due for o in reviews[1:]] == [
        date(2026, 12, 23),
        date(2027, 1, 23),
    ]  # 23 Feb is past the horizon


def test_touchpoint_description_carries_the_context() -> None:
    grace = of(run(interactions=[met("Grace Hopper", date(2026, 11, 16))]), "Grace Hopper")[0]
    assert grace.start == at(date(2026, 11, 30), 10)
    assert grace.description.splitlines() == [
        "Next wise action: Send her the compiler article she asked about",
        # Issue 8: the description says why the touchpoint is there.
        "Why now: due 2026-11-30, every 2 weeks since you last met on 2026-11-16",
        "Stage: nurture (keep it alive)",
        "Last met: 2026-11-16 (2 weeks ago)",
        "Cadence: every 2 weeks",
        "Give first: most touchpoints help, congratulate, share or introduce.",
    ]


def test_review_description_carries_the_mindset_and_the_focus_list() -> None:
    got = run(interactions=[met("Grace Hopper", date(2026, 11, 2))])
    kickoff = next(o for o in got if o.key == "review:kickoff")
    text = kickoff.description
    assert f"Mindset: {MINDSET}" in text
    assert "Grace Hopper: nurture (keep it alive), every 2 weeks; last met 2026-11-02;" in text
    assert "Women in Tech London: find (make the connection), target, every month; last met not yet;" in text
    assert "next wise action: Attend the next meetup and meet two organisers" in text
    # The audit's headline, read as of the block's own date (24 November: Grace was due on the 16th).
    assert "Overdue: Grace Hopper (due 2026-11-16)" in text
    assert "Give/ask: 1 give, 0 ask: 100% give (rule of thumb: about 90% give)" in text
    assert "target" in text.split("Questions:")[1]
    assert "- Change: what will you change for Grace Hopper" in text
    assert text.startswith("Kickoff: 30 minutes with yourself this week")
    regular = next(o for o in got if o.key == "review:2026-12")
    assert not regular.description.startswith("Kickoff")


# --- kickoff review -----------------------------------------------------------------------------------


def kickoff(got: Sequence[Occurrence]) -> Occurrence:
    return next(o for o in got if o.key == "review:kickoff")


def test_kickoff_is_this_week_from_now_on() -> None:
    wednesday = date(2026, 11, 25)
    got = run(now=at(wednesday, 14, 5))
    assert local(kickoff(got)) == "Wed 2026-11-25 14:15-14:45"
    assert kickoff(got).title == "Review: relationship plan (kickoff)"
    assert kickoff(got).due == wednesday


def test_kickoff_goes_to_the_next_working_day_when_the_week_is_full() -> None:
    wednesday = date(2026, 11, 25)
    busy = [Interval(at(wednesday, 0), at(date(2026, 11, 30), 0))]
    got = run(now=at(wednesday, 8), busy=busy)
    assert local(kickoff(got)) == "Mon 2026-11-30 10:00-10:30"  # the preferred window, not 09:00


def test_kickoff_on_friday_late_afternoon_goes_to_monday() -> None:
    friday = date(2026, 11, 27)
    got = run(now=at(friday, 17, 15))
    assert local(kickoff(got)) == "Mon 2026-11-30 10:00-10:30"  # the preferred window, not 09:00


def test_kickoff_at_friday_16_55_still_fits_the_last_half_hour() -> None:
    friday = date(2026, 11, 27)
    got = run(now=at(friday, 16, 55))
    assert local(kickoff(got)) == "Fri 2026-11-27 17:00-17:30"


def test_nothing_is_placed_to_begin_the_moment_it_is_planned() -> None:
    # Found by the cycle state machine: placed at exactly `now`, an occurrence is under way as it is
    # created; a calendar that did not take it that cycle is never given it (it would read back as having
    # happened), so it could only be missed. Here the last half hour of Friday has just begun.
    friday = date(2026, 11, 27)
    got = run(now=at(friday, 17))
    assert local(kickoff(got)) == "Mon 2026-11-30 10:00-10:30"
    monday = run(now=at(MONDAY, 10))
    assert monday and all(o.start > at(MONDAY, 10) for o in monday)


def test_kickoff_on_a_weekend_goes_to_monday() -> None:
    got = run(now=at(date(2026, 11, 28), 10))
    assert local(kickoff(got)) == "Mon 2026-11-30 10:00-10:30"  # the preferred window, not 09:00


def test_no_kickoff_once_a_review_is_done() -> None:
    got = run(reviews_done=[at(date(2026, 11, 10), 9)])
    reviews = of(got, None)
    assert [o.key for o in reviews] == ["review:2026-12", "review:2027-01", "review:2027-02"]
    assert [o.due for o in reviews] == [date(2026, 12, 10), date(2027, 1, 10), date(2027, 2, 10)]


def test_no_kickoff_when_the_plan_says_so() -> None:
    got = run(plan_with(GRACE, kickoff=False))
    assert [o.key for o in of(got, None)] == ["review:2026-12", "review:2027-01"]


def test_quarterly_reviews() -> None:
    got = run(plan_with(GRACE, every="quarter"), reviews_done=[at(date(2026, 10, 1), 9)])
    assert [(o.key, o.due) for o in of(got, None)] == [("review:2027-01", date(2027, 1, 1))]


def test_an_overdue_review_is_placed_first() -> None:
    got = run(plan_with(GRACE), reviews_done=[at(date(2026, 9, 1), 9)])
    first = got[0]
    # The first preferred slot of the day, not the first free minute (issue 8).
    assert (first.key, first.overdue, local(first)) == ("review:2026-10", True, "Mon 2026-11-23 10:00-10:30")
    assert first.description.endswith("Overdue since 2026-10-01")


# --- overdue and the cadence --------------------------------------------------------------------------


def test_overdue_connection_at_the_first_free_slot() -> None:
    busy = [block(MONDAY, (9, 0), (10, 10))]
    got = run(plan_with(GRACE), interactions=[met("Grace Hopper", date(2026, 10, 1), 15)], busy=busy)
    first = of(got, "Grace Hopper")[0]
    assert first.overdue
    assert first.due == date(2026, 10, 15)
    assert first.key == "touchpoint:grace hopper:2026-W42"
    # Late, so not the Thursday rhythm: the first day. Issue 8: at the time of day of the last meeting
    # (15:00, inside the afternoon window) rather than the first free minute after the busy morning.
    assert local(first) == "Mon 2026-11-23 15:00-15:30"
    assert first.title == "Nurture: Grace Hopper"
    assert first.description.splitlines()[-1] == "Overdue since 2026-10-15"
    assert "Last met: 2026-10-01 (7 weeks ago)" in first.description


def test_after_an_overdue_touchpoint_the_chain_resumes_without_crowding_it() -> None:
    # Due 15 Oct, 29 Oct, 12 Nov were missed; 26 Nov is only three days away, so the next is 10 Dec.
    got = run(plan_with(GRACE), interactions=[met("Grace Hopper", date(2026, 10, 1), 15)])
    grace = of(got, "Grace Hopper")
    assert [(o.due, o.overdue) for o in grace[:3]] == [
        (date(2026, 10, 15), True),
        (date(2026, 12, 10), False),
        (date(2026, 12, 24), False),
    ]
    assert sum(o.overdue for o in grace) == 1
    assert local(grace[1]) == "Thu 2026-12-10 15:00-15:30"  # the rhythm of the last real meeting


def test_due_dates_count_from_the_last_meeting() -> None:
    every = parse_cadence("2 weeks")
    assert due_dates(every, date(2026, 11, 16), MONDAY, date(2026, 12, 31)) == [
        (date(2026, 11, 30), False),
        (date(2026, 12, 14), False),
        (date(2026, 12, 28), False),
    ]
    assert due_dates(every, MONDAY, MONDAY, date(2026, 12, 10), first_step=0) == [
        (MONDAY, False),
        (date(2026, 12, 7), False),
    ]


def test_due_dates_keep_the_31st_after_a_short_month() -> None:
    every = parse_cadence("month")
    assert [due for due, _ in due_dates(every, date(2026, 12, 31), MONDAY, date(2027, 4, 30))] == [
        date(2027, 1, 31),
        date(2027, 2, 28),
        date(2027, 3, 31),
        date(2027, 4, 30),
    ]


def test_due_dates_skip_years_of_missed_periods_quickly() -> None:
    every = parse_cadence("month")
    got = due_dates(every, date(1999, 12, 31), MONDAY, date(2027, 2, 1))
    assert got == [(date(2000, 1, 31), True), (date(2026, 12, 31), False), (date(2027, 1, 31), False)]


def test_due_dates_past_the_horizon_give_nothing() -> None:
    assert due_dates(parse_cadence("week"), MONDAY, MONDAY, date(2026, 11, 29)) == []


def test_a_connection_never_met_is_due_today() -> None:
    got = run(plan_with(GRACE))
    assert of(got, "Grace Hopper")[0].due == MONDAY
    assert "Last met: not yet" in of(got, "Grace Hopper")[0].description


def test_the_cadence_restarts_from_the_real_interaction() -> None:
    before = of(run(plan_with(GRACE)), "Grace Hopper")
    assert [o.due for o in before[:3]] == [MONDAY, date(2026, 12, 7), date(2026, 12, 21)]
    # She was met on Wednesday; the planned Monday touchpoint is gone and the rhythm starts again.
    wednesday = date(2026, 11, 25)
    after = of(
        run(plan_with(GRACE), interactions=[met("grace hopper", wednesday, 11)], now=at(wednesday, 18)),
        "Grace Hopper",
    )
    assert [o.due for o in after[:3]] == [date(2026, 12, 9), date(2026, 12, 23), date(2027, 1, 6)]
    assert [o.key for o in after[:2]] == [
        "touchpoint:grace hopper:2026-W50",
        "touchpoint:grace hopper:2026-W52",
    ]
    assert [local(o) for o in after[:2]] == ["Wed 2026-12-09 11:00-11:30", "Wed 2026-12-23 11:00-11:30"]


def test_the_latest_interaction_counts_whatever_the_order_and_case() -> None:
    interactions = [
        met("GRACE HOPPER", date(2026, 11, 18), 14),
        met("Grace Hopper", date(2026, 10, 1)),
        met("Someone Else", date(2026, 11, 22)),
    ]
    got = of(run(plan_with(GRACE), interactions=interactions), "Grace Hopper")
    assert got[0].due == date(2026, 12, 2)
    assert got == of(run(plan_with(GRACE), interactions=interactions[::-1]), "Grace Hopper")


def test_month_cadence_from_the_31st() -> None:
    got = run(
        plan_with(WITL),
        interactions=[met("Women in Tech London", date(2026, 10, 31), 18)],
        horizon=timedelta(weeks=22),
    )
    assert [(o.due, o.key) for o in of(got, "Women in Tech London")] == [
        (date(2026, 11, 30), "touchpoint:women in tech london:2026-11"),
        (date(2026, 12, 31), "touchpoint:women in tech london:2026-12"),
        (date(2027, 1, 31), "touchpoint:women in tech london:2027-01"),
        (date(2027, 2, 28), "touchpoint:women in tech london:2027-02"),
        (date(2027, 3, 31), "touchpoint:women in tech london:2027-03"),
    ]
    assert all(o.start.astimezone(LONDON).date() >= o.due for o in got)


# --- slot preferences ---------------------------------------------------------------------------------


def test_stable_slot_same_weekday_and_time_as_the_last_meeting() -> None:
    thursday = date(2026, 11, 12)
    got = of(run(plan_with(GRACE), interactions=[met("Grace Hopper", thursday, 14, 10)]), "Grace Hopper")
    assert [local(o) for o in got[:3]] == [
        "Thu 2026-11-26 14:00-14:30",
        "Thu 2026-12-10 14:00-14:30",
        "Thu 2026-12-24 14:00-14:30",
    ]


def test_stable_slot_waits_for_its_weekday_within_the_due_week() -> None:
    # Met on a Friday; due the Friday two weeks on; the next ones keep to Fridays.
    got = of(
        run(plan_with(GRACE), interactions=[met("Grace Hopper", date(2026, 11, 13), 11)]), "Grace Hopper"
    )
    assert local(got[0]) == "Fri 2026-11-27 11:00-11:30"


def test_busy_stable_slot_falls_back_to_the_nearest_free_preferred_slot() -> None:
    thursday = date(2026, 11, 26)
    busy = [block(thursday, (14, 0), (15, 0))]
    got = of(
        run(plan_with(GRACE), interactions=[met("Grace Hopper", date(2026, 11, 12), 14)], busy=busy),
        "Grace Hopper",
    )
    # Was the first free minute (09:00). Issue 8: the same day, in a preferred window, nearest 14:00 and
    # 15 minutes clear of the meeting: 15:15 (13:15 would be nearer but is outside the windows).
    assert local(got[0]) == "Thu 2026-11-26 15:15-15:45"
    assert local(got[1]) == "Thu 2026-12-10 14:00-14:30"  # the real meeting still sets the rhythm


def test_a_meeting_outside_working_hours_sets_no_rhythm() -> None:
    saturday = date(2026, 11, 14)
    got = of(run(plan_with(GRACE), interactions=[met("Grace Hopper", saturday, 19)]), "Grace Hopper")
    # Due Saturday 28th: the next working day, at the start of the preferred window (issue 8: not 09:00).
    assert local(got[0]) == "Mon 2026-11-30 10:00-10:30"
    assert local(got[1]) == "Mon 2026-12-14 10:00-10:30"  # then the chain keeps its own rhythm


def test_without_a_meeting_the_previous_placement_sets_the_rhythm() -> None:
    placed = Occurrence(
        key="touchpoint:grace hopper:2026-W47",
        kind=OccurrenceKind.TOUCHPOINT,
        connection="Grace Hopper",
        due=date(2026, 11, 16),
        start=at(date(2026, 11, 26), 15),
        end=at(date(2026, 11, 26), 15, 30),
        title="Nurture: Grace Hopper",
        description="",
    )
    got = of(run(plan_with(GRACE), previous={placed.key: placed}), "Grace Hopper")
    # Due Monday 23rd; Thursday would be three working days late (issue 8 allows two), so the rhythm keeps
    # only its time of day.
    assert local(got[0]) == "Mon 2026-11-23 15:00-15:30"
    assert got[0].key == "touchpoint:grace hopper:2026-W48"
    # A rhythm within two working days of the due date keeps its weekday too.
    tuesday = dataclasses.replace(
        placed, start=at(date(2026, 11, 24), 15), end=at(date(2026, 11, 24), 15, 30)
    )
    got = of(run(plan_with(GRACE), previous={placed.key: tuesday}), "Grace Hopper")
    assert local(got[0]) == "Tue 2026-11-24 15:00-15:30"


def test_spreading_puts_touchpoints_on_different_days() -> None:
    got = run(plan_with(GRACE, WITL, ALAN))
    firsts = [o for o in got if o.due == MONDAY]
    assert [local(o) for o in firsts] == [  # the preferred window, not 09:00 (issue 8)
        "Mon 2026-11-23 10:00-10:30",
        "Tue 2026-11-24 10:00-11:00",
        "Wed 2026-11-25 10:00-10:45",
    ]
    assert [o.connection for o in firsts] == ["Grace Hopper", "Women in Tech London", "Alan Turing"]


def test_spreading_doubles_up_when_no_other_day_has_room() -> None:
    # Only Monday has free time in the next fortnight: the other days are booked with meetings. (This was
    # one fortnight-long busy stretch; issue 8 reads that as time away, which closes the days instead.)
    busy = [block(MONDAY + timedelta(days=n), (8, 0), (18, 0)) for n in range(1, 15)]
    got = run(plan_with(GRACE, WITL, ALAN), busy=busy)
    firsts = [o for o in got if o.due == MONDAY]
    # Preferred windows first, 15 minutes apart (issue 8): 10:00, 10:45, then the afternoon window.
    assert [local(o) for o in firsts] == [
        "Mon 2026-11-23 10:00-10:30",
        "Mon 2026-11-23 10:45-11:45",
        "Mon 2026-11-23 14:00-14:45",
    ]


def test_time_away_delays_instead_of_doubling_up() -> None:
    # Out of office from Tuesday for a fortnight: those are not working days, so the touchpoints that do
    # not fit on Monday go to the first days back rather than three to one Monday.
    busy = [Interval(at(date(2026, 11, 24), 0), at(date(2026, 12, 8), 0))]
    got = run(plan_with(GRACE, WITL, ALAN), busy=busy)
    firsts = [o for o in got if o.due == MONDAY]
    assert [local(o) for o in firsts] == [
        "Mon 2026-11-23 10:00-10:30",
        "Tue 2026-12-08 10:00-11:00",
        "Wed 2026-12-09 10:00-10:45",
    ]


def test_a_day_with_no_free_slot_moves_on() -> None:
    busy = [block(MONDAY, (8, 0), (18, 0)), block(date(2026, 11, 24), (9, 0), (12, 0))]
    got = run(plan_with(GRACE), busy=busy)
    # Was the first free minute (12:00). Issue 8: the afternoon window, rather than straight after a
    # three-hour meeting at lunchtime.
    assert local(got[0]) == "Tue 2026-11-24 14:00-14:30"


# --- stability and identity ---------------------------------------------------------------------------


def test_previous_placement_is_kept() -> None:
    first = run()
    moved_key = "touchpoint:grace hopper:2026-W48"
    moved = dataclasses.replace(
        next(o for o in first if o.key == moved_key),
        start=at(date(2026, 11, 27), 16),
        end=at(date(2026, 11, 27), 16, 30),
    )
    previous = {o.key: o for o in first} | {moved_key: moved}
    again = run(previous=previous)
    kept = next(o for o in again if o.key == moved_key)
    assert local(kept) == "Fri 2026-11-27 16:00-16:30"
    assert kept.uid == moved.uid
    assert {o.key for o in again} == {o.key for o in first}
    others = [o for o in again if o.key != moved_key]
    assert others == [o for o in first if o.key != moved_key]


def test_running_on_its_own_output_changes_nothing() -> None:
    first = run(busy=[block(MONDAY, (9, 0), (12, 0))])
    again = run(busy=[block(MONDAY, (9, 0), (12, 0))], previous={o.key: o for o in first})
    assert again == first


def test_new_busy_time_moves_a_previous_placement_but_not_its_key() -> None:
    first = run()
    target = next(o for o in first if o.key == "touchpoint:grace hopper:2026-W48")
    busy = [Interval(target.start, target.end)]
    again = run(busy=busy, previous={o.key: o for o in first})
    moved = next(o for o in again if o.key == target.key)
    assert moved.start != target.start
    assert not Interval(moved.start, moved.end).overlaps(busy[0])
    assert [o for o in again if o.key != target.key] == [o for o in first if o.key != target.key]


def test_previous_placements_in_the_past_or_outside_hours_are_replaced() -> None:
    first = run()
    target = next(o for o in first if o.key == "touchpoint:grace hopper:2026-W48")
    evening = dataclasses.replace(target, start=at(MONDAY, 19), end=at(MONDAY, 19, 30))
    again = run(previous={target.key: evening})
    assert next(o for o in again if o.key == target.key).start == target.start
    past = dataclasses.replace(target, start=at(MONDAY, 7), end=at(MONDAY, 7, 30))
    assert next(o for o in run(previous={target.key: past}) if o.key == target.key).start == target.start


def test_a_previous_slot_before_a_later_due_date_in_the_same_period_is_not_kept() -> None:
    first = of(
        run(plan_with(WITL), interactions=[met("Women in Tech London", date(2026, 11, 2), 8)]), WITL.name
    )
    target = first[0]
    assert (target.key, target.due, local(target)) == (
        "touchpoint:women in tech london:2026-12",
        date(2026, 12, 2),
        "Wed 2026-12-02 10:00-11:00",
    )
    # A meetup on Friday 20 November moves the due date to 20 December: same month, same key, but the
    # old slot would now come before it is due.
    again = run(
        plan_with(WITL),
        interactions=[met("Women in Tech London", date(2026, 11, 20), 10)],
        previous={target.key: target},
    )
    moved = of(again, WITL.name)[0]
    assert (moved.key, moved.due) == (target.key, date(2026, 12, 20))
    # Was Friday 25th, the meetup's weekday: five days late, on Christmas Day. Issue 8: the weekday may
    # delay by two working days at most, so the Monday after the Sunday due date, at the meetup's time.
    assert local(moved) == "Mon 2026-12-21 10:00-11:00"


def test_same_input_twice_gives_identical_output() -> None:
    busy = [block(MONDAY, (9, 0), (11, 0)), block(date(2026, 11, 24), (13, 0), (17, 30))]
    interactions = [met("Grace Hopper", date(2026, 11, 3)), met("Alan Turing", date(2026, 11, 20), 12)]
    plan = plan_with(GRACE, WITL, ALAN, kickoff=True)
    one = run(plan, busy=busy, interactions=interactions)
    two = run(plan, busy=busy[::-1], interactions=interactions[::-1])
    assert one == two
    assert len({o.key for o in one}) == len(one)
    assert len({o.uid for o in one}) == len(one)


# --- edges ----------------------------------------------------------------------------------------------


def test_a_horizon_with_no_working_days_gives_nothing() -> None:
    saturdays = WorkingHours(frozenset({5}), time(9), time(17, 30))
    assert run(plan_with(GRACE, WITL, kickoff=True, hours=saturdays), horizon=timedelta(days=5)) == []


def test_a_zero_horizon_gives_nothing() -> None:
    assert run(horizon=timedelta(0)) == []


def test_working_hours_shorter_than_a_touchpoint_place_nothing_for_it() -> None:
    short = WorkingHours(frozenset(range(5)), time(9), time(9, 30))
    got = run(plan_with(GRACE, WITL, kickoff=True, hours=short), horizon=timedelta(weeks=3))
    assert of(got, "Women in Tech London") == []
    assert of(got, "Grace Hopper")
    assert all(o.end - o.start == timedelta(minutes=30) for o in got)


def test_two_connections_with_the_same_name_are_refused() -> None:
    twin = dataclasses.replace(WITL, name="GRACE HOPPER")
    with pytest.raises(ValueError, match="same name"):
        run(plan_with(GRACE, twin))


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        run(now=datetime(2026, 11, 23, 8))


# --- describe -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("days", "phrase"),
    [(0, "today"), (1, "yesterday"), (6, "6 days ago"), (21, "3 weeks ago"), (90, "3 months ago"),
     (800, "2 years ago"), (-3, "later")],
)  # fmt: skip
def test_ago(days: int, phrase: str) -> None:
    assert ago(MONDAY - timedelta(days=days), MONDAY) == phrase


def test_titles_say_who_and_what() -> None:
    assert touchpoint_title(GRACE) == "Nurture: Grace Hopper"
    assert touchpoint_title(WITL) == "Find: Women in Tech London"
    assert touchpoint_title(ALAN) == "Elevate: Alan Turing"


def test_touchpoint_description_full() -> None:
    text = touchpoint_description(
        ALAN, last_met=date(2026, 11, 2), on=date(2026, 11, 23), overdue_since=date(2026, 11, 9)
    )
    assert text.splitlines() == [
        "Next wise action: Ask him to sponsor the Manchester bid",
        "Stage: elevate (deepen it: offer or ask for something bigger)",
        "Last met: 2026-11-02 (3 weeks ago)",
        "Notes: Runs at lunchtime; cares about morphogenesis",
        "Cadence: every week",
        "Give first: most touchpoints help, congratulate, share or introduce.",
        "Help first, ask later: ask only where the relationship has been nurtured; never quid pro quo.",
        "Overdue since 2026-11-09",
    ]


def test_target_touchpoint_says_so() -> None:
    text = touchpoint_description(WITL, last_met=None, on=MONDAY)
    assert "Target: a new connection you are creating." in text
    assert "Last met: not yet" in text
    assert "Cadence: every month" in text


def test_review_without_a_target_asks_for_one() -> None:
    text = review_description(plan_with(GRACE), last_met={}, today=MONDAY)
    assert "No connection is a target" in text
    assert "Overdue: none" in text


def test_a_never_met_connection_keeps_its_first_due_date_across_days_and_weeks() -> None:
    plan = plan_with(GRACE)
    first = run(plan)[0]
    assert first.due == MONDAY and not first.overdue
    # A week later (the next ISO week) with it still unmet: same due date, same identity.
    later = list(
        plan_placement(
            plan,
            interactions=(),
            reviews_done=(),
            busy=(),
            now=NOW + timedelta(days=7),
            horizon=QUARTER_YEAR,
            first_due={"grace hopper": first.due},
        ).occurrences
    )
    assert later[0].key == first.key
    assert later[0].overdue, "a first touchpoint whose due date has passed unmet is overdue"
    assert f"Overdue since {MONDAY.isoformat()}" in later[0].description
    # Without the remembered date it would drift to the new day and a new key: the churn this prevents.
    drifting = run(plan, now=NOW + timedelta(days=7))[0]
    assert drifting.key != first.key


# --- placement a busy person would choose (issue 8) ----------------------------------------------------


def with_placement(plan: Plan, **changes: object) -> Plan:
    return dataclasses.replace(plan, placement=dataclasses.replace(plan.placement, **changes))  # type: ignore[arg-type]


def windows(*texts: str) -> tuple[Window, ...]:
    out = []
    for text in texts:
        start, end = text.split("-")
        out.append(Window(time.fromisoformat(start), time.fromisoformat(end)))
    return tuple(out)


def test_no_touchpoint_on_a_public_holiday() -> None:
    # Met Friday 11 December; due Christmas Day, a Friday. 26th-27th are the weekend, 28th is Boxing Day
    # observed: the first working day is Tuesday 29th.
    plan = with_placement(plan_with(GRACE), holidays="GB")
    got = of(run(plan, interactions=[met("Grace Hopper", date(2026, 12, 11))]), "Grace Hopper")
    assert (got[0].due, local(got[0])) == (date(2026, 12, 25), "Tue 2026-12-29 10:00-10:30")
    # Without the holidays setting the old behaviour shows what this prevents.
    bare = of(run(plan_with(GRACE), interactions=[met("Grace Hopper", date(2026, 12, 11))]), "Grace Hopper")
    assert local(bare[0]) == "Fri 2026-12-25 10:00-10:30"


def test_no_review_on_new_years_day() -> None:
    plan = with_placement(plan_with(GRACE), holidays="GB")
    got = of(run(plan, reviews_done=[at(date(2026, 12, 1), 9)]), None)
    assert (got[0].key, got[0].due, local(got[0])) == (
        "review:2027-01",
        date(2027, 1, 1),
        "Mon 2027-01-04 10:00-10:30",
    )


def test_no_touchpoint_on_an_out_of_office_day() -> None:
    # An all-day out-of-office on Monday 30 November (midnight to midnight, as the ICS reader gives it).
    ooo = Interval(at(date(2026, 11, 30), 0), at(date(2026, 12, 1), 0))
    got = of(
        run(plan_with(GRACE), interactions=[met("Grace Hopper", date(2026, 11, 16))], busy=[ooo]), GRACE.name
    )
    assert (got[0].due, local(got[0])) == (date(2026, 11, 30), "Tue 2026-12-01 10:00-10:30")


def test_a_rhythm_delays_by_two_working_days_at_most() -> None:
    thursday = date(2026, 11, 12)
    # Met on a Thursday, every 2 weeks, due Thursday: keeps Thursday.
    got = of(run(plan_with(GRACE), interactions=[met("Grace Hopper", thursday, 15)]), GRACE.name)
    assert local(got[0]) == "Thu 2026-11-26 15:00-15:30"
    # A monthly group met on Thursday 12 November is due Saturday 12 December: Monday is the first working
    # day, and Thursday is three working days after it, so it stays on Monday at the meetup's time.
    monthly = of(run(plan_with(WITL), interactions=[met(WITL.name, thursday, 15)]), WITL.name)
    assert local(monthly[0]) == "Mon 2026-12-14 15:00-16:00"
    # Due on a Tuesday with a Thursday rhythm: two working days later is allowed.
    tuesday_due = of(
        run(plan_with(WITL), interactions=[met(WITL.name, date(2026, 11, 10), 15)]),
        WITL.name,
    )
    assert tuesday_due[0].due == date(2026, 12, 10)  # Thursday: the met weekday was Tuesday
    assert local(tuesday_due[0]) == "Thu 2026-12-10 15:00-16:00"


def test_a_connection_prefers_its_own_windows() -> None:
    late = dataclasses.replace(GRACE, prefer=windows("16:00-17:30"))
    got = of(run(plan_with(late)), GRACE.name)
    assert local(got[0]) == "Mon 2026-11-23 16:00-16:30"


def test_the_plan_windows_buffer_and_per_day_limit() -> None:
    plan = with_placement(
        plan_with(GRACE, WITL, ALAN),
        prefer=windows("09:30-12:00"),
        buffer=timedelta(minutes=30),
        max_per_day=2,
    )
    busy = [block(MONDAY, (9, 0), (9, 30))]
    got = [o for o in run(plan, busy=busy) if o.due == MONDAY]
    assert [local(o) for o in got] == [
        "Mon 2026-11-23 10:00-10:30",  # 30 minutes after the 09:30 meeting
        "Mon 2026-11-23 11:00-12:00",  # two a day are allowed, 30 minutes apart
        "Tue 2026-11-24 09:30-10:15",  # Monday has its two
    ]


def test_a_review_does_not_follow_a_three_hour_workshop() -> None:
    due = date(2026, 12, 10)
    workshop = block(due, (9, 0), (12, 0))
    got = of(run(plan_with(GRACE), reviews_done=[at(date(2026, 11, 10), 9)], busy=[workshop]), None)
    assert (got[0].due, local(got[0])) == (due, "Thu 2026-12-10 14:00-14:30")


def test_placement_reports_what_found_no_slot() -> None:
    short = WorkingHours(frozenset(range(5)), time(9), time(9, 30))
    result = plan_placement(
        plan_with(GRACE, WITL, hours=short),
        interactions=(),
        reviews_done=(),
        busy=(),
        now=NOW,
        horizon=timedelta(weeks=3),
    )
    assert {o.connection for o in result.occurrences} == {"Grace Hopper"}
    assert [(u.key, u.connection, u.due) for u in result.unplaced] == [
        ("touchpoint:women in tech london:2026-11", "Women in Tech London", MONDAY)
    ]
    assert result.unplaced[0].reason == (
        "no free 60-minute slot with 15 minutes free around other meetings in working hours"
        " from 2026-11-23 to 2026-12-14"
    )


def test_placement_says_when_every_day_is_away() -> None:
    away = Interval(at(MONDAY, 0), at(MONDAY + timedelta(days=21), 0))
    result = plan_placement(
        plan_with(GRACE),
        interactions=(),
        reviews_done=(),
        busy=[away],
        now=NOW,
        horizon=timedelta(weeks=2),
    )
    assert result.occurrences == ()
    away_reason = "no working day from {} to 2026-12-07: holidays, days out of office or days off fill it"
    assert [(u.key, u.reason) for u in result.unplaced] == [
        ("touchpoint:grace hopper:2026-W48", away_reason.format("2026-11-23")),
        ("touchpoint:grace hopper:2026-W50", away_reason.format("2026-12-07")),
    ]


def test_descriptions_do_not_change_from_day_to_day() -> None:
    # Nothing changes but the clock: every occurrence still ahead keeps its slot and its exact text, so
    # the feed does not churn (no "today is ..." wording).
    interactions = [met("Grace Hopper", date(2026, 11, 2))]
    done = [at(date(2026, 11, 10), 9)]
    first = run(plan_with(GRACE), interactions=interactions, reviews_done=done)
    later_now = NOW + timedelta(hours=30)
    later = run(
        plan_with(GRACE),
        interactions=interactions,
        reviews_done=done,
        now=later_now,
        previous={o.key: o for o in first},
    )
    ahead = [o for o in first if o.start > later_now]
    assert [o for o in later if o.key in {a.key for a in ahead}] == ahead
    assert len(ahead) > 3
    overdue = next(o for o in first if o.overdue)
    assert "Why now: overdue since 2026-11-16, every 2 weeks since you last met on 2026-11-02" in (
        overdue.description
    )


def test_a_first_contact_says_so() -> None:
    got = of(run(plan_with(WITL)), WITL.name)
    assert "Why now: due 2026-11-23, the first contact (not met yet)" in got[0].description


def test_a_regular_review_says_why_it_is_there() -> None:
    got = of(run(plan_with(GRACE), reviews_done=[at(date(2026, 11, 10), 9)]), None)
    assert got[0].description.startswith("Why now: the review every month, due 2026-12-10\n")


def test_a_busy_first_week_spreads_over_the_week_and_doubles_up_only_when_every_day_holds_one() -> None:
    # The kickoff and five first touchpoints are all due on Monday. Issue 8: one a day through Friday
    # (the daily limit may push a touchpoint a working week on); the sixth doubles up on the first day.
    katherine = connection("Katherine Johnson")
    barbara = connection("Barbara Liskov", every="month", duration="1h")
    got = run(plan_with(GRACE, WITL, ALAN, katherine, barbara, kickoff=True))
    assert [(local(o), o.key) for o in got[:6]] == [
        ("Mon 2026-11-23 10:00-10:30", "review:kickoff"),
        ("Mon 2026-11-23 10:45-11:45", "touchpoint:barbara liskov:2026-11"),
        ("Tue 2026-11-24 10:00-10:30", "touchpoint:grace hopper:2026-W48"),
        ("Wed 2026-11-25 10:00-11:00", "touchpoint:women in tech london:2026-11"),
        ("Thu 2026-11-26 10:00-10:45", "touchpoint:alan turing:2026-W48"),
        ("Fri 2026-11-27 10:00-10:30", "touchpoint:katherine johnson:2026-W48"),
    ]

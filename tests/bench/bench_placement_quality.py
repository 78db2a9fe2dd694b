"""Benchmark: how good is placement? The placement before issue 8 and today's, side by side.

Run on demand: `.venv/bin/python tests/bench/bench_placement_quality.py [--calendars 20]`. Prints a table.

For each of N generated leaders' calendars (seeded, so the table is reproducible) it plays a quarter
(13 weeks from Monday 23 November 2026, so Christmas, Boxing Day and New Year's Day fall in it) the way
the daemon does: every working morning a planning run sees the calendar, the occurrences placed earlier
(`previous`), and every earlier touchpoint and review as having happened where it was placed. What
counts is what was in the calendar when its time came.

A calendar is a London leader's week, 60-70% booked: a Monday staff meeting, daily stand-up, lunch
(busy on most days), weekly 1:1s with five reports at fixed times, a Thursday leadership block, then
random 30-90 minute meetings until the day is booked to its drawn share (mostly on the hour or half
hour, half of them back to back with another); one week out of office (five
all-day OOF events, midnight to midnight, as the ICS reader turns them into busy time); public holidays
arrive the way calendar apps send them, as all-day events marked free, so they are not busy time.

The code before issue 8 is taken from git (commit ef983db) into a temporary directory and imported as
`old_schedules`, so both run in one process on the same inputs.
"""

from __future__ import annotations

import argparse
import importlib
import random
import statistics
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from zoneinfo import ZoneInfo

import holidays

ROOT = Path(__file__).resolve().parents[2]
OLD_COMMIT = "ef983db"
LONDON = ZoneInfo("Europe/London")
START = date(2026, 11, 23)  # a Monday
WEEKS = 13
HORIZON = timedelta(weeks=4)
HOURS = (time(9), time(17, 30))
WINDOWS = ((time(10), time(12)), (time(14), time(16, 30)))  # the default preferred windows
BUFFER = timedelta(minutes=15)
OOF_WEEK = date(2027, 1, 11)

PLAN = """\
owner: {name: Ada Lovelace, email: ada@example.com}
timezone: Europe/London
mindset: Relationships are the currency of leadership; I build them before I need them.
working_hours: {days: [mon, tue, wed, thu, fri], start: "09:00", end: "17:30"}
review: {every: month, duration: 30m, kickoff: true}
connections:
  - {name: Grace Hopper, stage: nurture, every: 2 weeks, duration: 30m, next_action: Send the article}
  - {name: Women in Tech London, kind: group, target: true, stage: find, every: month, duration: 1h,
     next_action: Attend the next meetup}
  - {name: Alan Turing, stage: elevate, every: week, duration: 45m, next_action: Ask for the intro}
  - {name: Katherine Johnson, stage: nurture, every: 2 weeks, duration: 30m, next_action: Congratulate her}
  - {name: Barbara Liskov, stage: nurture, every: month, duration: 1h, next_action: Share the paper}
"""
# When each connection was last met before the quarter (days before START, local hour): the weekday of
# the last meeting is what the old "same weekday as last time" rule keeps to.
LAST_MET = {"Grace Hopper": (10, 16), "Alan Turing": (4, 11), "Katherine Johnson": (17, 9)}


def load_old() -> ModuleType:
    """The `schedules` package as of OLD_COMMIT, importable as `old_schedules`."""
    target = Path(tempfile.mkdtemp(prefix="circleback-old-"))
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", OLD_COMMIT, "schedules"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    package = target / "old_schedules"
    (target / "schedules").rename(package)
    for source in package.glob("*.py"):
        text = source.read_text(encoding="utf-8")
        source.write_text(
            text.replace("from schedules.", "from old_schedules.").replace(
                "import schedules.", "import old_schedules."
            ),
            encoding="utf-8",
        )
    sys.path.insert(0, str(target))
    return importlib.import_module("old_schedules")


def at(day: date, clock: time) -> datetime:
    return datetime.combine(day, clock, tzinfo=LONDON).astimezone(UTC)


# --- calendars ------------------------------------------------------------------------------------------


@dataclass
class Calendar:
    meetings: list[tuple[datetime, datetime]]  # timed busy time
    away: list[tuple[datetime, datetime]]  # all-day OOF events, midnight to midnight
    holidays: set[date]


def minutes_of(clock: time) -> int:
    return clock.hour * 60 + clock.minute


def clock_of(minutes: int) -> time:
    return time(minutes // 60, minutes % 60)


def generate(seed: int) -> Calendar:
    rng = random.Random(seed)
    day_start, day_end = minutes_of(HOURS[0]), minutes_of(HOURS[1])
    # Fixed weekly slots: (weekday, start minute, length).
    fixed = [(0, 9 * 60, 60), (3, 14 * 60, 120)]
    fixed += [(d, 9 * 60 + 30, 15) for d in range(5) if d != 0]  # stand-up
    for _report in range(5):
        fixed.append((rng.randrange(5), rng.choice(range(day_start, day_end - 30, 30)), 30))
    lunch_days = {d for d in range(5) if rng.random() < 0.8}
    meetings: list[tuple[datetime, datetime]] = []
    last = START + timedelta(weeks=WEEKS + 5)
    day = START - timedelta(days=7)
    while day < last:
        if day.weekday() < 5:
            taken: list[tuple[int, int]] = [(s, s + n) for d, s, n in fixed if d == day.weekday()]
            if day.weekday() in lunch_days:
                taken.append((12 * 60, 13 * 60))
            share = rng.uniform(0.60, 0.70)
            for _ in range(200):
                if sum(e - s for s, e in taken) >= share * (day_end - day_start):
                    break
                # Most meetings start on the hour or the half hour, a few on a quarter; half of them
                # start where another ends or end where another starts (busy days run back to back).
                length = rng.choice((30, 30, 45, 60, 60, 90))
                step = 15 if rng.random() < 0.2 else 30
                begin = rng.choice(range(day_start, day_end - length + 1, step))
                if rng.random() < 0.5:
                    s, e = rng.choice(taken)
                    begin = e if rng.random() < 0.5 else s - length
                    if not day_start <= begin <= day_end - length:
                        continue
                if all(begin >= e or begin + length <= s for s, e in taken):
                    taken.append((begin, begin + length))
            meetings += [(at(day, clock_of(s)), at(day, clock_of(e))) for s, e in taken]
        day += timedelta(days=1)
    away = [
        (at(OOF_WEEK + timedelta(days=n), time(0)), at(OOF_WEEK + timedelta(days=n + 1), time(0)))
        for n in range(5)
    ]
    days_off = set(holidays.country_holidays("GB", years=(2026, 2027)))
    return Calendar(meetings, away, days_off)


# --- one quarter, cycle by cycle ---------------------------------------------------------------------


@dataclass
class Placed:
    key: str
    connection: str | None
    due: date
    start: datetime
    end: datetime


@dataclass
class Quarter:
    happened: list[Placed] = field(default_factory=list)


def play(package: Any, plan: Any, calendar: Calendar) -> Quarter:
    """Run the planner every working morning of the quarter and keep what was in place when its time came."""
    events, planner = package.events, package.planner
    busy = [events.Interval(s, e) for s, e in calendar.meetings + calendar.away]
    interactions = [
        events.Interaction(name, at(START - timedelta(days=days), time(hour)))
        for name, (days, hour) in LAST_MET.items()
    ]
    reviews_done: list[datetime] = []
    first_due: dict[str, date] = {}
    previous: dict[str, Any] = {}
    quarter = Quarter()
    end = START + timedelta(weeks=WEEKS)
    day = START
    while day < end:
        now = at(day, time(7))
        # What was placed and whose time has come happened where it was placed.
        for occ in sorted(previous.values(), key=lambda o: o.start):
            if occ.start <= now:
                quarter.happened.append(Placed(occ.key, occ.connection, occ.due, occ.start, occ.end))
                if occ.connection is None:
                    reviews_done.append(occ.start)
                else:
                    interactions.append(events.Interaction(occ.connection, occ.start))
        previous = {k: o for k, o in previous.items() if o.start > now}
        inputs = {
            "interactions": interactions,
            "reviews_done": reviews_done,
            "busy": busy,
            "now": now,
            "horizon": HORIZON,
            "previous": previous,
            "first_due": first_due,
        }
        # Today's planner returns what it placed and what it could not; the old one only what it placed.
        if hasattr(planner, "plan_placement"):
            got = list(planner.plan_placement(plan, **inputs).occurrences)
        else:
            got = planner.plan_occurrences(plan, **inputs)
        for occ in got:
            chain = planner.REVIEWS if occ.connection is None else occ.connection.casefold()
            first_due.setdefault(chain, occ.due)
        previous = {o.key: o for o in got}
        day += timedelta(days=1)
    return quarter


# --- measures ------------------------------------------------------------------------------------------


@dataclass
class Measures:
    events: int = 0
    in_window: int = 0
    stacked_days: int = 0
    back_to_back: int = 0
    on_day_off: int = 0
    delays: list[int] = field(default_factory=list)  # working days after the due date
    calendar_delays: list[int] = field(default_factory=list)


def working_days_between(first: date, last: date, closed: set[date]) -> int:
    """Open working days d with first <= d < last (weekends, holidays and days away do not count)."""
    count, day = 0, first
    while day < last:
        if day.weekday() < 5 and day not in closed:
            count += 1
        day += timedelta(days=1)
    return count


def measure(quarter: Quarter, calendar: Calendar, into: Measures) -> None:
    closed = calendar.holidays | {s.astimezone(LONDON).date() for s, _ in calendar.away}
    others = sorted(calendar.meetings)
    mine = sorted(quarter.happened, key=lambda p: p.start)
    per_day = Counter(p.start.astimezone(LONDON).date() for p in mine)
    for placed in mine:
        local_start, local_end = placed.start.astimezone(LONDON), placed.end.astimezone(LONDON)
        day = local_start.date()
        into.events += 1
        into.in_window += any(s <= local_start.time() and local_end.time() <= e for s, e in WINDOWS)
        into.on_day_off += day in closed
        near = [(s, e) for s, e in others if s < placed.end + BUFFER and placed.start - BUFFER < e]
        near += [
            (p.start, p.end)
            for p in mine
            if p is not placed and p.start < placed.end + BUFFER and placed.start - BUFFER < p.end
        ]
        into.back_to_back += bool(near)
        due = max(placed.due, START)
        into.calendar_delays.append((day - due).days)
        into.delays.append(working_days_between(due, day, closed))
    weeks: dict[date, list[date]] = defaultdict(list)
    for n in range(WEEKS * 7):
        day = START + timedelta(days=n)
        if day.weekday() < 5 and day not in closed:
            weeks[day - timedelta(days=day.weekday())].append(day)
    for days in weeks.values():
        empty = any(per_day[d] == 0 for d in days)
        into.stacked_days += sum(1 for d in days if per_day[d] >= 2 and empty)


def row(name: str, m: Measures, calendars: int) -> str:
    share = 100 * m.in_window / m.events if m.events else 0.0
    return (
        f"| {name} | {m.events / calendars:.1f} | {share:.0f}% | {m.stacked_days / calendars:.2f} | "
        f"{m.back_to_back / calendars:.2f} | {m.on_day_off / calendars:.2f} | "
        f"{statistics.mean(m.delays):.2f} | {max(m.delays)} | {statistics.mean(m.calendar_delays):.2f} | "
        f"{max(m.calendar_delays)} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calendars", type=int, default=20)
    args = parser.parse_args()

    old = load_old()
    importlib.import_module("old_schedules.planner")
    importlib.import_module("old_schedules.plan")
    new = importlib.import_module("schedules")
    importlib.import_module("schedules.planner")
    importlib.import_module("schedules.plan")
    plans = {
        "before (ef983db)": (old, old.plan.parse_plan(PLAN, "bench.yaml")),
        # The defaults: 10:00-12:00 and 14:00-16:30, a 15-minute buffer, one a day, GB holidays.
        "issue 8, defaults": (new, new.plan.parse_plan(PLAN, "bench.yaml")),
        # The same rules without a buffer: what the buffer costs in delay on a fragmented calendar.
        "issue 8, buffer: 0m": (new, new.plan.parse_plan(PLAN + "placement: {buffer: 0m}\n", "bench.yaml")),
    }
    results = {name: Measures() for name in plans}
    for seed in range(args.calendars):
        calendar = generate(seed)
        for name, (package, plan) in plans.items():
            measure(play(package, plan, calendar), calendar, results[name])
    print(
        f"{args.calendars} generated calendars, {WEEKS} weeks from {START}, 5 connections + monthly review;"
        " per calendar:"
    )
    print()
    print(
        "| placement | events | inside preferred windows | days with 2+ while another day of the week had"
        " none | back-to-back (< 15 min from another meeting) | on a holiday or day away |"
        " mean delay (working days) | worst delay (working days) | mean delay (days) | worst delay (days) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, measures in results.items():
        print(row(name, measures, args.calendars))


if __name__ == "__main__":
    main()

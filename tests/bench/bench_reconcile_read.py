"""Benchmark: read a ten-year calendar of 50,000 events through IcsSource, twice.

Run on demand: `.venv/bin/python tests/bench/bench_reconcile_read.py [--events N] [--years Y]
[--window-days D]`.
The second read of an unchanged source must cost a small fraction of the first (what the read produced is
kept, connectors/ics_kept.py, under a hash of the content). A third read with the window moved a week, still
inside what was read, costs no parse either. Then the full read + reconcile + persist path, twice:
the second run on the unchanged source logs nothing new and costs a small fraction of the first.
"""

from __future__ import annotations

import argparse
import random
import resource
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from connectors.ics_source import IcsSource
from daemon.store import Store
from schedules.events import Interval
from schedules.plan import parse_plan
from schedules.reconcile import reconcile

PLAN = """
owner: {name: Bench Owner, email: owner@example.com}
timezone: Europe/London
mindset: Relationships first.
working_hours: {days: [mon, tue, wed, thu, fri], start: "09:00", end: "17:30"}
review: {every: month}
connections:
  - {name: Person Zero, email: person0@example.com, stage: nurture, every: 2 weeks, next_action: Call}
  - {name: Person One, email: person1@example.com, stage: elevate, every: month, next_action: Lunch}
  - {name: Person Two, email: person2@example.com, stage: find, target: true, every: month, next_action: Meet}
"""

START = datetime(2016, 1, 4, tzinfo=UTC)
PEOPLE = [f"person{i}@example.com" for i in range(200)]
PARTSTATS = ["ACCEPTED", "ACCEPTED", "ACCEPTED", "TENTATIVE", "NEEDS-ACTION", "DECLINED"]


def generate_calendar(path: Path, events: int, years: int, seed: int = 1) -> None:
    """A Google-style export: X-WR-TIMEZONE, TZID times, descriptions, attendees; one VEVENT in ten is a
    weekly series, some with EXDATE and a moved (RECURRENCE-ID) instance."""
    rng = random.Random(seed)
    hours = years * 365 * 24
    out = [
        "BEGIN:VCALENDAR",
        "PRODID:-//Google Inc//Google Calendar 70.9054//EN",
        "VERSION:2.0",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        "X-WR-CALNAME:bench@example.com",
        "X-WR-TIMEZONE:Europe/London",
    ]
    written = 0
    while written < events:
        start = (START + timedelta(hours=rng.randrange(hours))).replace(tzinfo=None)
        start = start.replace(hour=8 + start.hour % 10, minute=rng.choice((0, 15, 30, 45)))
        end = start + timedelta(minutes=rng.choice((15, 30, 30, 45, 60, 90)))
        uid = f"bench-{written}@example.com"
        recurring = rng.random() < 0.1 and written + 2 < events
        lines = [
            "BEGIN:VEVENT",
            f"DTSTART;TZID=Europe/London:{start:%Y%m%dT%H%M%S}",
            f"DTEND;TZID=Europe/London:{end:%Y%m%dT%H%M%S}",
            "DTSTAMP:20260101T000000Z",
            f"UID:{uid}",
            "ORGANIZER;CN=Bench Owner:mailto:bench@example.com",
        ]
        for person in rng.sample(PEOPLE, rng.randint(1, 4)):
            lines.append(
                f"ATTENDEE;CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT={rng.choice(PARTSTATS)};CN={person}"
            )
            lines.append(f" ;X-NUM-GUESTS=0:mailto:{person}")
        lines += [
            "CREATED:20250101T000000Z",
            f"DESCRIPTION:Agenda for meeting {written}: review\\, decide\\, follow up.",
            "LAST-MODIFIED:20250101T000000Z",
            "SEQUENCE:0",
            "STATUS:" + ("CANCELLED" if rng.random() < 0.02 else "CONFIRMED"),
            f"SUMMARY:Meeting {written}",
            "TRANSP:" + ("TRANSPARENT" if rng.random() < 0.05 else "OPAQUE"),
        ]
        if recurring:
            lines.insert(3, "RRULE:FREQ=WEEKLY;COUNT=20")
            lines.insert(4, f"EXDATE;TZID=Europe/London:{start + timedelta(weeks=3):%Y%m%dT%H%M%S}")
        out += [*lines, "END:VEVENT"]
        written += 1
        if recurring:
            moved = start + timedelta(weeks=5)
            out += [
                "BEGIN:VEVENT",
                f"DTSTART;TZID=Europe/London:{moved + timedelta(days=1):%Y%m%dT%H%M%S}",
                f"DTEND;TZID=Europe/London:{moved + timedelta(days=1, minutes=30):%Y%m%dT%H%M%S}",
                "DTSTAMP:20260101T000000Z",
                f"UID:{uid}",
                f"RECURRENCE-ID;TZID=Europe/London:{moved:%Y%m%dT%H%M%S}",
                "SEQUENCE:1",
                f"SUMMARY:Meeting {written - 1} (moved)",
                "END:VEVENT",
            ]
            written += 1
    out.append("END:VCALENDAR")
    path.write_text("\r\n".join(out) + "\r\n", encoding="utf-8")


def _timed(source: IcsSource, window: Interval) -> tuple[float, int, int]:
    started = time.perf_counter()
    snapshot = source.read(window)
    return time.perf_counter() - started, len(snapshot.observations), len(snapshot.busy)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=50_000, help="VEVENT components (default 50000)")
    parser.add_argument("--years", type=int, default=10)
    parser.add_argument("--window-days", type=int, default=0, help="read window; 0 means the whole calendar")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "ten-years.ics"
        started = time.perf_counter()
        generate_calendar(path, args.events, args.years)
        size = path.stat().st_size / 2**20
        print(f"generated {args.events} events over {args.years} years: {size:.1f} MiB", end=" ")
        print(f"in {time.perf_counter() - started:.1f} s")
        days = args.window_days or args.years * 366
        window = Interval(START - timedelta(days=1), START + timedelta(days=days))
        source = IcsSource("bench", str(path), cache_dir=Path(work) / "cache")

        first, observations, busy = _timed(source, window)
        print(
            f"first read:  {first:8.2f} s  "
            f"({observations} instances in a {days}-day window, {busy} busy spans)"
        )
        second, _, _ = _timed(source, window)
        print(f"second read: {second:8.3f} s  (unchanged source)")
        print(f"ratio:       {second / first:8.4f}  ({second / first:.2%} of the first read)")
        shifted = Interval(window.start + timedelta(days=7), window.end + timedelta(days=7))
        third, _, _ = _timed(source, shifted)
        print(f"new window:  {third:8.2f} s  (unchanged source, window moved a week: inside what was read)")
        print(f"parses:      {source.parses:8d}")
        print(f"full path (read + reconcile + persist in SQLite), {days}-day window:")
        plan = parse_plan(PLAN, "bench-plan.yaml")
        now = window.end
        with Store(f"sqlite:///{work}/bench.db") as store:
            runs = []
            for attempt in (1, 2):
                fresh = (
                    IcsSource("bench", str(path), cache_dir=Path(work) / "cache") if attempt == 1 else source
                )
                started = time.perf_counter()
                snapshot = fresh.read(window)
                known = [row.interaction for row in store.interactions()]
                outcomes = reconcile(plan, (), snapshot.observations, known, now)
                store.save_cycle(
                    revisions=(),
                    removed=(),
                    statuses={},
                    interactions=[(e.interaction, e.occurrence_key) for e in outcomes.entries],
                )
                runs.append(time.perf_counter() - started)
                print(f"  run {attempt}: {runs[-1]:8.2f} s, {len(outcomes.entries)} new log entries")
            print(f"  ratio:  {runs[1] / runs[0]:8.4f}  ({runs[1] / runs[0]:.2%} of the first run)")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak memory: {peak:8.0f} MiB (resident set, whole process)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark: plan a year for 1, 100 and 1,000 plans against a busy calendar of 25 events a week.

Run on demand: `.venv/bin/python tests/bench/bench_planner.py`. Prints the time per plan and compares it
with the time icalendar takes to parse the busy file: placement should cost less than reading the input.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from icalendar import Calendar, Event

from connectors.ics_parse import expand, load_calendar
from schedules.busy import busy_time
from schedules.events import Interval
from schedules.plan import parse_plan
from schedules.planner import plan_placement

ADA = Path(__file__).resolve().parents[1] / "fixtures" / "plans" / "ada.yaml"
NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
YEAR = timedelta(days=365)


def busy_calendar(weeks: int, per_week: int, seed: int) -> bytes:
    """A realistic work calendar: meetings of 30-90 minutes on weekdays, 08:00-18:00 UTC."""
    rng = random.Random(seed)
    cal = Calendar()
    cal.add("prodid", "-//circleback bench//EN")
    cal.add("version", "2.0")
    start_monday = NOW - timedelta(days=NOW.weekday())
    for week in range(weeks):
        for n in range(per_week):
            day = start_monday + timedelta(weeks=week, days=rng.randrange(5))
            begin = day.replace(hour=8) + timedelta(minutes=15 * rng.randrange(36))
            event = Event()
            event.add("uid", f"busy-{week}-{n}@bench")
            event.add("dtstamp", NOW)
            event.add("dtstart", begin)
            event.add("dtend", begin + timedelta(minutes=rng.choice((30, 45, 60, 90))))
            event.add("summary", f"Meeting {week}-{n}")
            cal.add_component(event)
    data: bytes = cal.to_ical()
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--counts", default="1,100,1000")
    args = parser.parse_args()

    data = busy_calendar(53, 25, seed=1)
    parse_times = []
    for _ in range(5):
        t0 = time.perf_counter()
        Calendar.from_ical(data)
        parse_times.append(time.perf_counter() - t0)
    parse_s = statistics.median(parse_times)
    window = Interval(NOW - timedelta(days=7), NOW + YEAR + timedelta(days=7))
    busy = busy_time(expand(load_calendar(data, "bench"), window).observations, ())
    plan = parse_plan(ADA.read_text(), str(ADA))
    print(f"busy file: {len(data) / 1024:.0f} KiB, {len(busy)} busy intervals over a year")
    print(f"icalendar parse of the busy file: {parse_s * 1000:.1f} ms (median of 5)")

    for count in (int(c) for c in args.counts.split(",")):
        t0 = time.perf_counter()
        placed = 0
        for i in range(count):
            # Each plan sees a slightly different 'now' so no run can reuse another's work.
            now = NOW + timedelta(minutes=i % 60)
            placed += len(
                list(
                    plan_placement(
                        plan,
                        interactions=(),
                        reviews_done=(),
                        busy=busy,
                        now=now,
                        horizon=YEAR,
                    ).occurrences
                )
            )
        elapsed = time.perf_counter() - t0
        per_plan = elapsed / count
        print(
            f"{count:>5} plan(s): {elapsed:8.2f} s total, {per_plan * 1000:7.1f} ms per plan, "
            f"{placed // count} occurrences each, placement/parse = {per_plan / parse_s:.2f}"
        )


if __name__ == "__main__":
    main()

"""Reading a calendar has a budget: hostile or broken rules finish fast, and what is over budget is named.

Every read runs in a child process with a time and memory limit (tests/bounded.py): a regression fails
with a message instead of hanging. The assertions are on what comes out, never on how long it took.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from bounded import run_bounded
from ics_reading import parse_calendar

from connectors.ics_parse import (
    CALENDAR_MAX_INSTANCES,
    SERIES_MAX_STEPS,
    Budget,
    expand,
    load_calendar,
)
from schedules.events import Interval, Snapshot

WINDOW = Interval(datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 3, 5, tzinfo=UTC))  # 63 days
GOOD = "UID:good@example.com\nDTSTART:20250107T100000Z\nDTEND:20250107T110000Z\nSUMMARY:Good"


def calendar(*events: str) -> bytes:
    body = "".join(
        f"BEGIN:VEVENT\r\nDTSTAMP:20250101T000000Z\r\n{event.strip()}\r\nEND:VEVENT\r\n" for event in events
    )
    text = f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\n{body}END:VCALENDAR\r\n"
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


def series(uid: str, rule: str, start: str = "20250106T090000Z") -> str:
    end = start[:9] + "09" + start[11:] if "T" in start else start
    return f"UID:{uid}\nDTSTART:{start}\nDTEND:{end.replace('T09', 'T10')}\nRRULE:{rule}\nSUMMARY:{uid}"


def read(data: bytes, budget: Budget | None = None) -> Snapshot:
    return expand(load_calendar(data, "hostile.ics"), WINDOW, budget=budget)


# The 197-byte calendars: each rule never matches, and dateutil searches it up to the year 9999.
NEVER = [
    "FREQ=HOURLY;BYSETPOS=2",
    "FREQ=DAILY;BYSETPOS=2",
    "FREQ=YEARLY;BYMONTHDAY=-30;BYMONTH=2",
    "FREQ=YEARLY;BYWEEKNO=1;BYMONTH=7",
    "FREQ=HOURLY;BYYEARDAY=1;BYMONTH=2",  # a shape no check names: only the search bound stops it
]


@pytest.mark.parametrize("rule", NEVER)
def test_a_rule_that_never_matches_finishes_and_the_rest_is_read(rule: str) -> None:
    snapshot = run_bounded(read, calendar(series("never@example.com", rule), GOOD), seconds=60)
    uids = [o.uid for o in snapshot.observations]
    # DTSTART is an instance even when the rule never matches (RFC 5545), unless the event is skipped.
    assert uids in (["good@example.com"], ["never@example.com", "good@example.com"])
    assert all(w.startswith("hostile.ics: line ") and "never@example.com" in w for w in snapshot.warnings)


@pytest.mark.parametrize("rule", NEVER[:4])
def test_the_known_never_matching_shapes_are_named(rule: str) -> None:
    snapshot = run_bounded(read, calendar(series("never@example.com", rule), GOOD), seconds=60)
    (warning,) = snapshot.warnings
    assert warning.startswith("hostile.ics: line 4: event 'never@example.com': RRULE never occurs")
    assert warning.endswith("; skipped")


def test_a_never_matching_rule_from_the_distant_past_finishes() -> None:
    rule = "FREQ=DAILY;BYYEARDAY=1;BYMONTH=2"
    snapshot = run_bounded(read, calendar(series("old@x", rule, "19000101T090000Z"), GOOD), seconds=60)
    assert [o.uid for o in snapshot.observations] == ["good@example.com"]
    assert snapshot.warnings == ()


def test_a_rule_searched_from_too_far_back_is_over_the_series_budget() -> None:
    # Every minute-hour since 1900: 1.1 million hours to search before the window even starts.
    minutely = series("ancient@example.com", "FREQ=MINUTELY;INTERVAL=60", "19000101T090000Z")
    snapshot = run_bounded(read, calendar(minutely, GOOD), seconds=60)
    assert [o.uid for o in snapshot.observations] == ["good@example.com"]
    (warning,) = snapshot.warnings
    assert warning.startswith("hostile.ics: line 4: event 'ancient@example.com': its RRULE would be ")
    assert f"(more than {SERIES_MAX_STEPS:,}); skipped" in warning


def test_a_valid_rule_keeps_every_instance_in_the_window() -> None:
    # The search bound stops after the window, never inside it, whatever the rule's rhythm.
    rules = {
        "daily@x": ("FREQ=DAILY", 58),  # 6 January to 4 March
        "weekly@x": ("FREQ=WEEKLY;BYDAY=MO,TH", 17),
        # DTSTART (6 January) is an instance of its own in the next three (RFC 5545).
        "yearly@x": ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=-1", 2),  # and 28 February 2025
        "leap@x": ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29", 1),  # the next one is in 2028
        "monthly@x": ("FREQ=MONTHLY;BYDAY=-1FR", 3),  # and 31 January, 28 February
    }
    events = [series(uid, rule) for uid, (rule, _) in rules.items()]
    snapshot = run_bounded(read, calendar(*events), seconds=60)
    counts = {uid: sum(o.uid == uid for o in snapshot.observations) for uid in rules}
    assert counts == {uid: expected for uid, (_, expected) in rules.items()}
    assert snapshot.warnings == ()
    # The same parsed calendar, read again for a window years later, still finds the leap day.
    parsed = load_calendar(calendar(*events), "t")
    later = expand(parsed, Interval(datetime(2028, 2, 1, tzinfo=UTC), datetime(2028, 3, 1, tzinfo=UTC)))
    assert sum(o.uid == "leap@x" for o in later.observations) == 1


def _many_daily_series(count: int) -> bytes:
    return calendar(*(series(f"s{i}@x", "FREQ=DAILY", "20250101T090000Z") for i in range(count)), GOOD)


def _read_many(count: int) -> tuple[int, int, list[str]]:
    snapshot = read(_many_daily_series(count))
    uids = {o.uid for o in snapshot.observations}
    return len(snapshot.observations), len(uids), list(snapshot.warnings)


def test_many_series_stop_at_the_calendar_budget_and_say_so() -> None:
    # 1,000 daily series give 63,000 instances in the window, over the calendar's 50,000.
    observations, uids, warnings = run_bounded(_read_many, 1000, seconds=180)
    (warning,) = warnings
    assert warning.startswith(f"hostile.ics: over its reading budget (more than {CALENDAR_MAX_INSTANCES:,} ")
    skipped = int(warning.split("); ")[1].split(" recurring")[0])
    read_series = 1000 - skipped
    assert read_series * 63 <= CALENDAR_MAX_INSTANCES < (read_series + 1) * 65
    assert observations == read_series * 63 + 1  # every series read is complete, and the single survives
    assert uids == read_series + 1


def test_budgets_can_be_made_small_and_the_series_budget_is_per_series() -> None:
    data = calendar(series("a@x", "FREQ=DAILY"), series("b@x", "FREQ=DAILY;COUNT=3"), GOOD)
    snapshot = read(data, Budget(series_instances=10))
    assert sum(o.uid == "a@x" for o in snapshot.observations) == 10
    assert sum(o.uid == "b@x" for o in snapshot.observations) == 3
    assert snapshot.warnings == (
        "hostile.ics: line 4: event 'a@x': more than 10 instances in the window; the rest are ignored",
    )


def test_the_time_budgets_name_the_series_or_the_calendar() -> None:
    data = calendar(series("a@x", "FREQ=DAILY"), series("b@x", "FREQ=WEEKLY"), GOOD)
    per_series = read(data, Budget(series_seconds=0))
    assert [o.uid for o in per_series.observations] == ["good@example.com"]
    assert per_series.warnings == (
        "hostile.ics: line 4: event 'a@x': expanding it took more than 0 s; skipped",
        "hostile.ics: line 12: event 'b@x': expanding it took more than 0 s; skipped",
    )
    whole = read(data, Budget(calendar_seconds=0))
    assert [o.uid for o in whole.observations] == ["good@example.com"]
    assert whole.warnings == (
        "hostile.ics: over its reading budget (more than 0 s); 2 recurring event(s) not read, "
        "the first at line 4 ('a@x')",
    )


def test_one_calendar_over_budget_leaves_the_next_one_whole() -> None:
    hostile = read(calendar(series("a@x", "FREQ=DAILY"), GOOD), Budget(calendar_instances=5))
    assert [o.uid for o in hostile.observations] == ["good@example.com"]
    other = parse_calendar(calendar(series("a@x", "FREQ=DAILY")), "other.ics", WINDOW)
    assert len(other.observations) == 58 and other.warnings == ()


def test_a_dense_rule_that_ended_long_ago_is_not_over_budget() -> None:
    # Searching it stops at UNTIL, so it costs a few steps, not a century of minutes.
    ended = series("ended@x", "FREQ=MINUTELY;INTERVAL=60;UNTIL=19000102T000000Z", "19000101T090000Z")
    snapshot = run_bounded(read, calendar(ended, GOOD), seconds=60)
    assert [o.uid for o in snapshot.observations] == ["good@example.com"]
    assert snapshot.warnings == ()


# Reads many series in a fresh interpreter that may map only a few more MiB (argv[1]) once the data is
# built: a fresh process, so that how far the read gets does not depend on what earlier tests left mapped.
_SHORT_OF_MEMORY = """
import json, resource, sys
from test_ics_budget import GOOD, WINDOW, calendar, series
from ics_reading import parse_calendar
data = calendar(*(series(f"s{i}@x", "FREQ=DAILY", start="20240101T090000Z") for i in range(4000)), GOOD)
with open("/proc/self/status") as status:
    mapped = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
soft, hard = resource.getrlimit(resource.RLIMIT_AS)
resource.setrlimit(resource.RLIMIT_AS, (mapped + int(sys.argv[1]) * 2**20, hard))
warnings = parse_calendar(data, "big.ics", WINDOW).warnings
resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
print(json.dumps(warnings))
"""


@pytest.mark.parametrize("mib", [20, 30])
def test_running_out_of_memory_is_said_as_such(mib: int) -> None:
    # Python 3.11 reports some failed allocations as "SystemError: error return without exception set";
    # a read that runs out of memory says so, whichever way the interpreter put it.
    tests = str(Path(__file__).parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [tests, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, "-c", _SHORT_OF_MEMORY, str(mib)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    warnings = json.loads(done.stdout)
    assert not any("SystemError" in w or "without exception set" in w for w in warnings), warnings
    assert any("ran out of memory" in w for w in warnings), warnings

"""Fuzzing the reader: mangled versions of real exports never make it raise, and what it returns is sane.

Every property runs in a child process with a time and a memory limit (tests/bounded.py): a rule that
sends the expansion searching to the year 9999, or an input that blows up, fails the test instead of
hanging it. The inputs include the rules that never match and large calendars, and the assertions count
the events that come out.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from bounded import run_bounded
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ics_reading import parse_calendar

from connectors.ics_parse import CALENDAR_MAX_INSTANCES, SERIES_MAX_INSTANCES
from schedules.events import Interval, Snapshot

FIXTURES = Path(__file__).parent / "fixtures" / "ics"
SEEDS = [(FIXTURES / name).read_bytes() for name in ("google.ics", "outlook.ics", "apple.ics")]
WINDOW = Interval(datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 3, 1, tzinfo=UTC))

# Values a garbled property may take: near-misses of real values are what finds bugs, not random noise.
VALUES = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "",
            "20250107",
            "20250107T",
            "20250107T25",
            "20251307T100000Z",
            "20250107T100000Z/PT1H",
            "-PT1H",
            "P1D",
            "PT0S",
            "FREQ=DAILY;COUNT=3",
            "FREQ=WEEKLY;INTERVAL=0",
            "FREQ=HOURLY;BYMINUTE=0,15,30,45",
            "FREQ=MONTHLY;BYMONTHDAY=31;BYMONTH=2",
            "FREQ=YEARLY;BYDAY=+60MO",
            "FREQ=WEEKLY;UNTIL=2025",
            "mailto:",
            "CANCELLED",
            "OPAQUE",
            "\\",
            ";;;",
            "99991231T235959Z",
            "00010101T000000Z",
            # Rules that never match: dateutil searches them up to the year 9999 unless bounded.
            "FREQ=HOURLY;BYSETPOS=2",
            "FREQ=DAILY;BYSETPOS=2",
            "FREQ=YEARLY;BYMONTHDAY=-30;BYMONTH=2",
            "FREQ=YEARLY;BYWEEKNO=1;BYMONTH=7",
            "FREQ=HOURLY;BYYEARDAY=1;BYMONTH=2",
            "FREQ=MINUTELY;INTERVAL=60",
            "FREQ=HOURLY",
            "FREQ=SECONDLY;INTERVAL=3600;BYSETPOS=-2",
        ]
    ),
)
NEVER = [
    "FREQ=HOURLY;BYSETPOS=2",
    "FREQ=DAILY;BYSETPOS=2",
    "FREQ=YEARLY;BYMONTHDAY=-30;BYMONTH=2",
    "FREQ=YEARLY;BYWEEKNO=1;BYMONTH=7",
    "FREQ=HOURLY;BYYEARDAY=1;BYMONTH=2",
    "FREQ=DAILY;BYYEARDAY=366;BYMONTH=1",
    "FREQ=WEEKLY;BYWEEKNO=20;BYMONTH=12",
]


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\r\n")


@st.composite
def mangled(draw: st.DrawFn) -> bytes:
    data = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        lines = _lines(data)
        kind = draw(st.sampled_from(["truncate", "delete", "garble", "bytes", "duplicate", "swap", "params"]))
        index = draw(st.integers(0, len(lines) - 1))
        if kind == "truncate":
            data = data[: draw(st.integers(0, len(data)))]
            continue
        if kind == "delete":
            del lines[index : index + draw(st.integers(1, 5))]
        elif kind == "garble":
            name = lines[index].split(b":", 1)[0]
            lines[index] = name + b":" + draw(VALUES).encode("utf-8", "surrogatepass")
        elif kind == "bytes":
            at = draw(st.integers(0, len(lines[index])))
            noise = draw(st.binary(min_size=1, max_size=8))
            lines[index] = lines[index][:at] + noise + lines[index][at:]
        elif kind == "duplicate":
            lines.insert(draw(st.integers(0, len(lines))), lines[index])
        elif kind == "swap":
            other = draw(st.integers(0, len(lines) - 1))
            lines[index], lines[other] = lines[other], lines[index]
        else:
            name, _, value = lines[index].partition(b":")
            lines[index] = (
                name + b";" + draw(st.sampled_from([b"TZID=Nowhere", b"VALUE=DATE", b'X="a:b"', b"="]))
            )
            lines[index] += b":" + value
        data = b"\r\n".join(lines)
    return data


def _check(snapshot: Snapshot, data: bytes) -> None:
    assert isinstance(snapshot, Snapshot)
    previous_end = None
    for interval in snapshot.busy:
        assert interval.start.utcoffset() == timedelta(0) and interval.end.utcoffset() == timedelta(0)
        assert interval.start < interval.end
        if previous_end is not None:
            assert previous_end < interval.start  # sorted and merged
        previous_end = interval.end
        assert interval.overlaps(WINDOW)
    for observation in snapshot.observations:
        assert observation.start.utcoffset() == timedelta(0)
        assert observation.start <= observation.end
        assert observation.uid
    assert all(isinstance(warning, str) and warning.startswith("fuzz.ics") for warning in snapshot.warnings)
    # However broken the input, no more comes out than its events and the budget allow.
    events = data.upper().count(b"BEGIN:VEVENT")
    assert len(snapshot.observations) <= events * SERIES_MAX_INSTANCES
    assert len(snapshot.observations) <= events + CALENDAR_MAX_INSTANCES
    assert len(snapshot.warnings) <= 11  # summarised: a few examples and a count


def _read(data: bytes) -> Snapshot:
    return parse_calendar(
        data, "fuzz.ics", WINDOW, default_tz="Europe/Berlin", owner_emails=["ada@example.com"]
    )


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(mangled())
def _mangled_exports_never_raise(data: bytes) -> None:
    _check(_read(data), data)


def test_mangled_exports_never_raise() -> None:
    run_bounded(_mangled_exports_never_raise, seconds=600)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=2000))
def _random_bytes_never_raise(data: bytes) -> None:
    data = b"BEGIN:VCALENDAR\r\n" + data
    _check(parse_calendar(data, "fuzz.ics", WINDOW), data)


def test_random_bytes_never_raise() -> None:
    run_bounded(_random_bytes_never_raise, seconds=300)


def _event(uid: str, body: str) -> str:
    return f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20250101T000000Z\r\n{body}END:VEVENT\r\n"


def _calendar(events: list[str]) -> bytes:
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//fuzz//EN\r\n" + "".join(events) + "END:VCALENDAR\r\n"
    ).encode()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    good=st.integers(0, 3000),
    hostile=st.lists(st.tuples(st.sampled_from(NEVER), st.integers(0, 3)), max_size=12),
    daily=st.integers(0, 30),
)
def _hostile_rules_among_many_events(good: int, hostile: list[tuple[str, int]], daily: int) -> None:
    events = [
        _event(f"good-{i}@x", f"DTSTART:202501{1 + i % 28:02d}T{8 + i % 10:02d}0000Z\r\nDURATION:PT30M\r\n")
        for i in range(good)
    ]
    events += [
        _event(f"never-{n}@x", f"DTSTART:2025010{1 + day}T090000Z\r\nDURATION:PT1H\r\nRRULE:{rule}\r\n")
        for n, (rule, day) in enumerate(hostile)
    ]
    # Daily series from 1 January: 59 instances each in January and February.
    events += [
        _event(f"daily-{n}@x", "DTSTART:20250101T070000Z\r\nDURATION:PT15M\r\nRRULE:FREQ=DAILY\r\n")
        for n in range(daily)
    ]
    data = _calendar(events)
    snapshot = _read(data)
    _check(snapshot, data)
    uids = [o.uid for o in snapshot.observations]
    assert sum(uid.startswith("good-") for uid in uids) == good
    assert sum(uid.startswith("daily-") for uid in uids) == 59 * daily
    # A rule that never matches gives at most its DTSTART (RFC 5545), or nothing when it is skipped.
    assert sum(uid.startswith("never-") for uid in uids) <= len(hostile)
    # Every warning is about a never-matching rule, or the summary of more of them (over ten are summed up).
    assert all("never-" in w or "more warning(s) like these" in w for w in snapshot.warnings)


def test_hostile_rules_among_many_events() -> None:
    run_bounded(_hostile_rules_among_many_events, seconds=600)


def _twenty_thousand_daily_series() -> tuple[int, int, tuple[str, ...]]:
    # The 3 MB calendar: 20,000 daily series took 431 s and 3.3 GB before reading had a budget.
    events = [
        _event(f"s{i}@x", f"DTSTART:20240101T{8 + i % 10:02d}0000Z\r\nDURATION:PT30M\r\nRRULE:FREQ=DAILY\r\n")
        for i in range(20_000)
    ]
    data = _calendar(events)
    snapshot = parse_calendar(data, "fuzz.ics", WINDOW)
    return len(data), len(snapshot.observations), snapshot.warnings


def test_a_3_mb_calendar_of_daily_series_stays_within_its_budget() -> None:
    size, observations, warnings = run_bounded(_twenty_thousand_daily_series, seconds=300)
    assert size > 2_500_000
    (warning,) = warnings
    assert warning.startswith(f"fuzz.ics: over its reading budget (more than {CALENDAR_MAX_INSTANCES:,} ")
    skipped = int(warning.split("); ")[1].split(" recurring")[0])
    read = 20_000 - skipped
    assert observations == read * 59  # every series read is whole: 1 January to 28 February
    # The budget counts the instances of a day's margin either side of the window too (at most 62).
    assert read * 59 <= CALENDAR_MAX_INSTANCES < (read + 1) * 62

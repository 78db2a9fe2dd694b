"""Fuzzing the reader: mangled versions of real exports never make it raise, and what it returns is sane."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.ics_parse import parse_calendar
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
        ]
    ),
)


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


def _check(snapshot: Snapshot) -> None:
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


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(mangled())
def test_mangled_exports_never_raise(data: bytes) -> None:
    _check(
        parse_calendar(data, "fuzz.ics", WINDOW, default_tz="Europe/Berlin", owner_emails=["ada@example.com"])
    )


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_never_raise(data: bytes) -> None:
    _check(parse_calendar(b"BEGIN:VCALENDAR\r\n" + data, "fuzz.ics", WINDOW))

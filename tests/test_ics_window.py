"""Reading only the events that can reach the window gives exactly what reading all of them gives."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.ics_parse import expand, load_calendar
from connectors.ics_source import COVER_MARGIN, IcsSource
from connectors.ics_window import outside
from schedules.events import Interval, Snapshot

ZONES = ("Europe/Berlin", "America/New_York", "Pacific/Kiritimati", "Pacific/Pago_Pago")
EPOCH = datetime(2020, 1, 1)
RULES = (
    None,
    "FREQ=WEEKLY;COUNT=12",
    "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,TH;COUNT=9",
    "FREQ=DAILY;COUNT=20",
    "FREQ=DAILY;INTERVAL=3;BYDAY=TU;COUNT=6",
    "FREQ=DAILY;UNTIL={until}",
    "FREQ=WEEKLY;UNTIL={until}",
    "FREQ=MONTHLY;BYDAY=1MO;COUNT=8",
    "FREQ=MONTHLY;BYDAY=-1FR;COUNT=5",
    "FREQ=MONTHLY;BYMONTHDAY=31;COUNT=6",
    "FREQ=MONTHLY;COUNT=7",
    "FREQ=MONTHLY;BYMONTHDAY=-3;COUNT=4",
    "FREQ=YEARLY;COUNT=3",
    "FREQ=YEARLY;BYMONTH=2,8;COUNT=4",
    "FREQ=WEEKLY",
    "FREQ=HOURLY;INTERVAL=6;COUNT=10",
)


@st.composite
def events(draw: st.DrawFn, uid: str) -> list[str]:
    """One event, or a series with exceptions and moved instances, all under `uid`."""
    all_day = draw(st.booleans())
    start = EPOCH + timedelta(days=draw(st.integers(0, 7 * 365)), hours=draw(st.integers(0, 23)))
    kind = draw(st.sampled_from(("zone", "utc", "floating")))
    zone = draw(st.sampled_from(ZONES))

    def stamp(name: str, moment: datetime) -> str:
        if all_day:
            return f"{name};VALUE=DATE:{moment:%Y%m%d}"
        if kind == "zone":
            return f"{name};TZID={zone}:{moment:%Y%m%dT%H%M%S}"
        return f"{name}:{moment:%Y%m%dT%H%M%S}" + ("Z" if kind == "utc" else "")

    length = (
        timedelta(days=draw(st.integers(1, 3))) if all_day else timedelta(minutes=draw(st.integers(0, 600)))
    )
    lines = ["BEGIN:VEVENT", f"UID:{uid}", stamp("DTSTART", start)]
    ending = draw(st.sampled_from(("DTEND", "DURATION", "none")))
    if ending == "DTEND":
        lines.append(stamp("DTEND", start + length))
    elif ending == "DURATION":
        lines.append(f"DURATION:P{length.days}DT{length.seconds}S")
    else:
        length = timedelta(days=1) if all_day else timedelta(0)
    lines.append("SUMMARY:Meeting")
    rule = draw(st.sampled_from(RULES))
    overrides: list[list[str]] = []
    if rule is not None:
        until = start + timedelta(days=draw(st.integers(0, 400)))
        lines.append(
            "RRULE:" + rule.format(until=f"{until:%Y%m%d}" if all_day else f"{until:%Y%m%dT%H%M%SZ}")
        )
        week = draw(st.integers(0, 6))
        if draw(st.booleans()):
            lines.append(stamp("EXDATE", start + timedelta(weeks=week)))
        if draw(st.booleans()):
            lines.append(stamp("RDATE", start + timedelta(days=draw(st.integers(-400, 900)))))
        for _ in range(draw(st.integers(0, 2))):
            # A moved instance: named by where it was, anywhere it is now (even years away).
            was = start + timedelta(weeks=draw(st.integers(0, 11)))
            now = was + timedelta(days=draw(st.integers(-800, 800)), hours=draw(st.integers(-5, 5)))
            overrides.append(
                [
                    "BEGIN:VEVENT",
                    f"UID:{uid}",
                    stamp("RECURRENCE-ID", was),
                    stamp("DTSTART", now),
                    stamp("DTEND", now + length) if ending != "none" or all_day else stamp("DTEND", now),
                    "SUMMARY:Moved",
                    "SEQUENCE:1",
                    "END:VEVENT",
                ]
            )
    body = [*lines, "END:VEVENT"]
    return [line for part in (body, *overrides) for line in part]


@st.composite
def calendars(draw: st.DrawFn) -> bytes:
    count = draw(st.integers(1, 12))
    # A few UIDs are shared: a later event may carry an earlier one's UID (duplicates, several masters).
    uids = [f"e{draw(st.integers(0, max(0, index - 1)))}" if draw(st.integers(0, 5)) == 0 else f"e{index}"
            for index in range(count)]  # fmt: skip
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//test//EN"]
    if draw(st.booleans()):
        lines.append("X-WR-TIMEZONE:Asia/Tokyo")
    for uid in uids:
        lines += draw(events(uid))
    lines.append("END:VCALENDAR")
    return ("\r\n".join(lines) + "\r\n").encode()


@st.composite
def windows(draw: st.DrawFn) -> Interval:
    start = datetime(2019, 6, 1, tzinfo=UTC) + timedelta(hours=draw(st.integers(0, 9 * 365 * 24)))
    return Interval(start, start + timedelta(hours=draw(st.integers(1, 200 * 24))))


def _same(filtered: Snapshot, full: Snapshot) -> None:
    assert filtered.observations == full.observations
    assert filtered.busy == full.busy
    # What is said about the events read is said the same way; nothing is said about those left out.
    assert set(filtered.warnings) <= set(full.warnings)


EVERYTHING = Interval(datetime(2010, 1, 1, tzinfo=UTC), datetime(2035, 1, 1, tzinfo=UTC))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(calendars(), st.data(), st.sampled_from((None, "Europe/London", "Asia/Kolkata")))
def test_reading_only_what_reaches_the_window_changes_nothing(
    data: bytes, draw: st.DataObject, default_tz: str | None
) -> None:
    full = load_calendar(data, "t.ics", default_tz=default_tz)
    # Windows that start or end within hours of a real instance's start or end (where a bound a little
    # short would show), or anywhere.
    edges = [t for o in expand(full, EVERYTHING).observations for t in (o.start, o.end)]
    window = draw.draw(windows())
    near_an_edge = draw.draw(st.integers(0, 4)) > 0
    if edges and near_an_edge:
        near: datetime = draw.draw(st.sampled_from(edges))
        edge = near + timedelta(minutes=draw.draw(st.integers(-3000, 3000)))
        length = timedelta(minutes=draw.draw(st.integers(1, 90 * 24 * 60)))
        window = Interval(edge, edge + length) if draw.draw(st.booleans()) else Interval(edge - length, edge)
    margin = timedelta(days=draw.draw(st.sampled_from((0, 0, 1, 31))))
    cover = Interval(window.start - margin, window.end + margin)
    filtered = expand(load_calendar(data, "t.ics", default_tz=default_tz, cover=cover), window)
    _same(filtered, expand(full, window))


def _calendar(*events: str) -> bytes:
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\n" + "".join(events) + "END:VCALENDAR\r\n").encode()


def _event(uid: str, *lines: str) -> str:
    return "BEGIN:VEVENT\r\n" + f"UID:{uid}\r\n" + "".join(f"{line}\r\n" for line in lines) + "END:VEVENT\r\n"


WINDOW = Interval(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 9, 1, tzinfo=UTC))


def test_history_and_ended_series_are_left_out_and_the_rest_kept() -> None:
    data = _calendar(
        _event("old", "DTSTART:20160104T090000Z", "DTEND:20160104T100000Z"),
        _event(
            "ended",
            "DTSTART;TZID=Europe/Berlin:20180104T090000",
            "DURATION:PT1H",
            "RRULE:FREQ=WEEKLY;COUNT=30",
        ),
        _event("until", "DTSTART;VALUE=DATE:20190104", "RRULE:FREQ=DAILY;UNTIL=20200101"),
        _event("now", "DTSTART:20260401T090000Z", "DTEND:20260401T100000Z"),
        _event("forever", "DTSTART:20160104T090000Z", "DTEND:20160104T100000Z", "RRULE:FREQ=WEEKLY"),
        _event("future", "DTSTART:20300104T090000Z", "DTEND:20300104T100000Z"),
        _event("hard", "DTSTART:20160131T090000Z", "RRULE:FREQ=MONTHLY;BYSETPOS=-1;BYDAY=MO;COUNT=200"),
        _event("floating", "DTSTART:20260831T233000", "DTEND:20260831T235900"),
    )
    spans = outside(data, WINDOW.start, WINDOW.end)
    left_out = {data[span.start : span.end].split(b"\r\n")[1].decode() for span in spans}
    assert left_out == {"UID:old", "UID:ended", "UID:until", "UID:future"}


def test_a_series_and_its_moved_instances_are_kept_together() -> None:
    # The series ended years ago, but one instance was moved into the window: both are read, so the
    # library sees the move (and not an orphan instance), and the result is the full read's.
    data = _calendar(
        _event("s", "DTSTART:20200106T090000Z", "DTEND:20200106T100000Z", "RRULE:FREQ=WEEKLY;COUNT=4"),
        _event("s", "RECURRENCE-ID:20200113T090000Z", "DTSTART:20260406T090000Z", "DTEND:20260406T100000Z"),
        _event("t", "DTSTART:20260302T090000Z", "DTEND:20260302T100000Z", "RRULE:FREQ=WEEKLY;COUNT=4"),
        _event("t", "RECURRENCE-ID:20260309T090000Z", "DTSTART:20200406T090000Z", "DTEND:20200406T100000Z"),
    )
    assert outside(data, WINDOW.start, WINDOW.end) == []
    full = expand(load_calendar(data, "t"), WINDOW)
    _same(expand(load_calendar(data, "t", cover=WINDOW), WINDOW), full)
    # One moved instance of each series: "s" into the window, "t" out of it.
    assert [o.uid for o in full.observations] == ["t", "t", "t", "s"]


def test_what_the_scan_cannot_read_is_kept() -> None:
    data = _calendar(
        _event("broken-time", "DTSTART:2016-01-04", "DTEND:20160104T100000Z"),
        _event("no-start", "DTEND:20160104T100000Z"),
        _event("two-ends", "DTSTART:20160104T090000Z", "DTEND:20160104T100000Z", "DURATION:PT1H"),
        _event("folded", "DTSTART:20160104T090000Z", "this line lost its fold"),
        "BEGIN:VEVENT\r\nUID:cut-short\r\nDTSTART:20160104T090000Z\r\n",
    )
    assert outside(data, WINDOW.start, WINDOW.end) == []


def test_line_numbers_in_warnings_are_those_of_the_file() -> None:
    old = [_event(f"old{n}", "DTSTART:20160104T090000Z", "DESCRIPTION:a\r\n b") for n in range(5)]
    bad = _event("bad", "DTSTART:20260401T090000Z", "DTEND:20260301T090000Z")
    data = _calendar(*old, bad)
    full = expand(load_calendar(data, "t"), WINDOW)
    filtered = expand(load_calendar(data, "t", cover=WINDOW), WINDOW)
    line = data.decode().split("\r\n").index("UID:bad")  # the BEGIN line is one before, counting from 1
    assert f"t: line {line}: event 'bad': ends before it starts" in " ".join(filtered.warnings)
    _same(filtered, full)


def test_the_source_parses_again_for_a_window_outside_what_it_read(tmp_path: Path) -> None:
    path = tmp_path / "cal.ics"
    path.write_bytes(
        _calendar(
            _event("2016", "DTSTART:20160104T090000Z", "DTEND:20160104T100000Z"),
            _event("2026", "DTSTART:20260401T090000Z", "DTEND:20260401T100000Z"),
            _event("weekly", "DTSTART:20150105T120000Z", "DTEND:20150105T130000Z", "RRULE:FREQ=WEEKLY"),
        )
    )
    source = IcsSource("cal", str(path), cache_dir=tmp_path / "cache")
    full = load_calendar(path.read_bytes(), "cal")
    later = Interval(WINDOW.start + timedelta(days=3), WINDOW.end + timedelta(days=3))
    past = Interval(datetime(2016, 1, 1, tzinfo=UTC), datetime(2016, 2, 1, tzinfo=UTC))
    for window, parses in ((WINDOW, 1), (later, 1), (past, 2), (WINDOW, 3)):
        read = source.read(window)
        assert source.parses == parses, window
        assert read.observations == expand(full, window).observations
    assert later.end - WINDOW.end < COVER_MARGIN
    assert {o.uid for o in source.read(past).observations} == {"2016", "weekly"}
    assert date(2016, 1, 4) in {o.start.date() for o in source.read(past).observations}

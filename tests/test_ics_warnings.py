"""Warnings about a calendar are summarised, and said once: not again on every cycle for the same content."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from ics_reading import parse_calendar

from connectors.ics_kept import MAX_WARNINGS, WARNING_EXAMPLES
from connectors.ics_source import IcsSource
from daemon.backoff import GuardedReader
from schedules.events import Interval

WINDOW = Interval(datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 3, 1, tzinfo=UTC))
GOOD = "BEGIN:VEVENT\r\nUID:good@x\r\nDTSTART:20250107T100000Z\r\nDTEND:20250107T110000Z\r\nEND:VEVENT\r\n"


def unterminated(count: int) -> bytes:
    body = "".join(f"BEGIN:VEVENT\r\nUID:cut-{i}@x\r\nDTSTART:20250107T100000Z\r\n" for i in range(count))
    return f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\n{GOOD}{body}END:VCALENDAR\r\n".encode()


def test_100000_broken_events_give_a_count_and_a_few_examples() -> None:
    snapshot = parse_calendar(unterminated(100_000), "big.ics", WINDOW)
    assert [o.uid for o in snapshot.observations] == ["good@x"]
    assert len(snapshot.warnings) == WARNING_EXAMPLES + 1
    assert snapshot.warnings[0] == "big.ics: line 8: VEVENT 'cut-0@x': no END:VEVENT before line 11; skipped"
    assert snapshot.warnings[-1] == (
        f"big.ics: {100_000 - WARNING_EXAMPLES:,} more warning(s) like these (100,000 in all)"
    )


def test_a_few_warnings_are_all_shown() -> None:
    snapshot = parse_calendar(unterminated(MAX_WARNINGS), "few.ics", WINDOW)
    assert len(snapshot.warnings) == MAX_WARNINGS
    assert [w.split("'")[1] for w in snapshot.warnings] == [f"cut-{i}@x" for i in range(MAX_WARNINGS)]


def test_a_long_running_reader_says_each_warning_once(tmp_path: Path) -> None:
    path = tmp_path / "work.ics"
    path.write_bytes(unterminated(3))
    source = IcsSource("work", str(path), cache_dir=tmp_path / "cache")
    first = source.read(WINDOW)
    assert len(first.warnings) == 3
    # The next cycles read the same content, for a window that moved on: nothing new to say.
    assert source.read(WINDOW).warnings == ()
    later = Interval(WINDOW.start + timedelta(hours=1), WINDOW.end + timedelta(hours=1))
    assert source.read(later).warnings == ()
    assert [o.uid for o in source.read(later).observations] == ["good@x"]
    # New content, new problems: said again.
    path.write_bytes(unterminated(4))
    assert len(source.read(WINDOW).warnings) == 4


def test_the_service_reader_hands_a_warning_out_once(tmp_path: Path) -> None:
    path = tmp_path / "work.ics"
    path.write_bytes(unterminated(2))
    now = datetime(2025, 1, 10, tzinfo=UTC)
    guarded = GuardedReader(
        IcsSource("work", str(path), cache_dir=tmp_path / "cache"),
        clock=lambda: now,
        fresh_for=timedelta(minutes=30),
    )
    assert len(guarded.read(WINDOW).warnings) == 2
    again = guarded.read(WINDOW)  # the cycle after, served from the reader's fresh copy
    assert again.warnings == ()
    assert [o.uid for o in again.observations] == ["good@x"]

"""Series too dense to be meetings: they neither flood the interaction log nor the read.

Real ICS text goes through the reader and then the reconciler, as in a cycle.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from builders import connection, london_plan
from ics_reading import parse_calendar

from connectors.ics_parse import MAX_PER_DAY
from schedules.events import Interval
from schedules.reconcile import reconcile

GRACE = connection("Grace Hopper", email="grace@example.com")
PLAN = london_plan(GRACE)
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
WINDOW = Interval(NOW - timedelta(days=92), NOW + timedelta(days=28))


def calendar(*events: str) -> bytes:
    body = "".join(
        f"BEGIN:VEVENT\r\nDTSTAMP:20251101T000000Z\r\n{event.strip()}\r\nEND:VEVENT\r\n" for event in events
    )
    text = f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\n{body}END:VCALENDAR\r\n"
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


WITH_GRACE = "ATTENDEE;PARTSTAT=ACCEPTED:mailto:grace@example.com"


def test_an_rdate_list_denser_than_a_meeting_is_skipped_like_such_an_rrule() -> None:
    start = datetime(2025, 12, 1, tzinfo=UTC)
    dates = ",".join(f"{start + timedelta(minutes=5 * i):%Y%m%dT%H%M%SZ}" for i in range(100_000))
    dense = f"UID:dense@x\nDTSTART:20251201T000000Z\nDURATION:PT5M\nSUMMARY:Ping\n{WITH_GRACE}\nRDATE:{dates}"
    good = f"UID:coffee@x\nDTSTART:20260105T100000Z\nDTEND:20260105T103000Z\nSUMMARY:Coffee\n{WITH_GRACE}"
    snapshot = parse_calendar(calendar(dense, good), "work", WINDOW)
    assert [o.uid for o in snapshot.observations] == ["coffee@x"]
    assert snapshot.warnings == (
        f"work: line 4: event 'dense@x': RDATE lists 288 dates on one day "
        f"(more than {MAX_PER_DAY} is not a meeting); skipped",
    )
    outcomes = reconcile(PLAN, [], snapshot.observations, [], NOW)
    assert [(e.interaction.connection, e.interaction.event_uid) for e in outcomes.entries] == [
        ("Grace Hopper", "coffee@x")
    ]


def test_a_sparse_rdate_list_is_read() -> None:
    event = (
        "UID:sparse@x\nDTSTART:20260105T100000Z\nDURATION:PT30M\nSUMMARY:Coffee\n"
        "RDATE:20260112T100000Z,20260119T100000Z\nRDATE:20260126T100000Z"
    )
    snapshot = parse_calendar(calendar(event), "work", WINDOW)
    assert [o.start.day for o in snapshot.observations] == [5, 12, 19, 26]
    assert snapshot.warnings == ()


def test_an_hourly_series_with_a_contact_counts_once_a_day() -> None:
    # 92 days of hourly "meetings" with Grace before NOW: 2,208 instances, one a day is what happened.
    hourly = f"UID:hourly@x\nDTSTART:20251201T000000Z\nDURATION:PT30M\nRRULE:FREQ=HOURLY\n{WITH_GRACE}"
    snapshot = parse_calendar(calendar(hourly), "work", WINDOW)
    past = [o for o in snapshot.observations if o.end <= NOW]
    assert len(past) == 2196  # 1 December 00:00 to 2 March 11:00
    outcomes = reconcile(PLAN, [], snapshot.observations, [], NOW)
    days = [e.interaction.at for e in outcomes.entries]
    assert len(days) == 92  # 1 December to 2 March, one entry each
    assert days == sorted(days) and len({d.date() for d in days}) == 92
    assert all(d.hour == 0 for d in days), "the day's first instance is the one logged"
    # Feeding the entries back logs nothing new: the rule is stable from one cycle to the next.
    again = reconcile(PLAN, [], snapshot.observations, [e.interaction for e in outcomes.entries], NOW)
    assert again.entries == ()


def test_a_daily_series_still_counts_every_day() -> None:
    daily = (
        "UID:standup@x\nDTSTART:20260202T090000Z\nDURATION:PT15M\nRRULE:FREQ=DAILY;COUNT=5\n"
        f"SUMMARY:Standup\n{WITH_GRACE}"
    )
    snapshot = parse_calendar(calendar(daily), "work", WINDOW)
    outcomes = reconcile(PLAN, [], snapshot.observations, [], NOW)
    assert [e.interaction.at.day for e in outcomes.entries] == [2, 3, 4, 5, 6]

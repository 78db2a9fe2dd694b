"""The ICS feed, read back by independent parsers (vobject, allenporter's ical, recurring-ical-events on
icalendar, dateutil's tzical for the VTIMEZONE) and written atomically to a file."""

from __future__ import annotations

import dataclasses
import errno
import io
import os
import re
import stat
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import pytest
import recurring_ical_events
import vobject
from dateutil import tz as dateutil_tz
from hypothesis import given, settings
from hypothesis import strategies as st
from ical.calendar_stream import IcsCalendarStream

from connectors.atomic import write_atomic
from connectors.base import Applied, ConnectorError, Writer
from connectors.ics_feed import FeedFile, circleback_key, published_description, render_feed
from schedules.cadence import Cadence
from schedules.model import Owner, Plan, Review, WorkingHours
from schedules.occurrence import Occurrence, OccurrenceKind, Revision, revise

REPO = Path(__file__).resolve().parents[1]
LONDON = ZoneInfo("Europe/London")
T0 = datetime(2025, 1, 6, 8, 0, tzinfo=UTC)
LONG_NOTE = (
    "Send Zoë Ångström the compiler article she asked about; ask how the Göteborg team is doing, "
    "congratulate her on the promotion — and remember: 90% give, 10% ask. "
) * 3


def make_plan(timezone: str = "Europe/London") -> Plan:
    return Plan(
        owner=Owner("Ada Lovelace", "ada@example.com"),
        timezone=timezone,
        mindset="Relationships are the currency of leadership; I build them before I need them.",
        working_hours=WorkingHours(frozenset(range(5)), time(9), time(17, 30)),
        review=Review(Cadence(1, "month"), timedelta(minutes=30)),
    )


PLAN = make_plan()


def occurrence(
    key: str,
    start: datetime,
    *,
    minutes: int = 30,
    title: str | None = None,
    description: str = "Next wise action: say hello",
) -> Occurrence:
    kind = OccurrenceKind.REVIEW if key.startswith("review:") else OccurrenceKind.TOUCHPOINT
    return Occurrence(
        key=key,
        kind=kind,
        connection=None if kind is OccurrenceKind.REVIEW else key.split(":")[1],
        due=start.date(),
        start=start,
        end=start + timedelta(minutes=minutes),
        title=title or ("Review: relationship plan" if kind is OccurrenceKind.REVIEW else f"Nurture: {key}"),
        description=description,
    )


def revision(occ: Occurrence, sequence: int = 0, modified: datetime = T0) -> Revision:
    return Revision(occ, sequence, T0, modified)


def london(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=LONDON)


# Around both 2025 DST changes in London (30 March, 26 October). Expected UTC instants are written out
# by hand below, so the test does not trust the same zone arithmetic the code uses.
DST_REVISIONS = [
    revision(
        occurrence(
            "touchpoint:zoë ångström:2025-03",
            london(2025, 3, 27, 10),
            title="Nurture: Zoë Ångström",
            description=LONG_NOTE,
        )
    ),
    revision(
        occurrence("review:2025-04", london(2025, 3, 31, 9, 30), description="Mindset: relationships\nfirst"),
        2,
    ),
    revision(
        occurrence(
            "touchpoint:women in tech london:2025-04",
            london(2025, 4, 1, 14),
            minutes=60,
            title="Find: Women in Tech London",
            description="Attend the meetup, meet two organisers; say hi, then listen",
        )
    ),
    revision(occurrence("touchpoint:grace hopper:2025-43", london(2025, 10, 24, 16))),
    revision(occurrence("touchpoint:grace hopper:2025-44", london(2025, 10, 27, 9))),
]
EXPECTED_UTC = {
    "touchpoint:zoë ångström:2025-03": datetime(2025, 3, 27, 10, 0, tzinfo=UTC),
    "review:2025-04": datetime(2025, 3, 31, 8, 30, tzinfo=UTC),
    "touchpoint:women in tech london:2025-04": datetime(2025, 4, 1, 13, 0, tzinfo=UTC),
    "touchpoint:grace hopper:2025-43": datetime(2025, 10, 24, 15, 0, tzinfo=UTC),
    "touchpoint:grace hopper:2025-44": datetime(2025, 10, 27, 9, 0, tzinfo=UTC),
}

Seen = list[tuple[str, str, datetime, datetime, str]]


def expected(revisions: Sequence[Revision]) -> Seen:
    rows = [
        (
            r.occurrence.uid,
            r.occurrence.title,
            r.occurrence.start,
            r.occurrence.end,
            published_description(r.occurrence),
        )
        for r in revisions
    ]
    return sorted(rows, key=lambda row: (row[2], row[0]))


def utc(value: Any) -> datetime:
    assert isinstance(value, datetime) and value.utcoffset() is not None, value
    return value.astimezone(UTC)


def read_vobject(data: bytes) -> Seen:
    calendar = vobject.readOne(data.decode("utf-8"))
    events = getattr(calendar, "vevent_list", [])
    rows = [
        (e.uid.value, e.summary.value, utc(e.dtstart.value), utc(e.dtend.value), e.description.value)
        for e in events
    ]
    return sorted(rows, key=lambda row: (row[2], row[0]))


def read_ical(data: bytes) -> Seen:
    calendar = IcsCalendarStream.calendar_from_ics(data.decode("utf-8"))
    rows = [
        (e.uid, e.summary or "", utc(e.dtstart), utc(e.dtend), e.description or "") for e in calendar.events
    ]
    return sorted(rows, key=lambda row: (row[2], row[0]))


def read_recurring(data: bytes) -> Seen:
    calendar = icalendar.Calendar.from_ical(data)
    events = recurring_ical_events.of(calendar).between(datetime(2000, 1, 1), datetime(2100, 1, 1))
    rows = [
        (str(e["UID"]), str(e["SUMMARY"]), utc(e["DTSTART"].dt), utc(e["DTEND"].dt), str(e["DESCRIPTION"]))
        for e in events
    ]
    return sorted(rows, key=lambda row: (row[2], row[0]))


def lines(data: bytes) -> list[bytes]:
    assert data.endswith(b"\r\n")
    return data[:-2].split(b"\r\n")


def vevents(data: bytes) -> list[Any]:
    return list(icalendar.Calendar.from_ical(data).walk("VEVENT"))


def event_block(data: bytes, uid: str) -> bytes:
    match = re.search(
        rb"BEGIN:VEVENT\r\n(?:(?!END:VEVENT).)*?UID:" + re.escape(uid.encode()) + rb".*?END:VEVENT\r\n",
        data,
        re.S,
    )
    assert match is not None, uid
    return match.group(0)


# --- independent parsers -----------------------------------------------------------------------------


def test_three_independent_parsers_see_the_same_events_at_the_right_instants() -> None:
    data = render_feed(DST_REVISIONS, plan=PLAN)
    want = expected(DST_REVISIONS)
    assert {row[0]: row[2] for row in want} == {
        r.occurrence.uid: EXPECTED_UTC[r.occurrence.key] for r in DST_REVISIONS
    }
    assert read_vobject(data) == want
    assert read_ical(data) == want
    assert read_recurring(data) == want


def test_events_carry_the_plan_zone_and_local_wall_time() -> None:
    data = render_feed(DST_REVISIONS, plan=PLAN)
    text = data.decode()
    # 31 March is after the change: 09:30 in London is 08:30 UTC, written as London wall time.
    assert "DTSTART;TZID=Europe/London:20250331T093000" in text
    assert "DTSTART;TZID=Europe/London:20251027T090000" in text
    assert "DTSTART;TZID=Europe/London:20251024T160000" in text


@pytest.mark.parametrize("zone", ["Europe/London", "America/New_York", "Australia/Sydney"])
def test_parsers_that_must_use_the_embedded_vtimezone_agree(zone: str) -> None:
    """Renaming the TZID hides the IANA name, so each reader has to use our VTIMEZONE."""
    local = ZoneInfo(zone)
    revisions = [
        revision(occurrence(f"touchpoint:x:{month}", datetime(2025, month, 15, 10, tzinfo=local)))
        for month in range(1, 13)
    ]
    data = render_feed(revisions, plan=make_plan(zone))
    renamed_id = f"Circleback-Test/{zone.replace('/', '-')}"
    renamed = data.replace(f"TZID={zone}".encode(), f"TZID={renamed_id}".encode()).replace(
        f"TZID:{zone}".encode(), f"TZID:{renamed_id}".encode()
    )
    assert zone.encode() not in renamed.replace(b"X-WR-TIMEZONE:" + zone.encode(), b"")
    want = expected(revisions)
    assert read_ical(renamed) == want
    assert read_recurring(renamed) == want
    if zone != "Europe/London":
        # vobject registers a VTIMEZONE only if it differs from UTC in 2000-2020; a London definition
        # covering 2025 looks like UTC there, so vobject (by design) ignores it. Its tzinfo is dateutil's
        # tzical, checked directly in test_vtimezone_offsets_match_zoneinfo.
        assert read_vobject(renamed) == want


# --- VTIMEZONE ---------------------------------------------------------------------------------------


def vtimezone_text(data: bytes) -> str:
    match = re.search(rb"BEGIN:VTIMEZONE\r\n.*?END:VTIMEZONE\r\n", data, re.S)
    assert match is not None
    return match.group(0).decode()


def unambiguous_local_times(
    zone: ZoneInfo, first: datetime, last: datetime, step: timedelta
) -> list[datetime]:
    """Naive local times that exist exactly once (readers legitimately differ on gaps and folds)."""
    out = []
    instant = first
    while instant < last:
        local = instant.astimezone(zone).replace(tzinfo=None)
        a, b = local.replace(tzinfo=zone, fold=0), local.replace(tzinfo=zone, fold=1)
        if a.utcoffset() == b.utcoffset():
            out.append(local)
        instant += step
    return out


ZONES = [
    "Europe/London",
    "America/New_York",
    "Australia/Sydney",
    "Australia/Lord_Howe",  # 30-minute DST
    "Europe/Dublin",  # negative DST in the tz database
    "Pacific/Chatham",  # +12:45 / +13:45
    "Asia/Kolkata",  # no DST at all
]


@pytest.mark.parametrize("zone", ZONES)
def test_vtimezone_offsets_match_zoneinfo(zone: str) -> None:
    local = ZoneInfo(zone)
    revisions = [
        revision(occurrence("touchpoint:a:1", datetime(2025, 2, 3, 10, tzinfo=local))),
        revision(occurrence("touchpoint:a:2", datetime(2026, 11, 3, 10, tzinfo=local))),
    ]
    data = render_feed(revisions, plan=make_plan(zone))
    text = vtimezone_text(data)
    dateutil_zone = dateutil_tz.tzical(io.StringIO(text)).get()
    assert dateutil_zone is not None
    readers: dict[str, tzinfo] = {
        "dateutil": dateutil_zone,
        "icalendar": icalendar.Calendar.from_ical(data).timezones[0].to_tz(lookup_tzid=False),
    }
    renamed = data.replace(f"TZID={zone}".encode(), b"TZID=Hidden").replace(
        f"TZID:{zone}".encode(), b"TZID:Hidden"
    )
    ical_start: Any = IcsCalendarStream.calendar_from_ics(renamed.decode()).events[0].dtstart
    ical_zone = ical_start.tzinfo
    assert ical_zone is not None and str(ical_zone) == "Hidden"
    readers["ical"] = ical_zone

    start, end = datetime(2025, 1, 1, 12, tzinfo=UTC), datetime(2026, 12, 31, tzinfo=UTC)
    for naive in unambiguous_local_times(local, start, end, timedelta(hours=5)):
        want = naive.replace(tzinfo=local).utcoffset()
        for name, reader in readers.items():
            assert naive.replace(tzinfo=reader).utcoffset() == want, (name, naive)


@pytest.mark.parametrize("zone", ZONES)
def test_vtimezone_onsets_are_local_times_in_the_offset_before_the_change(zone: str) -> None:
    """RFC 5545 3.6.5: an observance's DTSTART/RDATE is wall time under TZOFFSETFROM."""
    local = ZoneInfo(zone)
    occ = occurrence("touchpoint:a:1", datetime(2025, 6, 3, 10, tzinfo=local))
    calendar = icalendar.Calendar.from_ical(render_feed([revision(occ)], plan=make_plan(zone)))
    tz_component: Any = calendar.timezones[0]
    assert tz_component["TZID"] == zone
    span_start = datetime(2025, 1, 1)
    transitions = 0
    for observance in tz_component.subcomponents:
        before = observance["TZOFFSETFROM"].td
        after = observance["TZOFFSETTO"].td
        onsets = {observance["DTSTART"].dt}
        rdates = observance.get("RDATE", [])
        for rdate in rdates if isinstance(rdates, list) else [rdates]:
            onsets.update(item.dt for item in rdate.dts)
        for onset in onsets:
            assert onset.tzinfo is None
            if onset == span_start:
                assert before == after  # the observance in force when the definition begins
                continue
            instant = (onset - before).replace(tzinfo=UTC)
            assert (instant - timedelta(seconds=1)).astimezone(local).utcoffset() == before
            assert instant.astimezone(local).utcoffset() == after
            assert bool(instant.astimezone(local).dst()) == (observance.name == "DAYLIGHT")
            transitions += 1
    expected_transitions = {"Asia/Kolkata": 0}.get(zone, 2)
    assert transitions == expected_transitions


def test_london_and_new_york_onsets_match_the_rfc_examples() -> None:
    for zone, spring, autumn in [
        ("Europe/London", "20250330T010000", "20251026T020000"),
        ("America/New_York", "20250309T020000", "20251102T020000"),
    ]:
        occ = occurrence("touchpoint:a:1", datetime(2025, 6, 3, 10, tzinfo=ZoneInfo(zone)))
        text = vtimezone_text(render_feed([revision(occ)], plan=make_plan(zone)))
        assert re.search(rf"BEGIN:DAYLIGHT\r\nDTSTART:{spring}\r\n", text), text
        assert re.search(rf"BEGIN:STANDARD\r\nDTSTART:{autumn}\r\n", text), text


def test_every_tzid_has_a_vtimezone_and_the_span_covers_the_events() -> None:
    data = render_feed(DST_REVISIONS, plan=PLAN)
    calendar = icalendar.Calendar.from_ical(data)
    used = set(re.findall(rb"TZID=([^:;]+)", data))
    defined = set(re.findall(rb"\r\nTZID:([^\r]+)", data))
    assert used == defined == {b"Europe/London"}
    assert calendar.get_missing_tzids() == set()
    # VTIMEZONEs come before the events that use them.
    assert data.index(b"BEGIN:VTIMEZONE") < data.index(b"BEGIN:VEVENT")


def test_a_plan_in_utc_needs_no_vtimezone_and_parsers_agree() -> None:
    revisions = [revision(occurrence("touchpoint:a:1", datetime(2025, 3, 31, 9, tzinfo=UTC)))]
    data = render_feed(revisions, plan=make_plan("UTC"))
    assert b"BEGIN:VTIMEZONE" not in data
    assert b"DTSTART:20250331T090000Z" in data
    want = expected(revisions)
    assert read_vobject(data) == read_ical(data) == read_recurring(data) == want


def test_an_empty_feed_is_still_a_readable_calendar() -> None:
    data = render_feed([], plan=PLAN)
    assert b"BEGIN:VEVENT" not in data and b"BEGIN:VTIMEZONE" not in data
    assert read_vobject(data) == read_ical(data) == read_recurring(data) == []


# --- calendar and event properties -------------------------------------------------------------------


def test_calendar_properties_avoid_the_known_traps() -> None:
    data = render_feed(DST_REVISIONS, plan=PLAN, name="Ada's circle", refresh=timedelta(minutes=90))
    header = lines(data[: data.index(b"BEGIN:VTIMEZONE")])
    assert header[0] == b"BEGIN:VCALENDAR"
    assert not any(line.startswith(b"UID") for line in header), "a calendar-level UID merges events"
    for line in [
        b"VERSION:2.0",
        b"PRODID:-//circleback//circleback feed//EN",
        b"CALSCALE:GREGORIAN",
        b"METHOD:PUBLISH",
        b"NAME:Ada's circle",
        b"X-WR-CALNAME:Ada's circle",
        b"X-WR-TIMEZONE:Europe/London",
        b"REFRESH-INTERVAL;VALUE=DURATION:PT1H30M",
        b"X-PUBLISHED-TTL:PT1H30M",
    ]:
        assert line in header, line
    calendar = icalendar.Calendar.from_ical(data)
    assert "UID" not in calendar
    assert calendar.refresh_interval == timedelta(minutes=90)
    assert vobject.readOne(data.decode()).x_published_ttl.value == "PT1H30M"
    assert IcsCalendarStream.calendar_from_ics(data.decode()).refresh_interval == timedelta(minutes=90)


def test_default_refresh_is_one_hour() -> None:
    data = render_feed([], plan=PLAN)
    assert b"\r\nREFRESH-INTERVAL;VALUE=DURATION:PT1H\r\n" in data
    assert b"\r\nX-PUBLISHED-TTL:PT1H\r\n" in data


def test_each_event_has_the_properties_subscribers_rely_on() -> None:
    modified = T0 + timedelta(days=3, hours=2)
    rev = revision(occurrence("touchpoint:grace hopper:2025-10", london(2025, 3, 12, 11)), 4, modified)
    (event,) = vevents(render_feed([rev], plan=PLAN))
    assert event["UID"] == rev.occurrence.uid
    assert event["DTSTAMP"].dt == modified
    assert event["LAST-MODIFIED"].dt == modified
    assert event["CREATED"].dt == T0
    assert event["SEQUENCE"] == 4
    assert event["SUMMARY"] == "Nurture: touchpoint:grace hopper:2025-10"
    assert (
        event["DESCRIPTION"]
        == "Next wise action: say hello\n\ncircleback-key: touchpoint:grace hopper:2025-10"
    )
    assert event["TRANSP"] == "OPAQUE"
    assert event["STATUS"] == "CONFIRMED"
    assert event.categories == ["circleback", "touchpoint"]
    assert circleback_key(event) == "touchpoint:grace hopper:2025-10"
    assert event["DTSTART"].dt == london(2025, 3, 12, 11)
    assert event["DTSTART"].params["TZID"] == "Europe/London"
    assert "RRULE" not in event and b"UNTIL" not in render_feed([rev], plan=PLAN)


def test_the_key_survives_names_with_commas_semicolons_and_backslashes() -> None:
    key = "touchpoint:smith, jane; ceo \\ board\nline:2025-03"
    data = render_feed([revision(occurrence(key, london(2025, 3, 12, 11)))], plan=PLAN)
    assert circleback_key(vevents(data)[0]) == key
    (ical_event,) = IcsCalendarStream.calendar_from_ics(data.decode()).events
    (extra,) = [x for x in ical_event.extras if x.name.upper() == "X-CIRCLEBACK-KEY"]
    # RFC 5545 TEXT escaping, as an independent reader sees the raw value.
    assert extra.value == "touchpoint:smith\\, jane\\; ceo \\\\ board\\nline:2025-03"
    # A calendar that drops the VALUE=TEXT parameter still yields the key.
    stripped = data.replace(b"X-CIRCLEBACK-KEY;VALUE=TEXT:", b"X-CIRCLEBACK-KEY:")
    assert circleback_key(vevents(stripped)[0]) == key


def test_touchpoints_and_reviews_have_a_display_alarm() -> None:
    # Issue 7: review blocks had no reminder, and an unreminded review is the first one skipped.
    data = render_feed(DST_REVISIONS, plan=PLAN)
    by_uid = {str(e["UID"]): e for e in vevents(data)}
    assert {r.occurrence.kind for r in DST_REVISIONS} == set(OccurrenceKind), "both kinds are covered"
    for rev in DST_REVISIONS:
        (alarm,) = by_uid[rev.occurrence.uid].walk("VALARM")
        assert alarm["ACTION"] == "DISPLAY"
        assert alarm["TRIGGER"].dt == timedelta(minutes=-10)
        assert alarm["DESCRIPTION"] == rev.occurrence.title
    ical_alarms = {
        e.uid: [a.trigger for a in e.alarm] for e in IcsCalendarStream.calendar_from_ics(data.decode()).events
    }
    assert ical_alarms == {r.occurrence.uid: [timedelta(minutes=-10)] for r in DST_REVISIONS}


def test_categories_name_the_kind() -> None:
    data = render_feed(DST_REVISIONS, plan=PLAN)
    kinds = {str(e["UID"]): e.categories for e in vevents(data)}
    for rev in DST_REVISIONS:
        assert kinds[rev.occurrence.uid] == ["circleback", rev.occurrence.kind.value]


def test_the_calendar_name_is_one_line() -> None:
    calendar = icalendar.Calendar.from_ical(render_feed([], plan=PLAN, name="Ada's\r\n  circle\x1b"))
    assert calendar.calendar_name == "Ada's circle"


def test_control_characters_are_removed_and_newlines_kept() -> None:
    occ = occurrence(
        "touchpoint:a:1",
        london(2025, 3, 12, 11),
        title="Nurture:\x1b Ada",
        description="one\r\ntwo\rthree\x00\tfour",
    )
    (event,) = vevents(render_feed([revision(occ)], plan=PLAN))
    assert event["SUMMARY"] == "Nurture: Ada"
    assert event["DESCRIPTION"] == "one\ntwo\nthree\tfour\n\ncircleback-key: touchpoint:a:1"


# --- stability and change ----------------------------------------------------------------------------


def test_bytes_are_identical_across_renders_and_input_orders() -> None:
    first = render_feed(DST_REVISIONS, plan=PLAN)
    assert render_feed(DST_REVISIONS, plan=PLAN) == first
    assert render_feed(list(reversed(DST_REVISIONS)), plan=PLAN) == first
    uids = [str(e["UID"]) for e in vevents(first)]
    ordered = sorted(DST_REVISIONS, key=lambda r: (r.occurrence.start, r.occurrence.uid))
    assert uids == [r.occurrence.uid for r in ordered]


def test_events_at_the_same_time_are_ordered_by_uid() -> None:
    start = london(2025, 3, 12, 11)
    revisions = [revision(occurrence(f"touchpoint:p{n}:1", start)) for n in range(6)]
    uids = [str(e["UID"]) for e in vevents(render_feed(revisions, plan=PLAN))]
    assert uids == sorted(uids)


def test_a_changed_occurrence_gets_a_higher_sequence_and_others_stay_byte_identical() -> None:
    occurrences = [r.occurrence for r in DST_REVISIONS]
    first = revise({}, occurrences, T0)
    before = render_feed(first, plan=PLAN)
    moved = dataclasses.replace(
        occurrences[2],
        start=occurrences[2].start + timedelta(hours=1),
        end=occurrences[2].end + timedelta(hours=1),
    )
    later = T0 + timedelta(days=1)
    second = revise({r.occurrence.key: r for r in first}, [*occurrences[:2], moved, *occurrences[3:]], later)
    after = render_feed(second, plan=PLAN)
    by_uid = {str(e["UID"]): e for e in vevents(after)}
    changed = by_uid[moved.uid]
    assert changed["SEQUENCE"] == 1
    assert changed["DTSTAMP"].dt == changed["LAST-MODIFIED"].dt == later
    assert changed["CREATED"].dt == T0
    assert utc(changed["DTSTART"].dt) == datetime(2025, 4, 1, 14, 0, tzinfo=UTC)
    for occ in occurrences:
        if occ.key != moved.key:
            assert by_uid[occ.uid]["SEQUENCE"] == 0
            assert event_block(after, occ.uid) == event_block(before, occ.uid)


def test_an_occurrence_that_leaves_the_plan_leaves_the_feed() -> None:
    gone = DST_REVISIONS[2]
    data = render_feed([r for r in DST_REVISIONS if r is not gone], plan=PLAN)
    assert gone.occurrence.uid.encode() not in data
    assert b"CANCELLED" not in data
    assert len(read_ical(data)) == len(DST_REVISIONS) - 1


def test_bad_input_is_refused_with_the_key_named() -> None:
    occ = occurrence("touchpoint:a:1", london(2025, 3, 12, 11))
    with pytest.raises(ValueError, match=r"'touchpoint:a:1' appears twice"):
        render_feed([revision(occ), revision(occ, 1)], plan=PLAN)
    backwards = dataclasses.replace(occ, end=occ.start - timedelta(minutes=5))
    with pytest.raises(ValueError, match=r"'touchpoint:a:1' ends"):
        render_feed([revision(backwards)], plan=PLAN)
    with pytest.raises(ValueError, match="refresh interval must be positive"):
        render_feed([], plan=PLAN, refresh=timedelta(0))
    with pytest.raises(ValueError, match="feed name must not be empty"):
        render_feed([], plan=PLAN, name=" \n\x07")
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        render_feed([], plan=make_plan("Mars/Olympus"))


# --- line format -------------------------------------------------------------------------------------


def assert_well_formed_lines(data: bytes) -> None:
    assert b"\n" not in data.replace(b"\r\n", b""), "bare LF"
    assert b"\r" not in data.replace(b"\r\n", b""), "bare CR"
    for line in lines(data):
        assert len(line) <= 75, line
        line.decode("utf-8")  # folding never splits a multi-byte character


def test_crlf_and_folding_at_75_octets_on_utf8_boundaries() -> None:
    data = render_feed(DST_REVISIONS, plan=PLAN, name="Zoë Ångström's circle " * 4)
    assert_well_formed_lines(data)
    assert any(line.startswith(b" ") for line in lines(data)), "the long description must fold"
    (event,) = [e for e in vevents(data) if str(e["SUMMARY"]) == "Nurture: Zoë Ångström"]
    assert event["DESCRIPTION"] == f"{LONG_NOTE}\n\ncircleback-key: {circleback_key(event)}"


TEXT = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), st.sampled_from('\n\t,;:\\"')
    ),
    min_size=1,
    max_size=160,
)


@settings(max_examples=60, deadline=None)
@given(
    titles=st.lists(TEXT, min_size=1, max_size=4),
    description=TEXT,
    offsets=st.lists(st.integers(min_value=0, max_value=400 * 24), min_size=4, max_size=4),
)
def test_any_text_round_trips_in_well_formed_lines(
    titles: list[str], description: str, offsets: list[int]
) -> None:
    revisions = [
        revision(
            occurrence(
                f"touchpoint:{title}:{n}",
                T0 + timedelta(hours=offsets[n]),
                title=title,
                description=description,
            )
        )
        for n, title in enumerate(titles)
    ]
    name = f"Zoë {titles[0]}"
    data = render_feed(revisions, plan=PLAN, name=name)
    assert_well_formed_lines(data)
    assert render_feed(list(reversed(revisions)), plan=PLAN, name=name) == data
    back = {
        circleback_key(e): (str(e["SUMMARY"]), str(e["DESCRIPTION"]), utc(e["DTSTART"].dt))
        for e in vevents(data)
    }
    assert back == {
        r.occurrence.key: (r.occurrence.title, published_description(r.occurrence), r.occurrence.start)
        for r in revisions
    }
    assert read_ical(data) == expected(revisions)


# --- FeedFile ----------------------------------------------------------------------------------------


def temp_files(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_feed_file_is_a_writer(tmp_path: Path) -> None:
    feed = FeedFile(tmp_path / "feed.ics", plan=PLAN)
    assert isinstance(feed, Writer)
    assert feed.name == "feed"
    assert FeedFile(tmp_path / "f.ics", plan=PLAN, connector="public").name == "public"


def test_first_apply_creates_every_event_and_writes_the_rendered_bytes(tmp_path: Path) -> None:
    path = tmp_path / "feed.ics"
    applied = FeedFile(path, plan=PLAN, name="Ada").apply(DST_REVISIONS)
    ordered = sorted(DST_REVISIONS, key=lambda r: (r.occurrence.start, r.occurrence.uid))
    assert changes(applied) == Applied(created=tuple(r.occurrence.key for r in ordered))
    assert path.read_bytes() == render_feed(DST_REVISIONS, plan=PLAN, name="Ada")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert temp_files(tmp_path) == []


def test_an_unchanged_apply_reports_nothing_and_leaves_the_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "feed.ics"
    feed = FeedFile(path, plan=PLAN)
    feed.apply(DST_REVISIONS)
    before = path.stat()
    assert changes(feed.apply(list(reversed(DST_REVISIONS)))) == Applied()
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_apply_reports_created_updated_and_removed(tmp_path: Path) -> None:
    path = tmp_path / "feed.ics"
    feed = FeedFile(path, plan=PLAN)
    occurrences = [r.occurrence for r in DST_REVISIONS]
    first = revise({}, occurrences[:4], T0)
    feed.apply(first)

    moved = dataclasses.replace(
        occurrences[1],
        start=occurrences[1].start + timedelta(days=1),
        end=occurrences[1].end + timedelta(days=1),
    )
    desired = [occurrences[0], moved, occurrences[3], occurrences[4]]  # [2] leaves, [4] arrives
    second = revise({r.occurrence.key: r for r in first}, desired, T0 + timedelta(days=2))
    with path.open("rb") as old_handle:
        applied = feed.apply(second)
        # The old file was replaced, not rewritten in place: an open reader still sees the old bytes.
        assert old_handle.read() == render_feed(first, plan=PLAN)
    assert changes(applied) == Applied(
        created=(occurrences[4].key,), updated=(moved.key,), removed=(occurrences[2].key,)
    )
    assert path.read_bytes() == render_feed(second, plan=PLAN)


def test_a_plan_change_that_alters_events_is_reported_as_updates(tmp_path: Path) -> None:
    path = tmp_path / "feed.ics"
    feed = FeedFile(path, plan=PLAN)
    feed.apply(DST_REVISIONS)
    feed.plan = make_plan("Europe/Paris")
    applied = feed.apply(DST_REVISIONS)
    assert set(applied.updated) == {r.occurrence.key for r in DST_REVISIONS}
    assert applied.created == applied.removed == ()
    assert b"TZID=Europe/Paris" in path.read_bytes()


def test_an_existing_file_mode_is_preserved(tmp_path: Path) -> None:
    path = tmp_path / "feed.ics"
    path.write_bytes(b"")
    path.chmod(0o600)
    applied = FeedFile(path, plan=PLAN).apply(DST_REVISIONS[:1])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert applied.created == (DST_REVISIONS[0].occurrence.key,)


def test_an_unreadable_old_file_is_treated_as_empty_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "feed.ics"
    path.write_bytes(b"this is not a calendar\r\n\xff\xfe")
    applied = FeedFile(path, plan=PLAN).apply(DST_REVISIONS[:2])
    assert set(applied.created) == {r.occurrence.key for r in DST_REVISIONS[:2]}
    (warning,) = applied.warnings
    assert "unreadable" in warning and str(path) in warning and warning.startswith("feed: ")
    assert path.read_bytes() == render_feed(DST_REVISIONS[:2], plan=PLAN)


def test_foreign_events_in_the_old_file_are_not_reported(tmp_path: Path) -> None:
    path = tmp_path / "feed.ics"
    path.write_bytes(
        b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VEVENT\r\nUID:someone-else\r\n"
        b"DTSTAMP:20250101T000000Z\r\nDTSTART:20250101T100000Z\r\nSUMMARY:Lunch\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    applied = FeedFile(path, plan=PLAN).apply(DST_REVISIONS[:1])
    assert changes(applied) == Applied(created=(DST_REVISIONS[0].occurrence.key,))


def test_a_render_failure_leaves_the_old_file_intact(tmp_path: Path) -> None:
    path = tmp_path / "feed.ics"
    feed = FeedFile(path, plan=PLAN)
    feed.apply(DST_REVISIONS)
    old = path.read_bytes()
    duplicate = [*DST_REVISIONS, DST_REVISIONS[0]]
    with pytest.raises(ConnectorError) as caught:
        feed.apply(duplicate)
    assert caught.value.calendar == "feed" and not caught.value.retryable
    assert "appears twice" in str(caught.value)
    assert path.read_bytes() == old
    assert temp_files(tmp_path) == []


WRITE_UNDER_LIMIT = textwrap.dedent(
    """
    import resource, signal, sys
    from datetime import UTC, datetime, time, timedelta
    from pathlib import Path
    from connectors.base import ConnectorError
    from connectors.ics_feed import FeedFile
    from schedules.cadence import Cadence
    from schedules.model import Owner, Plan, Review, WorkingHours
    from schedules.occurrence import Occurrence, OccurrenceKind, Revision

    plan = Plan(Owner("Ada"), "Europe/London", "m", WorkingHours(frozenset(range(5)), time(9), time(17)),
                Review(Cadence(1, "month"), timedelta(minutes=30)))
    t0 = datetime(2025, 1, 6, 9, tzinfo=UTC)
    revisions = [
        Revision(Occurrence(f"touchpoint:p:{n}", OccurrenceKind.TOUCHPOINT, "p", t0.date(),
                            t0 + timedelta(days=n), t0 + timedelta(days=n, minutes=30), f"P{n}", "x" * 200),
                 0, t0, t0)
        for n in range(200)
    ]
    # A real I/O failure half way through the write: the file-size limit (EFBIG instead of SIGXFSZ).
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), resource.RLIM_INFINITY))
    try:
        FeedFile(Path(sys.argv[1]), plan=plan).apply(revisions)
    except ConnectorError as exc:
        print("ConnectorError", exc.retryable, exc)
    """
)


def test_a_write_that_fails_half_way_leaves_the_old_file_intact(tmp_path: Path) -> None:
    path = tmp_path / "feed.ics"
    FeedFile(path, plan=PLAN).apply(DST_REVISIONS)
    old = path.read_bytes()
    limit = len(old) + 4096  # room for the old size, not for the 200-event feed
    result = subprocess.run(
        [sys.executable, "-c", WRITE_UNDER_LIMIT, str(path), str(limit)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=60,
        check=True,
    )
    assert result.stdout.startswith("ConnectorError True feed: cannot write"), result.stdout + result.stderr
    assert path.read_bytes() == old
    assert temp_files(tmp_path) == []


# --- write_atomic ------------------------------------------------------------------------------------


def test_write_atomic_modes(tmp_path: Path) -> None:
    new = tmp_path / "new.txt"
    old_umask = os.umask(0o077)
    try:
        write_atomic(new, b"one")
    finally:
        os.umask(old_umask)
    assert new.read_bytes() == b"one"
    assert stat.S_IMODE(new.stat().st_mode) == 0o600  # not at the mercy of the umask

    new.chmod(0o640)
    write_atomic(new, b"two")
    assert (new.read_bytes(), stat.S_IMODE(new.stat().st_mode)) == (b"two", 0o640)

    secret = tmp_path / "token"
    write_atomic(secret, b"s3cret", mode=0o600)
    write_atomic(secret, b"s3cret2", mode=0o600)
    assert (secret.read_bytes(), stat.S_IMODE(secret.stat().st_mode)) == (b"s3cret2", 0o600)
    assert temp_files(tmp_path) == []


def test_write_atomic_creates_a_missing_private_directory(tmp_path: Path) -> None:
    # A first run writes the feed into a state directory that does not exist yet.
    write_atomic(tmp_path / "missing" / "feed.ics", b"x")
    assert (tmp_path / "missing" / "feed.ics").read_bytes() == b"x"
    assert stat.S_IMODE((tmp_path / "missing").stat().st_mode) == 0o700


def test_write_atomic_failing_half_way_keeps_the_old_bytes(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(b"old contents")
    script = textwrap.dedent(
        """
        import resource, signal, sys
        from pathlib import Path
        from connectors.atomic import write_atomic
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, resource.RLIM_INFINITY))
        try:
            write_atomic(Path(sys.argv[1]), b"n" * 5000)
        except OSError as exc:
            print(exc.errno)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == str(errno.EFBIG), result.stderr
    assert path.read_bytes() == b"old contents"
    assert temp_files(tmp_path) == []


def test_year_span_keeps_bytes_stable_while_the_window_moves_within_a_year() -> None:
    """The VTIMEZONE covers whole years, so it does not change when events move inside a year."""
    a = render_feed([revision(occurrence("touchpoint:a:1", london(2025, 3, 3, 10)))], plan=PLAN)
    b = render_feed([revision(occurrence("touchpoint:a:1", london(2025, 11, 3, 10)))], plan=PLAN)
    assert vtimezone_text(a) == vtimezone_text(b)
    c = render_feed([revision(occurrence("touchpoint:a:1", london(2026, 1, 5, 10)))], plan=PLAN)
    assert vtimezone_text(c) != vtimezone_text(a)
    assert "DTSTART:20260101T000000" in vtimezone_text(c)
    assert date(2026, 1, 5) == utc(vevents(c)[0]["DTSTART"].dt).date()


def changes(applied: Applied) -> Applied:
    """What a write changed (keys by action, warnings), without the per-event results every write has."""
    return Applied(applied.created, applied.updated, applied.removed, applied.warnings)

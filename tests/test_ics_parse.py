"""Reading ICS exports: realistic Google, Outlook and Apple files, the busy rule, a corpus of broken files.

Every expected time below was worked out by hand from the fixture (zone offsets in January: London +0,
Berlin +1, New York -5, Seattle -8).
"""

from __future__ import annotations

import time
from collections.abc import Collection
from datetime import UTC, datetime
from pathlib import Path

import pytest
from ics_reading import parse_calendar

from connectors.ics_feed import sign_key
from connectors.ics_parse import expand, load_calendar
from schedules.events import Attendee, Interval, Observation, PartStat, Snapshot

FIXTURES = Path(__file__).parent / "fixtures" / "ics"
BROKEN = FIXTURES / "broken"
WINDOW = Interval(datetime(2025, 1, 6, tzinfo=UTC), datetime(2025, 2, 10, tzinfo=UTC))
OWNER = ("ada@example.com",)
SECRET = bytes(range(32))  # this install's marker secret, for the copies of our own events below


def signed(key: str) -> str:
    return f"{key} sig={sign_key(key, SECRET)}"


def utc(day: int, hour: int = 0, minute: int = 0, month: int = 1) -> datetime:
    return datetime(2025, month, day, hour, minute, tzinfo=UTC)


def read(path: Path, *, default_tz: str | None = None, owner_emails: Collection[str] = ()) -> Snapshot:
    return parse_calendar(
        path.read_bytes(), path.name, WINDOW, default_tz=default_tz, owner_emails=owner_emails
    )


def spans(snapshot: Snapshot) -> list[tuple[datetime, datetime]]:
    return [(interval.start, interval.end) for interval in snapshot.busy]


def by_summary(snapshot: Snapshot) -> dict[str, Observation]:
    return {observation.summary: observation for observation in snapshot.observations}


def calendar(*events: str, header: str = "") -> bytes:
    body = "".join(
        f"BEGIN:VEVENT\r\nDTSTAMP:20250101T000000Z\r\n{event.strip()}\r\nEND:VEVENT\r\n" for event in events
    )
    text = f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\n{header}{body}END:VCALENDAR\r\n"
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


# --- realistic exports -------------------------------------------------------------------------------------


def test_google_export() -> None:
    snapshot = read(FIXTURES / "google.ics", owner_emails=OWNER)
    assert snapshot.warnings == ()
    assert spans(snapshot) == [
        (utc(6, 10), utc(6, 10, 30)),  # weekly 1:1, first instance
        (utc(8, 12, 30), utc(8, 13, 30)),  # lunch, written in UTC
        (utc(13, 10), utc(13, 10, 30)),
        # (14 Jan 14:30 and 17 Jan 16:00 are circleback's own events copied in: observed, never busy)
        (utc(15), utc(17)),  # two-day offsite, all-day and marked busy: whole London days
        (utc(28, 14), utc(28, 14, 30)),  # the 27 January instance, moved to Tuesday
    ]
    seen = [(o.summary, o.start) for o in snapshot.observations]
    assert seen == [
        ("1:1 Grace / Ada", utc(6, 10)),
        ("Focus time", utc(7, 9)),
        ("Lunch with Linus", utc(8, 12, 30)),
        ("Product pitch", utc(9, 15)),  # declined by Ada: observed (with her answer), never busy
        ("Company holiday", utc(10)),
        ("1:1 Grace / Ada", utc(13, 10)),
        ("Nurture: Grace Hopper", utc(14, 14, 30)),
        ("Team offsite", utc(15)),
        ("Review: relationship plan", utc(17, 16)),
        ("1:1 Grace / Ada (moved)", utc(28, 14)),
        ("1:1 Grace / Ada", utc(3, 10, month=2)),  # cancelled instance: observed, not busy
    ]


def test_google_recurrence_details() -> None:
    snapshot = read(FIXTURES / "google.ics", owner_emails=OWNER)
    series = [o for o in snapshot.observations if o.uid == "7kukuqrfedlm2f9t4ssbk6lk3s@google.com"]
    # EXDATE removed 20 January; 10 February starts after the window.
    assert [o.recurrence_id for o in series] == [utc(6, 10), utc(13, 10), utc(27, 10), utc(3, 10, month=2)]
    assert [o.cancelled for o in series] == [False, False, False, True]
    assert series[0].attendees == (
        Attendee("ada@example.com", PartStat.ACCEPTED),
        Attendee("grace.hopper@example.com", PartStat.ACCEPTED),
    )
    assert series[0].organizer == "ada@example.com"
    assert series[2].instance_id == "7kukuqrfedlm2f9t4ssbk6lk3s@google.com/20250127T100000Z"


def test_google_flags_and_circleback_events() -> None:
    seen = by_summary(read(FIXTURES / "google.ics", owner_emails=OWNER))
    assert seen["Focus time"].transparent and not seen["Focus time"].all_day
    assert seen["Company holiday"].all_day and seen["Company holiday"].transparent
    assert seen["Team offsite"].all_day and not seen["Team offsite"].transparent
    assert (seen["Team offsite"].start, seen["Team offsite"].end) == (utc(15), utc(17))
    touchpoint = seen["Nurture: Grace Hopper"]
    assert touchpoint.circleback_key is None, (
        "an unsigned key (as earlier releases wrote them) proves nothing"
    )
    assert touchpoint.uid == "cb-3f1d2a9e8b7c6d5e4f3a2b1c@circleback.invalid"
    review = seen["Review: relationship plan"]
    assert review.circleback_key is None
    assert review.uid == "cb-0a1b2c3d4e5f60718293a4b5@circleback.invalid"
    assert seen["Lunch with Linus"].attendees[0] == Attendee("linus@example.org", PartStat.TENTATIVE)


def test_declined_by_the_owner_is_observed_and_never_blocks() -> None:
    declined = read(FIXTURES / "google.ics", owner_emails=["Ada@Example.com"])
    assert by_summary(declined)["Product pitch"].attendees[0] == Attendee(
        "ada@example.com", PartStat.DECLINED
    )
    assert (utc(9, 15), utc(9, 16)) not in spans(declined)
    # Without knowing who the owner is, it is an ordinary opaque meeting.
    anyone = read(FIXTURES / "google.ics")
    assert by_summary(anyone)["Product pitch"].attendees[0] == Attendee("ada@example.com", PartStat.DECLINED)
    assert (utc(9, 15), utc(9, 16)) in spans(anyone)


def test_outlook_export_with_windows_zones() -> None:
    snapshot = read(FIXTURES / "outlook.ics", owner_emails=OWNER)
    assert snapshot.warnings == ()
    assert spans(snapshot) == [
        (utc(7, 8), utc(7, 9)),  # W. Europe Standard Time 09:00
        (utc(16, 16), utc(16, 17, 30)),  # Pacific Standard Time 08:00, TENTATIVE still blocks
        (utc(22, 12), utc(22, 13)),  # 21 January moved to Wednesday 13:00
        (utc(28, 8), utc(28, 9)),
        (utc(30), utc(1, month=2)),  # all-day OOF, no X-WR-TIMEZONE: UTC days
        (utc(4, 8, month=2), utc(4, 9, month=2)),  # UNTIL is inclusive
    ]
    seen = by_summary(snapshot)
    assert seen["Lunch"].transparent  # BUSYSTATUS:FREE
    assert seen["Kim's birthday"].all_day and seen["Kim's birthday"].transparent
    assert seen["Team sync (moved)"].recurrence_id == utc(21, 8)
    assert seen["Team sync"].attendees == (
        Attendee("grace@example.com", PartStat.NEEDS_ACTION),
        Attendee("charles@example.com", PartStat.NEEDS_ACTION),
    )
    assert seen["Planning with Seattle"].organizer == "margaret@example.com"
    # EXDATE removed 14 January.
    assert utc(14, 8) not in [o.start for o in snapshot.observations]


def test_outlook_all_day_uses_the_default_zone() -> None:
    snapshot = read(FIXTURES / "outlook.ics", default_tz="Europe/Berlin")
    out_of_office = by_summary(snapshot)["Out of office"]
    assert (out_of_office.start, out_of_office.end) == (utc(29, 23), utc(31, 23))
    assert (utc(29, 23), utc(31, 23)) in spans(snapshot)


def test_apple_export() -> None:
    snapshot = read(FIXTURES / "apple.ics", owner_emails=OWNER)
    assert snapshot.warnings == ()
    assert spans(snapshot) == [
        (utc(6, 14), utc(6, 14, 15)),  # daily standup 09:00 New York
        (utc(7, 14), utc(7, 14, 15)),
        (utc(8, 15), utc(8, 16)),  # coffee; the 8 January standup is an EXDATE
        (utc(9, 15), utc(9, 15, 15)),  # standup moved to 10:00; UNTIL ends the series after it
        (utc(13, 5), utc(18, 5)),  # vacation: five New York days
        (utc(21, 20), utc(21, 20, 30)),  # floating 15:00, read in X-WR-TIMEZONE
    ]
    seen = by_summary(snapshot)
    # Apple writes iCloud attendees as urn:uuid: with the address in the EMAIL parameter.
    assert seen["Coffee with Grace"].attendees == (
        Attendee("ada@example.com", PartStat.ACCEPTED),
        Attendee("grace@example.com", PartStat.ACCEPTED),
    )
    assert seen["Standup (late start)"].recurrence_id == utc(9, 14)
    assert seen["Dentist reminder"].all_day and (seen["Dentist reminder"].start == utc(10, 5))


# --- the busy rule --------------------------------------------------------------------------------

ALL_DAY = "UID:d@x\nDTSTART;VALUE=DATE:20250109\nDTEND;VALUE=DATE:20250110\nSUMMARY:day\n"


@pytest.mark.parametrize(
    ("marks", "blocks"),
    [
        ("", False),  # no mark: Google/Apple birthdays and holidays
        ("TRANSP:TRANSPARENT", False),
        ("TRANSP:OPAQUE", True),
        ("X-MICROSOFT-CDO-BUSYSTATUS:BUSY", True),
        ("X-MICROSOFT-CDO-BUSYSTATUS:OOF", True),
        ("X-MICROSOFT-CDO-BUSYSTATUS:FREE\nTRANSP:OPAQUE", False),  # Outlook's own status wins
    ],
)
def test_all_day_blocks_only_when_marked_busy(marks: str, blocks: bool) -> None:
    snapshot = parse_calendar(calendar(ALL_DAY + marks), "t", WINDOW)
    assert spans(snapshot) == ([(utc(9), utc(10))] if blocks else [])
    assert snapshot.observations[0].transparent is not blocks


@pytest.mark.parametrize(
    ("marks", "blocks"),
    [
        ("", True),  # RFC 5545 default: OPAQUE
        ("TRANSP:TRANSPARENT", False),
        ("X-MICROSOFT-CDO-BUSYSTATUS:TENTATIVE", True),
        ("X-MICROSOFT-CDO-BUSYSTATUS:WORKINGELSEWHERE", False),
        ("STATUS:CANCELLED", False),
    ],
)
def test_timed_events(marks: str, blocks: bool) -> None:
    event = "UID:t@x\nDTSTART:20250109T100000Z\nDTEND:20250109T110000Z\n" + marks
    snapshot = parse_calendar(calendar(event), "t", WINDOW)
    assert spans(snapshot) == ([(utc(9, 10), utc(9, 11))] if blocks else [])
    assert len(snapshot.observations) == 1


def test_all_day_busy_covers_the_local_day_of_the_calendar_zone() -> None:
    data = calendar(ALL_DAY + "TRANSP:OPAQUE", header="X-WR-TIMEZONE:America/New_York\r\n")
    assert spans(parse_calendar(data, "t", WINDOW, default_tz="Europe/Berlin")) == [(utc(9, 5), utc(10, 5))]
    without = calendar(ALL_DAY + "TRANSP:OPAQUE")
    assert spans(parse_calendar(without, "t", WINDOW, default_tz="Europe/Berlin")) == [
        (utc(8, 23), utc(9, 23))
    ]
    assert spans(parse_calendar(without, "t", WINDOW)) == [(utc(9), utc(10))]


def test_floating_times_use_the_default_zone() -> None:
    data = calendar("UID:f@x\nDTSTART:20250109T100000\nDTEND:20250109T110000")
    assert spans(parse_calendar(data, "t", WINDOW, default_tz="Asia/Tokyo")) == [(utc(9, 1), utc(9, 2))]


def test_x_wr_timezone_keeps_a_utc_weekly_meeting_at_local_time_across_dst() -> None:
    # Google writes some recurring events in UTC and means them in X-WR-TIMEZONE: 09:00 London stays
    # 09:00 London after the clocks change on 30 March.
    data = calendar(
        "UID:w@x\nDTSTART:20250324T090000Z\nDTEND:20250324T093000Z\nRRULE:FREQ=WEEKLY;COUNT=2",
        header="X-WR-TIMEZONE:Europe/London\r\n",
    )
    spring = Interval(utc(1, month=3), utc(1, month=5))
    starts = [o.start for o in parse_calendar(data, "t", spring).observations]
    assert starts == [utc(24, 9, month=3), utc(31, 8, month=3)]


def test_instances_are_kept_when_they_overlap_the_half_open_window() -> None:
    data = calendar(
        "UID:before@x\nDTSTART:20250105T230000Z\nDTEND:20250106T000000Z",  # ends as the window starts
        "UID:across@x\nDTSTART:20250105T233000Z\nDTEND:20250106T003000Z",
        "UID:point@x\nDTSTART:20250106T000000Z",  # no end: a point at the window's start
        "UID:after@x\nDTSTART:20250210T000000Z\nDTEND:20250210T010000Z",  # starts as the window ends
    )
    snapshot = parse_calendar(data, "t", WINDOW)
    assert [o.uid for o in snapshot.observations] == ["across@x", "point@x"]
    assert spans(snapshot) == [(utc(5, 23, 30), utc(6, 0, 30))]  # a zero-length event blocks nothing


def test_overlapping_busy_time_is_merged() -> None:
    data = calendar(
        "UID:a@x\nDTSTART:20250109T100000Z\nDTEND:20250109T110000Z",
        "UID:b@x\nDTSTART:20250109T103000Z\nDTEND:20250109T120000Z",
        "UID:c@x\nDTSTART:20250109T120000Z\nDTEND:20250109T123000Z",
    )
    assert spans(parse_calendar(data, "t", WINDOW)) == [(utc(9, 10), utc(9, 12, 30))]


def test_a_parsed_calendar_serves_any_window() -> None:
    parsed = load_calendar((FIXTURES / "google.ics").read_bytes(), "google.ics")
    january = expand(parsed, Interval(utc(1), utc(1, month=2)))
    february = expand(parsed, Interval(utc(1, month=2), utc(1, month=3)))
    assert [o.start for o in february.observations] == [utc(3, 10, month=2), utc(10, 10, month=2)]
    assert len(january.observations) == 10


# --- the broken corpus: one test per file ------------------------------------------------------------

GOOD = ["good-1@example.com", "good-2@example.com"]

CORPUS: dict[str, tuple[list[str], list[str]]] = {
    # file: (warnings, each compared in full or, ending in "…", by its beginning; surviving UIDs)
    "no_dtstart.ics": (["no_dtstart.ics: line 11: event 'no-start@example.com': no DTSTART; skipped"], GOOD),
    "bad_rrule.ics": (
        [
            "bad_rrule.ics: line 11: event 'bad-rrule@example.com': unreadable RRULE "
            "(RRULE: Expected frequency, got: FORTNIGHTLY); skipped"
        ],
        GOOD,
    ),
    "rrule_interval_zero.ics": (
        [
            "rrule_interval_zero.ics: line 11: event 'interval-zero@example.com': "
            "RRULE INTERVAL must be at least 1; skipped"
        ],
        GOOD,
    ),
    "rrule_minutely.ics": (
        [
            "rrule_minutely.ics: line 11: event 'every-minute@example.com': RRULE repeats 1440 times a day "
            "(more than 24 is not a meeting); skipped"
        ],
        GOOD,
    ),
    "rrule_never_occurs.ics": (
        [
            "rrule_never_occurs.ics: line 11: event 'feb-30@example.com': "
            "RRULE never occurs (no such day in those months); skipped"
        ],
        GOOD,
    ),
    "rrule_rscale.ics": (
        ["rrule_rscale.ics: line 11: event 'lunar@example.com': its recurrence cannot be read (…"],
        GOOD,
    ),
    "rrule_bad_byday.ics": (
        [
            "rrule_bad_byday.ics: line 11: event 'sixtieth-monday@example.com': "
            "cannot expand its recurrence (…"
        ],
        GOOD,
    ),
    "undefined_tzid.ics": (
        [
            "undefined_tzid.ics: line 11: event 'custom-zone@example.com': "
            "unknown TZID 'Customized Time Zone 7'; read in UTC"
        ],
        ["good-1@example.com", "good-2@example.com", "custom-zone@example.com"],
    ),
    "windows_tzid_no_vtimezone.ics": (
        [],
        ["good-1@example.com", "good-2@example.com", "berlin@example.com", "seattle@example.com"],
    ),
    "end_before_start.ics": (
        [
            "end_before_start.ics: line 11: event 'backwards@example.com': ends before it starts "
            "(2025-01-09T14:00:00+00:00 < 2025-01-09T15:00:00+00:00); skipped"
        ],
        GOOD,
    ),
    "duration.ics": (
        ["duration.ics: line 18: event 'garbled-duration@example.com': unreadable DURATION (…"],
        ["good-1@example.com", "good-2@example.com", "with-duration@example.com"],
    ),
    "bad_dtstart_value.ics": (
        ["bad_dtstart_value.ics: line 11: event 'iso-start@example.com': unreadable DTEND, DTSTART (…"],
        GOOD,
    ),
    "bad_exdate.ics": (
        ["bad_exdate.ics: line 11: event 'bad-exdate@example.com': unreadable EXDATE (…"],
        GOOD,
    ),
    "mixed_date_types.ics": (
        [
            "mixed_date_types.ics: line 11: event 'mixed@example.com': "
            "DTSTART and DTEND are not both dates or both date-times; skipped"
        ],
        GOOD,
    ),
    "duplicate_dtstart.ics": (
        ["duplicate_dtstart.ics: line 11: event 'two-starts@example.com': more than one DTSTART; skipped"],
        GOOD,
    ),
    "no_uid.ics": (
        ["no_uid.ics: line 11: event without UID: no UID; using 'no-uid-…"],
        ["good-1@example.com", "good-2@example.com", "no-uid-…"],
    ),
    "unterminated_event.ics": (
        [
            "unterminated_event.ics: line 11: VEVENT 'never-ends@example.com': "
            "no END:VEVENT before line 17; skipped"
        ],
        GOOD,
    ),
    "mismatched_end.ics": (
        [
            "mismatched_end.ics: line 11: VEVENT 'wrong-end@example.com': "
            "END:VTODO at line 17 does not close BEGIN:VEVENT; skipped"
        ],
        GOOD,
    ),
    "truncated.ics": (
        [
            "truncated.ics: line 18: VEVENT 'cut-short@example.com': "
            "no END:VEVENT before the end of the file; skipped"
        ],
        GOOD,
    ),
    "broken_folding.ics": (
        [
            "broken_folding.ics: line 11: event 'wrapped@example.com': "
            "line 17 is not a content line (broken folding?); joined to the line before",
            "broken_folding.ics: line 11: event 'wrapped@example.com': "
            "line 19 is not a content line (broken folding?); joined to the line before",
        ],
        ["good-1@example.com", "good-2@example.com", "wrapped@example.com"],
    ),
    "garbage_between.ics": (
        [
            "garbage_between.ics: line 11: ignored 3 line(s) outside any component "
            "that are not iCalendar content lines"
        ],
        GOOD,
    ),
    "html_page.ics": (["html_page.ics: an HTML page, not a calendar; no events read"], []),
    "empty.ics": (["empty.ics: empty, not a calendar; no events read"], []),
    "windows_1252.ics": (
        ["windows_1252.ics: 1 line(s) are not valid UTF-8 (first at line 16); read them as Windows-1252"],
        ["good-1@example.com", "good-2@example.com", "accents@example.com"],
    ),
    "bad_x_wr_timezone.ics": (
        ["bad_x_wr_timezone.ics: unknown X-WR-TIMEZONE 'Mars/Olympus_Mons'; using UTC"],
        ["good-1@example.com", "good-2@example.com", "floating@example.com"],
    ),
    "lf_and_bom.ics": ([], GOOD),
    "concatenated_calendars.ics": ([], GOOD),
}


def _matches(actual: str, expected: str) -> bool:
    return actual.startswith(expected[:-1]) if expected.endswith("…") else actual == expected


def test_the_corpus_is_covered() -> None:
    assert sorted(path.name for path in BROKEN.glob("*.ics")) == sorted(CORPUS)


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_broken_file(name: str) -> None:
    warnings, survivors = CORPUS[name]
    snapshot = read(BROKEN / name)
    assert len(snapshot.warnings) == len(warnings), snapshot.warnings
    for actual, expected in zip(snapshot.warnings, warnings, strict=True):
        assert _matches(actual, expected), actual
    uids = sorted({o.uid for o in snapshot.observations})
    assert len(uids) == len(survivors)
    for uid in sorted(survivors):
        assert any(_matches(actual, uid) for actual in uids), (uid, uids)


def test_broken_file_details() -> None:
    """The events that survive a repair carry what the repair recovered."""
    folded = by_summary(read(BROKEN / "broken_folding.ics"))
    assert "Quarterly planning review" in folded
    accents = by_summary(read(BROKEN / "windows_1252.ics"))
    assert "Réunion à Genève" in accents
    zones = {o.uid: o.start for o in read(BROKEN / "windows_tzid_no_vtimezone.ics").observations}
    assert zones["berlin@example.com"] == utc(9, 13)
    assert zones["seattle@example.com"] == utc(9, 17)
    assert by_summary(read(BROKEN / "duration.ics"))["Ninety minutes"].end == utc(9, 15, 30)
    assert by_summary(read(BROKEN / "undefined_tzid.ics"))["Zone nobody defined"].start == utc(9, 14)
    # A stand-in UID is stable, so a re-read never looks like a new event.
    first = read(BROKEN / "no_uid.ics").observations
    assert [o.uid for o in first] == [o.uid for o in read(BROKEN / "no_uid.ics").observations]


def test_a_50_mb_file_is_read_without_losing_its_events() -> None:
    # Outlook embeds attachments as folded base64 ATTACH lines; the reader never parses them.
    line = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo" * 2 + "\r\n "
    attachment = "ATTACH;ENCODING=BASE64;VALUE=BINARY;FMTTYPE=application/pdf;X-FILENAME=deck.pdf:" + line * (
        50 * 1024 * 1024 // len(line)
    )
    data = calendar(
        "UID:good-1@example.com\nDTSTART:20250107T100000Z\nDTEND:20250107T110000Z",
        "UID:huge@example.com\nDTSTART:20250108T100000Z\nDTEND:20250108T110000Z\n" + attachment.rstrip(),
        "UID:good-2@example.com\nDTSTART:20250109T100000Z\nDTEND:20250109T110000Z",
    )
    assert len(data) > 50 * 1024 * 1024
    started = time.perf_counter()
    snapshot = parse_calendar(data, "huge.ics", WINDOW)
    elapsed = time.perf_counter() - started
    assert snapshot.warnings == ()
    assert [o.uid for o in snapshot.observations] == [
        "good-1@example.com",
        "huge@example.com",
        "good-2@example.com",
    ]
    assert elapsed < 20, f"reading 50 MB took {elapsed:.1f} s"


def test_a_file_of_nothing_but_bad_bytes_is_a_warning() -> None:
    snapshot = parse_calendar(bytes(range(256)) * 10, "noise.bin", WINDOW)
    assert snapshot == Snapshot(
        warnings=("noise.bin: not an iCalendar file (no BEGIN:VCALENDAR); no events read",)
    )


@pytest.mark.parametrize(
    "identity",
    [
        "UID:cb-3f1d2a9e8b7c6d5e4f3a2b1c@circleback.invalid",  # a subscriber's copy keeps our UID
        "UID:copied-by-hand@example.com\nX-CIRCLEBACK-KEY;VALUE=TEXT:"
        + signed("touchpoint:grace hopper:2025-W03"),
    ],
)
def test_our_own_touchpoints_are_observed_but_never_block(identity: str) -> None:
    # Counting our own event as busy would push the original out of its own slot on the next cycle.
    own = f"{identity}\nDTSTART:20250109T100000Z\nDTEND:20250109T103000Z\nSUMMARY:Nurture: Grace Hopper"
    other = "UID:standup@x\nDTSTART:20250109T110000Z\nDTEND:20250109T113000Z\nSUMMARY:Standup"
    snapshot = parse_calendar(calendar(own, other), "work", WINDOW, marker_secret=SECRET)
    assert spans(snapshot) == [(utc(9, 11), utc(9, 11, 30))]
    assert {o.summary for o in snapshot.observations} == {"Nurture: Grace Hopper", "Standup"}


def test_a_copy_with_a_new_uid_is_recognised_by_the_key_in_its_description() -> None:
    # Google's "Copy to" and a drag into another calendar give a new UID and drop X- properties, but keep
    # the description, whose last line the feed writes for exactly this.
    copy = (
        "UID:7kq2l1s9a0@google.com\nDTSTART:20250109T150000Z\nDTEND:20250109T153000Z\n"
        "SUMMARY:Nurture: Grace Hopper\n"
        "DESCRIPTION:Next wise action: send the article\\n\\ncircleback-key: "
        + signed("touchpoint:grace hopper:2025-W02")
    )
    lookalike = (
        "UID:other@x\nDTSTART:20250110T150000Z\nDTEND:20250110T153000Z\nSUMMARY:Notes\n"
        "DESCRIPTION:we talked about circleback-key: rotation"
    )
    snapshot = parse_calendar(calendar(copy, lookalike), "work", WINDOW, marker_secret=SECRET)
    seen = by_summary(snapshot)
    assert seen["Nurture: Grace Hopper"].circleback_key == "touchpoint:grace hopper:2025-W02"
    assert seen["Notes"].circleback_key is None, "the marker only counts at the start of a line"
    assert spans(snapshot) == [(utc(10, 15), utc(10, 15, 30))], "the copy is ours: it never blocks"


# --- keys and addresses as other calendars write them back ---------------------------------------------


def test_a_key_returned_without_value_text_is_unescaped_as_the_writer_does() -> None:
    # Calendars that round-trip the feed drop `;VALUE=TEXT`; the comma in "Smith, Jane" stays escaped.
    copy = (
        "UID:cb-0123456789abcdef01234567@circleback.invalid\nDTSTART:20250109T100000Z\n"
        "DTEND:20250109T103000Z\nSUMMARY:Nurture: Smith, Jane\n"
        "X-CIRCLEBACK-KEY:"
        + signed("touchpoint:smith, jane;sr:2025-W02").replace(",", "\\,").replace(";", "\\;")
    )
    (observation,) = parse_calendar(calendar(copy), "work", WINDOW, marker_secret=SECRET).observations
    assert observation.circleback_key == "touchpoint:smith, jane;sr:2025-W02"


@pytest.mark.parametrize(
    "written",
    [
        "mailto:<grace@example.com>",
        "mailto:grace@example.com?subject=Coffee",
        "MAILTO:Grace@Example.com",
        "mailto:grace%40example.com",
        "mailto:%3Cgrace@example.com%3E",
        " mailto: <GRACE@example.com> ",
    ],
)
def test_attendee_and_organizer_addresses_are_normalised(written: str) -> None:
    event = (
        "UID:m@x\nDTSTART:20250109T100000Z\nDTEND:20250109T110000Z\nSUMMARY:Coffee\n"
        f"ORGANIZER:{written}\nATTENDEE;PARTSTAT=ACCEPTED:{written}"
    )
    (observation,) = parse_calendar(calendar(event), "work", WINDOW).observations
    assert observation.organizer == "grace@example.com"
    assert observation.attendees == (Attendee("grace@example.com", PartStat.ACCEPTED),)


# --- events sharing a UID ---------------------------------------------------------------------------------


def test_events_sharing_a_uid_all_block_their_time_and_are_reported_once() -> None:
    data = calendar(
        "UID:same@x\nDTSTART:20250109T100000Z\nDTEND:20250109T110000Z\nSUMMARY:Dentist",
        "UID:same@x\nDTSTART:20250110T100000Z\nDTEND:20250110T110000Z\nSUMMARY:Coffee with Grace",
        "UID:same@x\nSEQUENCE:2\nDTSTART:20250113T090000Z\nDTEND:20250113T093000Z\nRRULE:FREQ=DAILY;COUNT=2",
        "UID:other@x\nDTSTART:20250111T100000Z\nDTEND:20250111T110000Z\nSUMMARY:Other",
    )
    snapshot = parse_calendar(data, "work", WINDOW)
    assert spans(snapshot) == [
        (utc(9, 10), utc(9, 11)),
        (utc(10, 10), utc(10, 11)),
        (utc(11, 10), utc(11, 11)),
        (utc(13, 9), utc(13, 9, 30)),
        (utc(14, 9), utc(14, 9, 30)),
    ]
    assert [o.summary for o in snapshot.observations if o.uid == "same@x"] == [
        "Dentist",
        "Coffee with Grace",
        "",
        "",
    ]
    assert snapshot.warnings == (
        "work: line 4: event 'same@x': 3 different events share this UID; all are kept as busy time",
    )


def test_an_event_repeated_word_for_word_is_one_event_without_a_warning() -> None:
    event = "UID:twice@x\nDTSTART:20250109T100000Z\nDTEND:20250109T110000Z\nSUMMARY:Twice"
    snapshot = parse_calendar(calendar(event, event), "work", WINDOW)
    assert [o.uid for o in snapshot.observations] == ["twice@x"]
    assert snapshot.warnings == ()

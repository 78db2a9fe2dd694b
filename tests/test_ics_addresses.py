"""Attendees and organizers are read right whatever other parameters (quoted, listed) they carry, and a
description matters only for circleback's key marker: the reader leaves the rest out before parsing."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from connectors.ics_feed import signed_key
from connectors.ics_parse import expand, load_calendar
from schedules.events import Interval, PartStat

WINDOW = Interval(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
QUOTED_ADDRESS = st.from_regex(r'"mailto:[a-z]{1,6}@x\.org"', fullmatch=True)
# Parameter values as exports write them: plain, quoted with the separators a line is split on, listed.
VALUES = st.one_of(
    st.from_regex(r"[A-Za-z0-9 .@_-]{0,12}", fullmatch=True),
    st.from_regex(r'"[A-Za-z0-9 :;,.@\\-]{0,12}"', fullmatch=True),
    st.lists(st.from_regex(r'"mailto:[a-z]{1,6}@x\.org"', fullmatch=True), min_size=2, max_size=3).map(
        ",".join
    ),
)
OTHER = st.sampled_from(
    ("CN", "ROLE", "CUTYPE", "RSVP", "X-NUM-GUESTS", "DELEGATED-FROM", "SENT-BY", "LANGUAGE")
)


@st.composite
def addresses(draw: st.DrawFn, name: str) -> tuple[str, str, PartStat]:
    """A line, the address it names, and its participation status."""
    email = draw(st.from_regex(r"[a-z]{1,8}@example\.(com|org)", fullmatch=True))
    status = draw(st.sampled_from(list(PartStat)))
    params = [f"{draw(OTHER)}={draw(VALUES)}" for _ in range(draw(st.integers(0, 4)))]
    params.insert(draw(st.integers(0, len(params))), f"PARTSTAT={status.value}")
    via_email = draw(st.booleans())  # Apple: urn:uuid: as the value, the address in EMAIL
    if via_email:
        params.append(f'EMAIL="{email}"' if draw(st.booleans()) else f"EMAIL={email}")
    value = "urn:uuid:0b7c1a2e-5d3f-4f6a-9c1b-2a3e4d5f6a7b" if via_email else f"mailto:{email.upper()}"
    line = draw(st.sampled_from((name, name.lower()))) + "".join(f";{p}" for p in params) + f":{value}"
    return line, email, status


@given(
    st.lists(addresses("ATTENDEE"), min_size=1, max_size=4, unique_by=lambda a: a[1]), addresses("ORGANIZER")
)
def test_every_attendee_and_the_organizer_are_read_whatever_else_they_carry(
    attendees: list[tuple[str, str, PartStat]], organizer: tuple[str, str, PartStat]
) -> None:
    event = [
        "BEGIN:VEVENT",
        "UID:e@x",
        "DTSTART:20260302T090000Z",
        "DTEND:20260302T100000Z",
        *(line for line, _, _ in attendees),
        organizer[0],
        'DESCRIPTION:Agenda: "a\\; b\\, c"',
        "END:VEVENT",
    ]
    data = "\r\n".join(["BEGIN:VCALENDAR", "VERSION:2.0", *event, "END:VCALENDAR", ""]).encode()
    snapshot = expand(load_calendar(data, "t.ics"), WINDOW)
    (observation,) = snapshot.observations
    assert [(a.email, a.partstat) for a in observation.attendees] == [(e, s) for _, e, s in attendees]
    assert observation.organizer == organizer[1]
    assert snapshot.warnings == ()


def test_a_key_marker_in_a_long_description_is_still_found() -> None:
    secret = b"s" * 32
    marker = f"circleback-key: {signed_key('touchpoint:Grace:2026-03', secret)}"
    data = "\r\n".join(
        [
            "BEGIN:VCALENDAR",
            "VERSION:2.0",
            "BEGIN:VEVENT",
            "UID:copy@x",
            "DTSTART:20260302T090000Z",
            "DTEND:20260302T100000Z",
            "DESCRIPTION:" + "Long notes\\, " * 40 + "\\n" + marker,
            "END:VEVENT",
            "BEGIN:VEVENT",
            "UID:plain@x",
            "DTSTART:20260303T090000Z",
            "DTEND:20260303T100000Z",
            "DESCRIPTION:circleback-key touchpoint:Grace:2026-03 (not a marker)",
            "END:VEVENT",
            "END:VCALENDAR",
            "",
        ]
    ).encode()
    observations = expand(load_calendar(data, "t.ics", marker_secret=secret), WINDOW).observations
    assert [(o.uid, o.circleback_key) for o in observations] == [
        ("copy@x", "touchpoint:Grace:2026-03"),
        ("plain@x", None),
    ]

"""One contract for every calendar back end: what `apply` writes, `read` gives back, and reconcile can use.

Each back end comes as a harness: its Writer (if it can be written), the Readers through which the
written calendar is seen, and a way to put the person's own events in. The cases are the same for all:

- memory: `MemoryCalendar` is writer and reader at once; the person's events go into the same calendar.
- ics: `FeedFile` writes the feed and an `IcsSource` reads that very file (what a subscriber's calendar
  app sees); the person's events live in their own exported `.ics` file, read by a second `IcsSource`.
- google: `GoogleCalendar` through google-api-python-client against the fake Calendar v3 server
  (tests/fake_google), with the store's placements and sync state carried between calls; the person's
  events are put in as their calendar app would.

The instants expected around the 2025 DST changes in Europe/London are written out by hand, so no case
trusts the zone arithmetic of the code under test. The last section covers what only the memory back end
offers (a person editing events in it).
"""

from __future__ import annotations

import abc
import atexit
import dataclasses
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import ClassVar
from zoneinfo import ZoneInfo

import pytest
from builders import connection, london_plan
from fake_google import FakeGoogle
from google.oauth2.credentials import Credentials
from hypothesis import given, settings
from hypothesis import strategies as st
from icalendar import Calendar, Event

from connectors import registry
from connectors.atomic import write_atomic
from connectors.base import (
    EMPTY_PLACEMENTS,
    EMPTY_STATE,
    Applied,
    CalendarState,
    ConnectorError,
    Outcome,
    Placement,
    Reader,
    Writer,
)
from connectors.google import SCOPES as GOOGLE_SCOPES
from connectors.google import GoogleCalendar
from connectors.google_options import google_options
from connectors.ics_feed import FeedFile
from connectors.ics_source import IcsSource
from connectors.memory import MemoryCalendar, MemoryEvent, shared_calendar
from schedules.busy import busy_time
from schedules.events import Attendee, Interval, Observation, PartStat, Snapshot
from schedules.model import Connection
from schedules.occurrence import (
    Occurrence,
    OccurrenceKind,
    OccurrenceStatus,
    Revision,
    occurrence_uid,
    revise,
)
from schedules.reconcile import StatusChange, TrackedOccurrence, reconcile
from schedules.slots import Occupancy

LONDON = ZoneInfo("Europe/London")
OWNER = "ada@example.com"

GRACE = connection("Grace Hopper", next_action="Send her the compiler article", email="grace@example.com")
# A comma in the name, so in the key: TEXT escaping must round-trip.
WITL = connection(
    "Women in Tech, London",
    group=True,
    stage="find",
    every="month",
    duration="1h",
    next_action="Attend the next meetup",
    target=True,
)
ZOE = connection(
    "Zoë Ångström",
    stage="elevate",
    every="month",
    next_action="Ask about the Göteborg team",
    email="zoe@example.com",
)
PLAN = london_plan(
    GRACE, WITL, ZOE, mindset="Relationships are the currency of leadership.", kickoff=True, owner_email=OWNER
)

T0 = datetime(2025, 3, 1, tzinfo=UTC)  # when the revisions below were first made
WINDOW = Interval(datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 12, 1, tzinfo=UTC))


def utc(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2025, month, day, hour, minute, tzinfo=UTC)


def london(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2025, month, day, hour, minute, tzinfo=LONDON)


def occurrence(
    key: str, connection: Connection | None, start: datetime, title: str, minutes: int = 30
) -> Occurrence:
    return Occurrence(
        key=key,
        kind=OccurrenceKind.TOUCHPOINT if connection else OccurrenceKind.REVIEW,
        connection=connection.name if connection else None,
        due=start.astimezone(LONDON).date(),
        start=start,
        end=start + timedelta(minutes=minutes),
        title=title,
        description=f"Next wise action for {title}",
    )


GRACE_MARCH = occurrence(
    "touchpoint:grace hopper:2025-W13", GRACE, london(3, 27, 10), "Nurture: Grace Hopper"
)
REVIEW_APRIL = occurrence("review:2025-04", None, london(3, 31, 9, 30), "Review: relationship plan")
WITL_APRIL = occurrence(
    "touchpoint:women in tech, london:2025-04",
    WITL,
    london(4, 1, 14),
    "Find: Women in Tech, London; meetup",
    60,
)
ZOE_OCTOBER = occurrence("touchpoint:zoë ångström:2025-W43", ZOE, london(10, 24, 16), "Elevate: Zoë Ångström")
GRACE_OCTOBER = occurrence(
    "touchpoint:grace hopper:2025-W44", GRACE, london(10, 27, 9), "Nurture: Grace Hopper"
)
DESIRED = [GRACE_MARCH, REVIEW_APRIL, WITL_APRIL, ZOE_OCTOBER, GRACE_OCTOBER]
# Both sides of both changes (30 March and 26 October 2025), by hand: GMT is UTC, BST is UTC+1.
EXPECTED_START = {
    GRACE_MARCH.key: utc(3, 27, 10),
    REVIEW_APRIL.key: utc(3, 31, 8, 30),
    WITL_APRIL.key: utc(4, 1, 13),
    ZOE_OCTOBER.key: utc(10, 24, 15),
    GRACE_OCTOBER.key: utc(10, 27, 9),
}


@dataclasses.dataclass(frozen=True)
class Foreign:
    """One of the person's own events. For an all-day event, start and end are local midnights."""

    uid: str
    start: datetime
    end: datetime
    summary: str
    attendees: tuple[Attendee, ...] = ()
    organizer: str | None = None
    cancelled: bool = False
    transparent: bool = False
    all_day: bool = False


# --- harnesses -----------------------------------------------------------------------------------------


class Harness(abc.ABC):
    """One back end as the contract sees it. `read` reads every reader, as the cycle does."""

    writable: ClassVar[bool]
    writer: Writer | None
    readers: tuple[Reader, ...]

    @abc.abstractmethod
    def __init__(self, directory: Path) -> None:
        """A fresh, empty calendar whose files (if any) live in `directory`."""

    @abc.abstractmethod
    def add_foreign(self, event: Foreign) -> None:
        """Put one of the person's own events where this back end's readers will see it."""

    def apply(self, desired: Sequence[Revision]) -> Applied:
        assert self.writer is not None, f"{type(self).__name__} has no writer"
        applied = self.writer.apply(desired)
        for keys in (applied.created, applied.updated, applied.removed):
            assert len(set(keys)) == len(keys), f"a key reported twice: {applied}"
        # One result per event touched, agreeing with the key lists: nothing written hides as failed, and
        # no failure hides as written.
        by_key = {r.key: r for r in applied.results}
        assert len(by_key) == len(applied.results), f"a key has two results: {applied.results}"
        assert {r.occurrence.key for r in desired} <= set(by_key), "every desired event has a result"
        for action, keys in (
            ("create", applied.created),
            ("update", applied.updated),
            ("delete", applied.removed),
        ):
            assert {k for k, r in by_key.items() if r.action == action and r.outcome is Outcome.DONE} == set(
                keys
            )
        for key, result in by_key.items():
            if result.outcome is Outcome.DONE and result.action != "delete":
                assert result.placement is not None and result.placement.key == key
        return applied

    def read(self, window: Interval) -> Snapshot:
        snapshots = [reader.read(window) for reader in self.readers]
        for reader, snapshot in zip(self.readers, snapshots, strict=True):
            check_well_formed(reader, snapshot, window)
        observations = tuple(o for s in snapshots for o in s.observations)
        # What blocks time is the core's busy rule over what the back ends observed (issue 9: back ends
        # translate, the core decides), plus any busy time a back end knows only as free/busy.
        return Snapshot(
            busy=busy_time(observations, (OWNER,), also=(b for s in snapshots for b in s.busy)),
            observations=observations,
        )


class MemoryHarness(Harness):
    writable = True

    def __init__(self, directory: Path) -> None:
        self.calendar = MemoryCalendar("memory", owner_emails=[OWNER.upper()])
        self.writer = self.calendar
        self.readers = (self.calendar,)

    def add_foreign(self, event: Foreign) -> None:
        self.calendar.add_event(
            event.start,
            event.end,
            event.summary,
            uid=event.uid,
            attendees=event.attendees,
            organizer=event.organizer,
            cancelled=event.cancelled,
            transparent=event.transparent,
            all_day=event.all_day,
        )


class IcsHarness(Harness):
    writable = True

    def __init__(self, directory: Path) -> None:
        feed_path = directory / "circleback.ics"
        self.person_path = directory / "person.ics"
        cache = directory / "cache"
        secret = bytes(range(32))  # the install's marker secret: the feed signs with it, the reader checks
        self.writer = FeedFile(
            feed_path, plan=PLAN, name="Ada's circle", connector="feed", marker_secret=lambda: secret
        )
        # The subscription exists from the start, as after circleback's first cycle with nothing to place.
        self.writer.apply([])
        self.foreign: list[Foreign] = []
        self._write_person()
        self.readers = (
            IcsSource(
                "subscribed",
                str(feed_path),
                cache_dir=cache,
                default_tz=PLAN.timezone,
                marker_secret=lambda: secret,
            ),
            IcsSource(
                "person",
                str(self.person_path),
                cache_dir=cache,
                default_tz=PLAN.timezone,
                marker_secret=lambda: secret,
            ),
        )

    def add_foreign(self, event: Foreign) -> None:
        self.foreign.append(event)
        self._write_person()

    def _write_person(self) -> None:
        """The person's calendar as Google exports it: X-WR-TIMEZONE, UTC times, all-day dates."""
        calendar = Calendar()
        calendar.add("PRODID", "-//circleback tests//person//EN")
        calendar.add("VERSION", "2.0")
        calendar.add("X-WR-TIMEZONE", PLAN.timezone)
        for item in self.foreign:
            event = Event()
            event.add("UID", item.uid)
            event.add("DTSTAMP", T0)
            event.add("SUMMARY", item.summary)
            if item.all_day:
                event.add("DTSTART", local_midnight_date(item.start))
                event.add("DTEND", local_midnight_date(item.end))
            else:
                event.add("DTSTART", item.start)
                event.add("DTEND", item.end)
            event.add("TRANSP", "TRANSPARENT" if item.transparent else "OPAQUE")
            event.add("STATUS", "CANCELLED" if item.cancelled else "CONFIRMED")
            if item.organizer:
                event.add("ORGANIZER", f"mailto:{item.organizer}")
            for person in item.attendees:
                event.add(
                    "ATTENDEE", f"mailto:{person.email}", parameters={"PARTSTAT": person.partstat.value}
                )
            calendar.add_component(event)
        write_atomic(self.person_path, calendar.to_ical())


def local_midnight_date(moment: datetime) -> date:
    local = moment.astimezone(LONDON)
    assert local.time() == time(0), f"an all-day event needs local midnights, got {local}"
    return local.date()


class Remembering:
    """The Google connector as the cycle uses it: the store's placements and calendar state carried from
    call to call (the contract's harness calls `apply(desired)` and `read(window)` alone)."""

    def __init__(self, calendar: GoogleCalendar) -> None:
        self.calendar = calendar
        self.name = calendar.name
        self.capabilities = calendar.capabilities
        self.state: dict[str, str] = {}
        self.placements: dict[str, Placement] = {}

    def read(self, window: Interval, state: CalendarState = EMPTY_STATE) -> Snapshot:
        snapshot = self.calendar.read(window, self.state)
        if snapshot.state is not None:
            self.state = dict(snapshot.state)
        return dataclasses.replace(snapshot, state=None)

    def apply(
        self,
        desired: Sequence[Revision],
        *,
        placements: Mapping[str, Placement] = EMPTY_PLACEMENTS,
        state: CalendarState = EMPTY_STATE,
    ) -> Applied:
        applied = self.calendar.apply(desired, placements=self.placements, state=self.state)
        if applied.state is not None:
            self.state = dict(applied.state)
        for result in applied.results:
            if result.outcome is Outcome.DONE and result.action == "delete":
                self.placements.pop(result.key, None)
            elif result.outcome is Outcome.DONE and result.placement is not None:
                self.placements[result.key] = result.placement
        return applied


_FAKE: list[FakeGoogle] = []


def shared_fake() -> FakeGoogle:
    """One fake Google server for the module (Hypothesis builds harnesses outside any fixture)."""
    if not _FAKE:
        fake = FakeGoogle().start()
        atexit.register(fake.stop)
        _FAKE.append(fake)
    return _FAKE[0]


GOOGLE_PARTSTAT = {
    PartStat.ACCEPTED: "accepted",
    PartStat.DECLINED: "declined",
    PartStat.TENTATIVE: "tentative",
    PartStat.NEEDS_ACTION: "needsAction",
}


class GoogleHarness(Harness):
    """The Google connector, through the real google-api-python-client, against the fake Calendar v3."""

    writable = True

    def __init__(self, directory: Path) -> None:
        self.fake = shared_fake()
        self.fake.reset()
        refresh_token = self.fake.add_user(OWNER, time_zone=PLAN.timezone)
        credentials = Credentials(  # type: ignore[no-untyped-call]
            token=None,
            refresh_token=refresh_token,
            token_uri=self.fake.token_uri,
            client_id="contract",
            client_secret="not-checked",
            scopes=GOOGLE_SCOPES,
        )
        options = google_options(
            {"api_endpoint": self.fake.url, "token_uri": self.fake.token_uri, "horizon": "104 weeks"},
            "contract",
        )
        calendar = GoogleCalendar(
            "google",
            options,
            credentials=credentials,
            plan_timezone=PLAN.timezone,
            owner_emails=[OWNER.upper()],
            clock=lambda: T0,
            sleep=lambda seconds: None,
        )
        remembering = Remembering(calendar)
        self.writer = remembering
        self.readers = (remembering,)

    def add_foreign(self, event: Foreign) -> None:
        def when(moment: datetime) -> dict[str, str]:
            if event.all_day:
                return {"date": local_midnight_date(moment).isoformat()}
            return {"dateTime": moment.isoformat()}

        body: dict[str, object] = {
            "iCalUID": event.uid,
            "summary": event.summary,
            "start": when(event.start),
            "end": when(event.end),
            "transparency": "transparent" if event.transparent else "opaque",
            "status": "cancelled" if event.cancelled else "confirmed",
            "attendees": [
                {"email": a.email, "responseStatus": GOOGLE_PARTSTAT[a.partstat]} for a in event.attendees
            ],
        }
        if event.organizer:
            body["organizer"] = {"email": event.organizer}
        self.fake.person_inserts(OWNER, body)


HARNESSES: dict[str, type[Harness]] = {"memory": MemoryHarness, "ics": IcsHarness, "google": GoogleHarness}
WRITABLE = [name for name, kind in HARNESSES.items() if kind.writable]


@pytest.fixture(params=sorted(HARNESSES))
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    return HARNESSES[request.param](tmp_path)


@pytest.fixture(params=WRITABLE)
def writable(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    return HARNESSES[request.param](tmp_path)


# --- helpers -------------------------------------------------------------------------------------------


def check_well_formed(reader: Reader, snapshot: Snapshot, window: Interval) -> None:
    """What every read of a clean calendar must look like, whatever the back end."""
    assert snapshot.stale is None and snapshot.warnings == (), (reader.name, snapshot.warnings)
    for obs in snapshot.observations:
        assert obs.source == reader.name
        assert obs.start.tzinfo is UTC and obs.end.tzinfo is UTC
        instant = obs.start == obs.end and window.start <= obs.start < window.end
        assert instant or Interval(obs.start, obs.end).overlaps(window), f"{obs} is outside {window}"
    starts = [obs.start for obs in snapshot.observations]
    assert starts == sorted(starts), "observations are in order of start"
    for busy in snapshot.busy:
        assert busy.start < busy.end and busy.overlaps(window), f"busy {busy} is empty or outside {window}"
    for earlier, later in zip(snapshot.busy, snapshot.busy[1:], strict=False):
        assert earlier.end < later.start, "busy intervals are sorted, disjoint and merged"


def first(occurrences: Iterable[Occurrence]) -> list[Revision]:
    return revise({}, list(occurrences), T0)


def then(previous: Sequence[Revision], occurrences: Iterable[Occurrence], days: int = 1) -> list[Revision]:
    return revise({r.occurrence.key: r for r in previous}, list(occurrences), T0 + timedelta(days=days))


def ours(snapshot: Snapshot) -> dict[str, Observation]:
    found: dict[str, Observation] = {}
    for obs in snapshot.observations:
        if obs.circleback_key is not None:
            assert obs.circleback_key not in found, f"{obs.circleback_key} seen twice"
            found[obs.circleback_key] = obs
    return found


def theirs(snapshot: Snapshot) -> dict[str, Observation]:
    found = {obs.uid: obs for obs in snapshot.observations if obs.circleback_key is None}
    assert len(found) == len(snapshot.observations) - len(ours(snapshot))
    return found


Row = tuple[str, datetime, datetime, str, bool, bool]


def rows(snapshot: Snapshot) -> dict[str, Row]:
    return {
        key: (obs.uid, obs.start, obs.end, obs.summary, obs.cancelled, obs.transparent)
        for key, obs in ours(snapshot).items()
    }


def wanted(occurrences: Iterable[Occurrence], starts: dict[str, datetime] | None = None) -> dict[str, Row]:
    table = EXPECTED_START if starts is None else starts
    return {
        occ.key: (
            occurrence_uid(occ.key),
            table[occ.key],
            table[occ.key] + (occ.end - occ.start),
            occ.title,
            False,
            False,
        )
        for occ in occurrences
    }


def clip(intervals: Iterable[Interval], window: Interval) -> list[Interval]:
    inside = (
        Interval(max(i.start, window.start), min(i.end, window.end)) for i in intervals if i.overlaps(window)
    )
    return list(Occupancy(inside))


def span(obs: Observation | Occurrence | Foreign) -> Interval:
    return Interval(obs.start, obs.end)


def keys(*occurrences: Occurrence) -> set[str]:
    return {occ.key for occ in occurrences}


# --- the contract --------------------------------------------------------------------------------------


def test_the_back_end_implements_the_protocols(harness: Harness) -> None:
    if harness.writer is not None:
        assert isinstance(harness.writer, Writer) and harness.writer.name
    assert harness.readers and all(isinstance(reader, Reader) and reader.name for reader in harness.readers)
    assert len({reader.name for reader in harness.readers}) == len(harness.readers)


def test_an_empty_calendar_reads_as_nothing(harness: Harness) -> None:
    assert harness.read(WINDOW) == Snapshot()


def test_read_shows_exactly_the_applied_occurrences_at_their_instants(writable: Harness) -> None:
    applied = writable.apply(first(DESIRED))
    assert set(applied.created) == keys(*DESIRED) and len(applied.created) == len(DESIRED)
    assert (applied.updated, applied.removed, applied.warnings) == ((), (), ())

    snapshot = writable.read(WINDOW)
    assert rows(snapshot) == wanted(DESIRED)
    assert theirs(snapshot) == {}
    assert not any(obs.all_day or obs.recurrence_id for obs in snapshot.observations)


def test_applying_the_same_set_again_changes_nothing(writable: Harness) -> None:
    revisions = first(DESIRED)
    writable.apply(revisions)
    before = writable.read(WINDOW)
    # The next cycle carries the same revisions forward (a later `now`, nothing changed) in another order.
    again = then(revisions, reversed(DESIRED), days=3)
    assert changes(writable.apply(again)) == Applied()
    assert writable.read(WINDOW) == before


def test_a_moved_occurrence_is_updated_in_place(writable: Harness) -> None:
    revisions = first(DESIRED)
    writable.apply(revisions)
    before = writable.read(WINDOW)
    # From Thursday before the spring change to Monday after it, 11:00 London: 10:00 UTC.
    moved = dataclasses.replace(GRACE_MARCH, start=london(3, 31, 11), end=london(3, 31, 11, 30))
    applied = writable.apply(then(revisions, [moved if o is GRACE_MARCH else o for o in DESIRED]))
    assert (applied.created, applied.updated, applied.removed) == ((), (GRACE_MARCH.key,), ())

    after = writable.read(WINDOW)
    assert rows(after) == wanted(DESIRED, {**EXPECTED_START, GRACE_MARCH.key: utc(3, 31, 10)})
    assert ours(after)[GRACE_MARCH.key].uid == ours(before)[GRACE_MARCH.key].uid
    unchanged = keys(*DESIRED) - {GRACE_MARCH.key}
    assert {k: ours(after)[k] for k in unchanged} == {k: ours(before)[k] for k in unchanged}


def test_a_retitled_occurrence_is_updated(writable: Harness) -> None:
    revisions = first(DESIRED)
    writable.apply(revisions)
    renamed = dataclasses.replace(REVIEW_APRIL, title="Review: relationship plan (quarter close)")
    applied = writable.apply(then(revisions, [renamed if o is REVIEW_APRIL else o for o in DESIRED]))
    assert (applied.created, applied.updated, applied.removed) == ((), (REVIEW_APRIL.key,), ())
    assert ours(writable.read(WINDOW))[REVIEW_APRIL.key].summary == renamed.title


def test_a_removed_occurrence_disappears(writable: Harness) -> None:
    revisions = first(DESIRED)
    writable.apply(revisions)
    before = writable.read(WINDOW)
    remaining = [o for o in DESIRED if o is not WITL_APRIL]
    applied = writable.apply(then(revisions, remaining))
    assert (applied.created, applied.updated, applied.removed) == ((), (), (WITL_APRIL.key,))

    after = writable.read(WINDOW)
    assert rows(after) == wanted(remaining)
    # Gone, not cancelled: nothing at all carries its UID any more.
    assert all(obs.uid != WITL_APRIL.uid for obs in after.observations)
    assert all(not clip([b], span(WITL_APRIL)) for b in after.busy)
    assert {k: ours(after)[k] for k in keys(*remaining)} == {k: ours(before)[k] for k in keys(*remaining)}


def test_a_new_occurrence_is_created_beside_the_others(writable: Harness) -> None:
    revisions = first(DESIRED[:-1])
    writable.apply(revisions)
    applied = writable.apply(then(revisions, DESIRED))
    assert (applied.created, applied.updated, applied.removed) == ((GRACE_OCTOBER.key,), (), ())
    assert rows(writable.read(WINDOW)) == wanted(DESIRED)


PERSONS_OWN = [
    Foreign("standup@example.com", utc(3, 24, 12), utc(3, 24, 13), "Team lunch"),
    Foreign("overlap@example.com", utc(3, 27, 10, 15), utc(3, 27, 11), "Budget review"),  # overlaps Grace
    Foreign("focus@example.com", utc(3, 25, 12), utc(3, 25, 13), "Maybe: focus time", transparent=True),
    Foreign("cancelled@example.com", utc(3, 26, 12), utc(3, 26, 13), "Offsite (cancelled)", cancelled=True),
    # Good Friday, in summer time: the local day is 23:00 to 23:00 UTC.
    Foreign(
        "holiday@example.com", utc(4, 17, 23), utc(4, 18, 23), "Good Friday", transparent=True, all_day=True
    ),
    Foreign("ooo@example.com", utc(4, 21, 23), utc(4, 22, 23), "Out of office", all_day=True),
    # Same title and time as our touchpoint: still the person's, never ours.
    Foreign("lookalike@example.com", utc(10, 27, 9), utc(10, 27, 9, 30), "Nurture: Grace Hopper"),
]


def test_busy_time_is_the_persons_opaque_events_and_never_ours(writable: Harness) -> None:
    """Our own events are observed but do not block: the planner keeps them in their slots itself, and
    reading them as busy would push each one out of its own slot on the next cycle."""
    for event in PERSONS_OWN:
        writable.add_foreign(event)
    writable.apply(first(DESIRED))
    snapshot = writable.read(WINDOW)

    blocking = [span(f) for f in PERSONS_OWN if not f.transparent and not f.cancelled]
    assert clip(snapshot.busy, WINDOW) == clip(blocking, WINDOW)
    assert clip(snapshot.busy, span(REVIEW_APRIL)) == [], "our own review block must not block"
    # The lookalike has our title and time but not our identity: it blocks.
    assert clip(snapshot.busy, span(GRACE_OCTOBER)) == [span(GRACE_OCTOBER)]
    for free in ("focus@example.com", "cancelled@example.com", "holiday@example.com"):
        event = next(f for f in PERSONS_OWN if f.uid == free)
        assert clip(snapshot.busy, span(event)) == [], f"{event.summary} must not block"

    seen = theirs(snapshot)
    assert set(seen) == {f.uid for f in PERSONS_OWN}
    for event in PERSONS_OWN:
        obs = seen[event.uid]
        assert (obs.start, obs.end, obs.summary) == (event.start, event.end, event.summary)
        assert (obs.cancelled, obs.transparent, obs.all_day) == (
            event.cancelled,
            event.transparent,
            event.all_day,
        )
        assert obs.circleback_key is None


def test_the_persons_events_survive_every_apply(writable: Harness) -> None:
    for event in PERSONS_OWN:
        writable.add_foreign(event)
    before = theirs(writable.read(WINDOW))
    revisions = first(DESIRED)
    writable.apply(revisions)
    moved = dataclasses.replace(GRACE_OCTOBER, start=utc(10, 27, 10), end=utc(10, 27, 10, 30))
    writable.apply(then(revisions, [moved if o is GRACE_OCTOBER else o for o in DESIRED]))
    assert theirs(writable.read(WINDOW)) == before

    applied = writable.apply([])
    assert set(applied.removed) == keys(*DESIRED) and (applied.created, applied.updated) == ((), ())
    after = writable.read(WINDOW)
    assert ours(after) == {}
    assert theirs(after) == before


def test_an_event_the_owner_declined_never_blocks(harness: Harness) -> None:
    declined = Foreign(
        "declined@example.com",
        utc(3, 24, 15),
        utc(3, 24, 16),
        "Vendor pitch",
        attendees=(Attendee(OWNER, PartStat.DECLINED), Attendee("vendor@example.com", PartStat.ACCEPTED)),
    )
    accepted = Foreign(
        "accepted@example.com",
        utc(3, 25, 15),
        utc(3, 25, 16),
        "1:1 with Grace",
        attendees=(Attendee(OWNER, PartStat.ACCEPTED), Attendee("grace@example.com", PartStat.TENTATIVE)),
        organizer="grace@example.com",
    )
    harness.add_foreign(declined)
    harness.add_foreign(accepted)
    snapshot = harness.read(WINDOW)
    # Observed or not (the reconciler ignores a meeting the owner declined either way), it never blocks.
    assert accepted.uid in theirs(snapshot)
    if declined.uid in theirs(snapshot):
        assert Attendee(OWNER, PartStat.DECLINED) in theirs(snapshot)[declined.uid].attendees
    assert theirs(snapshot)[accepted.uid].attendees == accepted.attendees
    assert theirs(snapshot)[accepted.uid].organizer == "grace@example.com"
    assert list(snapshot.busy) == [span(accepted)]


def test_what_was_read_back_reconciles_into_completed_touchpoints(writable: Harness) -> None:
    """The round trip that matters: placed → calendar → read back → reconcile."""
    met_zoe = Foreign(
        "coffee@example.com",
        utc(3, 20, 11),
        utc(3, 20, 11, 45),
        "Coffee",
        attendees=(Attendee("zoe@example.com", PartStat.ACCEPTED), Attendee(OWNER, PartStat.ACCEPTED)),
    )
    called_off = Foreign(
        "called-off@example.com",
        utc(3, 21, 11),
        utc(3, 21, 12),
        "Lunch",
        attendees=(Attendee("grace@example.com", PartStat.ACCEPTED),),
        cancelled=True,
    )
    writable.add_foreign(met_zoe)
    writable.add_foreign(called_off)
    writable.apply(first(DESIRED))

    now = utc(4, 2, 12)  # after the March touchpoint, the April review and the April meetup
    observed = writable.read(Interval(now - timedelta(days=92), now + timedelta(weeks=13))).observations
    tracked = [TrackedOccurrence(occ, OccurrenceStatus.PLACED) for occ in DESIRED]
    outcomes = reconcile(PLAN, tracked, observed, [], now, timedelta(hours=24))

    assert dict(outcomes.statuses) == {
        key: StatusChange(OccurrenceStatus.COMPLETED, EXPECTED_START[key], occurrence_uid(key))
        for key in keys(GRACE_MARCH, REVIEW_APRIL, WITL_APRIL)
    }
    assert outcomes.reviews_done == (utc(3, 31, 8, 30),)
    assert [
        (
            e.interaction.connection,
            e.interaction.at,
            e.interaction.source,
            e.interaction.event_uid,
            e.occurrence_key,
        )
        for e in outcomes.entries
    ] == [
        ("Zoë Ångström", utc(3, 20, 11), "calendar", met_zoe.uid, None),
        ("Grace Hopper", utc(3, 27, 10), "touchpoint", GRACE_MARCH.uid, GRACE_MARCH.key),
        ("Women in Tech, London", utc(4, 1, 13), "touchpoint", WITL_APRIL.uid, WITL_APRIL.key),
    ]
    # Reading the same calendar again finds nothing new once the entries are logged.
    logged = [e.interaction for e in outcomes.entries]
    again = writable.read(Interval(now - timedelta(days=92), now + timedelta(weeks=13))).observations
    assert reconcile(PLAN, [], again, logged, now).entries == ()


def test_only_what_overlaps_the_half_open_window_is_read(writable: Harness) -> None:
    window = Interval(utc(3, 27, 10, 30), utc(4, 1, 13))  # Grace ends at its start, WITL begins at its end
    edges = [
        Foreign("ends-at-start@example.com", utc(3, 27, 9), utc(3, 27, 10, 30), "Ends as the window opens"),
        Foreign("straddles-start@example.com", utc(3, 27, 10, 15), utc(3, 27, 10, 45), "Straddles the start"),
        Foreign("straddles-end@example.com", utc(4, 1, 12, 30), utc(4, 1, 13, 30), "Straddles the end"),
        Foreign("starts-at-end@example.com", utc(4, 1, 13), utc(4, 1, 13, 15), "Starts as the window closes"),
        Foreign("reminder-at-start@example.com", utc(3, 27, 10, 30), utc(3, 27, 10, 30), "Reminder"),
        Foreign("reminder-at-end@example.com", utc(4, 1, 13), utc(4, 1, 13), "Reminder too late"),
        Foreign("far@example.com", utc(6, 2, 9), utc(6, 2, 10), "Far away"),
    ]
    for event in edges:
        writable.add_foreign(event)
    writable.apply(first(DESIRED))
    snapshot = writable.read(window)

    assert set(ours(snapshot)) == {REVIEW_APRIL.key}
    inside = {"straddles-start@example.com", "straddles-end@example.com", "reminder-at-start@example.com"}
    assert set(theirs(snapshot)) == inside
    # Busy time inside the window is exact; outside it, a back end may report only what overlaps it.
    expected = [span(f) for f in edges if f.uid in inside and f.end > f.start]
    assert clip(snapshot.busy, window) == clip(expected, window)
    allowed = list(Occupancy(expected))
    for busy in snapshot.busy:
        assert any(a.start <= busy.start and busy.end <= a.end for a in allowed), f"{busy} is not explained"


def test_invalid_desired_sets_are_refused_and_change_nothing(writable: Harness) -> None:
    revisions = first(DESIRED)
    writable.apply(revisions)
    before = writable.read(WINDOW)
    backwards = dataclasses.replace(WITL_APRIL, end=WITL_APRIL.start)
    for bad in (
        [*revisions, revisions[0]],
        then(revisions, [backwards if o is WITL_APRIL else o for o in DESIRED]),
    ):
        with pytest.raises(ConnectorError) as caught:
            writable.apply(bad)
        assert writable.writer is not None
        assert not caught.value.retryable and caught.value.calendar == writable.writer.name
        assert writable.read(WINDOW) == before


def test_keys_and_titles_with_ics_special_characters_round_trip(writable: Harness) -> None:
    awkward = dataclasses.replace(
        GRACE_MARCH,
        key='touchpoint:o\'brien; "the boss", ops\\infra:2025-W13',
        title='Nurture: O\'Brien; "the boss", ops\\infra\nbring the notes',
    )
    writable.apply(first([awkward]))
    assert rows(writable.read(WINDOW)) == wanted([awkward], {awkward.key: utc(3, 27, 10)})


# --- the contract over random histories ----------------------------------------------------------------

POOL = [GRACE_MARCH, REVIEW_APRIL, WITL_APRIL, ZOE_OCTOBER]
step = st.dictionaries(
    st.sampled_from(range(len(POOL))),
    st.tuples(st.integers(0, 40), st.integers(9, 16), st.booleans()),  # day offset, hour, retitled
)


def placed_as(index: int, day: int, hour: int, retitled: bool) -> Occurrence:
    base = POOL[index]
    start = datetime.combine(date(2025, 3, 10) + timedelta(days=day), time(hour), tzinfo=LONDON)
    return dataclasses.replace(
        base,
        start=start,
        end=start + (base.end - base.start),
        title=base.title + (" (again)" if retitled else ""),
    )


@pytest.mark.slow
@pytest.mark.parametrize("kind", WRITABLE)
@settings(max_examples=25, deadline=None)
@given(steps=st.lists(step, min_size=1, max_size=4))
def test_any_history_of_desired_sets_reads_back_exactly(
    kind: str, steps: list[dict[int, tuple[int, int, bool]]]
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        harness = HARNESSES[kind](Path(directory))
        previous: list[Revision] = []
        for number, chosen in enumerate(steps):
            occurrences = [placed_as(index, *chosen[index]) for index in sorted(chosen)]
            revisions = then(previous, occurrences, days=number)
            applied = harness.apply(revisions)

            old = {r.occurrence.key: r.occurrence for r in previous}
            new = {occ.key: occ for occ in occurrences}
            changed = {
                key
                for key in new.keys() & old.keys()
                if (new[key].start, new[key].end, new[key].title)
                != (old[key].start, old[key].end, old[key].title)
            }
            assert set(applied.created) == new.keys() - old.keys()
            assert set(applied.updated) == changed
            assert set(applied.removed) == old.keys() - new.keys()
            assert rows(harness.read(WINDOW)) == wanted(
                occurrences, {occ.key: occ.start for occ in occurrences}
            )
            previous = revisions


# --- what only the memory back end offers ----------------------------------------------------------------


def test_memory_updates_keep_the_uid_and_the_persons_invitees_and_never_lower_the_sequence() -> None:
    calendar = MemoryCalendar()
    revisions = first([GRACE_MARCH])
    calendar.apply(revisions)
    assert calendar.events[GRACE_MARCH.uid].sequence == 0

    moved = dataclasses.replace(GRACE_MARCH, start=utc(3, 28, 14), end=utc(3, 28, 14, 30))
    second = then(revisions, [moved])
    calendar.apply(second)
    event = calendar.events[GRACE_MARCH.uid]
    assert (event.start, event.sequence, event.circleback_key) == (utc(3, 28, 14), 1, GRACE_MARCH.key)

    # The person invites Grace in their calendar app (SEQUENCE 2), then circleback moves it back (its 2).
    invited = (Attendee("grace@example.com", PartStat.ACCEPTED),)
    assert calendar.edit_event(GRACE_MARCH.uid, attendees=list(invited)).sequence == 2
    applied = calendar.apply(then(second, [GRACE_MARCH], days=2))
    assert applied.updated == (GRACE_MARCH.key,)
    event = calendar.events[GRACE_MARCH.uid]
    assert (event.start, event.sequence, event.attendees) == (utc(3, 27, 10), 3, invited)


def test_memory_apply_undoes_a_persons_edit_of_our_fields() -> None:
    calendar = MemoryCalendar()
    revisions = first([REVIEW_APRIL])
    calendar.apply(revisions)
    calendar.edit_event(REVIEW_APRIL.uid, transparent=True, summary="not now")
    assert calendar.apply(revisions).updated == (REVIEW_APRIL.key,)
    event = calendar.events[REVIEW_APRIL.uid]
    assert (event.summary, event.transparent) == (REVIEW_APRIL.title, False)
    assert changes(calendar.apply(revisions)) == Applied()


def test_a_touchpoint_the_person_moved_completes_at_its_new_time() -> None:
    calendar = MemoryCalendar()
    calendar.apply(first([GRACE_MARCH]))
    calendar.edit_event(GRACE_MARCH.uid, start=utc(3, 26, 15), end=utc(3, 26, 15, 30))
    snapshot = calendar.read(WINDOW)
    assert rows(snapshot)[GRACE_MARCH.key][:3] == (GRACE_MARCH.uid, utc(3, 26, 15), utc(3, 26, 15, 30))

    now = utc(3, 26, 16)  # the moved one is over, the planned time has not come yet
    tracked = [TrackedOccurrence(GRACE_MARCH, OccurrenceStatus.PLACED)]
    outcomes = reconcile(PLAN, tracked, snapshot.observations, [], now)
    assert dict(outcomes.statuses) == {
        GRACE_MARCH.key: StatusChange(OccurrenceStatus.COMPLETED, utc(3, 26, 15), GRACE_MARCH.uid)
    }


def test_memory_leaves_out_an_occurrence_whose_uid_another_event_holds() -> None:
    calendar = MemoryCalendar("work")
    squatter = calendar.add_event(utc(3, 3, 9), utc(3, 3, 10), "Imported copy", uid=GRACE_MARCH.uid)
    applied = calendar.apply(first([GRACE_MARCH, REVIEW_APRIL]))
    assert applied.created == (REVIEW_APRIL.key,)
    (warning,) = applied.warnings
    assert warning.startswith("work: ") and GRACE_MARCH.key in warning and "Imported copy" in warning
    assert calendar.events[GRACE_MARCH.uid] == squatter
    assert calendar.apply([]).removed == (REVIEW_APRIL.key,)
    assert calendar.events == {GRACE_MARCH.uid: squatter}


def test_memory_events_left_by_an_earlier_run_are_ours_to_update_and_remove() -> None:
    calendar = MemoryCalendar()
    calendar.add_event(
        utc(3, 4, 9), utc(3, 4, 9, 30), "Old", uid="old@example.com", circleback_key=GRACE_MARCH.key
    )
    calendar.add_event(
        utc(3, 5, 9), utc(3, 5, 9, 30), "Stale", uid="stale@example.com", circleback_key="review:x"
    )
    applied = calendar.apply(first([GRACE_MARCH]))
    assert (applied.created, applied.updated, applied.removed) == ((), (GRACE_MARCH.key,), ("review:x",))
    # An event keeps the UID it has, even one circleback would not have chosen.
    assert rows(calendar.read(WINDOW)) == {
        GRACE_MARCH.key: (
            "old@example.com",
            utc(3, 27, 10),
            utc(3, 27, 10, 30),
            GRACE_MARCH.title,
            False,
            False,
        )
    }


def test_memory_refuses_events_no_calendar_would_hold() -> None:
    calendar = MemoryCalendar()
    event = calendar.add_event(utc(3, 3, 9), utc(3, 3, 10), "Lunch")
    assert event.uid == "event-1@memory.invalid" and event.sequence == 0
    with pytest.raises(ValueError, match="already exists"):
        calendar.add_event(utc(3, 3, 9), utc(3, 3, 10), uid=event.uid)
    with pytest.raises(ValueError, match="naive"):
        calendar.add_event(datetime(2025, 3, 3, 9), utc(3, 3, 10))
    with pytest.raises(ValueError, match="before it starts"):
        calendar.add_event(utc(3, 3, 10), utc(3, 3, 9))
    calendar.add_event(utc(3, 3, 9), utc(3, 3, 10), circleback_key="review:x")
    with pytest.raises(ValueError, match="review:x"):
        calendar.add_event(utc(3, 4, 9), utc(3, 4, 10), circleback_key="review:x")
    with pytest.raises(ValueError, match="cannot be edited"):
        calendar.edit_event(event.uid, uid="other")
    with pytest.raises(KeyError, match="no event"):
        calendar.edit_event("missing@example.com", summary="x")
    with pytest.raises(ValueError, match="naive"):
        calendar.edit_event(event.uid, start=datetime(2025, 3, 3, 8))
    calendar.delete_event(event.uid)
    with pytest.raises(KeyError, match="no event"):
        calendar.delete_event(event.uid)
    assert [e.summary for e in calendar.events.values()] == [""]


def test_memory_events_is_a_copy() -> None:
    calendar = MemoryCalendar()
    before = calendar.events
    calendar.add_event(utc(3, 3, 9), utc(3, 3, 10), "Lunch")
    assert before == {} and len(calendar.events) == 1
    assert isinstance(next(iter(calendar.events.values())), MemoryEvent)


def test_the_registry_hands_out_one_memory_calendar_per_name(tmp_path: Path) -> None:
    # Each command and cycle builds its calendars anew: a memory calendar must outlive one build.
    memory = registry.backend("memory")
    context = registry.Context(plan=london_plan(), state_dir=tmp_path)
    built = memory.factory("contract-demo", {}, context)
    assert memory.reads and memory.writes
    assert built is memory.factory("contract-demo", {}, context) is shared_calendar("contract-demo")
    assert memory.factory("contract-other", {}, context) is not built
    assert isinstance(built, Reader) and isinstance(built, Writer)


def changes(applied: Applied) -> Applied:
    """What a write changed (keys by action, warnings), without the per-event results every write has."""
    return Applied(applied.created, applied.updated, applied.removed, applied.warnings)


def test_memory_one_refused_event_fails_alone_and_the_rest_is_written() -> None:
    # Issue 9: a partial failure leaves the rest written and is reported per event, never as placed.
    calendar = MemoryCalendar("memory")
    revisions = first(DESIRED)
    refused = revisions[1].occurrence.key
    calendar.fail_writes(refused, "quota exceeded", retryable=True)
    applied = calendar.apply(revisions)
    (failure,) = applied.failed
    assert failure.key == refused and failure.reason == "quota exceeded" and failure.retryable
    assert failure.placement is None, "nothing of it was placed"
    held = {e.circleback_key for e in calendar.events.values()}
    assert held == {r.occurrence.key for r in revisions} - {refused}
    calendar.heal()
    retried = calendar.apply(revisions)
    assert not retried.failed and retried.created == (refused,), "the retry writes only what was missing"

"""Properties of reconciliation over generated calendars: idempotent, order-blind, and only real meetings."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, time, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from schedules.cadence import parse_cadence
from schedules.events import Attendee, Interaction, Observation, PartStat
from schedules.model import Connection, ConnectionKind, Owner, Plan, Review, Stage, WorkingHours
from schedules.occurrence import Occurrence, OccurrenceKind, OccurrenceStatus, occurrence_uid
from schedules.reconcile import Outcomes, TrackedOccurrence, reconcile

NOTE = "private: going through a divorce"
BASE = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)

CONNECTIONS = (
    Connection(
        "Grace Hopper",
        ConnectionKind.PERSON,
        Stage.NURTURE,
        parse_cadence("2 weeks"),
        timedelta(minutes=30),
        "Send the article",
        email="grace@example.com",
        emails=("g.hopper@navy.example",),
        notes=NOTE,
    ),
    Connection(
        "Alan Turing",
        ConnectionKind.PERSON,
        Stage.ELEVATE,
        parse_cadence("month"),
        timedelta(hours=1),
        "Ask about the job",
        email="alan@example.com",
        notes=NOTE,
    ),
    Connection(
        "Women in Tech London",
        ConnectionKind.GROUP,
        Stage.FIND,
        parse_cadence("month"),
        timedelta(hours=1),
        "Attend the meetup",
        target=True,
        emails=("list@witl.example",),
        keywords=("witl",),
        notes=NOTE,
    ),
)
PLAN = Plan(
    owner=Owner("Ada Lovelace", "ada@example.com"),
    timezone="Europe/London",
    mindset="Relationships first.",
    working_hours=WorkingHours(frozenset(range(5)), time(9), time(17, 30)),
    review=Review(parse_cadence("month"), timedelta(minutes=30)),
    connections=CONNECTIONS,
)


def _occurrence(key: str, connection: str | None, start: datetime) -> Occurrence:
    kind = OccurrenceKind.REVIEW if connection is None else OccurrenceKind.TOUCHPOINT
    title = "Review: relationship plan" if connection is None else f"Nurture: {connection}"
    return Occurrence(
        key, kind, connection, date(2026, 11, 2), start, start + timedelta(minutes=30), title, NOTE
    )


TRACKED = (
    _occurrence("touchpoint:grace hopper:2026-W46", "Grace Hopper", BASE + timedelta(days=8, hours=2)),
    _occurrence("touchpoint:alan turing:2026-11", "Alan Turing", BASE + timedelta(days=3, hours=5)),
    _occurrence("touchpoint:women in tech london:2026-11", "Women in Tech London", BASE + timedelta(days=5)),
    _occurrence("touchpoint:charles babbage:2026-W46", "Charles Babbage", BASE + timedelta(days=4)),
    _occurrence("review:2026-11", None, BASE + timedelta(days=6, hours=7)),
)
OLD_KEYS = ("touchpoint:grace hopper:2026-W40", "touchpoint:charles babbage:2026-W40", "review:2026-10")
OWN_KEYS = tuple(o.key for o in TRACKED) + OLD_KEYS
EMAILS = (
    "grace@example.com",
    "GRACE@EXAMPLE.COM",
    "g.hopper@navy.example",
    "alan@example.com",
    "Alan@Example.com",
    "list@witl.example",
    "ada@example.com",
    "someone@else.example",
)
SUMMARIES = (
    "Coffee",
    "WITL drinks",
    "women in tech LONDON social",
    "Switlana 1:1",
    "Nurture: Grace Hopper",
    "",
)

instants = st.integers(min_value=0, max_value=14 * 24 * 4).map(lambda q: BASE + timedelta(minutes=15 * q))
attendees = st.lists(
    st.builds(Attendee, st.sampled_from(EMAILS), st.sampled_from(list(PartStat))), max_size=3
).map(tuple)
organizers = st.one_of(
    st.none(), st.sampled_from(EMAILS), st.sampled_from(EMAILS).map(lambda e: f"mailto:{e}")
)


@st.composite
def observations(draw: st.DrawFn) -> Observation:
    start = draw(instants)
    own = draw(st.one_of(st.none(), st.sampled_from(OWN_KEYS)))
    key: str | None = None
    recurrence_id: datetime | None = None
    if own is not None:
        if draw(st.booleans()):  # a subscriber's copy keeps our UID, and may or may not keep the key
            uid = occurrence_uid(own)
            key = draw(st.sampled_from([own, None]))
        else:  # the person copied it into their own calendar: new UID, our key
            uid = f"copy-{draw(st.integers(0, 2))}-{own}"
            key = own
    else:
        uid = f"evt-{draw(st.integers(0, 5))}@example.com"
        if draw(st.booleans()):
            recurrence_id = start
    return Observation(
        source=draw(st.sampled_from(["work", "home"])),
        uid=uid,
        start=start,
        end=start + timedelta(minutes=draw(st.sampled_from([15, 30, 60, 180]))),
        summary=draw(st.sampled_from(SUMMARIES)),
        attendees=draw(attendees),
        organizer=draw(organizers),
        cancelled=draw(st.booleans()),
        all_day=draw(st.booleans()),
        recurrence_id=recurrence_id,
        circleback_key=key,
    )


interactions = st.builds(
    Interaction,
    connection=st.sampled_from([c.name for c in CONNECTIONS] + ["grace hopper", "Charles Babbage"]),
    at=instants,
    note=st.just(NOTE),
    source=st.just("manual"),
    event_uid=st.none(),
)
tracked_sets = st.lists(st.sampled_from(TRACKED), unique=True).map(
    lambda occs: [TrackedOccurrence(o, OccurrenceStatus.PLACED) for o in occs]
)
grace_periods = st.sampled_from([timedelta(0), timedelta(hours=1), timedelta(hours=24), timedelta(days=3)])

COMMON = settings(max_examples=200, deadline=None)


def _run(
    tracked: list[TrackedOccurrence],
    seen: list[Observation],
    log: list[Interaction],
    now: datetime,
    grace: timedelta,
) -> Outcomes:
    return reconcile(PLAN, tracked, seen, log, now, grace)


@COMMON
@given(
    tracked_sets,
    st.lists(observations(), max_size=12),
    st.lists(interactions, max_size=3),
    instants,
    grace_periods,
)
def test_feeding_entries_back_yields_nothing_new(
    tracked: list[TrackedOccurrence],
    seen: list[Observation],
    log: list[Interaction],
    now: datetime,
    grace: timedelta,
) -> None:
    first = _run(tracked, seen, log, now, grace)
    second = _run(tracked, seen, [*log, *(e.interaction for e in first.entries)], now, grace)
    assert second.entries == ()
    assert second.statuses == first.statuses
    assert second.reviews_done == first.reviews_done


@COMMON
@given(
    tracked_sets,
    st.lists(observations(), max_size=12),
    st.lists(interactions, max_size=3),
    instants,
    grace_periods,
)
def test_settled_occurrences_leave_nothing_behind(
    tracked: list[TrackedOccurrence],
    seen: list[Observation],
    log: list[Interaction],
    now: datetime,
    grace: timedelta,
) -> None:
    """What the daemon does: store the entries, settle the statuses, and run again on the same calendars."""
    first = _run(tracked, seen, log, now, grace)
    still_open = [t for t in tracked if t.occurrence.key not in first.statuses]
    second = _run(still_open, seen, [*log, *(e.interaction for e in first.entries)], now, grace)
    assert second.entries == ()
    assert second.statuses == {}


@COMMON
@given(
    tracked_sets,
    st.lists(observations(), max_size=12),
    st.lists(interactions, max_size=3),
    instants,
    grace_periods,
    st.data(),
)
def test_order_of_inputs_does_not_matter(
    tracked: list[TrackedOccurrence],
    seen: list[Observation],
    log: list[Interaction],
    now: datetime,
    grace: timedelta,
    data: st.DataObject,
) -> None:
    shuffled = data.draw(st.permutations(seen))
    reordered_log = data.draw(st.permutations(log))
    reordered_tracked = data.draw(st.permutations(tracked))
    assert _run(reordered_tracked, shuffled, reordered_log, now, grace) == _run(
        tracked, seen, log, now, grace
    )


def _connection(name: str) -> Connection:
    found = PLAN.connection(name)
    assert found is not None
    return found


@COMMON
@given(
    tracked_sets,
    st.lists(observations(), max_size=12),
    st.lists(interactions, max_size=3),
    instants,
    grace_periods,
)
def test_every_entry_is_a_past_meeting_that_really_happened(
    tracked: list[TrackedOccurrence],
    seen: list[Observation],
    log: list[Interaction],
    now: datetime,
    grace: timedelta,
) -> None:
    out = _run(tracked, seen, log, now, grace)
    for entry in out.entries:
        item = entry.interaction
        emails = {e.casefold() for e in _connection(item.connection).all_emails} | {"ada@example.com"}
        witnesses = [
            o
            for o in seen
            if o.instance_id == item.event_uid
            and o.start == item.at
            and o.end <= now
            and not o.cancelled
            and not any(a.email.casefold() in emails and a.partstat == PartStat.DECLINED for a in o.attendees)
        ]
        assert witnesses, entry
        assert item.source in {"calendar", "touchpoint"}
        assert item.note == ""
    keys = [(e.interaction.event_uid, e.interaction.connection.casefold()) for e in out.entries]
    assert len(keys) == len(set(keys))
    for key, change in out.statuses.items():
        assert key in {t.occurrence.key for t in tracked}
        # Skipped: every copy of it was deleted or declined by the person (issue 11).
        assert change.status in {
            OccurrenceStatus.COMPLETED,
            OccurrenceStatus.MISSED,
            OccurrenceStatus.SKIPPED,
        }
        assert (change.at is None) == (change.status == OccurrenceStatus.MISSED)
        assert change.at is None or change.at <= now
    for line in out.explain:
        assert NOTE not in line


@COMMON
@given(tracked_sets, st.lists(observations(), max_size=12), instants, grace_periods)
def test_cancelled_calendars_log_nothing(
    tracked: list[TrackedOccurrence], seen: list[Observation], now: datetime, grace: timedelta
) -> None:
    cancelled = [dataclasses.replace(o, cancelled=True) for o in seen]
    out = _run(tracked, cancelled, [], now, grace)
    assert out.entries == ()
    assert out.reviews_done == ()
    # A cancelled copy is the person withdrawing that touchpoint: skipped, never completed.
    withdrawn = {o.circleback_key for o in cancelled} | {o.uid for o in cancelled}
    for change in out.statuses.values():
        assert change.status in {OccurrenceStatus.MISSED, OccurrenceStatus.SKIPPED}
        if change.status is OccurrenceStatus.SKIPPED:
            assert change.event_uid is not None and any(
                change.event_uid.startswith(w) for w in withdrawn if w
            )


@COMMON
@given(tracked_sets, st.lists(observations(), max_size=12), instants, grace_periods)
def test_a_contact_who_declines_everything_never_meets(
    tracked: list[TrackedOccurrence], seen: list[Observation], now: datetime, grace: timedelta
) -> None:
    """Alan declines every invitation, even to his own touchpoints: no entry ever names him."""
    declined = [
        dataclasses.replace(o, attendees=(*o.attendees, Attendee("alan@example.com", PartStat.DECLINED)))
        for o in seen
    ]
    out = _run(tracked, declined, [], now, grace)
    assert not [e for e in out.entries if e.interaction.connection == "Alan Turing"]

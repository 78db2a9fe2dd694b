"""Reconciliation: what the calendars show has happened, turned into log entries and occurrence statuses.

Pure and deterministic: the same inputs in any order give the same `Outcomes`, and feeding the entries back
in as `interactions` gives no new ones. Decisions, where the issue leaves room, are:

- A cancelled event, or one the owner declined, did not happen. A contact who declined did not meet.
- All-day events never match a group by title (a "Tech week" banner is not a meeting); they still count
  when the contact is an attendee or the organizer.
- Our own events (recognised by key or UID) never match by title: the title is ours, and a group's keyword
  could otherwise claim another connection's touchpoint. Invited attendees still count for other connections.
- Only a copy carrying the (signed, see connectors.ics_feed) key completes a touchpoint; an event that merely
  has the UID circleback would give it does not: such UIDs are derived from guessable keys.
- If a touchpoint shows up more than once, a copy moved away from the planned time wins (the person moved it
  on purpose; an unmoved subscriber copy says nothing), then the earliest copy.
- Deduplication is on (event UID, connection) whatever the source: the same event is one meeting whether it
  was recognised as a touchpoint or by its attendees. All copies of one touchpoint count as one event.
- Entries from one of our own touchpoints, tracked or old, have source "touchpoint".
- A cancelled copy of a tracked touchpoint is no sign it happened: after the grace period it is missed
  (unless an interaction was logged).
- Occurrences whose status is already settled (completed, missed, skipped) are treated as untracked.
- One recurring series gives a connection at most one entry per local day, the day's first instance: an
  hourly series is not 24 meetings a day (the reader already drops series denser than 24 a day, RRULE or
  RDATE alike). A daily standup still counts every day.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from types import MappingProxyType
from zoneinfo import ZoneInfo

from schedules.cadence import format_duration
from schedules.events import Interaction, InteractionKind, Observation, PartStat, require_utc
from schedules.model import REVIEW_LOG_NAME, Connection, ConnectionKind, Plan
from schedules.occurrence import Occurrence, OccurrenceKind, OccurrenceStatus

TOUCHPOINT_PREFIX = "touchpoint:"
_OPEN = frozenset({OccurrenceStatus.PLANNED, OccurrenceStatus.PLACED})
_OWN_UID = re.compile(r"^cb-[0-9a-f]{24}@circleback\.invalid$")
_SERIES_INSTANCE = re.compile(r"^(.+)/\d{8}T\d{6}Z$")  # Observation.instance_id of a series' instance


@dataclass(frozen=True)
class TrackedOccurrence:
    """An occurrence circleback has planned or placed and is waiting to hear about."""

    occurrence: Occurrence
    status: OccurrenceStatus


@dataclass(frozen=True)
class NewEntry:
    interaction: Interaction
    occurrence_key: str | None  # the touchpoint it came from, if any


@dataclass(frozen=True)
class StatusChange:
    status: OccurrenceStatus
    at: datetime | None  # when it really happened; None when missed
    event_uid: str | None  # the event instance (or logged interaction) that settled it


def _empty_statuses() -> Mapping[str, StatusChange]:
    return MappingProxyType({})


@dataclass(frozen=True)
class Outcomes:
    entries: tuple[NewEntry, ...] = ()
    statuses: Mapping[str, StatusChange] = field(default_factory=_empty_statuses)
    reviews_done: tuple[datetime, ...] = ()
    explain: tuple[str, ...] = ()  # names and titles only, never contact notes


def touchpoint_connection(key: str) -> str | None:
    """The casefolded connection name inside a touchpoint key `touchpoint:<name>:<period>`."""
    if not key.startswith(TOUCHPOINT_PREFIX):
        return None
    name, sep, period = key[len(TOUCHPOINT_PREFIX) :].rpartition(":")
    return name if sep and name and period else None


@lru_cache(maxsize=4096)  # the same few addresses recur across thousands of events
def _email(value: str | None) -> str:
    text = (value or "").strip()
    if text[:7].casefold() == "mailto:":
        text = text[7:]
    return text.strip().casefold()


def _words(text: str) -> str:
    return " ".join(text.casefold().split())


@dataclass(frozen=True)
class _Matcher:
    """A connection's addresses and title pattern, normalised once per run rather than once per event."""

    connection: Connection
    name: str  # casefolded
    emails: frozenset[str]
    title: re.Pattern[str] | None  # groups only: name or keyword on word boundaries

    @classmethod
    def of(cls, connection: Connection) -> _Matcher:
        emails = frozenset(_email(e) for e in connection.all_emails) - {""}
        title = None
        if connection.kind == ConnectionKind.GROUP:
            phrases = {_words(p) for p in (connection.name, *connection.keywords)} - {""}
            if phrases:
                # Lookarounds instead of \b, so keywords that end in punctuation ("C++") still work.
                choices = "|".join(re.escape(p) for p in sorted(phrases, key=lambda p: (-len(p), p)))
                title = re.compile(rf"(?<!\w)(?:{choices})(?!\w)")
        return cls(connection, connection.name.casefold(), emails, title)


@dataclass(frozen=True)
class _Parties:
    """Who an event names, addresses normalised; an address listed as declined anywhere counts as declined."""

    attending: frozenset[str]
    declined: frozenset[str]
    organizer: str

    @classmethod
    def of(cls, obs: Observation) -> _Parties:
        declined = frozenset(_email(a.email) for a in obs.attendees if a.partstat == PartStat.DECLINED)
        attending = frozenset(_email(a.email) for a in obs.attendees) - declined
        return cls(attending, declined, _email(obs.organizer))


def _obs_order(obs: Observation) -> tuple[object, ...]:
    """A total order over observations, so no choice depends on the order they were passed in."""
    return (
        obs.start,
        obs.end,
        obs.source,
        obs.instance_id,
        obs.uid,
        obs.summary,
        obs.cancelled,
        obs.all_day,
        obs.transparent,
        obs.organizer or "",
        obs.circleback_key or "",
        tuple((a.email, str(a.partstat)) for a in obs.attendees),
    )


@dataclass
class _Run:
    """Working state of one reconcile call; only `reconcile` builds and reads it."""

    plan: Plan
    now: datetime
    zone: ZoneInfo
    logged: set[tuple[str, str]]
    matchers: tuple[_Matcher, ...]
    parties_of: dict[int, _Parties] = field(default_factory=dict)  # by id(): `ordered` keeps them alive
    entries: list[NewEntry] = field(default_factory=list)
    statuses: dict[str, StatusChange] = field(default_factory=dict)
    reviews_done: list[datetime] = field(default_factory=list)
    explain: list[tuple[datetime, str]] = field(default_factory=list)
    series_days: set[tuple[str, str, date]] = field(default_factory=set)  # (series UID, connection, day)

    def local(self, value: datetime) -> str:
        return value.astimezone(self.zone).strftime("%Y-%m-%d %H:%M")

    def say(self, at: datetime, verb: str, subject: str, when: datetime, why: str) -> None:
        self.explain.append((at, f"{verb:<9}  {subject}  {self.local(when)} ({why})"))

    def parties(self, obs: Observation) -> _Parties:
        found = self.parties_of.get(id(obs))
        if found is None:
            found = self.parties_of[id(obs)] = _Parties.of(obs)
        return found

    def matcher(self, name: str | None) -> _Matcher | None:
        folded = (name or "").casefold()
        return next((m for m in self.matchers if m.name == folded), None)

    def happened(self, obs: Observation) -> bool:
        owner = _email(self.plan.owner.email)
        return not obs.cancelled and not (owner and owner in self.parties(obs).declined)

    def already_logged(self, connection: Connection, group: Iterable[Observation]) -> bool:
        name = connection.name.casefold()
        return any((obs.instance_id, name) in self.logged for obs in group)

    def add_entry(self, connection: Connection, obs: Observation, source: str, key: str | None) -> None:
        interaction = Interaction(
            connection=connection.name,
            at=obs.start,
            kind=InteractionKind.GIVE,
            note="",
            source=source,
            event_uid=obs.instance_id,
        )
        self.entries.append(NewEntry(interaction, key))
        self.logged.add((obs.instance_id, connection.name.casefold()))
        if obs.recurrence_id is not None:
            self.series_days.add(self.series_day(obs.uid, connection.name, obs.start))

    def series_day(self, uid: str, connection: str, at: datetime) -> tuple[str, str, date]:
        return (uid, connection.casefold(), at.astimezone(self.zone).date())


def reconcile(
    plan: Plan,
    occurrences: Sequence[TrackedOccurrence],
    observations: Sequence[Observation],
    interactions: Sequence[Interaction],
    now: datetime,
    grace: timedelta = timedelta(hours=24),
    withdrawn: Sequence[Interaction] = (),
) -> Outcomes:
    """Match what the source calendars show against what circleback placed and what the log holds.

    `withdrawn` are log entries the person took back (`circleback log undo`): the events they came from
    are never logged again, and they are no evidence that a touchpoint happened.
    """
    now = require_utc(now, "now")
    if grace < timedelta(0):
        raise ValueError(f"grace must not be negative, got {grace}")
    tracked = _tracked(occurrences)
    run = _Run(
        plan=plan,
        now=now,
        zone=ZoneInfo(plan.timezone),
        logged={
            (i.event_uid, i.connection.casefold())
            for i in (*interactions, *withdrawn)
            if i.event_uid is not None
        },
        matchers=tuple(_Matcher.of(c) for c in plan.connections),
    )
    for item in (*interactions, *withdrawn):
        found = _SERIES_INSTANCE.match(item.event_uid or "")
        if found:
            run.series_days.add(run.series_day(found.group(1), item.connection, item.at))
    ordered = sorted(observations, key=_obs_order)
    groups = _own_groups(ordered, tracked)

    unresolved: list[tuple[Occurrence, list[Observation]]] = []
    for key, occ in sorted(tracked.items()):
        if not _settle_by_observation(run, occ, groups.get(key, [])):
            unresolved.append((occ, groups.get(key, [])))
    for key in sorted(k for k in groups if k not in tracked):
        _old_touchpoint(run, key, groups[key])
    own_keys = {id(obs): key for key, group in groups.items() for obs in group}
    for obs in ordered:
        if obs.end <= now and run.happened(obs):
            _meetings(run, obs, own_keys.get(id(obs)), tracked)
    history = [*interactions, *(e.interaction for e in run.entries)]
    for occ, group in unresolved:
        if occ.end + grace <= now:
            _settle_after_grace(run, occ, group, history, grace)

    run.entries.sort(
        key=lambda e: (
            e.interaction.at,
            e.interaction.connection.casefold(),
            e.interaction.source,
            e.interaction.event_uid or "",
        )
    )
    return Outcomes(
        entries=tuple(run.entries),
        statuses=MappingProxyType(dict(sorted(run.statuses.items()))),
        reviews_done=tuple(sorted(run.reviews_done)),
        explain=tuple(line for _, line in sorted(run.explain)),
    )


def _tracked(occurrences: Sequence[TrackedOccurrence]) -> dict[str, Occurrence]:
    out: dict[str, Occurrence] = {}
    for item in occurrences:
        if item.status not in _OPEN:
            continue
        key = item.occurrence.key
        if key in out and out[key] != item.occurrence:
            raise ValueError(f"occurrence key {key!r} is tracked twice with different contents")
        out[key] = item.occurrence
    return out


def _own_groups(
    ordered: Sequence[Observation], tracked: Mapping[str, Occurrence]
) -> dict[str, list[Observation]]:
    """Observations of our own events, by the occurrence key they carry.

    Only the key counts, never the UID alone: the reader sets `circleback_key` only for a marker signed with
    this install's secret, while our UIDs are derived from the key (`occurrence_uid`) and so can be
    computed by anyone who can guess the key. Every copy circleback writes carries the signed key twice."""
    groups: dict[str, list[Observation]] = {}
    for obs in ordered:
        if obs.circleback_key:
            groups.setdefault(obs.circleback_key, []).append(obs)
    return groups


def _usable(run: _Run, group: Sequence[Observation], connection: Connection | None) -> list[Observation]:
    """Copies that were held, and not declined by the contact they were for."""
    found = run.matcher(connection.name) if connection else None
    emails = found.emails if found else frozenset()
    return [obs for obs in group if run.happened(obs) and not run.parties(obs).declined & emails]


def _settle_by_observation(run: _Run, occ: Occurrence, group: Sequence[Observation]) -> bool:
    """Rule 1. False when no copy that really happened was seen, so the grace rule decides later."""
    connection = run.plan.connection(occ.connection) if occ.connection else None
    usable = _usable(run, group, connection)
    if not usable and group and all(not run.happened(obs) for obs in group):
        # Every copy was deleted or declined by the person: their decision, as `circleback skip` is. The
        # period is not planned again; the rhythm goes on.
        run.statuses[occ.key] = StatusChange(OccurrenceStatus.SKIPPED, run.now, group[0].instance_id)
        why = f"deleted or declined in {group[0].source} calendar"
        run.say(run.now, "skipped", occ.title, occ.start, why)
        return True
    if not usable:
        return False
    moved = [obs for obs in usable if (obs.start, obs.end) != (occ.start, occ.end)]
    chosen = (moved or usable)[0]  # `group` is already in _obs_order
    if chosen.end > run.now:
        return True  # still to come; nothing to settle, and not missed either
    run.statuses[occ.key] = StatusChange(OccurrenceStatus.COMPLETED, chosen.start, chosen.instance_id)
    why = f"seen in {chosen.source} calendar"
    if chosen.start != occ.start:
        why += f", moved from {run.local(occ.start)}"
    run.say(chosen.start, "completed", occ.title, chosen.start, why)
    if occ.kind == OccurrenceKind.REVIEW:
        run.reviews_done.append(chosen.start)
    elif connection is not None and not run.already_logged(connection, group):
        run.add_entry(connection, chosen, "touchpoint", occ.key)
        run.say(chosen.start, "logged", connection.name, chosen.start, f"touchpoint {occ.title!r}")
    return True


def _old_touchpoint(run: _Run, key: str, group: Sequence[Observation]) -> None:
    """A touchpoint no longer tracked (settled, or replaced by a newer plan) still records a meeting."""
    name = touchpoint_connection(key)
    connection = run.plan.connection(name) if name else None
    if connection is None:
        return
    passed = [obs for obs in _usable(run, group, connection) if obs.end <= run.now]
    if not passed or run.already_logged(connection, group):
        return
    chosen = passed[0]
    run.add_entry(connection, chosen, "touchpoint", key)
    why = f"earlier touchpoint {chosen.summary!r} in {chosen.source} calendar"
    run.say(chosen.start, "logged", connection.name, chosen.start, why)


def _meetings(run: _Run, obs: Observation, own_key: str | None, tracked: Mapping[str, Occurrence]) -> None:
    """Rule 2: a past event that a focus contact attended, organized, or (for groups) is named in."""
    own = own_key is not None or bool(_OWN_UID.match(obs.uid))
    own_connection: str | None = None
    if own_key is not None:
        occ = tracked.get(own_key)
        own_connection = (
            occ.connection.casefold() if occ and occ.connection else touchpoint_connection(own_key)
        )
    parties = run.parties(obs)
    title = _words(obs.summary) if not own and not obs.all_day else None
    for matcher in run.matchers:
        if matcher.name == own_connection or (obs.instance_id, matcher.name) in run.logged:
            continue
        if (
            obs.recurrence_id is not None
            and run.series_day(obs.uid, matcher.name, obs.start) in run.series_days
        ):
            continue
        how = _how_met(matcher, parties, title)
        if how is not None:
            run.add_entry(matcher.connection, obs, "calendar", None)
            why = f"{how} of {obs.summary!r} in {obs.source} calendar"
            run.say(obs.start, "logged", matcher.connection.name, obs.start, why)


def _how_met(matcher: _Matcher, parties: _Parties, title: str | None) -> str | None:
    """How the event shows this connection took part; `title` is None where titles must not count."""
    if matcher.emails & parties.declined:
        return None
    if matcher.emails & parties.attending:
        return "attendee"
    if parties.organizer and parties.organizer in matcher.emails:
        return "organizer"
    if title is not None and matcher.title is not None:
        found = matcher.title.search(title)
        if found:
            return f"title matches {found.group(0)!r}"
    return None


def _settle_after_grace(
    run: _Run, occ: Occurrence, group: Sequence[Observation], history: Sequence[Interaction], grace: timedelta
) -> None:
    """Rule 3: no copy of it was seen. A logged interaction near its time completes it; else it was missed."""
    if (occ.kind == OccurrenceKind.TOUCHPOINT and occ.connection) or occ.kind == OccurrenceKind.REVIEW:
        connection = run.plan.connection(occ.connection) if occ.connection else None
        every = connection.every if connection else run.plan.review.every
        half = timedelta(days=every.approx_days() / 2)
        # A review done is logged under the reserved name '@review' (`circleback review done`).
        name = occ.connection.casefold() if occ.connection else REVIEW_LOG_NAME
        near = [i for i in history if i.connection.casefold() == name and occ.start - half <= i.at <= run.now]
        if near:
            best = min(near, key=lambda i: (abs(i.at - occ.start), i.at, i.source, i.event_uid or ""))
            run.statuses[occ.key] = StatusChange(OccurrenceStatus.COMPLETED, best.at, best.event_uid)
            run.say(best.at, "completed", occ.title, best.at, f"interaction logged, source {best.source}")
            return
    run.statuses[occ.key] = StatusChange(OccurrenceStatus.MISSED, None, None)
    why = f"no sign of it {format_duration(grace)} after its end"
    if group:  # copies were seen, but cancelled or declined
        why += f"; not held in {group[0].source} calendar"
    run.say(occ.start, "missed", occ.title, occ.start, why)

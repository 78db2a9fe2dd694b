"""One cycle, in one direction: read, decide, apply, persist.

This is the only module that knows the order of the steps: read the calendars and the store, ask the
pure core for the decision (`schedules.decide`), apply it to the writable calendars, persist it. The
store is written once, in one transaction, at the end, so a crash at any point leaves the previous state
intact and the next cycle redoes the work with the same identities.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from connectors.base import ConnectorError, EventResult, Reader, Writer
from daemon.store import SourceState, Store, StoredInteraction, StoredOccurrence
from schedules.busy import busy_time
from schedules.decide import decide
from schedules.events import Interval, Observation, require_utc
from schedules.model import Plan
from schedules.occurrence import Occurrence, Revision
from schedules.reconcile import Outcomes
from schedules.renames import renamed, resolve

log = logging.getLogger(__name__)

# How far back a cycle reads source calendars to find meetings that happened. Reconciliation is
# idempotent, so re-reading the same past costs nothing but time.
LOOKBACK = timedelta(days=92)
# How long past the grace period a failing calendar may hold back 'missed' verdicts.
HOLD_BACK = timedelta(days=7)


@dataclass(frozen=True)
class CalendarFault:
    calendar: str
    reason: str


@dataclass
class CycleReport:
    now: datetime
    published: list[Revision] = field(default_factory=list)
    outcomes: Outcomes | None = None
    new_entries: int = 0
    removed: list[str] = field(default_factory=list)
    faults: list[CalendarFault] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    applied_to: list[str] = field(default_factory=list)
    calendar_errors: dict[str, str | None] = field(default_factory=dict)  # None: read fresh and fine
    # Calendars with no data at all this cycle (never read, no copy): their busy time is unknown, so
    # nothing new is placed until each has been read once; what was already placed stays.
    unread: list[str] = field(default_factory=list)
    # What the plan asks for but could not be placed before the horizon: (connection or None for the
    # review rhythm, reason).
    unplaced: list[tuple[str | None, str]] = field(default_factory=list)
    # Per calendar: the key-value state to keep for its next call (sync tokens, validators).
    calendar_states: dict[str, dict[str, str]] = field(default_factory=dict)
    # (calendar, occurrence key, reason) of every event a calendar refused this cycle.
    failed_events: list[tuple[str, str, str]] = field(default_factory=list)
    # Per calendar that counts them (`api_requests` on the back end): HTTP requests this cycle sent.
    api_requests: dict[str, int] = field(default_factory=dict)
    # circleback's events the person moved in a calendar (still to come): they stay where they were put.
    moved_by_you: int = 0

    @property
    def upcoming(self) -> list[Occurrence]:
        return [r.occurrence for r in self.published if r.occurrence.end > self.now]


def _read_all(
    readers: Sequence[Reader], window: Interval, report: CycleReport, store: Store
) -> tuple[list[Interval], list[Observation]]:
    busy: list[Interval] = []
    observations: list[Observation] = []
    for reader in readers:
        try:
            snapshot = reader.read(window, store.calendar_state(reader.name))
        except ConnectorError as exc:
            # One unreachable calendar must not stop the others; it is reported and retried later.
            report.faults.append(CalendarFault(reader.name, exc.reason))
            report.calendar_errors[reader.name] = exc.reason
            report.unread.append(reader.name)
            log.warning("calendar %s could not be read: %s", reader.name, exc.reason)
            continue
        report.calendar_errors[reader.name] = snapshot.stale
        if snapshot.stale is not None:
            # Usable, but old: the calendar is failing, and recent copies of touchpoints may be missing
            # from it, so it counts as a fault (exit status 1, nothing settled by absence).
            report.faults.append(CalendarFault(reader.name, f"{snapshot.stale}; used the last good copy"))
        busy.extend(snapshot.busy)
        observations.extend(snapshot.observations)
        report.warnings.extend(snapshot.warnings)
        if snapshot.state is not None:
            report.calendar_states[reader.name] = dict(snapshot.state)
    return busy, observations


def _renamed_entry(entry: StoredInteraction, aliases: Mapping[str, str]) -> StoredInteraction:
    name = renamed(entry.interaction.connection, aliases)
    if name == entry.interaction.connection:
        return entry
    return dataclasses.replace(entry, interaction=dataclasses.replace(entry.interaction, connection=name))


def _renamed_row(row: StoredOccurrence, aliases: Mapping[str, str]) -> StoredOccurrence:
    occ = row.revision.occurrence
    if occ.connection is None or (name := renamed(occ.connection, aliases)) == occ.connection:
        return row
    occurrence = dataclasses.replace(occ, connection=name)
    return dataclasses.replace(row, revision=dataclasses.replace(row.revision, occurrence=occurrence))


def _verdicts_held_back(
    store: Store, faults: Sequence[CalendarFault], now: datetime, grace: timedelta
) -> bool:
    """Whether to hold back 'missed' verdicts because a calendar that could hold the proof is failing.

    Only for a calendar that worked recently: one that never worked, or has been failing for longer than
    the grace period plus HOLD_BACK, must not switch missed-touchpoint detection off for good."""
    for fault in faults:
        state = store.source_state(fault.calendar)
        if state is not None and state.ok_at is not None and now - state.ok_at <= grace + HOLD_BACK:
            return True
    return False


def _record_calendar_health(store: Store, errors: dict[str, str | None], now: datetime) -> None:
    """What `circleback status` and /readyz show for each calendar, across processes."""
    for name, error in errors.items():
        before = store.source_state(name) or SourceState(name)
        if error is None:
            after = dataclasses.replace(before, ok_at=now, fetched_at=now, last_error=None, failures=0)
        else:
            after = dataclasses.replace(before, last_error=error, failures=before.failures + 1)
        store.save_source_state(after)


def run_cycle(
    plan: Plan,
    store: Store,
    *,
    readers: Sequence[Reader],
    writers: Sequence[Writer],
    now: datetime,
    horizon: timedelta,
    grace: timedelta,
    dry_run: bool = False,
) -> CycleReport:
    now = require_utc(now, "now")
    report = CycleReport(now=now)
    backends: list[Reader | Writer] = [*readers, *writers]
    counted = {b.name: b for b in backends if isinstance(getattr(b, "api_requests", None), int)}
    requests_before = {name: int(getattr(b, "api_requests", 0)) for name, b in counted.items()}
    # Stable ids across renames: the log and the stored occurrences keep the names they were written
    # with; the core sees them under the connection's current name.
    resolved = resolve(plan, store.known_connections())
    plan = resolved.plan
    reported_busy, observations = _read_all(readers, Interval(now - LOOKBACK, now + horizon), report, store)
    owner_emails = (plan.owner.email,) if plan.owner.email else ()
    busy = busy_time(observations, owner_emails, also=reported_busy)

    # A calendar that could not be read at all (not even an earlier copy) may hold the very copy that
    # shows a touchpoint happened; once written off as missed, that copy would no longer be recognised.
    hold = _verdicts_held_back(store, report.faults, now, grace)
    decision = decide(
        plan,
        stored=[_renamed_row(row, resolved.aliases) for row in store.occurrences()],
        log=[_renamed_entry(entry, resolved.aliases) for entry in store.interactions(include_undone=True)],
        reviews_done=store.reviews_done(),
        observations=observations,
        busy=busy,
        now=now,
        horizon=horizon,
        grace=grace,
        can_place=not report.unread,
        hold_verdicts=hold,
        scope=store.uid_scope,
        read_from=[
            r.name
            for r in readers
            if r.name not in report.unread and report.calendar_errors.get(r.name) is None
        ],
    )
    outcomes = decision.outcomes
    report.outcomes = outcomes
    report.new_entries = len(outcomes.entries)
    report.removed = list(decision.removed)
    report.unplaced = list(decision.unplaced)
    report.published = list(decision.published)
    published, revisions, removed = decision.published, decision.revisions, decision.removed
    planned_at = {r.occurrence.key: (r.occurrence.start, r.occurrence.end) for r in revisions}
    report.moved_by_you = len(
        {
            o.circleback_key
            for o in observations
            if o.circleback_key in planned_at
            and o.start > now
            and (o.start, o.end) != planned_at[o.circleback_key]
        }
    )
    if dry_run:
        return report

    results: dict[str, Sequence[EventResult]] = {}
    # An occurrence is placed only when every writable calendar holds it: a calendar that could not be
    # reached, or refused that one event, leaves it planned, and the next cycle writes it again.
    # Occurrences under way (awaiting their verdict) are published too and go through the same
    # accounting; one that a calendar no longer shows is withheld from it (never created after its start,
    # see Decision.withheld), so it is not placed either.
    accounted = [*revisions, *decision.pending]
    placed = {r.occurrence.key for r in accounted}
    for writer in writers:
        withheld = decision.withheld.get(writer.name, frozenset())
        placed -= withheld
        desired = [r for r in published if r.occurrence.key not in withheld] if withheld else published
        try:
            # The state this cycle's read returned, when the calendar was read too: what a write does
            # to it (the events circleback itself deleted) must not later read as the person's doing.
            state = report.calendar_states.get(writer.name)
            applied = writer.apply(
                desired,
                placements=store.placements(writer.name),
                state=store.calendar_state(writer.name) if state is None else state,
            )
        except ConnectorError as exc:
            report.faults.append(CalendarFault(exc.calendar, exc.reason))
            log.warning("calendar %s could not be written: %s", exc.calendar, exc.reason)
            placed.clear()
            continue
        report.applied_to.append(writer.name)
        report.warnings.extend(applied.warnings)
        results[writer.name] = applied.results
        if applied.state is not None:
            report.calendar_states[writer.name] = dict(applied.state)
        for failure in applied.failed:
            placed.discard(failure.key)
            report.failed_events.append((writer.name, failure.key, failure.reason))
            log.warning("calendar %s refused %s: %s", writer.name, failure.key, failure.reason)

    for name, backend in counted.items():
        report.api_requests[name] = int(getattr(backend, "api_requests", 0)) - requests_before[name]
    _record_calendar_health(store, report.calendar_errors, now)
    store.sync_connections(plan)
    store.save_cycle(
        revisions=accounted,
        removed=removed,
        statuses={
            key: (change.status, change.at, change.event_uid) for key, change in outcomes.statuses.items()
        },
        interactions=[(e.interaction, e.occurrence_key) for e in outcomes.entries],
        calendar_states=report.calendar_states,
        event_results=results,
        placed=placed,
    )
    return report

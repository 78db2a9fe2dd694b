"""One cycle, in one direction: read calendars, reconcile, plan, apply, persist.

This is the only module that knows the order of the steps. Everything it calls is either pure
(`schedules`) or one back end (`connectors`); the store is written once, in one transaction, at the end,
so a crash at any point leaves the previous state intact and the next cycle redoes the work.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence, Set
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from connectors.base import ConnectorError, Reader, Writer
from daemon.store import SourceState, Store, StoredOccurrence
from schedules.events import Interval, Observation, require_utc
from schedules.model import Plan
from schedules.occurrence import Occurrence, OccurrenceKind, OccurrenceStatus, Revision, revise
from schedules.planner import KICKOFF_KEY, REVIEWS, plan_occurrences
from schedules.reconcile import Outcomes, TrackedOccurrence, reconcile

log = logging.getLogger(__name__)

# How far back a cycle reads source calendars to find meetings that happened. Reconciliation is
# idempotent, so re-reading the same past costs nothing but time.
LOOKBACK = timedelta(days=92)
# How long completed occurrences stay in the published feed, so a subscriber's calendar keeps them.
FEED_HISTORY = timedelta(days=28)
OPEN_STATUSES = (OccurrenceStatus.PLANNED, OccurrenceStatus.PLACED)
TERMINAL_STATUSES = (OccurrenceStatus.COMPLETED, OccurrenceStatus.MISSED, OccurrenceStatus.SKIPPED)
# The grace period used while a calendar is unreadable: long enough that nothing counts as missed.
NO_VERDICT = timedelta(days=36500)
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
    verdicts_held_back: bool = False

    @property
    def upcoming(self) -> list[Occurrence]:
        return [r.occurrence for r in self.published if r.occurrence.end > self.now]


def _read_all(
    readers: Sequence[Reader], window: Interval, report: CycleReport
) -> tuple[list[Interval], list[Observation]]:
    busy: list[Interval] = []
    observations: list[Observation] = []
    for reader in readers:
        try:
            snapshot = reader.read(window)
        except ConnectorError as exc:
            # One unreachable calendar must not stop the others; it is reported and retried later.
            report.faults.append(CalendarFault(reader.name, exc.reason))
            report.calendar_errors[reader.name] = exc.reason
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
    return busy, observations


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


def base_key(key: str) -> str:
    """The planner's key for an occurrence: without the '#N' of a replacement."""
    return key.split("#", 1)[0]


def _fresh_identities(
    desired: list[Occurrence], *, closed: set[str], pending: set[str], skipped: Set[str] = frozenset()
) -> list[Occurrence]:
    """Give each desired occurrence a key no settled occurrence has.

    A due period whose occurrence was completed or missed needs a fresh identity for the next attempt
    (`key#2`, `key#3`...), or the history row would be overwritten; a period whose occurrence has just
    passed and is awaiting its verdict is already represented, so it is not planned again, and neither is
    a period the person chose to skip. The suffix is
    deterministic, so the same inputs still give the same ids.
    """
    out = []
    for occ in desired:
        if occ.key in skipped:
            continue
        key, attempt = occ.key, 1
        while key in closed:
            attempt += 1
            key = f"{occ.key}#{attempt}"
        if key in pending:
            continue
        out.append(dataclasses.replace(occ, key=key) if key != occ.key else occ)
    return out


def _first_due(plan: Plan, stored: Sequence[StoredOccurrence]) -> dict[str, date]:
    """When each never-met connection's first touchpoint became due, and when the review rhythm
    started: remembered so that an occurrence keeps its identity across runs and turns overdue when it
    is missed, instead of drifting one cadence ahead of every run."""
    first: dict[str, date] = {}
    for row in stored:
        occ = row.revision.occurrence
        if occ.kind is OccurrenceKind.TOUCHPOINT and occ.connection:
            name, start = occ.connection.casefold(), occ.due
        elif occ.kind is OccurrenceKind.REVIEW:
            # The kickoff is due the day the rhythm starts; a regular review one cadence after it.
            kickoff = base_key(occ.key) == KICKOFF_KEY
            name, start = REVIEWS, occ.due if kickoff else plan.review.every.add(occ.due, -1)
        else:
            continue
        first[name] = min(first.get(name, start), start)
    return first


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
    busy, observations = _read_all(readers, Interval(now - LOOKBACK, now + horizon), report)

    stored = store.occurrences()
    open_rows = [row for row in stored if row.status in OPEN_STATUSES]
    closed_keys = {row.revision.occurrence.key for row in stored if row.status in TERMINAL_STATUSES}
    log_rows = store.interactions(include_undone=True)
    known = [s.interaction for s in log_rows if not s.undone]
    # Undone entries are shown to reconcile as already logged, so reading the same event again neither
    # logs it again nor lets it count for planning: an undo sticks.
    undone = [s.interaction for s in log_rows if s.undone and s.interaction.event_uid]

    tracked = [TrackedOccurrence(row.revision.occurrence, row.status) for row in open_rows]
    # A calendar that could not be read at all (not even an earlier copy) may hold the very copy that
    # shows a touchpoint happened; once written off as missed, that copy would no longer be recognised.
    # So nothing is settled by absence until every calendar has been read.
    blind = _verdicts_held_back(store, report.faults, now, grace)
    report.verdicts_held_back = blind
    outcomes = reconcile(
        plan, tracked, observations, known, now, NO_VERDICT if blind else grace, withdrawn=undone
    )
    report.outcomes = outcomes
    report.new_entries = len(outcomes.entries)

    # Occurrences whose time has passed but which are not settled yet (inside the grace period) stay where
    # they are and stand for their own due period; they are not counted as meetings, so the rhythm only
    # ever restarts from what really happened.
    pending = [
        row.revision
        for row in open_rows
        if row.revision.occurrence.start <= now and row.revision.occurrence.key not in outcomes.statuses
    ]
    interactions = known + [e.interaction for e in outcomes.entries]
    reviews_done = [*store.reviews_done(), *outcomes.reviews_done]
    # Placed future occurrences keep their slot; the planner knows them by their base key (a replacement
    # for a missed period carries a '#N' suffix the planner does not give).
    previous = {
        base_key(row.revision.occurrence.key): row.revision.occurrence
        for row in open_rows
        if row.revision.occurrence.start > now
    }
    desired = plan_occurrences(
        plan,
        first_due=_first_due(plan, stored),
        interactions=interactions,
        reviews_done=reviews_done,
        busy=busy,
        now=now,
        horizon=horizon,
        previous=previous,
    )
    pending_keys = {r.occurrence.key for r in pending}
    # Keys settled in this very cycle are closed too: the replacement of a touchpoint missed just now has
    # the same due period, and reusing its key would overwrite the history row.
    settled_now = set(outcomes.statuses)
    # A period the person chose to skip is not planned again; the rhythm goes on from the next one.
    skipped = {base_key(row.key) for row in stored if row.status is OccurrenceStatus.SKIPPED}
    desired = _fresh_identities(
        desired, closed=closed_keys | settled_now, pending=pending_keys, skipped=skipped
    )
    revisions = revise({row.revision.occurrence.key: row.revision for row in open_rows}, desired, now)

    desired_keys = {r.occurrence.key for r in revisions}
    removed = [
        row.revision.occurrence.key
        for row in open_rows
        if row.revision.occurrence.key not in desired_keys
        and row.revision.occurrence.key not in pending_keys
        and row.revision.occurrence.key not in outcomes.statuses
    ]
    report.removed = removed

    recent_history = [
        row.revision
        for row in stored
        if row.status is OccurrenceStatus.COMPLETED and row.revision.occurrence.end > now - FEED_HISTORY
    ]
    completed_now = [
        r.revision
        for r in open_rows
        if outcomes.statuses.get(r.revision.occurrence.key, None) is not None
        and outcomes.statuses[r.revision.occurrence.key].status is OccurrenceStatus.COMPLETED
    ]
    published = sorted(
        [*recent_history, *completed_now, *pending, *revisions],
        key=lambda r: (r.occurrence.start, r.occurrence.uid),
    )
    report.published = published
    if dry_run:
        return report

    for writer in writers:
        try:
            applied = writer.apply(published)
        except ConnectorError as exc:
            report.faults.append(CalendarFault(exc.calendar, exc.reason))
            log.warning("calendar %s could not be written: %s", exc.calendar, exc.reason)
            continue
        report.applied_to.append(writer.name)
        report.warnings.extend(applied.warnings)

    placed = bool(report.applied_to) or not writers
    _record_calendar_health(store, report.calendar_errors, now)
    store.sync_connections(plan)
    store.save_cycle(
        revisions=revisions,
        removed=removed,
        statuses={
            key: (change.status, change.at, change.event_uid) for key, change in outcomes.statuses.items()
        },
        interactions=[(e.interaction, e.occurrence_key) for e in outcomes.entries],
        status_for_new=OccurrenceStatus.PLACED if placed else OccurrenceStatus.PLANNED,
    )
    return report

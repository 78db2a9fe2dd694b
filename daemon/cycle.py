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
from zoneinfo import ZoneInfo

from connectors.base import ConnectorError, Reader, Writer
from daemon.store import SourceState, Store, StoredOccurrence
from schedules.cadence import format_duration
from schedules.events import Interaction, Interval, Observation, require_utc
from schedules.model import REVIEW_LOG_NAME, Plan
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
    # Calendars with no data at all this cycle (never read, no copy): their busy time is unknown, so
    # nothing new is placed until each has been read once; what was already placed stays.
    unread: list[str] = field(default_factory=list)
    # What the plan asks for but could not be placed before the horizon: (connection or None for the
    # review rhythm, reason).
    unplaced: list[tuple[str | None, str]] = field(default_factory=list)

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


def _first_due(stored: Sequence[StoredOccurrence], zone: ZoneInfo) -> dict[str, date]:
    """When each never-met connection's first touchpoint became due, and when the review rhythm
    started: remembered so that an occurrence keeps its identity across runs and turns overdue when it
    is missed, instead of drifting one cadence ahead of every run.

    The review rhythm starts on the day the plan first asked for a review: the kickoff's due date, or
    else the day the first review block was planned. It is never worked back from a review's due date,
    because that depends on the cadence, which the person may have changed since.
    """
    first: dict[str, date] = {}
    for row in stored:
        occ = row.revision.occurrence
        if occ.kind is OccurrenceKind.TOUCHPOINT and occ.connection:
            name, start = occ.connection.casefold(), occ.due
        elif occ.kind is OccurrenceKind.REVIEW:
            kickoff = base_key(occ.key) == KICKOFF_KEY
            name, start = REVIEWS, occ.due if kickoff else row.revision.created.astimezone(zone).date()
        else:
            continue
        first[name] = min(first.get(name, start), start)
    return first


def _skips_in_force(
    stored: Sequence[StoredOccurrence], log: Sequence[tuple[Interaction, datetime]]
) -> set[str]:
    """The due periods the person chose to skip, while the rhythm they were skipped in still holds.

    `log` holds every entry that counts (reviews done under the log's review name) with the time it was
    recorded. A skip is about one occurrence of the rhythm as it stood: once an entry recorded after the
    skip moves the chain's last meeting, the rhythm restarts from there, and a period with the same label
    is a new touchpoint, not the skipped one. Skipping must never move the rhythm.
    """
    by_chain: dict[str, list[tuple[datetime, datetime]]] = {}
    for entry, recorded in log:
        by_chain.setdefault(entry.connection.casefold(), []).append((entry.at, recorded))
    skipped: set[str] = set()
    for row in stored:
        if row.status is not OccurrenceStatus.SKIPPED:
            continue
        occ = row.revision.occurrence
        chain = REVIEW_LOG_NAME if occ.kind is OccurrenceKind.REVIEW else (occ.connection or "").casefold()
        entries = by_chain.get(chain, [])
        skipped_at = row.completed_at
        if skipped_at is None:
            skipped.add(base_key(occ.key))
            continue
        last_then = max((at for at, recorded in entries if recorded < skipped_at), default=None)
        if max((at for at, _ in entries), default=None) == last_then:
            skipped.add(base_key(occ.key))
    return skipped


def _as_it_happened(revision: Revision, at: datetime | None) -> Revision:
    """A completed occurrence as it really happened: a touchpoint moved in the person's calendar (or
    done as a call at another time) shows in the feed when it took place, not where it was planned.
    Derived from stored values only, so every cycle publishes the same bytes for it."""
    occ = revision.occurrence
    if at is None or at == occ.start:
        return revision
    moved = dataclasses.replace(occ, start=at, end=at + (occ.end - occ.start))
    return dataclasses.replace(
        revision,
        occurrence=moved,
        sequence=revision.sequence + 1,
        # `at` is never in the future (it was seen or logged), so LAST-MODIFIED never runs ahead of now.
        last_modified=max(revision.last_modified, at),
    )


def _unplaced(
    plan: Plan, placed: Sequence[Occurrence], pending: Sequence[Revision], horizon_end: datetime
) -> list[tuple[str | None, str]]:
    """Connections (and the review rhythm) with nothing in the calendar after planning: the person must
    hear which one and why, or the plan silently stops working for them."""
    zone = ZoneInfo(plan.timezone)
    present = {(o.connection or "").casefold() for o in [*placed, *(r.occurrence for r in pending)]}
    until = horizon_end.astimezone(zone).date().isoformat()
    out: list[tuple[str | None, str]] = []
    for connection in plan.connections:
        if connection.name.casefold() not in present:
            length = format_duration(connection.duration)
            out.append((connection.name, f"no free {length} slot inside working hours before {until}"))
    reviews = [o for o in [*placed, *(r.occurrence for r in pending)] if o.kind is OccurrenceKind.REVIEW]
    if not reviews:
        length = format_duration(plan.review.duration)
        out.append((None, f"no free {length} slot for the self-review inside working hours before {until}"))
    return out


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
    if report.unread:
        # A calendar with no data at all: its busy time is unknown, so a new placement could land on a
        # meeting. Keep what is already placed, place nothing new, remove nothing.
        revisions = [row.revision for row in open_rows if row.revision.occurrence.start > now]
    else:
        desired = plan_occurrences(
            plan,
            first_due=_first_due(stored, ZoneInfo(plan.timezone)),
            interactions=interactions,
            reviews_done=reviews_done,
            busy=busy,
            now=now,
            horizon=horizon,
            # Placed future occurrences keep their slot; the planner knows them by their base key (a
            # replacement for a missed period carries a '#N' suffix the planner does not give).
            previous={
                base_key(row.revision.occurrence.key): row.revision.occurrence
                for row in open_rows
                if row.revision.occurrence.start > now
            },
        )
        desired = _fresh_identities(
            desired,
            # Keys settled in this very cycle are closed too: the replacement of a touchpoint missed just
            # now has the same due period, and reusing its key would overwrite the history row.
            closed=closed_keys | set(outcomes.statuses),
            pending={r.occurrence.key for r in pending},
            skipped=_skips_in_force(
                stored,
                [
                    *((row.interaction, row.recorded_at) for row in log_rows if not row.undone),
                    *((entry.interaction, now) for entry in outcomes.entries),
                    # A review block seen done counts from when it happened; its verdict time is unknown.
                    *(
                        (Interaction(REVIEW_LOG_NAME, row.completed_at), row.completed_at)
                        for row in stored
                        if row.occurrence.kind is OccurrenceKind.REVIEW
                        and row.status is OccurrenceStatus.COMPLETED
                        and row.completed_at is not None
                    ),
                    *((Interaction(REVIEW_LOG_NAME, at), now) for at in outcomes.reviews_done),
                ],
            ),
        )
        revisions = revise({row.revision.occurrence.key: row.revision for row in open_rows}, desired, now)
        report.unplaced = _unplaced(plan, [r.occurrence for r in revisions], pending, now + horizon)

    kept = {r.occurrence.key for r in revisions} | {r.occurrence.key for r in pending}
    removed = [
        row.revision.occurrence.key
        for row in open_rows
        if row.revision.occurrence.key not in kept and row.revision.occurrence.key not in outcomes.statuses
    ]
    report.removed = removed

    recent_history = [
        _as_it_happened(row.revision, row.completed_at)
        for row in stored
        if row.status is OccurrenceStatus.COMPLETED and row.revision.occurrence.end > now - FEED_HISTORY
    ]
    completed_now = [
        _as_it_happened(row.revision, change.at)
        for row in open_rows
        if (change := outcomes.statuses.get(row.revision.occurrence.key)) is not None
        and change.status is OccurrenceStatus.COMPLETED
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

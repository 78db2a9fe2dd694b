"""The one decision of a cycle, as a pure function: plan, stored state, observations, log and `now` in;
log entries, status changes, the desired occurrences and what to remove out.

`daemon.cycle` reads (calendars, store), calls `decide`, applies the decision to the calendars and
persists it; every policy of how what happened turns into what comes next lives here: re-keying of
settled periods, pending and removed sets, skips, the first due dates remembered across runs, what the
feed keeps of the past, and what could not be placed. No I/O, no clock: `now` is a parameter.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence, Set
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from schedules.cadence import format_duration
from schedules.events import Interaction, Interval, Observation, require_utc
from schedules.keys import base_key
from schedules.model import REVIEW_LOG_NAME, Plan
from schedules.occurrence import (
    OPEN_STATUSES,
    TERMINAL_STATUSES,
    Occurrence,
    OccurrenceKind,
    OccurrenceStatus,
    Revision,
    revise,
)
from schedules.planner import KICKOFF_KEY, REVIEWS, Unplaced, plan_placement
from schedules.reconcile import Outcomes, TrackedOccurrence, reconcile

# How long completed occurrences stay in the published feed, so a subscriber's calendar keeps them.
FEED_HISTORY = timedelta(days=28)
# The grace period used while verdicts are held back: long enough that nothing counts as missed.
NO_VERDICT = timedelta(days=36500)


class StoredOccurrenceLike(Protocol):
    """An occurrence as the store keeps it (daemon.store.StoredOccurrence fits)."""

    @property
    def revision(self) -> Revision: ...
    @property
    def status(self) -> OccurrenceStatus: ...
    @property
    def completed_at(self) -> datetime | None: ...


class LogEntryLike(Protocol):
    """A log entry as the store keeps it (daemon.store.StoredInteraction fits)."""

    @property
    def interaction(self) -> Interaction: ...
    @property
    def undone(self) -> bool: ...
    @property
    def recorded_at(self) -> datetime: ...


@dataclass(frozen=True)
class Decision:
    """What one cycle decided. `revisions` are the open occurrences to keep or write (new, changed or
    unchanged), `published` is everything a calendar should hold now (recent history, pending ones,
    the revisions), `removed` the open keys to delete. `withheld` names, per calendar read in full, the
    occurrences already begun (under way or history) that it does not show (the person removed them, or
    it refused them): they are not written back there, since an event created at or after its start
    would read back as having happened."""

    outcomes: Outcomes
    revisions: tuple[Revision, ...]
    removed: tuple[str, ...]
    published: tuple[Revision, ...]
    pending: tuple[Revision, ...] = ()
    unplaced: tuple[tuple[str | None, str], ...] = field(default_factory=tuple)
    withheld: Mapping[str, frozenset[str]] = field(default_factory=dict)


def decide(
    plan: Plan,
    *,
    stored: Sequence[StoredOccurrenceLike],
    log: Sequence[LogEntryLike],
    reviews_done: Sequence[datetime],
    observations: Sequence[Observation],
    busy: Sequence[Interval],
    now: datetime,
    horizon: timedelta,
    grace: timedelta,
    can_place: bool = True,
    hold_verdicts: bool = False,
    scope: str = "",
    read_from: Collection[str] = (),
) -> Decision:
    """The cycle's decision.

    `can_place` is False while some configured calendar has no data at all: its busy time is unknown, so
    a new placement could land on a meeting; what is placed stays, nothing new is placed or removed.
    `hold_verdicts` is True while a calendar that may hold the proof of a touchpoint is failing: nothing
    is settled by absence (no 'missed'). `scope` is the owner's part of every new occurrence's UID ("" for
    the personal mode's one owner). `read_from` are the calendars read in full this cycle (not failing,
    not an old copy): only what they do not show can be known to be gone from them.
    """
    now = require_utc(now, "now")
    open_rows = [row for row in stored if row.status in OPEN_STATUSES]
    closed_keys = {row.revision.occurrence.key for row in stored if row.status in TERMINAL_STATUSES}
    known = [entry.interaction for entry in log if not entry.undone]
    # Undone entries are shown to reconcile as already logged, so reading the same event again neither
    # logs it again nor lets it count for planning: an undo sticks.
    undone = [entry.interaction for entry in log if entry.undone and entry.interaction.event_uid]
    tracked = [TrackedOccurrence(row.revision.occurrence, row.status) for row in open_rows]
    # Reviews done are kept apart from the log, but a review block no calendar showed is completed by a
    # review done near its time, as a touchpoint is by a logged call.
    history = [*known, *(Interaction(REVIEW_LOG_NAME, at, source="manual") for at in reviews_done)]
    outcomes = reconcile(
        plan, tracked, observations, history, now, NO_VERDICT if hold_verdicts else grace, withdrawn=undone
    )

    # Occurrences whose time has passed but which are not settled yet (inside the grace period) stay where
    # they are and stand for their own due period; they are not counted as meetings, so the rhythm only
    # ever restarts from what really happened.
    pending = [
        row.revision
        for row in open_rows
        if row.revision.occurrence.start <= now and row.revision.occurrence.key not in outcomes.statuses
    ]
    interactions = known + [e.interaction for e in outcomes.entries]
    all_reviews = [*reviews_done, *outcomes.reviews_done]
    unplaced: list[tuple[str | None, str]] = []
    if not can_place:
        revisions = [row.revision for row in open_rows if row.revision.occurrence.start > now]
    else:
        placement = plan_placement(
            plan,
            first_due=_first_due(stored, ZoneInfo(plan.timezone)),
            interactions=interactions,
            reviews_done=all_reviews,
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
            [dataclasses.replace(o, scope=scope) for o in placement.occurrences],
            # Keys settled in this very cycle are closed too: the replacement of a touchpoint missed just
            # now has the same due period, and reusing its key would overwrite the history row.
            closed=closed_keys | set(outcomes.statuses),
            pending={r.occurrence.key for r in pending},
            skipped=_withdrawn_now(outcomes)
            | _skips_in_force(
                stored,
                [
                    *((entry.interaction, entry.recorded_at) for entry in log if not entry.undone),
                    *((entry.interaction, now) for entry in outcomes.entries),
                    # Reviews done count from when they happened (when they were recorded is unknown);
                    # those seen this cycle are recorded now.
                    *((Interaction(REVIEW_LOG_NAME, at), at) for at in reviews_done),
                    *((Interaction(REVIEW_LOG_NAME, at), now) for at in outcomes.reviews_done),
                ],
            ),
        )
        revisions = revise({row.revision.occurrence.key: row.revision for row in open_rows}, desired, now)
        unplaced = _unplaced(
            plan, [r.occurrence for r in revisions], pending, placement.unplaced, now + horizon
        )

    kept = {r.occurrence.key for r in revisions} | {r.occurrence.key for r in pending}
    removed = [
        row.revision.occurrence.key
        for row in open_rows
        if row.revision.occurrence.key not in kept and row.revision.occurrence.key not in outcomes.statuses
    ]
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
    shown = {(obs.source, obs.circleback_key) for obs in observations if obs.circleback_key}
    # Everything that has begun, not only what awaits its verdict: history a calendar lost (the person
    # deleted it, the calendar refused it) would be created in the past and read back as a meeting,
    # under a UID the log has never seen, though what completed it was logged already.
    begun = [r.occurrence.key for r in published if r.occurrence.start <= now]
    withheld = {
        calendar: lost
        for calendar in read_from
        if (lost := frozenset(key for key in begun if (calendar, key) not in shown))
    }
    return Decision(
        withheld=withheld,
        outcomes=outcomes,
        revisions=tuple(revisions),
        removed=tuple(removed),
        published=tuple(published),
        pending=tuple(pending),
        unplaced=tuple(unplaced),
    )


def _withdrawn_now(outcomes: Outcomes) -> set[str]:
    """Periods the person withdrew in this very cycle (deleted or declined every copy): not planned again."""
    return {
        base_key(k) for k, change in outcomes.statuses.items() if change.status is OccurrenceStatus.SKIPPED
    }


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


def _first_due(stored: Sequence[StoredOccurrenceLike], zone: ZoneInfo) -> dict[str, date]:
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
    stored: Sequence[StoredOccurrenceLike], log: Sequence[tuple[Interaction, datetime]]
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
        last_then = max((at for at, recorded in entries if recorded <= skipped_at), default=None)
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
    plan: Plan,
    placed: Sequence[Occurrence],
    pending: Sequence[Revision],
    why: Sequence[Unplaced],
    horizon_end: datetime,
) -> list[tuple[str | None, str]]:
    """Connections (and the review rhythm) with nothing in the calendar after planning, with the
    planner's reason: the person must hear which one and why, or the plan silently stops working for
    them. A later demand that simply falls past the horizon is no news."""
    zone = ZoneInfo(plan.timezone)
    held = [*placed, *(r.occurrence for r in pending)]
    present = {(o.connection or "").casefold() for o in held if o.kind is OccurrenceKind.TOUCHPOINT}
    until = horizon_end.astimezone(zone).date().isoformat()

    def reason(connection: str | None, duration: timedelta) -> str:
        first = next((u for u in why if u.connection == connection), None)
        if first is not None:
            return first.reason
        return f"no free {format_duration(duration)} slot inside working hours before {until}"

    out: list[tuple[str | None, str]] = [
        (c.name, reason(c.name, c.duration)) for c in plan.connections if c.name.casefold() not in present
    ]
    if not any(o.kind is OccurrenceKind.REVIEW for o in held):
        out.append((None, reason(None, plan.review.duration)))
    return out

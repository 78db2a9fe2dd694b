"""How organisation mode is doing: the replicas' readiness, and each person's cycles and calendars.

Two audiences, told apart by what they may know:
- `/readyz` is unauthenticated (a load balancer, an orchestrator): it says whether the database answers and
  the workers' cycles are healthy, with counts of people by state, never who they are.
- Each person's own status, per calendar, is shown only at their secret feed address
  (`/feed/TOKEN/status`) and to the administrator (`circleback people show EMAIL`).

A person's state, from their cycle jobs (procrastinate's tables) over the last `window` (three periods):
`ok` (a cycle succeeded lately and the last one did not fail), `failing` (their last cycle failed),
`new` (added lately, no cycle yet) or `late` (no successful cycle lately: the queue is not reaching them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, func, select

from daemon.dbtypes import (
    PLACEMENT_FAILED,
    PLACEMENT_PLACED,
    OwnerRow,
    PersonFeedRow,
    PersonRow,
    PlacementRow,
    SourceStateRow,
)
from daemon.people import owner_key, token_hash

STATES: Final = ("ok", "failing", "late", "new")
# A worker that has not written its heartbeat for this long is taken for dead (daemon.org.STALLED_AFTER).
LIVE_WORKER: Final = timedelta(seconds=10)
PERIODS_IN_WINDOW: Final = 3

_HAS_QUEUE = text("SELECT to_regclass('procrastinate_jobs') IS NOT NULL")
_LIVE_WORKERS = text(
    "SELECT count(*) FROM procrastinate_workers WHERE last_heartbeat > now() - make_interval(secs => :secs)"
)
# One pass over the cycle jobs for everybody (or one person's jobs, with :key): the newest finished job per
# person, and their newest success in the window. Persons without jobs come through the LEFT JOINs with
# NULLs. At scale this wants old jobs pruned (procrastinate keeps finished jobs).
_PEOPLE_CYCLES = text(
    "WITH finished AS ("
    "  SELECT DISTINCT ON (j.lock) j.lock, j.status::text AS status, j.id FROM procrastinate_jobs j"
    "  WHERE j.task_name = 'circleback.cycle' AND j.status::text IN ('succeeded', 'failed')"
    "  AND ((:key)::text IS NULL OR j.lock = :key)"
    "  ORDER BY j.lock, j.id DESC"
    "), recent_ok AS ("
    "  SELECT j.lock, max(e.at) AS at"
    "  FROM procrastinate_events e JOIN procrastinate_jobs j ON j.id = e.job_id"
    "  WHERE j.task_name = 'circleback.cycle' AND e.type = 'succeeded'"
    "  AND e.at > now() - make_interval(secs => :window) AND ((:key)::text IS NULL OR j.lock = :key)"
    "  GROUP BY j.lock"
    ") "
    "SELECT o.key, p.created_at > now() - make_interval(secs => :window), f.status,"
    " (SELECT max(e.at) FROM procrastinate_events e WHERE e.job_id = f.id), r.at "
    "FROM person p JOIN owner o ON o.id = p.owner_id "
    "LEFT JOIN finished f ON f.lock = o.key LEFT JOIN recent_ok r ON r.lock = o.key "
    "WHERE (:key)::text IS NULL OR o.key = :key"
)


@dataclass(frozen=True)
class CycleState:
    state: str  # one of STATES
    last_cycle: str | None  # "succeeded" / "failed", None before the first
    last_cycle_at: datetime | None
    last_success_at: datetime | None  # within the window


@dataclass(frozen=True)
class CalendarStatus:
    name: str
    read: str  # "ok", "failing" or "not read" (a calendar only written to)
    last_ok_at: datetime | None
    failures: int  # reads failed in a row
    error: str | None  # why the last read failed (addresses already shown as scheme and host)
    placed: int  # events circleback holds there
    refused: int  # events the calendar refused


@dataclass(frozen=True)
class Readiness:
    ready: bool
    database: str  # "ok" or "unreachable"
    workers: int = 0
    people: dict[str, int] = field(default_factory=dict)  # counts by state, and "total"
    reasons: tuple[str, ...] = ()

    def as_json(self) -> dict[str, object]:
        return {
            "status": "ready" if self.ready else "not ready",
            "database": self.database,
            "workers": self.workers,
            "people": self.people,
            "reasons": list(self.reasons),
        }


def _state(new: bool, last: str | None, ok_at: datetime | None) -> str:
    if last == "failed":
        return "failing"
    if ok_at is not None:
        return "ok"
    return "new" if new else "late"


def cycle_states(engine: Engine, period: timedelta, email: str | None = None) -> dict[str, CycleState]:
    """Every person's (or one person's) cycle state; empty before the queue's tables exist."""
    window = (period * PERIODS_IN_WINDOW).total_seconds()
    key = owner_key(email) if email is not None else None
    with engine.connect() as conn:
        if engine.dialect.name != "postgresql" or not conn.execute(_HAS_QUEUE).scalar_one():
            return {}
        rows = conn.execute(_PEOPLE_CYCLES, {"window": window, "key": key}).all()
    return {str(k): CycleState(_state(bool(new), last, ok), last, at, ok) for k, new, last, at, ok in rows}


def readiness(engine: Engine, period: timedelta) -> Readiness:
    """Ready: the database answers, a worker is alive, and where cycles should have run, some succeeded
    lately. One person's failing cycle or calendar does not make a replica unready (that is theirs to see);
    nobody's cycles succeeding does (the queue is stuck, or something every cycle needs is broken)."""
    try:
        with engine.connect() as conn:
            queue = conn.execute(_HAS_QUEUE).scalar_one() if engine.dialect.name == "postgresql" else False
            workers = (
                int(conn.execute(_LIVE_WORKERS, {"secs": LIVE_WORKER.total_seconds()}).scalar_one())
                if queue
                else 0
            )
        states = cycle_states(engine, period)
    except SQLAlchemyError:
        # What the driver says may name hosts and users; the log of the replica has it, not this answer.
        return Readiness(False, "unreachable", reasons=("the database does not answer",))
    counts = {state: 0 for state in STATES}
    for person in states.values():
        counts[person.state] += 1
    people = {"total": len(states), **counts}
    reasons = []
    if not queue:
        reasons.append("the queue's tables are missing (no replica has started on this database)")
    elif workers == 0:
        reasons.append("no worker has sent a heartbeat lately")
    due = len(states) - counts["new"]
    if due and counts["ok"] == 0:
        reasons.append(f"no person's cycle succeeded in the last {PERIODS_IN_WINDOW} periods")
    return Readiness(not reasons, "ok", workers, people, tuple(reasons))


def person_calendars(engine: Engine, email: str) -> list[CalendarStatus]:
    """Each calendar a person's cycles read or write, with its state; theirs only."""
    key = owner_key(email)
    with Session(engine) as s:
        owner_id = s.exec(select(OwnerRow.id).where(col(OwnerRow.key) == key)).first()
        if owner_id is None:
            return []
        reads = s.exec(select(SourceStateRow).where(col(SourceStateRow.owner_id) == owner_id)).all()
        writes = s.exec(
            select(PlacementRow.calendar, PlacementRow.state, func.count())
            .where(col(PlacementRow.owner_id) == owner_id)
            .group_by(col(PlacementRow.calendar), col(PlacementRow.state))
        ).all()
    placed: dict[str, int] = {}
    refused: dict[str, int] = {}
    for calendar, state, count in writes:
        if state == PLACEMENT_PLACED:
            placed[calendar] = int(count)
        elif state == PLACEMENT_FAILED:
            refused[calendar] = int(count)
    read = {row.name: row for row in reads}
    out = []
    for name in sorted({*read, *placed, *refused}):
        row = read.get(name)
        out.append(
            CalendarStatus(
                name=name,
                read="not read" if row is None else ("failing" if row.failures > 0 else "ok"),
                last_ok_at=row.ok_at if row is not None else None,
                failures=row.failures if row is not None else 0,
                error=row.last_error if row is not None and row.failures > 0 else None,
                placed=placed.get(name, 0),
                refused=refused.get(name, 0),
            )
        )
    return out


def owner_by_token(engine: Engine, token: str) -> str | None:
    """The person whose feed URL carries `token`, looked up by the token's hash (as the feed is)."""
    digest = token_hash(token)
    with Session(engine) as s:
        found = s.exec(
            select(OwnerRow.key)
            .join(PersonFeedRow, col(PersonFeedRow.owner_id) == col(OwnerRow.id))
            .join(PersonRow, col(PersonRow.owner_id) == col(OwnerRow.id))
            .where(col(PersonFeedRow.token_hash) == digest)
        ).first()
    return found


def person_status_json(engine: Engine, email: str, period: timedelta) -> dict[str, object]:
    """A person's own status, for their secret status address: their cycles and each calendar."""
    cycle = cycle_states(engine, period, email).get(owner_key(email))

    def iso(at: datetime | None) -> str | None:
        return at.isoformat() if at is not None else None

    return {
        "state": cycle.state if cycle is not None else None,
        "last_cycle": cycle.last_cycle if cycle is not None else None,
        "last_cycle_at": iso(cycle.last_cycle_at) if cycle is not None else None,
        "last_success_at": iso(cycle.last_success_at) if cycle is not None else None,
        "calendars": [
            {
                "name": c.name,
                "read": c.read,
                "last_ok_at": iso(c.last_ok_at),
                "failures": c.failures,
                "error": c.error,
                "placed": c.placed,
                "refused": c.refused,
            }
            for c in person_calendars(engine, email)
        ],
    }

"""Many cycles as time goes by: what a person sees in their calendar must stay calm and truthful.

The cycle runs against the real store (SQLite), writing into the in-memory calendar (what a subscriber's
calendar app shows), every day, twice, over a quarter. Invariants checked at every step:
- an event placed in the future keeps its slot and its UID until something real changes (no churn);
- no two open occurrences share a due period;
- review blocks come due at their cadence (they do not recede ahead of every run);
- a touchpoint nobody confirms is settled as missed and followed by an overdue one, exactly once.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

from connectors.memory import MemoryCalendar
from daemon.cycle import run_cycle
from daemon.store import Store
from schedules.occurrence import OccurrenceKind, OccurrenceStatus
from schedules.plan import parse_plan

ADA = Path(__file__).parent / "fixtures" / "plans" / "ada.yaml"
START = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)  # Monday morning, before working hours
HORIZON = timedelta(weeks=14)
GRACE = timedelta(hours=24)


def test_a_quarter_of_daily_cycles_with_nobody_confirming_anything(tmp_path: Path) -> None:
    plan = parse_plan(ADA.read_text(), str(ADA))
    subscribed = MemoryCalendar("feed")  # written to, never read back: nothing ever confirms a meeting
    with Store(f"sqlite:///{tmp_path / 'cb.db'}") as store:
        seen_reviews: set[str] = set()
        previous: dict[str, datetime] = {}
        now = START
        while now < START + timedelta(weeks=13):
            report = run_cycle(
                plan, store, readers=[], writers=[subscribed], now=now, horizon=HORIZON, grace=GRACE
            )
            assert not report.faults
            assert {e.circleback_key for e in subscribed.events.values()} == {
                r.occurrence.key for r in report.published
            }, "the calendar shows exactly what was published"
            upcoming = {r.occurrence.uid: r.occurrence for r in report.published if r.occurrence.start > now}
            # Calm: whatever was placed ahead of now, and is still ahead, is still there at the same time.
            for uid, start in previous.items():
                if start > now + timedelta(hours=1):
                    assert uid in upcoming, f"{now}: event {uid} vanished from the calendar"
                    assert upcoming[uid].start == start, f"{now}: {upcoming[uid].title} moved"
            previous = {uid: occ.start for uid, occ in upcoming.items()}
            # One open occurrence per due period and connection.
            open_rows = store.occurrences((OccurrenceStatus.PLANNED, OccurrenceStatus.PLACED))
            periods = [row.key.split("#")[0] for row in open_rows]
            assert len(periods) == len(set(periods)), f"{now}: two open occurrences for one period"
            seen_reviews |= {
                r.occurrence.key for r in report.published if r.occurrence.kind is OccurrenceKind.REVIEW
            }
            now += timedelta(hours=12)

        rows = store.occurrences()
        missed = [r for r in rows if r.status is OccurrenceStatus.MISSED]
        grace_rows = sorted(
            (r for r in rows if r.occurrence.connection == "Grace Hopper"), key=lambda r: r.occurrence.start
        )
    # Nobody confirmed anything, so touchpoints were missed, and each miss was followed by an overdue one.
    assert missed, "touchpoints nobody confirmed are settled as missed"
    assert any(r.occurrence.overdue for r in grace_rows), "a missed touchpoint is followed by an overdue one"
    keys = [r.key for r in rows]
    assert len(keys) == len(set(keys))
    # Reviews came due month after month instead of receding ahead of each run.
    months = {key for key in seen_reviews if key.startswith("review:20")}
    assert {"review:2026-12", "review:2027-01", "review:2027-02"} <= months, sorted(seen_reviews)
    assert any(key.startswith("review:kickoff") for key in seen_reviews)


def test_confirmed_touchpoints_restart_the_rhythm_from_the_real_meeting(tmp_path: Path) -> None:
    plan = parse_plan(ADA.read_text(), str(ADA))
    subscribed = MemoryCalendar("feed")
    own = MemoryCalendar("work", owner_emails=("ada@example.com",))  # the person's own calendar, read back
    with Store(f"sqlite:///{tmp_path / 'cb.db'}") as store:
        now = START
        attended: list[datetime] = []
        while now < START + timedelta(weeks=10):
            report = run_cycle(
                plan, store, readers=[own], writers=[subscribed], now=now, horizon=HORIZON, grace=GRACE
            )
            # Each touchpoint with Grace, a person copies into their own calendar (keeping its UID, and its
            # signed key, as a copy keeps the description) an hour later than planned, and attends it.
            for revision in report.published:
                occ = revision.occurrence
                if occ.connection == "Grace Hopper" and now <= occ.start < now + timedelta(hours=12):
                    moved = occ.start + timedelta(hours=1)
                    own.add_event(
                        moved, moved + (occ.end - occ.start), occ.title, uid=occ.uid, circleback_key=occ.key
                    )
                    attended.append(moved)
            now += timedelta(hours=12)
        grace_log = sorted(
            e.interaction.at for e in store.interactions() if e.interaction.connection == "Grace Hopper"
        )
        missed = [
            r
            for r in store.occurrences((OccurrenceStatus.MISSED,))
            if r.occurrence.connection == "Grace Hopper"
        ]
    assert len(attended) >= 4
    assert missed == [], "every touchpoint she attended was recognised"
    assert grace_log == sorted(attended)[: len(grace_log)] and len(grace_log) >= len(attended) - 1
    # Two weeks apart, counted from the real (moved) meetings.
    gaps = [b - a for a, b in itertools.pairwise(grace_log)]
    assert gaps and all(timedelta(days=13) <= gap <= timedelta(days=19) for gap in gaps), gaps

"""Issue 9: each writable calendar has its own truth. One refused event never reads as placed, the rest is
written, the calendar's state and placements are kept in the store, and the next cycle retries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from connectors.memory import MemoryCalendar
from daemon.cycle import run_cycle
from daemon.store import Store
from schedules.events import Attendee, PartStat
from schedules.occurrence import OccurrenceStatus
from schedules.plan import parse_plan

ADA = Path(__file__).parent / "fixtures" / "plans" / "ada.yaml"
START = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)  # Monday morning, before working hours
HORIZON = timedelta(weeks=14)
GRACE = timedelta(hours=24)


def test_a_refused_event_stays_planned_until_a_later_cycle_writes_it(tmp_path: Path) -> None:
    plan = parse_plan(ADA.read_text(), str(ADA))
    work, feed = MemoryCalendar("work"), MemoryCalendar("feed")
    with Store(f"sqlite:///{tmp_path / 'cb.db'}") as store:
        first = run_cycle(
            plan, store, readers=[], writers=[work, feed], now=START, horizon=HORIZON, grace=GRACE
        )
        keys = sorted(r.occurrence.key for r in first.published)
        refused = keys[1]
        work.delete_event(next(e.uid for e in work.events.values() if e.circleback_key == refused))
        work.fail_writes(refused, "quota exceeded")
        later = START + timedelta(minutes=5)
        report = run_cycle(
            plan, store, readers=[], writers=[work, feed], now=later, horizon=HORIZON, grace=GRACE
        )
        assert report.failed_events == [("work", refused, "quota exceeded")]
        status = {row.key: row.status for row in store.occurrences()}
        assert status[refused] is OccurrenceStatus.PLANNED, "not held by every calendar: not placed"
        assert all(status[k] is OccurrenceStatus.PLACED for k in keys if k != refused)
        assert refused in store.placements("feed")
        (failure,) = store.calendar_failures()["work"]
        assert (failure.key, failure.reason, failure.retryable) == (refused, "quota exceeded", True)
        assert {e.circleback_key for e in feed.events.values()} == set(keys), "the other calendar has all"

        work.heal()
        run_cycle(
            plan,
            store,
            readers=[],
            writers=[work, feed],
            now=later + timedelta(minutes=5),
            horizon=HORIZON,
            grace=GRACE,
        )
        assert {row.key: row.status for row in store.occurrences()}[refused] is OccurrenceStatus.PLACED
        assert set(store.placements("work")) == set(keys) and not store.calendar_failures()
        held = sorted(e.circleback_key or "" for e in work.events.values())
        assert held == keys, "retried once, no duplicate"


def test_an_event_the_person_removed_as_it_began_is_not_written_back(tmp_path: Path) -> None:
    # Found by the cycle state machine: at the very minute a touchpoint starts, the person deletes it (and
    # the calendar would refuse it anyway). Written back after its start, it would read back as having
    # happened, and count as a meeting that never took place.
    plan = parse_plan(ADA.read_text(), str(ADA))
    work, feed = MemoryCalendar("work"), MemoryCalendar("feed")
    with Store(f"sqlite:///{tmp_path / 'cb.db'}") as store:

        def cycle(now: datetime) -> None:
            run_cycle(
                plan, store, readers=[work], writers=[work, feed], now=now, horizon=HORIZON, grace=GRACE
            )

        cycle(START)
        touchpoints = [e for e in work.events.values() if (e.circleback_key or "").startswith("touchpoint:")]
        soonest = min(touchpoints, key=lambda e: e.start)
        key = soonest.circleback_key
        assert key is not None
        work.fail_writes(key, "quota exceeded")
        work.delete_event(soonest.uid)
        cycle(soonest.start)
        status = {row.key: row.status for row in store.occurrences()}
        assert status[key] is OccurrenceStatus.PLANNED, "not held by every calendar: not placed"
        assert key not in {e.circleback_key for e in work.events.values()}
        assert key in {e.circleback_key for e in feed.events.values()}, "the feed still shows it"

        work.heal()
        cycle(soonest.start + timedelta(hours=1))
        assert key not in {e.circleback_key for e in work.events.values()}, "not written back after its start"
        cycle(soonest.end + GRACE + timedelta(hours=1))
        status = {row.key: row.status for row in store.occurrences()}
        assert status[key] is OccurrenceStatus.MISSED
        logged = {entry.occurrence_key for entry in store.interactions()}
        assert key not in logged, "no meeting was logged for it"


def test_a_past_touchpoint_a_calendar_lost_is_not_written_back_once_settled(tmp_path: Path) -> None:
    # Found by the cycle state machine: the person deletes a touchpoint as it begins (the calendar refuses
    # it), then meets the contact over coffee; after the grace period the coffee completes the touchpoint.
    # Written back into the healed calendar as history, the touchpoint read back as a second meeting.
    plan = parse_plan(ADA.read_text(), str(ADA))
    work = MemoryCalendar("work", owner_emails=["ada@example.com"])
    with Store(f"sqlite:///{tmp_path / 'cb.db'}") as store:

        def cycle(now: datetime) -> None:
            run_cycle(plan, store, readers=[work], writers=[work], now=now, horizon=HORIZON, grace=GRACE)

        cycle(START)
        grace = min(
            (e for e in work.events.values() if (e.circleback_key or "").startswith("touchpoint:grace")),
            key=lambda e: e.start,
        )
        key = grace.circleback_key
        assert key is not None
        work.fail_writes(key, "quota exceeded")
        work.delete_event(grace.uid)
        cycle(grace.start)
        coffee = grace.start + timedelta(hours=2)
        work.add_event(
            coffee,
            coffee + timedelta(minutes=30),
            "Coffee",
            attendees=[Attendee("ada@example.com", PartStat.ACCEPTED), Attendee("grace@example.com")],
        )
        work.heal()
        settled = grace.end + GRACE + timedelta(hours=3)
        cycle(settled)
        status = {row.key: row.status for row in store.occurrences()}
        assert status[key] is OccurrenceStatus.COMPLETED, "completed by the coffee"
        assert key not in {e.circleback_key for e in work.events.values()}, "not written back in the past"
        cycle(settled)
        met = [e.interaction.at for e in store.interactions() if e.interaction.connection == "Grace Hopper"]
        assert met == [coffee], "one meeting, logged once"

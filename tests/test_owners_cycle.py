"""Issue 9: two people in one database, each with a "Grace Hopper": whole cycles side by side share
nothing, and the personal mode's one owner keeps the UIDs earlier releases published."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from connectors.memory import MemoryCalendar
from daemon.cycle import run_cycle
from daemon.store import DEFAULT_OWNER, Store
from schedules.occurrence import occurrence_uid
from schedules.plan import parse_plan

ADA = Path(__file__).parent / "fixtures" / "plans" / "ada.yaml"
NOW = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)


def test_two_owners_with_the_same_plan_share_nothing(db_url: str) -> None:
    plan = parse_plan(ADA.read_text(), str(ADA))
    published: dict[str, set[str]] = {}
    for owner in (DEFAULT_OWNER, "bob@example.com"):
        with Store(db_url, owner=owner) as store:
            calendar = MemoryCalendar(f"feed-{owner}")
            report = run_cycle(
                plan,
                store,
                readers=[],
                writers=[calendar],
                now=NOW,
                horizon=timedelta(weeks=14),
                grace=timedelta(hours=24),
            )
            published[owner] = {r.occurrence.uid for r in report.published}
            assert {e.uid for e in calendar.events.values()} == published[owner]
            keys = {r.occurrence.key for r in report.published}
            if owner == DEFAULT_OWNER:
                assert published[owner] == {occurrence_uid(k) for k in keys}, "today's UIDs, unchanged"
    assert published[DEFAULT_OWNER].isdisjoint(published["bob@example.com"])
    for owner in (DEFAULT_OWNER, "bob@example.com"):
        with Store(db_url, owner=owner) as store:
            assert {row.occurrence.uid for row in store.occurrences()} == published[owner]

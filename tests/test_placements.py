"""Calendar state and placements in the store: written with the cycle, in its one transaction."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from store_builders import rev, save
from store_builders import touchpoint as occurrence

from connectors.base import EventResult, Outcome, Placement
from daemon.store import HistoryConflict, PlacementFailure, Store
from schedules.occurrence import OccurrenceStatus, Revision

NOW = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
PLANNED, PLACED, COMPLETED = OccurrenceStatus.PLANNED, OccurrenceStatus.PLACED, OccurrenceStatus.COMPLETED


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(db_url: str, clock: Clock) -> Iterator[Store]:
    with Store(db_url, clock=clock) as opened:
        yield opened


def touchpoint(name: str, days: int = 2, title: str = "") -> Revision:
    return rev(occurrence(name, NOW + timedelta(days=days), title=title, description=""))


def done(
    key: str, remote_id: str, action: str = "create", etag: str | None = None, seq: int = 0
) -> EventResult:
    return EventResult(key, action, placement=Placement(key, remote_id, etag, seq))


def failed(key: str, action: str, reason: str, retryable: bool = True) -> EventResult:
    return EventResult(key, action, Outcome.FAILED, reason=reason, retryable=retryable)


def test_a_calendars_state_is_replaced_whole_and_kept_apart_from_others(store: Store) -> None:
    assert store.calendar_state("google") == {}
    save(store, calendar_states={"google": {"sync_token": "t1", "page": "p"}, "work.ics": {"etag": '"e"'}})
    save(store, calendar_states={"google": {"sync_token": "t2"}})
    assert store.calendar_state("google") == {"sync_token": "t2"}
    assert store.calendar_state("work.ics") == {"etag": '"e"'}
    save(store, calendar_states={"google": {}})
    assert store.calendar_state("google") == {}
    assert store.calendar_state("work.ics") == {"etag": '"e"'}


def test_placements_follow_create_update_and_delete(store: Store) -> None:
    grace, alan = touchpoint("Grace Hopper"), touchpoint("Alan Turing")
    g, a = grace.occurrence.key, alan.occurrence.key
    write = save(store, grace, alan, event_results={"google": [done(g, "ev-g", etag="1"), done(a, "ev-a")]})
    assert write.placements_written == 2
    assert store.placements("google") == {g: Placement(g, "ev-g", "1"), a: Placement(a, "ev-a")}
    assert store.placements("work") == {}
    save(store, event_results={"google": [done(g, "ev-g", "update", etag="2", seq=1)]})
    assert store.placements("google")[g] == Placement(g, "ev-g", "2", 1)
    write = save(store, event_results={"google": [EventResult(a, "delete")]})
    assert write.placements_deleted == 1
    assert store.placements("google") == {g: Placement(g, "ev-g", "2", 1)}
    assert store.calendar_failures() == {}


def test_a_failed_update_keeps_the_placement_and_shows_why_until_it_succeeds(
    store: Store, clock: Clock
) -> None:
    grace = touchpoint("Grace Hopper")
    g = grace.occurrence.key
    save(store, grace, event_results={"google": [done(g, "ev-g", etag="1")]})
    clock.now = NOW + timedelta(minutes=5)
    write = save(store, event_results={"google": [failed(g, "update", "HTTP 412 precondition failed")]})
    assert write.placements_failed == 1
    # What the calendar holds is unchanged: the next apply must still find and update that event.
    assert store.placements("google") == {g: Placement(g, "ev-g", "1")}
    assert store.calendar_failures() == {
        "google": [
            PlacementFailure(g, "HTTP 412 precondition failed", True, NOW + timedelta(minutes=5), "ev-g")
        ]
    }
    save(store, event_results={"google": [done(g, "ev-g", "update", etag="2", seq=1)]})
    assert store.calendar_failures() == {}
    assert store.placements("google") == {g: Placement(g, "ev-g", "2", 1)}


def test_a_failed_create_places_nothing_but_is_reported(store: Store) -> None:
    grace = touchpoint("Grace Hopper")
    g = grace.occurrence.key
    save(store, grace, event_results={"google": [failed(g, "create", "403 quota", retryable=False)]})
    assert store.placements("google") == {}
    [failure] = store.calendar_failures()["google"]
    assert (failure.key, failure.reason, failure.retryable, failure.remote_id) == (
        g,
        "403 quota",
        False,
        None,
    )
    save(store, event_results={"google": [done(g, "ev-g")]})
    assert store.placements("google") == {g: Placement(g, "ev-g")}
    assert store.calendar_failures() == {}


def test_a_failed_delete_keeps_the_placement_after_its_occurrence_is_gone(store: Store) -> None:
    grace = touchpoint("Grace Hopper")
    g = grace.occurrence.key
    save(store, grace, event_results={"google": [done(g, "ev-g")]})
    save(store, removed={g}, event_results={"google": [failed(g, "delete", "timeout")]})
    assert store.occurrences() == []
    # The event is still in the calendar: the next cycle must be able to delete it.
    assert store.placements("google") == {g: Placement(g, "ev-g")}
    assert [f.reason for f in store.calendar_failures()["google"]] == ["timeout"]


def test_placed_decides_between_placed_and_planned(store: Store) -> None:
    grace, alan, mary = touchpoint("Grace Hopper"), touchpoint("Alan Turing"), touchpoint("Mary Somerville")
    g, a, m = (r.occurrence.key for r in (grace, alan, mary))
    save(store, grace, alan, mary, placed={g, m})
    assert {o.key: o.status for o in store.occurrences()} == {g: PLACED, a: PLANNED, m: PLACED}
    moved = touchpoint("Grace Hopper", days=3)
    # Every writable calendar's truth, changed or not: a revision not held everywhere is planned (a
    # calendar that lost or refused it gets it again next cycle); one now held everywhere is placed.
    save(store, moved, alan, mary, placed={a})
    assert {o.key: o.status for o in store.occurrences()} == {g: PLANNED, a: PLACED, m: PLANNED}


def test_without_placed_the_old_status_for_new_rule_holds(store: Store) -> None:
    grace = touchpoint("Grace Hopper")
    save(store, grace, status_for_new=PLANNED)
    assert [o.status for o in store.occurrences()] == [PLANNED]
    save(store, grace)
    assert [o.status for o in store.occurrences()] == [PLACED]


def test_a_refused_cycle_writes_no_state_and_no_placement(store: Store) -> None:
    grace = touchpoint("Grace Hopper")
    g = grace.occurrence.key
    save(
        store,
        grace,
        calendar_states={"google": {"sync_token": "t1"}},
        event_results={"google": [done(g, "e")]},
    )
    save(store, statuses={g: (COMPLETED, NOW, None)})
    with pytest.raises(HistoryConflict):
        save(
            store,
            touchpoint("Grace Hopper", title="changed"),
            calendar_states={"google": {"sync_token": "t2"}},
            event_results={"google": [done(g, "other", "update", seq=1)]},
        )
    assert store.calendar_state("google") == {"sync_token": "t1"}
    assert store.placements("google") == {g: Placement(g, "e")}

"""Owners: two people in one database, with the same connection names, share nothing and lose nothing."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from builders import connection, london_plan
from sqlalchemy import inspect, text
from store_builders import rev, save
from store_builders import touchpoint as occurrence

from connectors.base import EventResult, Placement
from daemon.org_schema import is_circleback_object
from daemon.store import DEFAULT_OWNER, InteractionNotFound, ReviewNotFound, SourceState, Store
from schedules.events import Interaction
from schedules.occurrence import OccurrenceStatus, Revision

NOW = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
PLACED, COMPLETED = OccurrenceStatus.PLACED, OccurrenceStatus.COMPLETED


def touchpoint(name: str, start: datetime, period: str = "2025-03", title: str = "") -> Revision:
    return rev(occurrence(name, start, period=period, title=title))


@pytest.fixture
def pair(db_url: str) -> Iterator[tuple[Store, Store]]:
    with (
        Store(db_url, clock=lambda: NOW) as ada,
        Store(db_url, owner="grace", clock=lambda: NOW, migrate=False) as grace,
    ):
        yield ada, grace


def test_the_personal_store_belongs_to_the_default_owner(db_url: str) -> None:
    with Store(db_url) as store:
        assert store.owner_key == DEFAULT_OWNER == "default"
        # The migration creates the personal mode's owner, so existing rows have one from the start.
        assert store.owners() == ["default"]


def test_an_owner_is_created_on_its_first_write_not_by_reading(pair: tuple[Store, Store]) -> None:
    ada, grace = pair
    assert grace.owner_key == "grace"
    assert grace.interactions() == [] and grace.occurrences() == [] and grace.calendar_state("work") == {}
    assert ada.owners() == ["default"]
    grace.add_interaction(Interaction("Alan Turing", NOW, source="manual"))
    assert ada.owners() == ["default", "grace"]


def test_same_names_for_two_owners_share_nothing_and_overwrite_nothing(pair: tuple[Store, Store]) -> None:
    ada, grace = pair
    plan = london_plan(connection("Alan Turing", email="alan@example.com"))
    other = london_plan(connection("Alan Turing", email="turing@example.org", next_action="Ask about Enigma"))
    ada.sync_connections(plan, now=NOW)
    grace.sync_connections(other, now=NOW)
    assert [c.email for c in ada.connections()] == ["alan@example.com"]
    assert [(c.email, c.next_action) for c in grace.connections()] == [
        ("turing@example.org", "Ask about Enigma")
    ]

    # The very same key (and, until the core puts the owner into UIDs, the very same UID) for both.
    mine, theirs = touchpoint("Alan Turing", NOW), touchpoint("Alan Turing", NOW + timedelta(hours=1))
    assert mine.occurrence.uid == theirs.occurrence.uid
    save(ada, mine)
    save(grace, theirs)
    assert [o.revision for o in ada.occurrences()] == [mine]
    # Read back under its owner, an occurrence carries the owner's scope, so its UID is Grace's own.
    (back,) = [o.revision for o in grace.occurrences()]
    assert back.occurrence == dataclasses.replace(theirs.occurrence, scope="grace")
    assert back.occurrence.uid != mine.occurrence.uid

    # The same observed event logged by both: two entries, neither dropped by the dedupe key's conflict.
    seen = Interaction("Alan Turing", NOW, source="calendar", event_uid="shared-meeting@example.com")
    first = save(ada, interactions=[(seen, None)])
    second = save(grace, interactions=[(seen, None)])
    assert (first.interactions_added, second.interactions_added) == (1, 1)
    assert [i.interaction for i in ada.interactions()] == [seen]
    assert [i.interaction for i in grace.interactions()] == [seen]
    # ... and each owner's own dedupe still holds.
    assert save(grace, interactions=[(seen, None)]).interactions_duplicate == 1

    ada.save_source_state(SourceState("work", etag='"a"', failures=1))
    grace.save_source_state(SourceState("work", etag='"g"'))
    assert ada.source_state("work") == SourceState("work", etag='"a"', failures=1)
    assert [s.etag for s in grace.source_states()] == ['"g"']


def test_one_owner_cannot_reach_the_others_rows_by_id(pair: tuple[Store, Store]) -> None:
    ada, grace = pair
    entry = ada.add_interaction(Interaction("Alan Turing", NOW, source="manual", note="coffee"))
    review = ada.add_review(NOW, "quarterly")
    assert entry is not None
    with pytest.raises(InteractionNotFound):
        grace.interaction(entry)
    with pytest.raises(InteractionNotFound):
        grace.undo_interaction(entry)
    with pytest.raises(ReviewNotFound):
        grace.undo_review(review)
    assert not ada.interaction(entry).undone
    assert [r.undone for r in ada.reviews(include_undone=True)] == [False]
    assert grace.reviews_done() == [] and ada.reviews_done() == [NOW]


def test_removing_pruning_and_renaming_stay_within_one_owner(pair: tuple[Store, Store]) -> None:
    ada, grace = pair
    old = touchpoint("Alan Turing", NOW - timedelta(days=60), period="2025-01")
    new = touchpoint("Alan Turing", NOW + timedelta(days=1))
    for store in (ada, grace):
        save(store, old, new)
        save(store, statuses={old.occurrence.key: (COMPLETED, NOW - timedelta(days=60), None)})
    save(ada, removed={new.occurrence.key})
    assert ada.prune(before=NOW) == 1
    assert ada.occurrences() == []
    assert [(o.key, o.status) for o in grace.occurrences()] == [
        (old.occurrence.key, COMPLETED),
        (new.occurrence.key, PLACED),
    ]
    ada.sync_connections(london_plan(connection("Alan Turing")), now=NOW)
    grace.sync_connections(london_plan(connection("Alan Turing")), now=NOW)
    ada.sync_connections(london_plan(), now=NOW)
    assert ada.connections() == [] and [c.name for c in grace.connections()] == ["Alan Turing"]


def test_calendar_state_and_placements_are_per_owner(pair: tuple[Store, Store]) -> None:
    ada, grace = pair
    mine = touchpoint("Alan Turing", NOW)
    key = mine.occurrence.key
    save(
        ada,
        mine,
        calendar_states={"google": {"sync_token": "ada-1"}},
        event_results={"google": [EventResult(key, "create", placement=Placement(key, "ev-ada"))]},
    )
    save(
        grace,
        touchpoint("Alan Turing", NOW),
        calendar_states={"google": {"sync_token": "grace-1"}},
        event_results={"google": [EventResult(key, "create", placement=Placement(key, "ev-grace"))]},
    )
    assert ada.calendar_state("google") == {"sync_token": "ada-1"}
    assert grace.calendar_state("google") == {"sync_token": "grace-1"}
    assert ada.placements("google") == {key: Placement(key, "ev-ada")}
    assert grace.placements("google") == {key: Placement(key, "ev-grace")}


def test_every_table_carries_the_owner_in_its_unique_keys(db_url: str) -> None:
    # Inspects the migrated schema itself, so a future table without an owner is caught here.
    with Store(db_url) as store:
        inspector = inspect(store.engine)
        for table in inspector.get_table_names():
            if table in ("alembic_version", "owner") or not is_circleback_object(table, "table"):
                continue  # procrastinate's queue tables are its own, not an owner's
            if table == "api_request_count":
                # Organisation-wide by design: a Prometheus counter by calendar name, which must not go
                # down when a person is purged and names nobody.
                assert "owner_id" not in {c["name"] for c in inspector.get_columns(table)}
                continue
            columns = {c["name"] for c in inspector.get_columns(table)}
            assert "owner_id" in columns, table
            keys = [c["column_names"] for c in inspector.get_unique_constraints(table)]
            primary = inspector.get_pk_constraint(table)["constrained_columns"]
            if primary != ["id"]:
                keys.append(primary)
            assert all("owner_id" in key for key in keys), (table, keys)


def test_a_blank_owner_key_is_refused(sqlite_url: str) -> None:
    for bad in ("", "  ", " ada"):
        with pytest.raises(ValueError, match="owner key"):
            Store(sqlite_url, owner=bad)


def test_two_stores_of_the_same_owner_share_its_one_row(db_url: str) -> None:
    with (
        Store(db_url) as first,
        Store(db_url, owner="grace", migrate=False) as a,
        Store(db_url, owner="grace", migrate=False) as b,
    ):
        a.add_review(NOW)
        b.add_review(NOW + timedelta(days=1))
        assert first.owners() == ["default", "grace"]
        assert len(a.reviews()) == 2
        with first.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM owner WHERE key = 'grace'")).scalar_one() == 1

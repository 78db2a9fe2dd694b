"""Connections keep a stable id across renames; reviews done are kept apart from the interaction log."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest
from builders import connection, london_plan

from daemon.store import REVIEW_CONNECTION, KnownConnection, Store
from schedules.events import Interaction
from schedules.model import Connection

NOW = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    with Store(db_url, clock=lambda: NOW) as opened:
        yield opened


@dataclass(frozen=True)
class WithId:
    """A plan connection as the core will give it once the plan carries `id:` (duck-typed: `id`, `name`)."""

    base: Connection
    id: str

    def __getattr__(self, name: str) -> object:
        return getattr(self.base, name)


def test_connections_are_stored_by_their_folded_name_with_all_their_emails(store: Store) -> None:
    grace = connection("Grace Hopper", email="grace@example.com", emails=("hopper@navy.mil",))
    store.sync_connections(london_plan(grace, connection("Alan Turing")), now=NOW)
    assert store.known_connections() == [
        KnownConnection("alan turing", "Alan Turing", ()),
        KnownConnection("grace hopper", "Grace Hopper", ("grace@example.com", "hopper@navy.mil")),
    ]
    stored = {c.name: c for c in store.connections()}
    assert stored["Grace Hopper"].conn_id == "grace hopper"
    assert stored["Grace Hopper"].emails == ("grace@example.com", "hopper@navy.mil")


def test_a_rename_under_the_same_id_keeps_the_row(store: Store) -> None:
    grace = connection("Grace Hopper", email="grace@example.com")
    store.sync_connections(london_plan(WithId(grace, "g1")), now=NOW)  # type: ignore[arg-type]
    renamed = replace(grace, name="Rear Admiral Hopper")
    result = store.sync_connections(
        london_plan(WithId(renamed, "g1")),  # type: ignore[arg-type]
        now=NOW + timedelta(days=1),
    )
    assert (result.added, result.updated, result.removed) == ((), ("Rear Admiral Hopper",), ())
    assert store.known_connections() == [KnownConnection("g1", "Rear Admiral Hopper", ("grace@example.com",))]
    [row] = store.connections()
    assert row.updated_at == NOW + timedelta(days=1)


def test_without_an_id_a_new_name_is_a_new_connection(store: Store) -> None:
    store.sync_connections(london_plan(connection("Grace Hopper")), now=NOW)
    result = store.sync_connections(london_plan(connection("Grace Brewster Hopper")), now=NOW)
    assert (result.added, result.removed) == (("Grace Brewster Hopper",), ("Grace Hopper",))
    # A change of case only is the same connection: the id is the folded name.
    result = store.sync_connections(london_plan(connection("GRACE BREWSTER HOPPER")), now=NOW)
    assert (result.added, result.updated, result.removed) == ((), ("GRACE BREWSTER HOPPER",), ())


def test_reviews_are_recorded_apart_from_the_log(store: Store) -> None:
    first = store.add_review(NOW - timedelta(days=30), "quarterly look")
    second = store.add_review(NOW, source="calendar")
    assert [(r.id, r.at, r.note, r.source, r.undone) for r in store.reviews()] == [
        (first, NOW - timedelta(days=30), "quarterly look", "manual", False),
        (second, NOW, "", "calendar", False),
    ]
    assert store.interactions(include_undone=True) == []
    store.undo_review(first)
    assert [r.id for r in store.reviews()] == [second]
    assert [r.id for r in store.reviews(include_undone=True)] == [first, second]
    assert store.reviews_done() == [NOW]


def test_a_review_logged_as_an_interaction_becomes_a_review(store: Store) -> None:
    # Today's `circleback review done` logs the reserved connection; it must land among the reviews.
    entry = Interaction(REVIEW_CONNECTION, NOW, note="on the train", source="manual")
    review_id = store.add_interaction(entry)
    assert review_id is not None
    write = store.save_cycle(
        revisions=(),
        removed=(),
        statuses={},
        interactions=[(Interaction("@Review", NOW + timedelta(hours=1)), None)],
    )
    assert (write.reviews_added, write.interactions_added) == (1, 0)
    assert store.interactions(include_undone=True) == []
    assert [(r.at, r.note) for r in store.reviews()] == [
        (NOW, "on the train"),
        (NOW + timedelta(hours=1), ""),
    ]
    assert store.reviews()[0].id == review_id
    assert store.reviews_done() == [NOW, NOW + timedelta(hours=1)]


def test_a_review_with_an_unknown_source_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="source must be one of"):
        store.add_review(NOW, source="guess")
    assert store.reviews(include_undone=True) == []

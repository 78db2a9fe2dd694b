"""The store on both back ends: round trips, idempotent logging, one-transaction writes, crash safety."""

from __future__ import annotations

import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta, timezone
from datetime import time as clock_time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Column, Integer, MetaData, Table, event, insert, select, text
from sqlalchemy.exc import StatementError
from store_builders import rev, review, save, touchpoint

from daemon.dbtypes import NaiveDatetimeError, OccurrenceRow, UTCDateTime, table_of
from daemon.store import (
    REVIEW_CONNECTION,
    ConnectionSync,
    HistoryConflict,
    InteractionNotFound,
    SourceState,
    Store,
    StoreError,
    UnknownOccurrence,
    create_engine,
    dedupe_key,
)
from schedules.cadence import parse_cadence
from schedules.events import Interaction, InteractionKind
from schedules.model import Connection, ConnectionKind, Owner, Plan, Review, Stage, WorkingHours
from schedules.occurrence import Occurrence, OccurrenceStatus, Revision, occurrence_uid

NOW = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
LONDON = ZoneInfo("Europe/London")
PLANNED, PLACED = OccurrenceStatus.PLANNED, OccurrenceStatus.PLACED
COMPLETED, MISSED, SKIPPED = OccurrenceStatus.COMPLETED, OccurrenceStatus.MISSED, OccurrenceStatus.SKIPPED


class Clock:
    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    with Store(db_url, clock=Clock()) as opened:
        yield opened


def met(name: str, at: datetime, uid: str | None = None, source: str = "calendar", **kw: Any) -> Interaction:
    return Interaction(connection=name, at=at, source=source, event_uid=uid, **kw)


def snapshot(store: Store) -> tuple[object, ...]:
    return (
        store.occurrences(),
        store.interactions(include_undone=True),
        store.connections(),
        store.source_states(),
    )


def a_plan(*names: str) -> Plan:
    return Plan(
        owner=Owner("Ada Lovelace", "ada@example.com"),
        timezone="Europe/London",
        mindset="Relationships are the currency of leadership.",
        working_hours=WorkingHours(frozenset(range(5)), clock_time(9), clock_time(17, 30)),
        review=Review(parse_cadence("month"), timedelta(minutes=30)),
        connections=tuple(
            Connection(
                name=name,
                kind=ConnectionKind.PERSON,
                stage=Stage.NURTURE,
                every=parse_cadence("2 weeks"),
                duration=timedelta(minutes=30),
                next_action=f"Call {name}",
                target=i == 0,
                email=f"{name.split()[0].lower()}@example.com",
            )
            for i, name in enumerate(names)
        ),
    )


# -- UTCDateTime -------------------------------------------------------------------------------------------

PROBE = MetaData()
probe_table = Table("probe", PROBE, Column("id", Integer, primary_key=True), Column("at", UTCDateTime()))


def test_instants_come_back_aware_in_utc_and_sort_by_instant(store: Store) -> None:
    PROBE.create_all(store.engine)
    values = [
        datetime(2025, 3, 30, 2, 30, tzinfo=LONDON),  # just after the spring-forward gap: 01:30 UTC
        datetime(2025, 3, 30, 0, 59, 59, 999999, tzinfo=UTC),
        datetime(2025, 3, 30, 9, 0, tzinfo=timezone(timedelta(hours=9))),
        datetime(2025, 10, 26, 1, 30, fold=1, tzinfo=LONDON),  # the second 01:30 at the autumn change
    ]
    with store.engine.begin() as conn:
        conn.execute(insert(probe_table), [{"id": i, "at": v} for i, v in enumerate(values)])
    with store.engine.connect() as conn:
        stored = list(conn.execute(select(probe_table.c.id, probe_table.c.at).order_by(probe_table.c.at)))
        later = conn.execute(
            select(probe_table.c.id).where(probe_table.c.at > datetime(2025, 3, 30, 1, 0, tzinfo=UTC))
        ).scalars()
        assert set(later) == {0, 3}
    # Compared in UTC: PEP 495 makes cross-zone == false for a time inside a DST fold.
    in_utc = [v.astimezone(UTC) for v in values]
    assert [row.at for row in stored] == sorted(in_utc)
    assert [row.at for row in stored] == [in_utc[row.id] for row in stored]
    assert all(row.at.tzinfo is UTC for row in stored)


def test_naive_datetimes_are_refused_before_reaching_the_database(store: Store) -> None:
    PROBE.create_all(store.engine)
    with pytest.raises(StatementError) as caught, store.engine.begin() as conn:
        conn.execute(insert(probe_table), {"id": 1, "at": datetime(2025, 1, 1, 12, 0)})
    assert isinstance(caught.value.orig, NaiveDatetimeError)
    with pytest.raises(StatementError) as wrong_type, store.engine.begin() as conn:
        conn.execute(insert(probe_table), {"id": 2, "at": "2025-01-01T12:00:00Z"})
    assert isinstance(wrong_type.value.orig, TypeError)
    with store.engine.connect() as conn:
        assert conn.execute(select(probe_table.c.id)).all() == []


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    moment=st.datetimes(
        min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.timezones()
    )
)
def test_any_aware_instant_round_trips_on_sqlite(sqlite_url: str, moment: datetime) -> None:
    engine = create_engine(sqlite_url)  # configured as the store configures it, without migrating
    try:
        PROBE.create_all(engine)
        with engine.begin() as conn:
            conn.execute(probe_table.delete())
            conn.execute(insert(probe_table), {"id": 1, "at": moment})
            back = conn.execute(select(probe_table.c.at)).scalar_one()
    finally:
        engine.dispose()
    # Compared in UTC: PEP 495 makes cross-zone == false for times inside a DST fold or gap.
    assert back == moment.astimezone(UTC)
    assert back.tzinfo is UTC


# -- opening -----------------------------------------------------------------------------------------------


def test_sqlite_file_is_private_and_its_directory_is_created(tmp_path: Path) -> None:
    path = tmp_path / "xdg" / "data" / "circleback" / "circleback.db"
    with Store(f"sqlite:///{path}") as store:
        store.add_interaction(met("Grace Hopper", NOW, source="manual", note="coffee"))
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one() >= 5000
        files = list(path.parent.iterdir())
        assert path in files
        for file in files:
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_in_memory_sqlite_works_for_throwaway_runs() -> None:
    with Store("sqlite://") as store:
        assert store.at_head()
        assert store.add_interaction(met("Grace Hopper", NOW, "e1")) == 1
        assert len(store.interactions()) == 1


def test_plain_postgresql_url_uses_psycopg_3() -> None:
    with Store("postgresql://nobody@127.0.0.1:1/none", migrate=False) as store:
        assert store.url.drivername == "postgresql+psycopg"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "not a database URL"),
        ("mysql://u@localhost/db", "unsupported database"),
    ],
)
def test_bad_urls_are_reported(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        Store(url)


def test_unreachable_server_is_a_clear_error_without_the_password() -> None:
    url = "postgresql://cb:sekret@127.0.0.1:1/circleback?connect_timeout=2"
    shown = r"cannot open database postgresql\+psycopg://cb:\*\*\*@127\.0\.0\.1:1/"
    with pytest.raises(StoreError, match=shown) as e:
        Store(url)
    assert "sekret" not in str(e.value)
    with Store(url, migrate=False) as store:
        with pytest.raises(StoreError, match="not reachable"):
            store.ping()
        with pytest.raises(StoreError, match="not reachable"):
            store.at_head()


def test_ping_and_at_head_on_a_healthy_database(store: Store) -> None:
    store.ping()
    assert store.at_head()


def test_processes_opening_a_fresh_database_together_migrate_it_once(db_url: str) -> None:
    def open_and_check(_: int) -> bool:
        with Store(db_url) as store:
            return store.at_head()

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(open_and_check, range(4))) == [True] * 4


def test_a_writer_waits_for_another_writer_instead_of_failing(sqlite_url: str) -> None:
    with Store(sqlite_url) as store:
        path = store.url.database
        assert path is not None
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")
        release = threading.Timer(0.3, other.execute, args=("COMMIT",))
        release.start()
        started = time.monotonic()
        assert store.add_interaction(met("Grace Hopper", NOW, "e1")) is not None
        assert time.monotonic() - started >= 0.25
        release.join()
        other.close()


# -- the interaction log -----------------------------------------------------------------------------------


def test_interactions_round_trip_in_time_order(store: Store) -> None:
    later = met("Grace Hopper", NOW, "e2", kind=InteractionKind.ASK, note="asked for an intro")
    earlier = Interaction("Women in Tech London", NOW - timedelta(days=3), note="meetup", source="manual")
    later_id = store.add_interaction(later)
    earlier_id = store.add_interaction(earlier, occurrence_key="touchpoint:women in tech london:2025-02")
    rows = store.interactions()
    assert [r.id for r in rows] == [earlier_id, later_id]
    assert [r.interaction for r in rows] == [earlier, later]
    assert rows[0].occurrence_key == "touchpoint:women in tech london:2025-02"
    assert rows[1].recorded_at == NOW and not rows[1].undone
    assert store.interaction(later_id or 0) == rows[1]


def test_the_same_observed_event_is_logged_once(store: Store) -> None:
    first = store.add_interaction(met("Grace Hopper", NOW, "evt-1@google.com"))
    assert first is not None
    # Same event, read again (or from another calendar), even with a different note or moved time.
    assert store.add_interaction(met("Grace Hopper", NOW + timedelta(hours=1), "evt-1@google.com")) is None
    assert store.add_interaction(met("grace hopper", NOW, "evt-1@google.com")) is None
    # The same event with a second focus contact is a second entry.
    assert store.add_interaction(met("Alan Turing", NOW, "evt-1@google.com")) is not None
    assert [r.interaction.connection for r in store.interactions()] == ["Grace Hopper", "Alan Turing"]


def test_an_occurrence_completes_once_even_under_two_event_uids(store: Store) -> None:
    key = "touchpoint:grace hopper:2025-03"
    copied = met("Grace Hopper", NOW, "copy-1", source="touchpoint")
    moved = met("Grace Hopper", NOW + timedelta(hours=2), "moved-2", source="touchpoint")
    assert store.add_interaction(copied, occurrence_key=key) is not None
    assert store.add_interaction(moved, occurrence_key=key) is None


def test_entries_typed_by_hand_are_never_merged(store: Store) -> None:
    coffee = Interaction("Grace Hopper", NOW, note="coffee")
    assert store.add_interaction(coffee) != store.add_interaction(coffee)
    assert len(store.interactions()) == 2
    assert dedupe_key(coffee) != dedupe_key(coffee)


def test_undo_keeps_the_row_so_reconciliation_does_not_bring_it_back(store: Store) -> None:
    entry = met("Grace Hopper", NOW, "evt-9")
    entry_id = store.add_interaction(entry)
    assert entry_id is not None
    undone = store.undo_interaction(entry_id)
    assert undone.undone and undone.interaction == entry
    assert store.undo_interaction(entry_id) == undone  # idempotent
    assert store.interactions() == []
    assert [r.id for r in store.interactions(include_undone=True)] == [entry_id]
    assert store.add_interaction(entry) is None
    written = save(store, interactions=[(entry, None)])
    assert (written.interactions_added, written.interactions_duplicate) == (0, 1)
    assert store.interactions() == []


def test_undoing_an_unknown_entry_is_a_key_error(store: Store) -> None:
    with pytest.raises(KeyError) as caught:
        store.undo_interaction(404)
    assert isinstance(caught.value, InteractionNotFound)
    assert str(caught.value) == "no interaction log entry with id 404"
    with pytest.raises(InteractionNotFound):
        store.interaction(404)


def test_an_unknown_source_is_refused_before_writing(store: Store) -> None:
    with pytest.raises(ValueError, match="source must be one of manual, calendar, touchpoint"):
        store.add_interaction(met("Grace Hopper", NOW, "e1", source="pending"))
    assert store.interactions(include_undone=True) == []


def test_reviews_done_merges_completed_reviews_and_logged_ones(store: Store) -> None:
    march, april = review(NOW, "2025-03"), review(NOW + timedelta(days=31), "2025-04")
    save(store, rev(march), rev(april))
    done_at = NOW + timedelta(hours=2)
    save(store, statuses={march.key: (COMPLETED, done_at, march.uid)})
    logged = NOW - timedelta(days=40)
    store.add_interaction(Interaction(REVIEW_CONNECTION, logged, note="reviewed on the train"))
    undone = store.add_interaction(Interaction(REVIEW_CONNECTION, NOW - timedelta(days=10)))
    assert undone is not None
    # Reviews live apart from the log since 0002: a review is undone as a review, not as a log entry.
    store.undo_review(undone)
    assert store.reviews_done() == [logged, done_at]
    assert store.interactions(include_undone=True) == []


# -- occurrences and the cycle write ----------------------------------------------------------------------


def test_revisions_round_trip_exactly(store: Store) -> None:
    grace = touchpoint("Grace Hopper", NOW + timedelta(days=2), due=date(2025, 3, 1), overdue=True)
    rev_grace = Revision(grace, 3, NOW - timedelta(days=20), NOW - timedelta(days=1))
    rev_review = rev(review(NOW + timedelta(days=1)))
    written = save(store, rev_grace, rev_review)
    assert (written.created, written.updated, written.unchanged) == (2, 0, 0)
    assert store.revisions() == {grace.key: rev_grace, rev_review.occurrence.key: rev_review}
    rows = store.occurrences()
    assert [r.key for r in rows] == [rev_review.occurrence.key, grace.key]  # by start
    assert {r.status for r in rows} == {PLACED}
    assert rows[1].occurrence.uid == occurrence_uid(grace.key)


def test_a_changed_revision_is_updated_and_an_unchanged_one_left_alone(store: Store) -> None:
    grace, alan = touchpoint("Grace Hopper", NOW), touchpoint("Alan Turing", NOW + timedelta(hours=1))
    save(store, rev(grace), rev(alan))
    moved = touchpoint("Grace Hopper", NOW + timedelta(days=1))
    later = NOW + timedelta(hours=5)
    written = save(store, Revision(moved, 1, NOW, later), rev(alan))
    assert (written.created, written.updated, written.unchanged) == (0, 1, 1)
    assert store.revisions()[grace.key] == Revision(moved, 1, NOW, later)


def test_status_for_new_records_whether_a_calendar_has_the_current_content(store: Store) -> None:
    grace, alan = touchpoint("Grace Hopper", NOW), touchpoint("Alan Turing", NOW + timedelta(hours=1))
    save(store, rev(grace), rev(alan))
    ada = touchpoint("Ada Byron", NOW + timedelta(hours=2))
    moved = touchpoint("Grace Hopper", NOW + timedelta(days=1))
    save(store, Revision(moved, 1, NOW, NOW), rev(alan), rev(ada), status_for_new=PLANNED)
    status = {r.key: r.status for r in store.occurrences()}
    assert status == {grace.key: PLANNED, alan.key: PLACED, ada.key: PLANNED}
    save(store, Revision(moved, 1, NOW, NOW), rev(alan), rev(ada))
    assert {r.status for r in store.occurrences()} == {PLACED}


def test_statuses_are_applied_and_removal_spares_history(store: Store) -> None:
    done, missed, gone, kept = (
        touchpoint("Grace Hopper", NOW - timedelta(days=3)),
        touchpoint("Alan Turing", NOW - timedelta(days=2)),
        touchpoint("Ada Byron", NOW + timedelta(days=2)),
        touchpoint("Joan Clarke", NOW + timedelta(days=3)),
    )
    save(store, rev(done), rev(missed), rev(gone), rev(kept))
    seen_at = NOW - timedelta(days=3, minutes=-5)
    entry = met("Grace Hopper", seen_at, "moved@example.com", source="touchpoint")
    written = save(
        store,
        rev(kept),
        statuses={done.key: (COMPLETED, seen_at, "moved@example.com"), missed.key: (MISSED, NOW, None)},
        removed=[done.key, missed.key, gone.key, "touchpoint:nobody:2020-01"],
        interactions=[(entry, done.key)],
    )
    assert (written.statuses_changed, written.removed, written.interactions_added) == (2, 1, 1)
    rows = {r.key: r for r in store.occurrences()}
    assert set(rows) == {done.key, missed.key, kept.key}
    assert (rows[done.key].status, rows[done.key].completed_at, rows[done.key].event_uid) == (
        COMPLETED,
        seen_at,
        "moved@example.com",
    )
    assert rows[missed.key].status is MISSED
    assert store.revisions() == {kept.key: rev(kept)}
    assert set(store.revisions([COMPLETED, MISSED])) == {done.key, missed.key}
    assert [r.key for r in store.occurrences([SKIPPED])] == []
    logged = store.interactions()
    assert [(r.interaction, r.occurrence_key) for r in logged] == [(entry, done.key)]
    assert written.interaction_ids == (logged[0].id,)


def test_saving_the_same_cycle_twice_changes_nothing_the_second_time(store: Store) -> None:
    grace = touchpoint("Grace Hopper", NOW + timedelta(days=1))
    entries = [(met("Alan Turing", NOW - timedelta(days=1), "evt-1"), None)]
    first = save(store, rev(grace), interactions=entries)
    before = snapshot(store)
    second = save(store, rev(grace), interactions=entries)
    assert (first.created, first.interactions_added) == (1, 1)
    assert (second.created, second.updated, second.unchanged, second.interactions_added) == (0, 0, 1, 0)
    assert snapshot(store) == before


def test_a_revision_may_not_overwrite_history(store: Store) -> None:
    grace = touchpoint("Grace Hopper", NOW - timedelta(days=1))
    save(store, rev(grace))
    save(store, statuses={grace.key: (MISSED, NOW, None)})
    before = snapshot(store)
    retry = touchpoint("Grace Hopper", NOW + timedelta(days=1), overdue=True)
    with pytest.raises(HistoryConflict, match="already missed"):
        save(store, rev(touchpoint("Alan Turing", NOW)), rev(retry))
    assert snapshot(store) == before


def test_a_status_for_an_unknown_occurrence_writes_nothing(store: Store) -> None:
    alan = touchpoint("Alan Turing", NOW)
    with pytest.raises(UnknownOccurrence, match="touchpoint:nobody:2025-03"):
        save(store, rev(alan), statuses={"touchpoint:nobody:2025-03": (COMPLETED, NOW, None)})
    assert store.occurrences() == []


def test_naive_times_in_a_status_change_are_refused(store: Store) -> None:
    grace = touchpoint("Grace Hopper", NOW)
    save(store, rev(grace))
    with pytest.raises(ValueError, match="timezone-aware"):
        save(store, statuses={grace.key: (COMPLETED, datetime(2025, 3, 3, 9, 30), None)})
    assert store.occurrences()[0].status is PLACED


def test_prune_drops_old_history_only(store: Store) -> None:
    old_done = touchpoint("Grace Hopper", NOW - timedelta(days=500), period="2023-10")
    old_open = touchpoint("Alan Turing", NOW - timedelta(days=500), period="2023-10")
    recent = touchpoint("Ada Byron", NOW - timedelta(days=5))
    save(store, rev(old_done), rev(old_open), rev(recent))
    save(store, statuses={old_done.key: (COMPLETED, old_done.start, None), recent.key: (MISSED, NOW, None)})
    store.add_interaction(met("Grace Hopper", old_done.start, "old"))
    assert store.prune(before=NOW - timedelta(days=400)) == 1
    assert {r.key for r in store.occurrences()} == {old_open.key, recent.key}
    assert len(store.interactions()) == 1


# -- crash safety ----------------------------------------------------------------------------------------


def _previous_state(store: Store) -> tuple[Occurrence, Occurrence]:
    grace = touchpoint("Grace Hopper", NOW + timedelta(days=1))
    alan = touchpoint("Alan Turing", NOW - timedelta(days=1))
    joan = touchpoint("Joan Clarke", NOW + timedelta(days=1))
    save(store, rev(grace), rev(alan), rev(joan), interactions=[(met("Alan Turing", NOW, "evt-0"), None)])
    store.sync_connections(a_plan("Grace Hopper", "Alan Turing"))
    return grace, alan


def _busy_cycle(store: Store, grace: Occurrence, alan: Occurrence, *extra: Revision) -> None:
    """Every kind of write at once: an update, an insert, a status change, a removal, two log entries."""
    save(
        store,
        Revision(touchpoint("Joan Clarke", NOW + timedelta(days=2)), 1, NOW, NOW),
        rev(touchpoint("Ada Byron", NOW + timedelta(days=3))),
        *extra,
        statuses={alan.key: (COMPLETED, NOW, "evt-1")},
        removed=[grace.key],
        interactions=[(met("Alan Turing", NOW, "evt-1"), alan.key), (met("Ada Byron", NOW, "evt-2"), None)],
    )


def test_a_constraint_violation_mid_cycle_leaves_the_previous_state(store: Store) -> None:
    grace, alan = _previous_state(store)
    # A stray row already holds the UID the new revision needs: the INSERT fails after the UPDATEs ran.
    clash = touchpoint("Mary Somerville", NOW + timedelta(days=4))
    stray = {"key": "stray", "uid": clash.uid, "kind": "touchpoint", "connection": "x", "due": NOW.date()}
    stray |= {"start": NOW, "end": NOW, "title": "t", "description": "d", "status": "placed"}
    stray |= {"overdue": False, "sequence": 0, "created": NOW, "last_modified": NOW}
    with store.engine.begin() as conn:
        # Since 0002 every row has an owner, and the UID is unique per owner: the stray is this store's.
        stray["owner_id"] = conn.execute(text("SELECT id FROM owner WHERE key = 'default'")).scalar_one()
        conn.execute(insert(table_of(OccurrenceRow)), stray)
    before = snapshot(store)
    with pytest.raises(StoreError, match="nothing was changed"):
        _busy_cycle(store, grace, alan, rev(clash))
    assert snapshot(store) == before


def test_a_crash_at_the_last_statement_leaves_the_previous_state(store: Store) -> None:
    grace, alan = _previous_state(store)
    before = snapshot(store)
    inserts = 0

    # Simulates the process dying just before the cycle's final write reaches the database.
    def crash_on_second_log_insert(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        nonlocal inserts
        if statement.lstrip().upper().startswith("INSERT INTO INTERACTION"):
            inserts += 1
            if inserts == 2:
                raise KeyboardInterrupt("killed")

    event.listen(store.engine, "before_cursor_execute", crash_on_second_log_insert)
    try:
        with pytest.raises(KeyboardInterrupt):
            _busy_cycle(store, grace, alan)
    finally:
        event.remove(store.engine, "before_cursor_execute", crash_on_second_log_insert)
    assert inserts == 2
    assert snapshot(store) == before
    _busy_cycle(store, grace, alan)  # the next cycle redoes the work
    assert {r.key: (r.status, r.revision.sequence) for r in store.occurrences()} == {
        alan.key: (COMPLETED, 0),
        "touchpoint:joan clarke:2025-03": (PLACED, 1),
        "touchpoint:ada byron:2025-03": (PLACED, 0),
    }
    assert len(store.interactions()) == 3


# -- connections -------------------------------------------------------------------------------------------


def test_sync_connections_mirrors_the_plan_and_keeps_the_log(store: Store) -> None:
    first = store.sync_connections(a_plan("Grace Hopper", "Alan Turing"))
    assert (first.added, first.updated, first.removed) == (("Grace Hopper", "Alan Turing"), (), ())
    store.add_interaction(met("Alan Turing", NOW, "evt-1"))
    grace = store.connections()[1]
    assert (grace.name, grace.kind, grace.stage, grace.target, grace.every, grace.duration_minutes) == (
        "Grace Hopper",
        "person",
        "nurture",
        True,
        "2 weeks",
        30,
    )
    assert grace.updated_at == NOW
    again = store.sync_connections(a_plan("Grace Hopper", "Alan Turing"), now=NOW + timedelta(days=1))
    assert again == ConnectionSync()
    assert store.connections()[1].updated_at == NOW
    changed = store.sync_connections(a_plan("Alan Turing", "Joan Clarke"), now=NOW + timedelta(days=2))
    assert changed == ConnectionSync(("Joan Clarke",), ("Alan Turing",), ("Grace Hopper",))
    assert [c.name for c in store.connections()] == ["Alan Turing", "Joan Clarke"]
    assert store.connections()[0].target and store.connections()[0].updated_at == NOW + timedelta(days=2)
    dropped = store.sync_connections(a_plan("Joan Clarke"))
    assert dropped.removed == ("Alan Turing",)
    assert [r.interaction.connection for r in store.interactions()] == ["Alan Turing"]


# -- source fetch state ------------------------------------------------------------------------------------


def test_source_state_round_trips_and_updates(store: Store) -> None:
    assert store.source_state("work") is None
    ok = SourceState(
        "work",
        etag='W/"abc"',
        last_modified_header="Mon, 03 Mar 2025 08:00:00 GMT",
        fetched_at=NOW,
        ok_at=NOW,
    )
    store.save_source_state(ok)
    assert store.source_state("work") == ok
    failing = SourceState(
        "work",
        etag=ok.etag,
        last_modified_header=ok.last_modified_header,
        fetched_at=NOW + timedelta(minutes=15),
        ok_at=NOW,
        last_error="HTTP 500",
        failures=2,
        next_attempt_at=datetime(2025, 3, 3, 10, 0, tzinfo=LONDON),
    )
    store.save_source_state(failing)
    store.save_source_state(SourceState("home"))
    assert store.source_state("work") == failing
    assert [s.name for s in store.source_states()] == ["home", "work"]
    assert store.source_states()[1].next_attempt_at == datetime(2025, 3, 3, 10, 0, tzinfo=UTC)


def test_source_state_refuses_naive_times() -> None:
    with pytest.raises(ValueError, match=r"SourceState\.fetched_at"):
        SourceState("work", fetched_at=datetime(2025, 3, 3, 9, 0))


def test_a_large_cycle_is_written_and_removed_in_one_go(store: Store) -> None:
    # More keys than one IN list may carry on SQLite: the store has to split them.
    many = [rev(touchpoint(f"Person {i}", NOW + timedelta(hours=i))) for i in range(1200)]
    assert save(store, *many).created == 1200
    assert save(store, *many[:10]).unchanged == 10
    written = save(store, removed=[r.occurrence.key for r in many[10:]])
    assert written.removed == 1190
    assert set(store.revisions()) == {r.occurrence.key for r in many[:10]}

"""A database built by the previous release's own code, opened by this one: nothing lost, the same UIDs.

The previous release (commit ef983db, schema 0001) is extracted from git into a temporary directory and
run in a subprocess with only that directory on its path, so the database is made by its real Store,
not by a hand-written imitation of its schema. The new Store then migrates it (0001 -> 0002) on open.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from daemon.store import DEFAULT_OWNER, Store
from schedules.events import Interaction

REPO = Path(__file__).resolve().parents[1]
PREVIOUS_RELEASE = "ef983db"

# Runs inside the previous release: fills a database the way its cycle and CLI did, then dumps what it
# holds (through its own API plus the raw dedupe keys) as JSON on stdout.
FILL = r"""
import json, sys
from datetime import UTC, date, datetime, timedelta
import daemon.store as old
from daemon.store import Store, SourceState
from schedules.cadence import parse_cadence
from schedules.events import Interaction, InteractionKind
from schedules.model import Connection, ConnectionKind, Owner, Plan, Review, Stage, WorkingHours
from schedules.occurrence import Occurrence, OccurrenceKind, OccurrenceStatus, Revision
from datetime import time
from sqlalchemy import text

assert old.__file__.startswith(sys.argv[2]), old.__file__  # the previous release, not this checkout
NOW = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
store = Store(sys.argv[1], clock=lambda: NOW)

def person(name, email):
    return Connection(name=name, kind=ConnectionKind.PERSON, stage=Stage.NURTURE,
                      every=parse_cadence("2 weeks"), duration=timedelta(minutes=30),
                      next_action=f"Call {name}", email=email)

plan = Plan(owner=Owner("Ada Lovelace", "ada@example.com"), timezone="Europe/London", mindset="m",
            working_hours=WorkingHours(frozenset(range(5)), time(9), time(17, 30)),
            review=Review(parse_cadence("month"), timedelta(minutes=30)),
            connections=(person("Grace Hopper", "grace@example.com"), person("Alan Turing", None)))
store.sync_connections(plan, now=NOW)

def occ(key, kind, who, start):
    return Occurrence(key=key, kind=kind, connection=who, due=start.date(), start=start,
                      end=start + timedelta(minutes=30), title=f"t {key}", description=f"d {key}")

T, R = OccurrenceKind.TOUCHPOINT, OccurrenceKind.REVIEW
occs = [
    occ("touchpoint:grace hopper:2025-02", T, "Grace Hopper", NOW - timedelta(days=20)),
    occ("touchpoint:alan turing:2025-02", T, "Alan Turing", NOW - timedelta(days=15)),
    occ("touchpoint:alan turing:2025-02#2", T, "Alan Turing", NOW - timedelta(days=8)),
    occ("review:2025-02", R, None, NOW - timedelta(days=10)),
    occ("touchpoint:grace hopper:2025-03", T, "Grace Hopper", NOW + timedelta(days=2)),
    occ("review:2025-03", R, None, NOW + timedelta(days=20)),
]
store.save_cycle(revisions=[Revision(o, 1, NOW - timedelta(days=30), NOW - timedelta(days=1)) for o in occs],
                 removed=(), statuses={}, interactions=[])
store.save_cycle(revisions=[Revision(occs[5], 2, NOW - timedelta(days=30), NOW)], removed=(), statuses={},
                 interactions=[], status_for_new=OccurrenceStatus.PLANNED)
done = Interaction("Grace Hopper", NOW - timedelta(days=20), source="calendar", event_uid="ev-1@example.com")
store.save_cycle(revisions=[], removed=(), statuses={
    occs[0].key: (OccurrenceStatus.COMPLETED, NOW - timedelta(days=20), "ev-1@example.com"),
    occs[1].key: (OccurrenceStatus.MISSED, None, None),
    occs[2].key: (OccurrenceStatus.SKIPPED, NOW - timedelta(days=9), None),
    occs[3].key: (OccurrenceStatus.COMPLETED, NOW - timedelta(days=10), None),
}, interactions=[(done, occs[0].key)])
store.add_interaction(Interaction("Alan Turing", NOW - timedelta(days=5), kind=InteractionKind.ASK,
                                  note="asked about Enigma", source="calendar", event_uid="ev-2@example.com"))
undone = store.add_interaction(
    Interaction("Alan Turing", NOW - timedelta(days=4), note="typo", source="manual"))
store.undo_interaction(undone)
store.add_interaction(Interaction("@review", NOW - timedelta(days=40), note="on the train", source="manual"))
wrong = store.add_interaction(Interaction("@review", NOW - timedelta(days=3), source="manual"))
store.undo_interaction(wrong)
store.add_interaction(Interaction("Grace Hopper", NOW - timedelta(days=1), note="coffee", source="manual"))
store.save_source_state(SourceState("work", etag='"abc"', fetched_at=NOW, ok_at=NOW, failures=0,
                                    last_modified_header="Mon, 03 Mar 2025 08:00:00 GMT"))
store.save_source_state(SourceState("gone", last_error="HTTP 404", failures=3, fetched_at=NOW,
                                    next_attempt_at=NOW + timedelta(hours=1)))
with store.engine.connect() as conn:
    dedupe = dict(conn.execute(text("SELECT id, dedupe_key FROM interaction")).all())
    revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
print(json.dumps({
    "revision": revision,
    "occurrences": [[o.key, o.revision.occurrence.uid, o.status.value, o.revision.sequence,
                     o.revision.occurrence.start.isoformat(), o.revision.last_modified.isoformat(),
                     o.completed_at and o.completed_at.isoformat(), o.event_uid]
                    for o in store.occurrences()],
    "interactions": [[i.id, i.interaction.connection, i.interaction.at.isoformat(), i.interaction.kind.value,
                      i.interaction.note, i.interaction.source, i.interaction.event_uid, i.occurrence_key,
                      i.undone, i.recorded_at.isoformat(), dedupe[i.id]]
                     for i in store.interactions(include_undone=True)],
    "reviews_done": [d.isoformat() for d in store.reviews_done()],
    "connections": [[c.name, c.email, c.next_action] for c in store.connections()],
    "sources": [[s.name, s.etag, s.last_modified_header, s.last_error, s.failures,
                 s.next_attempt_at and s.next_attempt_at.isoformat()] for s in store.source_states()],
}))
store.close()
"""


def _previous_release(tmp_path: Path) -> Path:
    archive = subprocess.run(
        [
            "git",
            "-C",
            str(REPO),
            "archive",
            "--format=tar",
            PREVIOUS_RELEASE,
            "daemon",
            "schedules",
            "connectors",
        ],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    target = tmp_path / "previous"
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target


def _fill_with_previous_release(url: str, tmp_path: Path) -> dict[str, Any]:
    code = _previous_release(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(code)}
    result = subprocess.run(
        [sys.executable, "-c", FILL, url, str(code)],
        capture_output=True,
        text=True,
        env=env,
        cwd=code,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    dump: dict[str, Any] = json.loads(result.stdout)
    return dump


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


@pytest.fixture
def upgraded(db_url: str, tmp_path: Path) -> tuple[dict[str, Any], str]:
    return _fill_with_previous_release(db_url, tmp_path), db_url


def test_the_previous_release_made_a_0001_database(upgraded: tuple[dict[str, Any], str]) -> None:
    before, _ = upgraded
    # Guards the other tests against passing vacuously on an empty or already-new database.
    assert before["revision"] == "0001"
    assert len(before["occurrences"]) == 6
    assert {o[2] for o in before["occurrences"]} == {"planned", "placed", "completed", "missed", "skipped"}
    assert sum(i[1] == "@review" for i in before["interactions"]) == 2
    assert len(before["sources"]) == 2


def test_every_occurrence_keeps_its_key_uid_status_and_revision(upgraded: tuple[dict[str, Any], str]) -> None:
    before, url = upgraded
    with Store(url) as store:
        assert store.current_revisions() == {"0008"}
        after = [
            [
                o.key,
                o.revision.occurrence.uid,
                o.status.value,
                o.revision.sequence,
                o.revision.occurrence.start.isoformat(),
                o.revision.last_modified.isoformat(),
                _iso(o.completed_at),
                o.event_uid,
            ]
            for o in store.occurrences()
        ]
    assert after == before["occurrences"]


def test_the_log_keeps_every_entry_and_its_dedupe_key_and_reviews_move_out(
    upgraded: tuple[dict[str, Any], str],
) -> None:
    before, url = upgraded
    entries = [i for i in before["interactions"] if i[1] != "@review"]
    reviews = [i for i in before["interactions"] if i[1] == "@review"]
    with Store(url) as store:
        with store.engine.connect() as conn:
            dedupe: dict[int, str] = dict(conn.execute(text("SELECT id, dedupe_key FROM interaction")).all())
        after = [
            [
                i.id,
                i.interaction.connection,
                i.interaction.at.isoformat(),
                i.interaction.kind.value,
                i.interaction.note,
                i.interaction.source,
                i.interaction.event_uid,
                i.occurrence_key,
                i.undone,
                i.recorded_at.isoformat(),
                dedupe[i.id],
            ]
            for i in store.interactions(include_undone=True)
        ]
        assert after == entries
        moved = [
            [r.at.isoformat(), r.note, r.source, r.undone, r.recorded_at.isoformat()]
            for r in store.reviews(include_undone=True)
        ]
        assert moved == [[r[2], r[4], r[5], r[8], r[9]] for r in reviews]
        assert [d.isoformat() for d in store.reviews_done()] == before["reviews_done"]
        # A migrated entry still deduplicates: the same observed event read again is not logged twice.
        at = datetime(2025, 2, 26, 9, tzinfo=UTC)
        again = Interaction("Alan Turing", at, source="calendar", event_uid="ev-2@example.com")
        assert store.add_interaction(again) is None


def test_connections_and_sources_survive_under_the_default_owner(
    upgraded: tuple[dict[str, Any], str],
) -> None:
    before, url = upgraded
    with Store(url) as store:
        assert store.owners() == [DEFAULT_OWNER]
        assert [[c.name, c.email, c.next_action] for c in store.connections()] == before["connections"]
        assert {(k.conn_id, k.name, k.emails) for k in store.known_connections()} == {
            ("grace hopper", "Grace Hopper", ("grace@example.com",)),
            ("alan turing", "Alan Turing", ()),
        }
        sources = [
            [s.name, s.etag, s.last_modified_header, s.last_error, s.failures, _iso(s.next_attempt_at)]
            for s in store.source_states()
        ]
        assert sources == before["sources"]
        with store.engine.connect() as conn:
            owner = conn.execute(text("SELECT id FROM owner WHERE key = 'default'")).scalar_one()
            for table in ("connection", "occurrence", "interaction", "review", "source_state"):
                owners = set(conn.execute(text(f"SELECT DISTINCT owner_id FROM {table}")).scalars())
                assert owners == {owner}, table

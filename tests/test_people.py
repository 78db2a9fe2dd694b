"""`circleback people`: the people of an organisation, each with their plan's history in the database."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cli_runner import Result, run_in_process
from sqlalchemy import text

from daemon.people import People, checksum
from daemon.store import SourceState, Store

FIXTURES = Path(__file__).parent / "fixtures"
ADA = FIXTURES / "plans" / "ada.yaml"
BROKEN = FIXTURES / "plans" / "broken" / "bad-cadences.yaml"
NOW = "2026-11-23T09:30:00+00:00"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    for sub in ("config", "data", "state"):
        (tmp_path / sub).mkdir()
    return tmp_path


def cli(home: Path, db: str, *args: str) -> Result:
    return run_in_process(home, *args, "--db", db, "--now", NOW)


def edited(home: Path, marker: str) -> Path:
    target = home / f"plan-{marker}.yaml"
    target.write_text(ADA.read_text(encoding="utf-8") + f"\n# {marker}\n", encoding="utf-8")
    return target


def test_add_list_show_set_plan_and_history(home: Path, db_url: str) -> None:
    added = cli(home, db_url, "people", "add", "Ada@Example.com", "--name", "Ada", "--plan", str(ADA))
    assert added.returncode == 0, added.stderr
    second = cli(home, db_url, "people", "add", "bo@example.com", "--name", "Bo", "--plan", str(ADA))
    assert second.returncode == 0, second.stderr

    listed = cli(home, db_url, "people", "list", "--json")
    people = json.loads(listed.stdout)
    assert [p["email"] for p in people] == ["ada@example.com", "bo@example.com"]
    assert people[0]["plan_checksum"] == checksum(ADA.read_text(encoding="utf-8"))
    assert people[0]["plan_versions"] == 1

    new_plan = edited(home, "v2")
    assert cli(home, db_url, "people", "set-plan", "ada@example.com", str(new_plan)).returncode == 0
    again = cli(home, db_url, "people", "set-plan", "ada@example.com", str(new_plan))
    assert again.returncode == 0 and "unchanged" in again.stdout

    with Store(db_url) as store:
        versions = People(store.engine).plan_versions("ada@example.com")
        assert [v.text for v in versions] == [
            ADA.read_text(encoding="utf-8"),
            new_plan.read_text(encoding="utf-8"),
        ]
        plan_text, plan = People(store.engine).latest_plan("ADA@example.com")
        assert plan_text == new_plan.read_text(encoding="utf-8") and plan.connections
    shown = cli(home, db_url, "people", "show", "ada@example.com")
    assert shown.returncode == 0
    assert "plan v1" in shown.stdout and "plan v2" in shown.stdout
    assert checksum(new_plan.read_text(encoding="utf-8")) in shown.stdout


def test_a_bad_plan_changes_nothing_and_exits_2(home: Path, db_url: str) -> None:
    assert (
        cli(home, db_url, "people", "add", "ada@example.com", "--name", "Ada", "--plan", str(ADA)).returncode
        == 0
    )
    bad = cli(home, db_url, "people", "set-plan", "ada@example.com", str(BROKEN))
    assert bad.returncode == 2
    # The same message `plan check` gives for that file.
    check = cli(home, db_url, "plan", "check", str(BROKEN))
    assert check.returncode == 2 and bad.stderr == check.stderr
    refused = cli(home, db_url, "people", "add", "bo@example.com", "--name", "Bo", "--plan", str(BROKEN))
    assert refused.returncode == 2
    with Store(db_url) as store:
        people = People(store.engine)
        assert people.emails() == ["ada@example.com"]
        assert len(people.plan_versions("ada@example.com")) == 1
        assert "bo@example.com" not in store.owners()


@pytest.mark.parametrize(
    "args",
    [
        ("people", "add", "not-an-address", "--name", "X", "--plan", str(ADA)),
        ("people", "add", "ada@example.com", "--name", "X"),
        ("people", "show", "nobody@example.com"),
        ("people", "set-plan", "nobody@example.com", str(ADA)),
        ("people", "remove", "nobody@example.com"),
    ],
)
def test_bad_input_is_exit_2_without_traceback(home: Path, sqlite_url: str, args: tuple[str, ...]) -> None:
    result = cli(home, sqlite_url, *args)
    assert result.returncode == 2, result
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr


def test_adding_someone_twice_is_refused(home: Path, sqlite_url: str) -> None:
    assert (
        cli(home, sqlite_url, "people", "add", "a@x.org", "--name", "A", "--plan", str(ADA)).returncode == 0
    )
    twice = cli(home, sqlite_url, "people", "add", "A@x.org", "--name", "A", "--plan", str(ADA))
    assert twice.returncode == 2 and "already" in twice.stderr


def test_remove_keeps_history_and_purge_deletes_everything_of_that_person_only(
    home: Path, db_url: str
) -> None:
    for email in ("a@x.org", "b@x.org", "c@x.org"):
        assert cli(home, db_url, "people", "add", email, "--name", email, "--plan", str(ADA)).returncode == 0
    # Each has some history of their own.
    for email in ("a@x.org", "b@x.org", "c@x.org"):
        with Store(db_url, owner=email) as store:
            store.add_review(datetime(2026, 11, 20, 9, tzinfo=UTC), f"review of {email}")
    assert cli(home, db_url, "people", "remove", "a@x.org").returncode == 0
    assert cli(home, db_url, "people", "remove", "b@x.org", "--purge").returncode == 0
    listed = json.loads(cli(home, db_url, "people", "list", "--json").stdout)
    assert [p["email"] for p in listed] == ["c@x.org"]
    with Store(db_url) as store:
        owners = store.owners()
        assert "a@x.org" in owners and "b@x.org" not in owners
        with store.engine.connect() as conn:
            ids: dict[str, int] = {key: oid for key, oid in conn.execute(text("SELECT key, id FROM owner"))}
            for table in ("plan_version", "review"):
                kept = conn.execute(text(f"SELECT DISTINCT owner_id FROM {table}")).scalars().all()
                assert set(kept) == {ids["a@x.org"], ids["c@x.org"]}


def test_feed_url_is_shown_once_and_rotating_it_retires_the_old_one(home: Path, db_url: str) -> None:
    added = cli(home, db_url, "people", "add", "ada@example.com", "--name", "Ada", "--plan", str(ADA))
    old = added.stdout.split("/feed/", 1)[1].split(".ics", 1)[0]
    with Store(db_url) as store:
        people = People(store.engine)
        assert people.feed_by_token(old) is None  # not rendered yet
        people.save_feed("ada@example.com", b"BEGIN:VCALENDAR\r\n", datetime(2026, 11, 23, 9, 30, 7, 5, UTC))
        snap = people.feed_by_token(old)
        assert snap is not None and snap.body == b"BEGIN:VCALENDAR\r\n"
        assert snap.last_modified == datetime(2026, 11, 23, 9, 30, 7, tzinfo=UTC)
        # The same bytes again keep Last-Modified where it was.
        assert not people.save_feed(
            "ada@example.com", b"BEGIN:VCALENDAR\r\n", datetime(2026, 12, 1, tzinfo=UTC)
        )
        with store.engine.connect() as conn:
            stored = conn.execute(text("SELECT token_hash FROM person_feed")).scalars().all()
        assert old not in stored  # only the hash is kept
    rotated = cli(home, db_url, "people", "rotate-feed", "ada@example.com")
    assert rotated.returncode == 0
    new = rotated.stdout.split("/feed/", 1)[1].split(".ics", 1)[0]
    with Store(db_url) as store:
        people = People(store.engine)
        assert people.feed_by_token(old) is None
        renewed = people.feed_by_token(new)
        assert renewed is not None and renewed.last_modified == datetime(2026, 11, 23, 9, 30, 7, tzinfo=UTC)


def test_show_reports_the_persons_failing_calendars_and_no_one_elses(home: Path, db_url: str) -> None:
    for email in ("ada@example.com", "bo@example.com"):
        assert cli(home, db_url, "people", "add", email, "--name", "X", "--plan", str(ADA)).returncode == 0
    with Store(db_url, owner="bo@example.com") as store:
        store.save_source_state(SourceState(name="team", last_error="HTTP 500", failures=3))
    ada = cli(home, db_url, "people", "show", "ada@example.com")
    bo = cli(home, db_url, "people", "show", "bo@example.com")
    assert "last cycle: none yet" in ada.stdout and "failing" not in ada.stdout
    assert "calendar team: failing to read: HTTP 500" in bo.stdout

"""`people remove EMAIL --purge` takes circleback's events out of the person's Google calendar first.

The organisation reaches everyone's calendar through one service account with domain-wide delegation
(the fake Google checks the JWT's subject); each person's cycle writes into their own primary calendar.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from cli_runner import Result, run_in_process
from fake_google import FakeGoogle
from fake_google.keys import write_service_account
from sqlalchemy import text

from connectors.google import KEY_PROPERTY, OWNER_PROPERTY
from daemon.config import load_settings
from daemon.org import cycle_person
from daemon.people import People
from daemon.store import Store

pytestmark = pytest.mark.postgres

ADA = Path(__file__).parent / "fixtures" / "plans" / "ada.yaml"
NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
ACCOUNT = "circleback@project.iam.gserviceaccount.com"
PEOPLE = ("ada@example.org", "bo@example.org")


def ours(fake: FakeGoogle, calendar: str) -> list[str]:
    """The owners of circleback's live events in a calendar."""
    found = []
    for event in fake.events(calendar, include_cancelled=False):
        private = event.get("extendedProperties", {}).get("private", {})
        if KEY_PROPERTY in private:
            found.append(str(private[OWNER_PROPERTY]))
    return found


@pytest.fixture
def organisation(tmp_path: Path, postgres_url: str, fake_google: FakeGoogle) -> Path:
    """A home whose config reaches everyone's primary calendar; both people have had a cycle."""
    for sub in ("config", "data", "state"):
        (tmp_path / sub).mkdir()
    for email in PEOPLE:
        fake_google.add_user(email, time_zone="Europe/London")
    fake_google.add_service_account(ACCOUNT)
    account = write_service_account(tmp_path / "account.json", ACCOUNT)
    config = tmp_path / "config" / "circleback" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(
        f'database_url = "{postgres_url}"\nstate_dir = "{tmp_path / "state"}"\n'
        f'[google]\ncalendar_id = "primary"\nbusy_calendars = ["primary"]\n'
        f'service_account_file = "{account}"\n'
        f'api_endpoint = "{fake_google.url}"\ntoken_uri = "{fake_google.token_uri}"\n',
        encoding="utf-8",
    )
    settings = load_settings(config, environ={})
    with Store(postgres_url) as store:
        for email in PEOPLE:
            People(store.engine).add(
                email, name=email, plan_text=ADA.read_text(encoding="utf-8"), google_subject=None, now=NOW
            )
    for email in PEOPLE:
        cycle_person(settings, email, NOW)
        with Store(postgres_url, owner=email) as store:
            store.add_review(NOW, f"review of {email}")
    return tmp_path


def cli(home: Path, *args: str) -> Result:
    return run_in_process(home, *args, "--now", NOW.isoformat())


def owner_rows(url: str, email: str) -> dict[str, int]:
    """How many rows of each of a person's tables the database still holds."""
    counts: dict[str, int] = {}
    with Store(url) as store, store.engine.connect() as conn:
        owner_id = conn.execute(text("SELECT id FROM owner WHERE key = :k"), {"k": email}).scalar()
        if owner_id is None:
            return counts
        for table in ("person", "plan_version", "placement", "review", "person_feed"):
            counts[table] = int(
                conn.execute(
                    text(f"SELECT count(*) FROM {table} WHERE owner_id = :o"), {"o": owner_id}
                ).scalar_one()
            )
    return counts


def test_purge_removes_the_persons_events_and_leaves_the_others(
    organisation: Path, postgres_url: str, fake_google: FakeGoogle
) -> None:
    ada, bo = PEOPLE
    before_bo = sorted(e["id"] for e in fake_google.events(bo, include_cancelled=False))
    assert ours(fake_google, ada) and set(ours(fake_google, ada)) == {ada}
    assert ours(fake_google, bo) and set(ours(fake_google, bo)) == {bo}

    done = cli(organisation, "people", "remove", ada, "--purge")

    assert done.returncode == 0, done.stderr
    placed = len(before_bo)  # the same plan for both: as many events in each calendar
    assert f"calendar google: {placed} event(s) of circleback removed" in done.stdout
    assert ours(fake_google, ada) == []
    assert sorted(e["id"] for e in fake_google.events(bo, include_cancelled=False)) == before_bo
    assert owner_rows(postgres_url, ada) == {}
    assert owner_rows(postgres_url, bo)["placement"] == placed
    # Only ada's calendar was written to, and only as ada.
    deletes = [c for c in fake_google.api_calls() if c.method == "DELETE"]
    assert len(deletes) == placed and {c.user for c in deletes} == {ada}


def test_an_unreachable_calendar_stops_the_purge_and_a_retry_finishes_it(
    organisation: Path, postgres_url: str, fake_google: FakeGoogle
) -> None:
    ada, bo = PEOPLE
    rows_before = owner_rows(postgres_url, ada)
    placed = len(ours(fake_google, ada))
    fake_google.revoke_delegation(ada)

    refused = cli(organisation, "people", "remove", ada, "--purge")

    assert refused.returncode == 1
    assert "calendar google: cannot remove circleback's events" in refused.stderr
    assert "unauthorized_client" in refused.stderr
    assert "--keep-remote-events" in refused.stderr
    assert owner_rows(postgres_url, ada) == rows_before, "nothing deleted from the database"
    assert len(ours(fake_google, ada)) == placed

    fake_google.restore_delegation(ada)
    retried = cli(organisation, "people", "remove", ada, "--purge")

    assert retried.returncode == 0, retried.stderr
    assert ours(fake_google, ada) == []
    assert owner_rows(postgres_url, ada) == {}
    assert set(ours(fake_google, bo)) == {bo}


def test_a_refused_deletion_is_reported_and_the_retry_deletes_only_what_is_left(
    organisation: Path, postgres_url: str, fake_google: FakeGoogle
) -> None:
    ada, _bo = PEOPLE
    placed = len(ours(fake_google, ada))
    assert placed >= 2
    # Google keeps refusing to delete one of them (a daily quota, say), however often it is asked.
    stuck = fake_google.events(ada, include_cancelled=False)[0]["id"]
    fake_google.faults.fail_next(
        100, "quotaExceeded", match=lambda call: call.method == "DELETE" and call.path.endswith(stuck)
    )

    refused = cli(organisation, "people", "remove", ada, "--purge")

    assert refused.returncode == 1
    assert "could not delete" in refused.stderr and "403 quotaExceeded" in refused.stderr
    assert len(ours(fake_google, ada)) == 1
    rows = owner_rows(postgres_url, ada)
    # The history stays; only the placements of the events that are gone went with them.
    assert rows["person"] == 1 and rows["review"] == 1 and rows["plan_version"] == 1
    assert rows["placement"] == 1

    fake_google.faults.clear()
    fake_google.clear_log()
    retried = cli(organisation, "people", "remove", ada, "--purge")

    assert retried.returncode == 0, retried.stderr
    assert ours(fake_google, ada) == []
    assert len([c for c in fake_google.api_calls() if c.method == "DELETE"]) == 1
    assert owner_rows(postgres_url, ada) == {}


def test_keep_remote_events_purges_the_rows_without_reaching_the_calendar(
    organisation: Path, postgres_url: str, fake_google: FakeGoogle
) -> None:
    ada, _bo = PEOPLE
    placed = len(ours(fake_google, ada))
    fake_google.revoke_delegation(ada)
    fake_google.clear_log()

    done = cli(organisation, "people", "remove", ada, "--purge", "--keep-remote-events")

    assert done.returncode == 0, done.stderr
    assert owner_rows(postgres_url, ada) == {}
    assert len(ours(fake_google, ada)) == placed and fake_google.round_trips() == []


def test_keep_remote_events_alone_is_refused(organisation: Path, postgres_url: str) -> None:
    refused = cli(organisation, "people", "remove", PEOPLE[0], "--keep-remote-events")
    assert refused.returncode == 2 and "--purge" in refused.stderr
    assert owner_rows(postgres_url, PEOPLE[0])["person"] == 1

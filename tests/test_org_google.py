"""Organisation mode against the fake Google Calendar: each person's events carry that person as owner."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fake_google import FakeGoogle

from connectors.google import OWNER_PROPERTY, SCOPES
from daemon.config import Settings, load_settings
from daemon.org import cycle_person
from daemon.org_metrics import render_metrics
from daemon.people import People
from daemon.store import Store

pytestmark = pytest.mark.postgres

ADA = Path(__file__).parent / "fixtures" / "plans" / "ada.yaml"
CALENDAR = "team@example.com"
NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)


def ours(fake: FakeGoogle) -> list[tuple[str, str]]:
    """(owner, key) of circleback's live events in the shared calendar."""
    found = []
    for event in fake.events(CALENDAR, include_cancelled=False):
        private = event.get("extendedProperties", {}).get("private", {})
        if "circleback-key" in private:
            found.append((str(private[OWNER_PROPERTY]), str(private["circleback-key"])))
    return found


def add_people(postgres_url: str, emails: list[str]) -> None:
    """Everyone in `emails` with the five-connection plan, as `people add` does."""
    with Store(postgres_url) as store:
        for email in emails:
            People(store.engine).add(
                email, name=email, plan_text=ADA.read_text(encoding="utf-8"), google_subject=None, now=NOW
            )


def org_settings(tmp_path: Path, postgres_url: str, fake_google: FakeGoogle) -> Settings:
    """The organisation's config: one Google calendar (the fake), reached with an authorized-user token."""
    token = tmp_path / "google-token.json"
    token.write_text(
        json.dumps(
            {
                "refresh_token": fake_google.add_user(CALENDAR, time_zone="Europe/London"),
                "token_uri": fake_google.token_uri,
                "client_id": "circleback-tests",
                "client_secret": "not-checked",
                "scopes": SCOPES,
            }
        )
    )
    token.chmod(0o600)
    config = tmp_path / "org.toml"
    config.write_text(
        f'database_url = "{postgres_url}"\nstate_dir = "{tmp_path / "state"}"\n'
        f'[google]\ncalendar_id = "primary"\nbusy_calendars = ["primary"]\ntoken_file = "{token}"\n'
        f'api_endpoint = "{fake_google.url}"\ntoken_uri = "{fake_google.token_uri}"\n',
        encoding="utf-8",
    )
    return load_settings(config, environ={})


def test_two_people_writing_into_one_calendar_keep_their_own_events(
    tmp_path: Path, postgres_url: str, fake_google: FakeGoogle
) -> None:
    settings = org_settings(tmp_path, postgres_url, fake_google)
    emails = ["ada@example.org", "bo@example.org"]
    add_people(postgres_url, emails)
    for email in emails:
        cycle_person(settings, email, NOW)
    first = ours(fake_google)
    owners = Counter(owner for owner, _key in first)
    # The same plan twice: each person has a full set of their own, none taken over by the other.
    assert set(owners) == set(emails) and owners[emails[0]] == owners[emails[1]] > 0
    assert len(first) == len(set(first))

    fake_google.clear_log()
    for email in emails:
        cycle_person(settings, email, NOW)
    writes = [c for c in fake_google.api_calls() if c.method in ("POST", "PUT", "PATCH", "DELETE")]
    assert writes == []
    assert sorted(ours(fake_google)) == sorted(first)


def _requests_metric(body: str) -> float:
    sample = 'circleback_api_requests_total{calendar="google"} '
    return float(next(line for line in body.splitlines() if line.startswith(sample)).split()[-1])


def test_metrics_count_every_cycles_api_requests_per_calendar_on_every_replica(
    tmp_path: Path, postgres_url: str, fake_google: FakeGoogle
) -> None:
    settings = org_settings(tmp_path, postgres_url, fake_google)
    emails = ["ada@example.org", "bo@example.org"]
    add_people(postgres_url, emails)
    with Store(postgres_url) as store:
        assert "circleback_api_requests_total{" not in render_metrics(store.engine)
    fake_google.clear_log()
    for email in emails:
        cycle_person(settings, email, NOW)
    # What the fake received: each API call and each batch envelope (a call inside a batch is not a
    # request of its own); token refreshes are not the Calendar API.
    sent = len(fake_google.round_trips("api", "batch"))
    assert sent > 0
    # Two replicas, two engines: the same counter from the database.
    with Store(postgres_url) as one, Store(postgres_url) as other:
        first, second = render_metrics(one.engine), render_metrics(other.engine)
    assert _requests_metric(first) == _requests_metric(second) == sent
    assert "# TYPE circleback_api_requests_total counter" in first and "example.org" not in first

    cycle_person(settings, emails[0], NOW)
    with Store(postgres_url) as store:
        assert _requests_metric(render_metrics(store.engine)) == len(fake_google.round_trips("api", "batch"))

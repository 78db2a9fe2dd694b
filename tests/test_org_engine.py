"""An organisation worker runs every person's cycle on its one engine: a cycle opens no connection of its
own and closing a person's store leaves the worker's engine working."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fake_google import FakeGoogle
from sqlalchemy import event

from connectors.google import KEY_PROPERTY, SCOPES
from daemon.config import load_settings
from daemon.org import cycle_person
from daemon.people import People
from daemon.store import Store

pytestmark = pytest.mark.postgres

ADA = Path(__file__).parent / "fixtures" / "plans" / "ada.yaml"
CALENDAR = "team@example.com"
NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
EMAILS = [f"person{i}@example.org" for i in range(5)]


def test_cycles_of_many_people_share_the_workers_connections(
    tmp_path: Path, postgres_url: str, fake_google: FakeGoogle
) -> None:
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
    settings = load_settings(config, environ={})
    with Store(postgres_url) as store:
        for email in EMAILS:
            People(store.engine).add(
                email, name=email, plan_text=ADA.read_text(encoding="utf-8"), google_subject=None, now=NOW
            )
    worker = Store(postgres_url, migrate=False)
    connects: list[Any] = []
    event.listen(worker.engine, "connect", lambda conn, _record: connects.append(conn))
    try:
        for email in EMAILS:
            cycle_person(settings, email, NOW, engine=worker.engine)
        # One cycle at a time here: one connection serves them all, and it is still open afterwards.
        assert len(connects) == 1
        assert worker.engine.pool.checkedin() == 1  # type: ignore[attr-defined]
        with Store(postgres_url, migrate=False, engine=worker.engine) as person:
            assert person.engine is worker.engine
        assert People(worker.engine).emails() == sorted(EMAILS)  # closing a person's store left it open
    finally:
        worker.close()
    owners = {
        e["extendedProperties"]["private"]["circleback-owner"]
        for e in fake_google.events(CALENDAR, include_cancelled=False)
        if KEY_PROPERTY in e.get("extendedProperties", {}).get("private", {})
    }
    assert owners == set(EMAILS)

"""An organisation worker runs every person's cycle on its one engine: a cycle opens no connection of its
own and closing a person's store leaves the worker's engine working."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fake_google import FakeGoogle
from sqlalchemy import event
from test_org_google import CALENDAR, add_people, org_settings

from connectors.google import KEY_PROPERTY
from daemon.org import cycle_person
from daemon.people import People
from daemon.store import Store

pytestmark = pytest.mark.postgres

ADA = Path(__file__).parent / "fixtures" / "plans" / "ada.yaml"
NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
EMAILS = [f"person{i}@example.org" for i in range(5)]


def test_cycles_of_many_people_share_the_workers_connections(
    tmp_path: Path, postgres_url: str, fake_google: FakeGoogle
) -> None:
    settings = org_settings(tmp_path, postgres_url, fake_google)
    add_people(postgres_url, EMAILS)
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

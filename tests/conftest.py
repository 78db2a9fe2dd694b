"""Shared fixtures: database URLs for both back ends the store supports.

`postgres_url` needs the PostgreSQL server of this machine (127.0.0.1:5432, trust authentication). When it
does not answer, the fixture starts the Debian cluster once and then insists: a test that needs PostgreSQL
fails rather than skips, so a missing server can never pass for a green suite.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fake_google import FakeGoogle
from psycopg import sql

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_ADMIN_DATABASE = "test"
PG_USERS = ("postgres", "root")
PG_START_WAIT_S = 20.0


def _try_connect() -> tuple[str | None, str]:
    """The first user that can connect, or None and the last error."""
    error = "no user tried"
    for user in PG_USERS:
        try:
            with psycopg.connect(
                host=PG_HOST, port=PG_PORT, user=user, dbname=PG_ADMIN_DATABASE, connect_timeout=3
            ) as conn:
                conn.execute("SELECT 1")
            return user, ""
        except psycopg.Error as exc:
            error = f"{user}: {exc}".strip()
    return None, error


def _start_cluster() -> str:
    versions = (
        sorted(p.name for p in Path("/etc/postgresql").iterdir()) if Path("/etc/postgresql").is_dir() else []
    )
    if not versions:
        return "no cluster under /etc/postgresql"
    result = subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return f"pg_ctlcluster exited {result.returncode}: {(result.stderr or result.stdout).strip()}"


@pytest.fixture(scope="session")
def postgres_admin_user() -> str:
    """A user that may create databases on the local server (starting the server once if needed)."""
    user, error = _try_connect()
    if user is not None:
        return user
    started = _start_cluster()
    deadline = time.monotonic() + PG_START_WAIT_S
    while time.monotonic() < deadline:
        user, error = _try_connect()
        if user is not None:
            return user
        time.sleep(0.5)
    pytest.fail(
        f"PostgreSQL on {PG_HOST}:{PG_PORT} (database {PG_ADMIN_DATABASE!r}) is not reachable: {error}; "
        f"tried to start it: {started}",
        pytrace=False,
    )


@pytest.fixture
def postgres_url(postgres_admin_user: str) -> Iterator[str]:
    """An empty schema of its own for one test, dropped afterwards.

    A schema rather than a database: CREATE DATABASE costs most of a second, a schema a few milliseconds.
    The URL puts the schema first on the search path, so everything the test creates (Alembic's version
    table included) lands in it and reflection sees only it.
    """
    schema = f"circleback_test_{uuid.uuid4().hex[:16]}"
    admin = f"host={PG_HOST} port={PG_PORT} user={postgres_admin_user} dbname={PG_ADMIN_DATABASE}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield (
            f"postgresql+psycopg://{postgres_admin_user}@{PG_HOST}:{PG_PORT}/{PG_ADMIN_DATABASE}"
            f"?options=-csearch_path%3D{schema}"
        )
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            # A transaction the test left open would block the DROP: fail loudly instead of hanging.
            conn.execute("SET lock_timeout = '10s'")
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite database file in the test's temporary directory (not created yet)."""
    return f"sqlite:///{tmp_path / 'circleback.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """Runs a test once per supported back end."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url = request.getfixturevalue(fixture)
    assert isinstance(url, str)
    return url


@pytest.fixture
def fake_google() -> Iterator[FakeGoogle]:
    """A fresh fake Google Calendar (tests/fake_google) on an ephemeral 127.0.0.1 port, for one test."""
    with FakeGoogle() as fake:
        yield fake


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `slow` first, the rest in their usual order: on two workers, a test of a minute or two
    that starts last is the tail of the whole run, while started first it overlaps everything else."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)

"""Wiring shared by the CLI and the service: settings → plan, store, calendars."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from connectors.base import Reader, Writer
from connectors.fetch import UnreadableFile, read_regular_file
from connectors.registry import make_reader, make_writer
from daemon.config import Settings
from daemon.sources import source_name as source_name  # the default name, for callers of old
from daemon.store import Store
from schedules.model import Plan
from schedules.plan import parse_plan


class PlanFileError(Exception):
    """The plan file is missing or unreadable (bad content raises schedules.plan.PlanInvalid)."""


# A focus plan is a page of YAML; a file much larger than this is a mistake (or /dev/zero), not a plan.
PLAN_MAX_BYTES = 1024 * 1024


def load_plan(path: Path) -> Plan:
    try:
        data = read_regular_file(path, PLAN_MAX_BYTES)
    except UnreadableFile as exc:
        if exc.reason == "no such file":
            raise PlanFileError(
                f"{path}: plan file not found (create one with `circleback init`, or pass --plan)"
            ) from None
        raise PlanFileError(str(exc)) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PlanFileError(f"{path}: cannot read the plan: {exc}") from None
    return parse_plan(text, str(path))


@dataclass
class Calendars:
    readers: list[Reader]
    writers: list[Writer]


def build_calendars(settings: Settings, plan: Plan, *, feed_path: Path | None = None) -> Calendars:
    cache_dir = settings.state_dir / "sources"
    owner_emails = (plan.owner.email,) if plan.owner.email else ()
    readers = [
        make_reader(
            "ics",
            name=source.name,
            location=source.location,
            cache_dir=cache_dir,
            timeout=settings.source_timeout.total_seconds(),
            default_tz=plan.timezone,
            owner_emails=owner_emails,
        )
        for source in settings.sources
    ]
    writers = [
        make_writer(
            "ics_feed",
            path=feed_path or settings.feed_path,
            plan=plan,
            name=settings.feed_name,
            refresh=settings.feed_refresh,
        )
    ]
    return Calendars(readers, writers)


def _missing_sqlite_file(url: str) -> bool:
    try:
        parsed = make_url(url)
    except ArgumentError:
        return False  # the store reports the bad URL with its own message
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return False
    return not database.startswith("file:") and not Path(database).exists()


@contextmanager
def open_store(
    settings: Settings, *, read_only: bool = False, now: datetime | None = None
) -> Iterator[Store]:
    """The store; `read_only` callers (agenda, status, dry runs) must not create a database as a side
    effect, so a SQLite file that does not exist yet is stood in for by an empty in-memory one. `now`
    (the CLI's --now) is the store's clock too, so what a command records is stamped with the same time
    as what it decides."""
    url = settings.database_url
    if read_only and _missing_sqlite_file(url):
        url = "sqlite://"
    store = Store(url) if now is None else Store(url, clock=lambda: now)
    try:
        yield store
    finally:
        store.close()

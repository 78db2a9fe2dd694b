"""Wiring shared by the CLI and the service: settings → plan, store, calendars."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from connectors.base import Reader, Writer
from connectors.registry import make_reader, make_writer
from daemon.config import Settings
from daemon.marker_secret import load_or_create_marker_secret, marker_secret_path
from daemon.store import Store
from schedules.model import Plan
from schedules.plan import parse_plan


class PlanFileError(Exception):
    """The plan file is missing or unreadable (bad content raises schedules.plan.PlanInvalid)."""


def load_plan(path: Path) -> Plan:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlanFileError(
            f"{path}: plan file not found (create one with `circleback init`, or pass --plan)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanFileError(f"{path}: cannot read the plan: {exc}") from None
    return parse_plan(text, str(path))


def source_name(location: str) -> str:
    """A short, stable, secret-free name for a source: secret ICS addresses carry the secret in the path."""
    if "://" in location and not location.startswith("file://"):
        _scheme, rest = location.split("://", 1)
        host = rest.split("/", 1)[0].split("@")[-1]
        digest = hashlib.sha256(location.encode()).hexdigest()[:8]
        return f"{host}-{digest}"
    return Path(location.removeprefix("file://")).name


@dataclass
class Calendars:
    readers: list[Reader]
    writers: list[Writer]
    # The install's secret for signing and checking key markers (daemon.marker_secret), read or made on
    # first use, so commands that neither read calendars nor write a feed never touch it.
    marker_secret: Callable[[], bytes]


def marker_secret_of(settings: Settings) -> Callable[[], bytes]:
    return functools.cache(lambda: load_or_create_marker_secret(marker_secret_path(settings.state_dir)))


def build_calendars(settings: Settings, plan: Plan, *, feed_path: Path | None = None) -> Calendars:
    cache_dir = settings.state_dir / "sources"
    marker_secret = marker_secret_of(settings)
    owner_emails = (plan.owner.email,) if plan.owner.email else ()
    readers = [
        make_reader(
            "ics",
            name=source_name(location),
            location=location,
            cache_dir=cache_dir,
            timeout=settings.source_timeout.total_seconds(),
            default_tz=plan.timezone,
            owner_emails=owner_emails,
            marker_secret=marker_secret,
        )
        for location in settings.sources
    ]
    writers = [
        make_writer(
            "ics_feed",
            path=feed_path or settings.feed_path,
            plan=plan,
            name=settings.feed_name,
            refresh=settings.feed_refresh,
            marker_secret=marker_secret,
        )
    ]
    return Calendars(readers, writers, marker_secret)


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
def open_store(settings: Settings, *, read_only: bool = False) -> Iterator[Store]:
    """The store; `read_only` callers (agenda, status, dry runs) must not create a database as a side
    effect, so a SQLite file that does not exist yet is stood in for by an empty in-memory one."""
    url = settings.database_url
    if read_only and _missing_sqlite_file(url):
        url = "sqlite://"
    store = Store(url)
    try:
        yield store
    finally:
        store.close()

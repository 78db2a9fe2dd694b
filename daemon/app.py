"""Wiring shared by the CLI and the service: settings → plan, store, calendars."""

from __future__ import annotations

import functools
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from connectors import registry
from connectors.base import Reader, Writer
from connectors.fetch import UnreadableFile, read_regular_file
from daemon.config import FEED_CALENDAR, Settings
from daemon.marker_secret import load_or_create_marker_secret, marker_secret_path
from daemon.sources import source_name as source_name  # the default name, for callers of old
from schedules.model import Plan
from schedules.plan import parse_plan

if TYPE_CHECKING:
    # The database layer is imported by the functions that open it: commands that need no database
    # (`--help`, `plan check`, `config`) start without it.
    from daemon.store import Store


def _default_owner() -> str:
    from daemon.store import DEFAULT_OWNER

    return DEFAULT_OWNER


class PlanFileError(Exception):
    """The plan file is missing or unreadable (bad content raises schedules.plan.PlanInvalid)."""


# A focus plan is a page of YAML; a file much larger than this is a mistake (or /dev/zero), not a plan.
PLAN_MAX_BYTES = 1024 * 1024


def load_plan(path: Path) -> Plan:
    return load_plan_source(path)[1]


def load_plan_source(path: Path) -> tuple[str, Plan]:
    """The plan file's text and the plan read from it (organisation mode stores the text)."""
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
    return text, parse_plan(text, str(path))


@dataclass
class Calendars:
    readers: list[Reader]
    writers: list[Writer]
    # The install's secret for signing and checking key markers (daemon.marker_secret), read or made on
    # first use, so commands that neither read calendars nor write a feed never touch it.
    marker_secret: Callable[[], bytes]


def marker_secret_of(settings: Settings) -> Callable[[], bytes]:
    return functools.cache(lambda: load_or_create_marker_secret(marker_secret_path(settings.state_dir)))


def build_calendars(
    settings: Settings,
    plan: Plan,
    *,
    feed_path: Path | None = None,
    owner: str | None = None,
    marker_secret: Callable[[], bytes] | None = None,
) -> Calendars:
    """Every configured calendar, built by its type through the registry; `feed_path` writes the `[feed]`
    calendar somewhere else (`circleback feed export`); `marker_secret` replaces the state directory's
    secret file (organisation mode keeps each person's in the database)."""
    marker_secret = marker_secret or marker_secret_of(settings)
    context = registry.Context(
        plan=plan,
        state_dir=settings.state_dir,
        owner_emails=(plan.owner.email,) if plan.owner.email else (),
        marker_secret=marker_secret,
        owner=owner or _default_owner(),
    )
    readers: list[Reader] = []
    writers: list[Writer] = []
    for calendar in settings.calendars:
        backend = registry.backend(calendar.type)
        options = dict(calendar.options)
        if feed_path is not None and calendar.name == FEED_CALENDAR:
            options["path"] = feed_path
        built = backend.factory(calendar.name, options, context)
        if backend.reads:
            readers.append(built)
        if backend.writes:
            writers.append(built)
    return Calendars(readers, writers, marker_secret)


def _sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL, or None (another back end, in memory, or already a `file:` URI)."""
    from daemon.store import normalise_url

    parsed = normalise_url(url)  # a malformed URL is reported here, with the store's own message
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    return None if database.startswith("file:") or parsed.query.get("uri") else Path(database)


def _writable(path: Path) -> bool:
    # os.access sees what the kernel enforces on writes, the immutable attribute and read-only mounts
    # included, even for root.
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


def _read_only_url(path: Path) -> str:
    """A URL that reads the SQLite file without writing anything next to it.

    In WAL mode SQLite wants to create the -wal and -shm files even to read. With a -wal file present a
    writer is at work (or crashed), and mode=ro reads through it; without one, mode=ro cannot open the
    file in a directory it may not write, and nothing is pending in a WAL, so the file is read as
    immutable (no locks, no side files)."""
    target = f"file:{quote(str(path.resolve()))}?mode=ro"
    if not path.with_name(path.name + "-wal").exists():
        return f"sqlite:///{target}&immutable=1&uri=true"
    try:
        with closing(sqlite3.connect(target, uri=True)) as probe:
            probe.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error:
        return f"sqlite:///{target}&immutable=1&uri=true"
    return f"sqlite:///{target}&uri=true"


@contextmanager
def open_store(
    settings: Settings, *, read_only: bool = False, now: datetime | None = None
) -> Iterator[Store]:
    """The store; `read_only` callers (agenda, status, log list, dry runs) must not write anything.

    A SQLite file that does not exist yet is stood in for by an empty in-memory database (no file is
    created as a side effect). One in a place this process may not write (another user's directory, a
    read-only mount) is opened read-only, without migrations; it must then already be at the schema this
    version knows. `now` (the CLI's --now) is the store's clock too, so what a command records is stamped
    with the same time as what it decides."""
    from daemon.store import Store, StoreError

    url, migrate = settings.database_url, True
    path = _sqlite_path(url) if read_only else None
    if path is not None and not path.exists():
        url = "sqlite://"
    elif path is not None and not _writable(path):
        url, migrate = _read_only_url(path), False
    store = Store(url, migrate=migrate) if now is None else Store(url, migrate=migrate, clock=lambda: now)
    try:
        if not migrate and not store.at_head():
            raise StoreError(
                f"{path}: the database needs an upgrade this process cannot write; run `circleback sync` "
                "once as a user who may write its directory"
            )
        yield store
    finally:
        store.close()

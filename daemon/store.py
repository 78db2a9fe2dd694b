"""The persistent state of circleback: occurrences, the interaction log, connections, source fetch state.

One `Store` per process. It migrates the database to the newest schema when it opens, and every write
method is one transaction: it either happens completely or not at all, so a crash (or a constraint
violation) mid-way leaves the previous state intact and the next cycle simply does the work again.

Two back ends are supported: SQLite (the default, a single file holding contact notes, created with mode
0600) and PostgreSQL (via psycopg 3).

Owners: every row belongs to one owner (a person whose plan circleback runs) and every read and write of a
`Store` is scoped to the owner it was opened for (`DEFAULT_OWNER` in the personal mode). Two owners share
one database without sharing or overwriting anything: every unique key includes the owner.

Reviews are not connections: a self-review done is a row of its own table (`add_review`, `reviews`);
`reviews_done()` merges those with completed review occurrences. An interaction logged for the reserved
name `REVIEW_CONNECTION` ("@review") is recorded as a review, so the interaction log never holds one.

Connector state and placements: each calendar has a key-value state (sync tokens, validators) and, when
writable, one placement per occurrence it holds (remote id, etag, sequence, last failure); `save_cycle`
writes them in the same transaction as the cycle's occurrences and log entries.
"""

from __future__ import annotations

import functools
import os
import re
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

from sqlalchemy import Engine, event, inspect, text
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import StaticPool
from sqlmodel import Session, col, delete, select

from connectors.base import EventResult, Outcome, Placement

if TYPE_CHECKING:
    from alembic.config import Config
from daemon.dbtypes import (
    INTERACTION_SOURCES,
    PLACEMENT_FAILED,
    PLACEMENT_PLACED,
    CalendarStateRow,
    ConnectionRow,
    InteractionRow,
    OccurrenceRow,
    OwnerRow,
    PlacementRow,
    ReviewRow,
    SourceStateRow,
    table_of,
)
from schedules.events import Interaction, InteractionKind, require_utc
from schedules.model import REVIEW_LOG_NAME, Plan
from schedules.occurrence import OPEN_STATUSES, Occurrence, OccurrenceKind, OccurrenceStatus, Revision

REVIEW_CONNECTION: Final = REVIEW_LOG_NAME
DEFAULT_OWNER: Final = "default"
EMPTY_MAPPING: Final[Mapping[str, Any]] = MappingProxyType({})
# Owner ids are positive; a read for an owner that has no row yet matches nothing with this one.
_NO_OWNER: Final = -1
MIGRATIONS_DIR: Final = Path(__file__).resolve().with_name("migrations")
SQLITE_BUSY_TIMEOUT_MS: Final = 10_000
POSTGRES_CONNECT_TIMEOUT_S: Final = 10
# Any fixed number works; it only has to be the same for every circleback process on one server.
_MIGRATION_LOCK_ID: Final = 0x0C1C1EBAC
# Writes take pg_advisory_xact_lock(_WRITE_LOCK_CLASS, owner id): the two-int form (int4 keys), its own
# key space, so one owner's writers queue behind each other and different owners never wait.
_WRITE_LOCK_CLASS: Final = 0x0C1CEBAD


class StoreError(Exception):
    """The database could not be opened, migrated or written; the message says which and why."""


class DatabaseURLError(StoreError):
    """The database URL itself is wrong (bad input, not a failure of the database)."""


class InteractionNotFound(KeyError):
    def __init__(self, interaction_id: int) -> None:
        super().__init__(interaction_id)
        self.interaction_id = interaction_id

    def __str__(self) -> str:
        return f"no interaction log entry with id {self.interaction_id}"


class UnknownOccurrence(KeyError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key

    def __str__(self) -> str:
        return f"no stored occurrence with key {self.key!r}"


class ReviewNotFound(KeyError):
    def __init__(self, review_id: int) -> None:
        super().__init__(review_id)
        self.review_id = review_id

    def __str__(self) -> str:
        return f"no review with id {self.review_id}"


class HistoryConflict(ValueError):
    """A revision would overwrite an occurrence that is already history (completed, missed, skipped)."""


# ---------------------------------------------------------------------------------------------------------
# Plain values handed out by the store (rows never leave it, so no caller depends on a live session).


@dataclass(frozen=True)
class StoredInteraction:
    id: int
    interaction: Interaction
    undone: bool
    recorded_at: datetime
    occurrence_key: str | None = None


@dataclass(frozen=True)
class StoredOccurrence:
    revision: Revision
    status: OccurrenceStatus
    completed_at: datetime | None = None
    event_uid: str | None = None  # the observed event that completed it

    @property
    def occurrence(self) -> Occurrence:
        return self.revision.occurrence

    @property
    def key(self) -> str:
        return self.revision.occurrence.key


@dataclass(frozen=True)
class StoredConnection:
    name: str
    kind: str
    stage: str
    email: str | None
    target: bool
    every: str
    duration_minutes: int
    next_action: str
    updated_at: datetime
    conn_id: str = ""
    emails: tuple[str, ...] = ()


@dataclass(frozen=True)
class KnownConnection:
    """What the store remembers of a connection, so a rename (same email, new name) keeps its id."""

    conn_id: str
    name: str
    emails: tuple[str, ...] = ()


@dataclass(frozen=True)
class StoredReview:
    id: int
    at: datetime
    note: str
    source: str
    recorded_at: datetime
    undone: bool = False


@dataclass(frozen=True)
class PlacementFailure:
    """The last write of one occurrence to one calendar failed; `status` shows why."""

    key: str
    reason: str
    retryable: bool
    at: datetime
    remote_id: str | None = None  # what the calendar still holds, if anything


@dataclass(frozen=True)
class ConnectionSync:
    added: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


@dataclass(frozen=True)
class SourceState:
    name: str
    etag: str | None = None
    last_modified_header: str | None = None
    fetched_at: datetime | None = None
    ok_at: datetime | None = None
    last_error: str | None = None
    failures: int = 0
    next_attempt_at: datetime | None = None

    def __post_init__(self) -> None:
        for name in ("fetched_at", "ok_at", "next_attempt_at"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, require_utc(value, f"SourceState.{name}"))
        if self.failures < 0:
            raise ValueError(f"SourceState.failures must not be negative, got {self.failures}")


@dataclass(frozen=True)
class CycleWrite:
    """What one `save_cycle` changed."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    statuses_changed: int = 0
    interactions_added: int = 0
    interactions_duplicate: int = 0
    interaction_ids: tuple[int, ...] = ()
    reviews_added: int = 0
    placements_written: int = 0
    placements_deleted: int = 0
    placements_failed: int = 0


StatusChange = tuple[OccurrenceStatus, datetime | None, str | None]


# ---------------------------------------------------------------------------------------------------------
# Engine and migrations.


def normalise_url(url: str) -> URL:
    """Parse a database URL, refusing back ends circleback does not support, with psycopg 3 for PostgreSQL."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseURLError(f"not a database URL: {url!r} ({exc})") from exc
    except ValueError:
        # SQLAlchemy reads whatever follows the last ':' of the host part as a port number.
        raise DatabaseURLError(f"not a database URL: {url!r} (the port must be a number)") from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise DatabaseURLError(
            f"unsupported database {parsed.drivername!r}: use sqlite:///PATH or postgresql://..."
        )
    if backend == "sqlite" and (parsed.host or parsed.port or parsed.username or parsed.password):
        # sqlite://name.db puts the file name where a host goes; SQLite has no host.
        meant = url.split("://", 1)[1].split("@")[-1]
        raise DatabaseURLError(
            f"not a SQLite URL: {url!r}: SQLite has no host; write the path after three slashes, "
            f"sqlite:///{meant} (relative to the current directory) or sqlite:////absolute/path.db"
        )
    if parsed.drivername == "postgresql":
        # psycopg 3 is the driver circleback ships with; SQLAlchemy's default would be psycopg2.
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _sqlite_file(url: URL) -> Path | None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:") or url.query.get("uri"):
        return None
    return Path(database)


def _prepare_sqlite_file(path: Path) -> None:
    """The database holds contact notes: create it readable by its owner only, before SQLite does."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    os.close(fd)


def _on_sqlite_connect(wal: bool) -> Callable[[Any, Any], None]:
    def connect(dbapi_connection: Any, _record: Any) -> None:
        # SQLAlchemy emits BEGIN itself (see _on_sqlite_begin): the sqlite3 module would otherwise start
        # transactions late and commit before DDL, which breaks transactional migrations.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            if wal:
                # WAL lets the web endpoints read while a cycle writes. Its -wal and -shm files get the
                # database file's permissions from SQLite itself.
                cursor.execute("PRAGMA journal_mode = WAL")
        finally:
            cursor.close()

    return connect


def _on_sqlite_begin(conn: Connection) -> None:
    # A write transaction takes the write lock up front: upgrading a read lock later can fail at once with
    # SQLITE_BUSY (the busy timeout does not apply to that deadlock), which would abort a whole cycle.
    mode = "IMMEDIATE" if conn.get_execution_options().get("circleback_write") else "DEFERRED"
    conn.exec_driver_sql(f"BEGIN {mode}")


def create_engine(url: str | URL) -> Engine:
    """An engine configured the way circleback needs it (also used by the migrations' env.py)."""
    parsed = normalise_url(url) if isinstance(url, str) else url
    if parsed.get_backend_name() == "sqlite":
        path = _sqlite_file(parsed)
        if path is None:
            engine = sa_create_engine(
                parsed,
                poolclass=StaticPool,
                connect_args={"check_same_thread": False},
                hide_parameters=True,
            )
        else:
            _prepare_sqlite_file(path)
            # hide_parameters: a failed statement's message must not carry contact notes into the logs.
            engine = sa_create_engine(
                parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, hide_parameters=True
            )
        event.listen(engine, "connect", _on_sqlite_connect(wal=path is not None))
        event.listen(engine, "begin", _on_sqlite_begin)
        return engine
    connect_args: dict[str, Any] = {}
    if "connect_timeout" not in parsed.query:
        connect_args["connect_timeout"] = POSTGRES_CONNECT_TIMEOUT_S
    # pre-ping: a long-running daemon outlives server restarts.
    return sa_create_engine(parsed, pool_pre_ping=True, connect_args=connect_args, hide_parameters=True)


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic configuration built in code, pointing at the migrations shipped inside this package."""
    from alembic.config import Config

    if not (MIGRATIONS_DIR / "env.py").is_file():
        raise StoreError(f"database migrations are missing from the installation ({MIGRATIONS_DIR})")
    config = Config()
    # ConfigParser interpolation would read a '%' in the path as a reference.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


# A migration script's own revision and the one it follows, as `alembic revision` writes them.
_REVISION = re.compile(r'^revision(?:: *str)? *= *"([^"]+)" *$', re.MULTILINE)
_DOWN_REVISION = re.compile(r'^down_revision(?:: *str *\| *None)? *= *(?:None|"([^"]+)") *$', re.MULTILINE)


@functools.cache
def script_heads() -> frozenset[str]:
    """The newest revisions of the shipped migrations. Read from the scripts' lines without importing
    alembic, which costs a command a third of a second and is needed only to upgrade; alembic reads them
    when a script is not of the plain shape `alembic revision` writes."""
    revisions: set[str] = set()
    followed: set[str] = set()
    for script in sorted((MIGRATIONS_DIR / "versions").glob("*.py")):
        if script.name.startswith("_"):
            continue
        source = script.read_text(encoding="utf-8")
        revision, down = _REVISION.findall(source), _DOWN_REVISION.findall(source)
        if len(revision) != 1 or len(down) != 1:
            from alembic.script import ScriptDirectory

            return frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())
        revisions.add(revision[0])
        followed.update(d for d in down if d)
    return frozenset(revisions - followed)


def _current_heads(conn: Connection) -> frozenset[str]:
    """The revisions the database is at (alembic's `alembic_version` table), read without alembic."""
    if not inspect(conn).has_table("alembic_version"):
        return frozenset()
    return frozenset(str(v) for v in conn.execute(text("SELECT version_num FROM alembic_version")).scalars())


def _describe(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def _reason(exc: BaseException) -> str:
    original = getattr(exc, "orig", None)
    lines = str(original if original is not None else exc).strip().splitlines()
    return lines[0] if lines else type(original or exc).__name__


def _now() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------------------------------------------------


class Store:
    """circleback's database. Opening it migrates the schema to the newest revision."""

    def __init__(
        self,
        url: str,
        *,
        owner: str = DEFAULT_OWNER,
        clock: Callable[[], datetime] = _now,
        migrate: bool = True,
        engine: Engine | None = None,
    ) -> None:
        """`engine`: an engine of the same URL to share (an organisation worker runs every person's
        cycle on one engine: its connections and compiled statements); closing the store leaves it open."""
        if not isinstance(owner, str) or not owner.strip() or owner != owner.strip():
            raise ValueError(f"an owner key must be a non-empty string without surrounding spaces: {owner!r}")
        self.url = normalise_url(url)
        self._owner = owner
        self._owner_id: int | None = None
        self._clock = clock
        self._owns_engine = engine is None
        self._engine = create_engine(self.url) if engine is None else engine
        self._write_engine = self._engine.execution_options(circleback_write=True)
        self._heads = script_heads()
        if migrate:
            try:
                self.migrate("head")
            except BaseException:
                self.close()
                raise

    @staticmethod
    def url_backend(url: str) -> str:
        """ "sqlite" or "postgresql", without opening anything."""
        return normalise_url(url).get_backend_name()

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def backend(self) -> str:
        return self.url.get_backend_name()

    @property
    def owner_key(self) -> str:
        return self._owner

    @property
    def uid_scope(self) -> str:
        """What goes into this owner's UIDs: nothing for the default owner (today's UIDs stay)."""
        return "" if self._owner == DEFAULT_OWNER else self._owner

    def owners(self) -> list[str]:
        """Every owner's key in this database (not scoped: this is the one cross-owner query)."""
        with self._read() as s:
            return list(s.exec(select(OwnerRow.key).order_by(col(OwnerRow.key))).all())

    def __repr__(self) -> str:
        return f"Store({_describe(self.url)!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_engine:
            self._engine.dispose()

    # -- schema and readiness ------------------------------------------------------------------------------

    def migrate(self, revision: str = "head") -> None:
        """Upgrade the schema to `revision`, in one transaction (DDL is transactional on both back ends)."""
        try:
            with self._write_engine.connect() as conn, conn.begin():
                if self.backend == "postgresql":
                    # Two processes starting together must not both create the tables.
                    conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
                if revision == "head" and _current_heads(conn) == self._heads:
                    return  # the common case on every start: no alembic, no migration scripts loaded
                from alembic import command
                from alembic.util.exc import CommandError

                try:
                    command.upgrade(alembic_config(conn), revision)
                except CommandError as exc:
                    raise StoreError(
                        f"cannot migrate database {_describe(self.url)}: {exc} "
                        "(was it written by a newer version of circleback?)"
                    ) from exc
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot open database {_describe(self.url)}: {_reason(exc)}") from exc

    def current_revisions(self) -> frozenset[str]:
        with self._engine.connect() as conn:
            return _current_heads(conn)

    def at_head(self) -> bool:
        """True when the database schema is the newest this code knows (for /readyz)."""
        try:
            return self.current_revisions() == self._heads
        except SQLAlchemyError as exc:
            raise StoreError(f"database {_describe(self.url)} is not reachable: {_reason(exc)}") from exc

    def ping(self) -> None:
        """Raise StoreError unless the database answers a trivial query."""
        try:
            with self._engine.connect() as conn:
                conn.execute(text("SELECT 1")).scalar_one()
        except SQLAlchemyError as exc:
            raise StoreError(f"database {_describe(self.url)} is not reachable: {_reason(exc)}") from exc

    # -- sessions --------------------------------------------------------------------------------------------

    @contextmanager
    def _read(self) -> Iterator[Session]:
        try:
            with Session(self._engine, expire_on_commit=False) as session, session.begin():
                yield session
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read database {_describe(self.url)}: {_reason(exc)}") from exc

    @contextmanager
    def _write(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back if anything in it raises."""
        try:
            owner_id = self._ensure_owner()
            with Session(self._write_engine, expire_on_commit=False) as session, session.begin():
                if self.backend == "postgresql":
                    # One writer per owner at a time, as SQLite's BEGIN IMMEDIATE gives: every write reads
                    # what it is about to change first, so two services on one database (starting
                    # together, say) would otherwise both insert the same new rows and one would fail the
                    # cycle. Per owner, not global: every row a write touches is that owner's (every
                    # unique key holds owner_id), and a global lock made all people's cycles queue for it.
                    session.execute(
                        text("SELECT pg_advisory_xact_lock(:lock, :owner)"),
                        {"lock": _WRITE_LOCK_CLASS, "owner": owner_id},
                    )
                yield session
        except SQLAlchemyError as exc:
            raise StoreError(
                f"database write failed, nothing was changed ({_describe(self.url)}): {_reason(exc)}"
            ) from exc

    def _oid(self, session: Session) -> int:
        """This store's owner id for a read; an owner without a row yet owns nothing (and gets no row)."""
        if self._owner_id is None:
            found = session.exec(select(OwnerRow.id).where(col(OwnerRow.key) == self._owner)).first()
            if found is None:
                return _NO_OWNER
            self._owner_id = found
        return self._owner_id

    def _ensure_owner(self) -> int:
        """This store's owner id, creating the owner on first use. Its own committed transaction, so a write
        that fails later cannot roll the owner back under a cached id; a concurrent first use of the same
        owner by another process is harmless (the key is unique and the insert skips a conflict)."""
        if self._owner_id is not None:
            return self._owner_id
        with Session(self._write_engine, expire_on_commit=False) as session, session.begin():
            statement = (
                _insert_for(session)(table_of(OwnerRow))
                .values(key=self._owner, created_at=require_utc(self._clock(), "clock()"))
                .on_conflict_do_nothing(index_elements=["key"])
            )
            session.execute(statement)
            found = session.exec(select(OwnerRow.id).where(col(OwnerRow.key) == self._owner)).one()
        assert found is not None
        self._owner_id = found
        return found

    # -- the interaction log -------------------------------------------------------------------------------

    def interactions(self, include_undone: bool = False) -> list[StoredInteraction]:
        """The log, oldest first (reviews are not in it). Undone entries are left out unless asked for."""
        with self._read() as s:
            query = select(InteractionRow).where(col(InteractionRow.owner_id) == self._oid(s))
            if not include_undone:
                query = query.where(col(InteractionRow.undone).is_(False))
            query = query.order_by(col(InteractionRow.at), col(InteractionRow.id))
            return [_stored_interaction(row) for row in s.exec(query)]

    def interaction(self, interaction_id: int) -> StoredInteraction:
        with self._read() as s:
            return _stored_interaction(self._interaction_row(s, interaction_id))

    def _interaction_row(self, session: Session, interaction_id: int) -> InteractionRow:
        row = session.get(InteractionRow, interaction_id)
        if row is None or row.owner_id != self._oid(session):
            raise InteractionNotFound(interaction_id)
        return row

    def add_interaction(self, interaction: Interaction, *, occurrence_key: str | None = None) -> int | None:
        """Log one interaction; returns its id, or None when the same entry was already logged.

        An entry for `REVIEW_CONNECTION` is a review done: it goes to the reviews (the id is a review's)."""
        if _is_review(interaction):
            return self.add_review(interaction.at, interaction.note, source=interaction.source)
        values = self._interaction_values(interaction, occurrence_key)
        with self._write() as s:
            return _insert_interaction(s, {**values, "owner_id": self._oid(s)})

    def undo_interaction(self, interaction_id: int) -> StoredInteraction:
        """Mark an entry undone. The row stays, so reconciling the same event later does not re-add it."""
        with self._write() as s:
            row = self._interaction_row(s, interaction_id)
            if not row.undone:
                row.undone = True
                s.add(row)
                s.flush()
            return _stored_interaction(row)

    def edit_interaction(
        self, interaction_id: int, *, kind: InteractionKind | None = None, note: str | None = None
    ) -> StoredInteraction:
        """Correct an entry's kind (give or ask) and note; what happened and when stay as they were."""
        with self._write() as s:
            row = self._interaction_row(s, interaction_id)
            if kind is not None:
                row.kind = InteractionKind(kind).value
            if note is not None:
                row.note = note
            s.add(row)
            s.flush()
            return _stored_interaction(row)

    def _interaction_values(self, interaction: Interaction, occurrence_key: str | None) -> dict[str, Any]:
        _check_source(interaction.source)
        kind = InteractionKind(interaction.kind)
        return {
            "connection": interaction.connection,
            "at": interaction.at,
            "kind": kind.value,
            "note": interaction.note,
            "source": interaction.source,
            "event_uid": interaction.event_uid,
            "occurrence_key": occurrence_key,
            "undone": False,
            "recorded_at": require_utc(self._clock(), "clock()"),
            "dedupe_key": dedupe_key(interaction, occurrence_key),
        }

    # -- reviews done ---------------------------------------------------------------------------------------

    def add_review(self, at: datetime, note: str = "", source: str = "manual") -> int:
        """Record a self-review done at `at`; returns its id."""
        row = self._review_row(at, note, source)
        with self._write() as s:
            row.owner_id = self._oid(s)
            s.add(row)
            s.flush()
            assert row.id is not None
            return row.id

    def _review_row(self, at: datetime, note: str, source: str) -> ReviewRow:
        _check_source(source)
        return ReviewRow(
            owner_id=_NO_OWNER,
            at=require_utc(at, "review time"),
            note=note,
            source=source,
            recorded_at=require_utc(self._clock(), "clock()"),
        )

    def reviews(self, include_undone: bool = False) -> list[StoredReview]:
        """Reviews recorded, oldest first (completed review blocks are occurrences, not in this list)."""
        with self._read() as s:
            query = select(ReviewRow).where(col(ReviewRow.owner_id) == self._oid(s))
            if not include_undone:
                query = query.where(col(ReviewRow.undone).is_(False))
            query = query.order_by(col(ReviewRow.at), col(ReviewRow.id))
            return [_stored_review(row) for row in s.exec(query)]

    def undo_review(self, review_id: int) -> StoredReview:
        with self._write() as s:
            row = s.get(ReviewRow, review_id)
            if row is None or row.owner_id != self._oid(s):
                raise ReviewNotFound(review_id)
            if not row.undone:
                row.undone = True
                s.add(row)
                s.flush()
            return _stored_review(row)

    def reviews_done(self) -> list[datetime]:
        """When self-reviews happened: completed review occurrences and reviews recorded, oldest first."""
        with self._read() as s:
            oid = self._oid(s)
            completed = s.exec(
                select(OccurrenceRow).where(
                    col(OccurrenceRow.owner_id) == oid,
                    col(OccurrenceRow.kind) == OccurrenceKind.REVIEW.value,
                    col(OccurrenceRow.status) == OccurrenceStatus.COMPLETED.value,
                )
            ).all()
            recorded = s.exec(
                select(ReviewRow.at).where(col(ReviewRow.owner_id) == oid, col(ReviewRow.undone).is_(False))
            ).all()
            times = {row.completed_at or row.start for row in completed} | set(recorded)
        return sorted(times)

    # -- occurrences -----------------------------------------------------------------------------------------

    def revisions(self, statuses: Collection[OccurrenceStatus] = OPEN_STATUSES) -> dict[str, Revision]:
        return {row.key: row.revision for row in self.occurrences(statuses)}

    def occurrences(self, statuses: Collection[OccurrenceStatus] | None = None) -> list[StoredOccurrence]:
        """Stored occurrences (all, or those with the given statuses), by start time."""
        with self._read() as s:
            query = select(OccurrenceRow).where(col(OccurrenceRow.owner_id) == self._oid(s))
            if statuses is not None:
                wanted = [OccurrenceStatus(st).value for st in statuses]
                query = query.where(col(OccurrenceRow.status).in_(wanted))
            query = query.order_by(col(OccurrenceRow.start), col(OccurrenceRow.key))
            return [_stored_occurrence(row, self.uid_scope) for row in s.exec(query)]

    def save_cycle(
        self,
        *,
        revisions: Sequence[Revision],
        removed: Collection[str],
        statuses: Mapping[str, StatusChange],
        interactions: Sequence[tuple[Interaction, str | None]],
        status_for_new: OccurrenceStatus = OccurrenceStatus.PLACED,
        calendar_states: Mapping[str, Mapping[str, str]] = EMPTY_MAPPING,
        event_results: Mapping[str, Sequence[EventResult]] = EMPTY_MAPPING,
        placed: Collection[str] | None = None,
    ) -> CycleWrite:
        """Persist one cycle's outcome in ONE transaction, in this order:

        1. upsert `revisions`. With `placed` given, a revision whose key is in it (every writable calendar
           holds it) becomes placed and any other one planned (retried next cycle). Without
           it, new ones get `status_for_new`, and an open one whose content changed while it could not be
           written anywhere (`status_for_new` is planned) goes back to planned;
        2. apply `statuses` (status, when, observed event UID) to stored occurrences;
        3. delete the `removed` keys that are still planned or placed (history stays);
        4. log `interactions` (with their occurrence key), skipping entries already logged; an entry for
           `REVIEW_CONNECTION` is recorded as a review;
        5. replace each calendar's state with `calendar_states[calendar]`, and record each calendar's
           `event_results` in its placements.

        Raises HistoryConflict if a revision targets a completed/missed/skipped occurrence, and
        UnknownOccurrence for a status change of a key that is not stored; nothing is written then.
        """
        status_for_new = OccurrenceStatus(status_for_new)
        if status_for_new not in OPEN_STATUSES:
            raise ValueError(f"status_for_new must be planned or placed, got {status_for_new}")
        changes = {key: _check_change(key, change) for key, change in statuses.items()}
        entries = [self._interaction_values(i, key) for i, key in interactions if not _is_review(i)]
        reviews = [self._review_row(i.at, i.note, i.source) for i, _ in interactions if _is_review(i)]
        placed_keys = None if placed is None else frozenset(placed)
        ids: list[int] = []
        with self._write() as s:
            oid = self._oid(s)
            counts = _upsert_revisions(s, oid, revisions, status_for_new, placed_keys)
            # After the upsert's flush, so a status change may target a revision created in this cycle.
            rows = _rows_by_key(s, oid, changes)
            for key, (status, at, event_uid) in changes.items():
                row = rows.get(key)
                if row is None:
                    raise UnknownOccurrence(key)
                row.status, row.completed_at, row.event_uid = status.value, at, event_uid
                s.add(row)
            s.flush()
            removed_count = _delete_open(s, oid, removed)
            for values in entries:
                new_id = _insert_interaction(s, {**values, "owner_id": oid})
                if new_id is not None:
                    ids.append(new_id)
            for review in reviews:
                review.owner_id = oid
                s.add(review)
            for calendar, state in calendar_states.items():
                _replace_calendar_state(s, oid, calendar, state)
            stamp = require_utc(self._clock(), "clock()")
            placement_counts = [0, 0, 0]
            for calendar, results in event_results.items():
                for result in results:
                    placement_counts[_record_result(s, oid, calendar, result, stamp)] += 1
        created, updated, unchanged = counts
        return CycleWrite(
            created=created,
            updated=updated,
            unchanged=unchanged,
            removed=removed_count,
            statuses_changed=len(changes),
            interactions_added=len(ids),
            interactions_duplicate=len(entries) - len(ids),
            interaction_ids=tuple(ids),
            reviews_added=len(reviews),
            placements_written=placement_counts[_WRITTEN],
            placements_deleted=placement_counts[_DELETED],
            placements_failed=placement_counts[_FAILED],
        )

    def prune(self, *, before: datetime) -> int:
        """Delete history occurrences (completed, missed, skipped) that ended before `before`; returns how
        many. Open occurrences and the interaction log are never pruned: the log is what plans the future."""
        cutoff = require_utc(before, "before")
        history = [s.value for s in OccurrenceStatus if s not in OPEN_STATUSES]
        with self._write() as s:
            result = s.exec(
                delete(OccurrenceRow)
                .where(col(OccurrenceRow.owner_id) == self._oid(s))
                .where(col(OccurrenceRow.status).in_(history))
                .where(col(OccurrenceRow.end) < cutoff)
                .execution_options(synchronize_session=False)
            )
            return int(result.rowcount)

    # -- calendars' state and placements -------------------------------------------------------------------

    def calendar_state(self, calendar: str) -> dict[str, str]:
        """The state `calendar`'s connector left behind last time (empty if none)."""
        with self._read() as s:
            rows = s.exec(
                select(CalendarStateRow).where(
                    col(CalendarStateRow.owner_id) == self._oid(s), col(CalendarStateRow.calendar) == calendar
                )
            )
            return {row.key: row.value for row in rows}

    def placements(self, calendar: str) -> dict[str, Placement]:
        """What the store believes `calendar` holds, by occurrence key (a failed create holds nothing)."""
        with self._read() as s:
            rows = s.exec(
                select(PlacementRow).where(
                    col(PlacementRow.owner_id) == self._oid(s),
                    col(PlacementRow.calendar) == calendar,
                    col(PlacementRow.remote_id).is_not(None),
                )
            )
            return {
                row.occurrence_key: Placement(row.occurrence_key, row.remote_id, row.etag, row.sequence)
                for row in rows
                if row.remote_id is not None
            }

    def calendar_failures(self) -> dict[str, list[PlacementFailure]]:
        """Per calendar, the occurrences whose last write there failed, with the reason (for `status`)."""
        failures: dict[str, list[PlacementFailure]] = {}
        with self._read() as s:
            rows = s.exec(
                select(PlacementRow)
                .where(
                    col(PlacementRow.owner_id) == self._oid(s),
                    col(PlacementRow.state) == PLACEMENT_FAILED,
                )
                .order_by(col(PlacementRow.calendar), col(PlacementRow.occurrence_key))
            )
            for row in rows:
                failures.setdefault(row.calendar, []).append(
                    PlacementFailure(
                        key=row.occurrence_key,
                        reason=row.last_error or "",
                        retryable=row.retryable,
                        at=row.updated_at,
                        remote_id=row.remote_id,
                    )
                )
        return failures

    # -- connections ---------------------------------------------------------------------------------------

    def sync_connections(self, plan: Plan, *, now: datetime | None = None) -> ConnectionSync:
        """Make the connection table mirror the plan, matching rows by the connections' stable ids (so a
        renamed connection keeps its row). Log entries of dropped connections are kept."""
        stamp = require_utc(now if now is not None else self._clock(), "now")
        desired: dict[str, dict[str, Any]] = {}
        for c in plan.connections:
            desired[connection_id(c)] = {
                "name": c.name,
                "kind": c.kind.value,
                "stage": c.stage.value,
                "email": c.email,
                "emails": "\n".join(c.all_emails),
                "target": c.target,
                "every": str(c.every),
                "duration_minutes": int(c.duration.total_seconds() // 60),
                "next_action": c.next_action,
            }
        added: list[str] = []
        updated: list[str] = []
        with self._write() as s:
            # Statements that tolerate a concurrent writer (two services on one PostgreSQL run their first
            # cycles together): a row the other one inserted first is updated, not inserted twice, and a
            # row it already deleted is simply gone (the ORM would insist on deleting exactly one row).
            oid = self._oid(s)
            table = table_of(ConnectionRow)
            removed = sorted(
                s.execute(
                    delete(table)
                    .where(table.c.owner_id == oid, table.c.conn_id.not_in(list(desired)))
                    .returning(table.c.name)
                ).scalars()
            )
            mine = select(ConnectionRow).where(col(ConnectionRow.owner_id) == oid)
            existing = {row.conn_id: row for row in s.exec(mine)}
            for conn_id, values in desired.items():
                row = existing.get(conn_id)
                if row is None:
                    fresh = {"owner_id": oid, "conn_id": conn_id, "updated_at": stamp, **values}
                    if _insert_connection(s, fresh):
                        added.append(values["name"])
                        continue
                    row = s.exec(mine.where(col(ConnectionRow.conn_id) == conn_id)).one()
                if any(getattr(row, k) != v for k, v in values.items()):
                    for k, v in values.items():
                        setattr(row, k, v)
                    row.updated_at = stamp
                    s.add(row)
                    updated.append(values["name"])
        return ConnectionSync(tuple(added), tuple(updated), tuple(removed))

    def connections(self) -> list[StoredConnection]:
        with self._read() as s:
            query = (
                select(ConnectionRow)
                .where(col(ConnectionRow.owner_id) == self._oid(s))
                .order_by(col(ConnectionRow.name))
            )
            return [
                StoredConnection(
                    name=r.name,
                    kind=r.kind,
                    stage=r.stage,
                    email=r.email,
                    target=r.target,
                    every=r.every,
                    duration_minutes=r.duration_minutes,
                    next_action=r.next_action,
                    updated_at=r.updated_at,
                    conn_id=r.conn_id,
                    emails=_emails(r.emails),
                )
                for r in s.exec(query)
            ]

    def known_connections(self) -> list[KnownConnection]:
        """Every connection's stable id, current name and addresses, by id (for rename detection)."""
        with self._read() as s:
            query = (
                select(ConnectionRow)
                .where(col(ConnectionRow.owner_id) == self._oid(s))
                .order_by(col(ConnectionRow.conn_id))
            )
            return [KnownConnection(r.conn_id, r.name, _emails(r.emails)) for r in s.exec(query)]

    # -- source calendars' fetch state -----------------------------------------------------------------------

    def source_state(self, name: str) -> SourceState | None:
        with self._read() as s:
            row = s.get(SourceStateRow, (self._oid(s), name))
            return None if row is None else _source_state(row)

    def source_states(self) -> list[SourceState]:
        with self._read() as s:
            query = (
                select(SourceStateRow)
                .where(col(SourceStateRow.owner_id) == self._oid(s))
                .order_by(col(SourceStateRow.name))
            )
            return [_source_state(r) for r in s.exec(query)]

    def save_source_state(self, state: SourceState) -> None:
        with self._write() as s:
            oid = self._oid(s)
            row = s.get(SourceStateRow, (oid, state.name)) or SourceStateRow(owner_id=oid, name=state.name)
            row.etag = state.etag
            row.last_modified_header = state.last_modified_header
            row.fetched_at = state.fetched_at
            row.ok_at = state.ok_at
            row.last_error = state.last_error
            row.failures = state.failures
            row.next_attempt_at = state.next_attempt_at
            s.add(row)


# ---------------------------------------------------------------------------------------------------------
# Helpers.


def connection_id(connection: Any) -> str:
    """A plan connection's stable id: its explicit `id` once the plan carries one, else its folded name."""
    explicit = getattr(connection, "id", None)
    return str(explicit) if explicit else str(connection.name).casefold()


def _emails(stored: str) -> tuple[str, ...]:
    return tuple(line for line in stored.split("\n") if line)


def _is_review(interaction: Interaction) -> bool:
    return interaction.connection.casefold() == REVIEW_CONNECTION


def _check_source(source: str) -> None:
    if source not in INTERACTION_SOURCES:
        raise ValueError(
            f"interaction source must be one of {', '.join(INTERACTION_SOURCES)}, got {source!r}"
        )


def _insert_for(session: Session) -> Any:
    # Imported here: PostgreSQL's dialect module (and the asyncio it pulls in) costs a SQLite command 30 ms.
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert
    from sqlalchemy.dialects import sqlite

    return sqlite.insert


def dedupe_key(interaction: Interaction, occurrence_key: str | None = None) -> str:
    """The identity of a log entry for idempotency. An occurrence, or an observed event, counts once per
    connection however often (and from however many calendars) it is read; an entry typed by hand is
    always new."""
    who = interaction.connection.casefold()
    if occurrence_key:
        # An occurrence completes once, even if its event shows up under two UIDs (copied and moved).
        return f"{interaction.source}:{who}:occurrence:{occurrence_key}"
    if interaction.event_uid:
        return f"{interaction.source}:{who}:event:{interaction.event_uid}"
    return f"{interaction.source}:{who}:entry:{uuid.uuid4().hex}"


def _insert_interaction(session: Session, values: Mapping[str, Any]) -> int | None:
    # ON CONFLICT DO NOTHING rather than catching IntegrityError: on PostgreSQL a failed INSERT aborts the
    # whole transaction, and a duplicate must not cost the rest of the cycle.
    table = table_of(InteractionRow)
    statement = (
        _insert_for(session)(table)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["owner_id", "dedupe_key"])
        .returning(table.c.id)
    )
    new_id = session.execute(statement).scalar_one_or_none()
    return None if new_id is None else int(new_id)


def _insert_connection(session: Session, values: Mapping[str, Any]) -> bool:
    """Insert a connection unless another writer just did; True when this one inserted it."""
    table = table_of(ConnectionRow)
    insert = _insert_for(session)
    statement = (
        insert(table)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["owner_id", "conn_id"])
        .returning(table.c.id)
    )
    return session.execute(statement).scalar_one_or_none() is not None


def _chunks(keys: Sequence[str], size: int = 500) -> Iterator[Sequence[str]]:
    """Bounded IN lists: SQLite limits the number of bound parameters per statement."""
    for i in range(0, len(keys), size):
        yield keys[i : i + size]


def _rows_by_key(session: Session, owner_id: int, keys: Collection[str]) -> dict[str, OccurrenceRow]:
    rows: dict[str, OccurrenceRow] = {}
    for chunk in _chunks(sorted(keys)):
        query = select(OccurrenceRow).where(
            col(OccurrenceRow.owner_id) == owner_id, col(OccurrenceRow.key).in_(chunk)
        )
        for row in session.exec(query):
            rows[row.key] = row
    return rows


def _upsert_revisions(
    session: Session,
    owner_id: int,
    revisions: Sequence[Revision],
    status_for_new: OccurrenceStatus,
    placed: frozenset[str] | None,
) -> tuple[int, int, int]:
    """Step 1 of `save_cycle`; returns how many were created, updated and unchanged."""
    created = updated = unchanged = 0
    rows = _rows_by_key(session, owner_id, {r.occurrence.key for r in revisions})
    open_values = {st.value for st in OPEN_STATUSES}
    for revision in revisions:
        key = revision.occurrence.key
        row = rows.get(key)
        content = _content(revision)
        if row is None:
            status = status_for_new if placed is None else _placed_or_planned(key, placed)
            rows[key] = row = OccurrenceRow(owner_id=owner_id, key=key, status=status.value, **content)
            session.add(row)
            created += 1
            continue
        if row.status not in open_values:
            raise HistoryConflict(
                f"occurrence {key!r} is already {row.status}; a new revision needs a new key"
            )
        changed = any(getattr(row, name) != value for name, value in content.items())
        if changed:
            for name, value in content.items():
                setattr(row, name, value)
            updated += 1
        else:
            unchanged += 1
        if placed is not None:
            # Every writable calendar's truth, changed or not: an event a calendar lost or refused is
            # planned again until a cycle has written it everywhere.
            row.status = _placed_or_planned(key, placed).value
        elif status_for_new is OccurrenceStatus.PLACED or changed:
            row.status = status_for_new.value
        session.add(row)
    session.flush()
    return created, updated, unchanged


def _placed_or_planned(key: str, placed: frozenset[str]) -> OccurrenceStatus:
    return OccurrenceStatus.PLACED if key in placed else OccurrenceStatus.PLANNED


def _delete_open(session: Session, owner_id: int, keys: Collection[str]) -> int:
    removed = 0
    for chunk in _chunks(sorted(set(keys))):
        result = session.exec(
            delete(OccurrenceRow)
            .where(col(OccurrenceRow.owner_id) == owner_id)
            .where(col(OccurrenceRow.key).in_(chunk))
            .where(col(OccurrenceRow.status).in_([st.value for st in OPEN_STATUSES]))
            .execution_options(synchronize_session=False)
        )
        removed += result.rowcount
    return removed


def _replace_calendar_state(session: Session, owner_id: int, calendar: str, state: Mapping[str, str]) -> None:
    session.exec(
        delete(CalendarStateRow)
        .where(col(CalendarStateRow.owner_id) == owner_id, col(CalendarStateRow.calendar) == calendar)
        .execution_options(synchronize_session=False)
    )
    for key, value in state.items():
        session.add(CalendarStateRow(owner_id=owner_id, calendar=calendar, key=str(key), value=str(value)))
    session.flush()


_WRITTEN: Final = 0
_DELETED: Final = 1
_FAILED: Final = 2


def _record_result(session: Session, owner_id: int, calendar: str, result: EventResult, at: datetime) -> int:
    """Record one event result in the placements; returns which count it adds to."""
    row = session.get(PlacementRow, (owner_id, result.key, calendar))
    if Outcome(result.outcome) is Outcome.FAILED:
        # What the calendar held before stays the truth; the failure is only noted beside it.
        if row is None:
            row = PlacementRow(
                owner_id=owner_id,
                occurrence_key=result.key,
                calendar=calendar,
                state=PLACEMENT_FAILED,
                updated_at=at,
            )
        row.state, row.last_error, row.retryable, row.updated_at = (
            PLACEMENT_FAILED,
            result.reason or f"{result.action} failed",
            result.retryable,
            at,
        )
        session.add(row)
        session.flush()
        return _FAILED
    placement = result.placement
    if placement is None:
        if row is not None and (result.action == "delete" or row.remote_id is None):
            session.delete(row)
            session.flush()
        return _DELETED if result.action == "delete" else _WRITTEN
    if row is None:
        row = PlacementRow(
            owner_id=owner_id,
            occurrence_key=result.key,
            calendar=calendar,
            state=PLACEMENT_PLACED,
            updated_at=at,
        )
    row.remote_id, row.etag, row.sequence = placement.remote_id, placement.etag, placement.sequence
    row.state, row.last_error, row.retryable, row.updated_at = PLACEMENT_PLACED, None, True, at
    session.add(row)
    session.flush()
    return _WRITTEN


def _content(revision: Revision) -> dict[str, Any]:
    occ = revision.occurrence
    return {
        "uid": occ.uid,
        "kind": OccurrenceKind(occ.kind).value,
        "connection": occ.connection,
        "due": occ.due,
        "start": occ.start,
        "end": occ.end,
        "title": occ.title,
        "description": occ.description,
        "overdue": occ.overdue,
        "sequence": revision.sequence,
        "created": revision.created,
        "last_modified": revision.last_modified,
    }


def _check_change(key: str, change: StatusChange) -> tuple[OccurrenceStatus, datetime | None, str | None]:
    status, at, event_uid = change
    return (
        OccurrenceStatus(status),
        None if at is None else require_utc(at, f"status change of {key}"),
        event_uid,
    )


def _stored_occurrence(row: OccurrenceRow, scope: str) -> StoredOccurrence:
    occurrence = Occurrence(
        scope=scope,
        key=row.key,
        kind=OccurrenceKind(row.kind),
        connection=row.connection,
        due=row.due,
        start=row.start,
        end=row.end,
        title=row.title,
        description=row.description,
        overdue=row.overdue,
    )
    return StoredOccurrence(
        revision=Revision(occurrence, row.sequence, row.created, row.last_modified),
        status=OccurrenceStatus(row.status),
        completed_at=row.completed_at,
        event_uid=row.event_uid,
    )


def _stored_interaction(row: InteractionRow) -> StoredInteraction:
    assert row.id is not None
    interaction = Interaction(
        connection=row.connection,
        at=row.at,
        kind=InteractionKind(row.kind),
        note=row.note,
        source=row.source,
        event_uid=row.event_uid,
    )
    return StoredInteraction(
        id=row.id,
        interaction=interaction,
        undone=row.undone,
        recorded_at=row.recorded_at,
        occurrence_key=row.occurrence_key,
    )


def _stored_review(row: ReviewRow) -> StoredReview:
    assert row.id is not None
    return StoredReview(
        id=row.id, at=row.at, note=row.note, source=row.source, recorded_at=row.recorded_at, undone=row.undone
    )


def _source_state(row: SourceStateRow) -> SourceState:
    return SourceState(
        name=row.name,
        etag=row.etag,
        last_modified_header=row.last_modified_header,
        fetched_at=row.fetched_at,
        ok_at=row.ok_at,
        last_error=row.last_error,
        failures=row.failures,
        next_attempt_at=row.next_attempt_at,
    )

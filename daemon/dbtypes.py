"""The database's types: the instant column type and the SQLModel tables of circleback's store.

`UTCDateTime` keeps the rule "every datetime is timezone-aware, UTC inside" true in the database too.
SQLite has no time zone type, so instants are stored there as naive UTC text in SQLAlchemy's fixed-width
format (which sorts chronologically); PostgreSQL gets `timestamp with time zone`. Either way a value read
back is an aware datetime in UTC, and a naive datetime is refused before it reaches the database, because
a naive value would silently mean "whatever zone the writer had in mind".
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any, Final

from sqlalchemy import BigInteger, CheckConstraint, LargeBinary, MetaData, Table, Text, UniqueConstraint
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import registry
from sqlalchemy.types import DateTime, TypeDecorator
from sqlmodel import Field, SQLModel

from schedules.events import InteractionKind
from schedules.occurrence import OccurrenceKind, OccurrenceStatus

INTERACTION_SOURCES: Final = ("manual", "calendar", "touchpoint")
PLACEMENT_PLACED: Final = "placed"
PLACEMENT_FAILED: Final = "failed"
PLACEMENT_STATES: Final = (PLACEMENT_PLACED, PLACEMENT_FAILED)


class NaiveDatetimeError(ValueError):
    """A datetime without a time zone was about to be stored."""


class UTCDateTime(TypeDecorator[datetime]):
    """An instant: aware datetimes in, aware UTC datetimes out."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}: {value!r}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise NaiveDatetimeError(f"refusing to store naive datetime {value!r}: give it a time zone")
        utc = value.astimezone(UTC)
        if dialect.name == "sqlite":
            # SQLite's DATETIME formatting would drop the offset anyway; doing it here makes the stored
            # text UTC by construction rather than by accident.
            return utc.replace(tzinfo=None)
        return utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {type(value).__name__}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# Tables. Constraint names come from the naming convention so that migrations can refer to them by name
# on every back end (SQLite's batch mode needs names to drop or alter a constraint).

NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING_CONVENTION)


class _Base(SQLModel, registry=registry(metadata=metadata)):
    pass


def _one_of(column: str, values: Iterable[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class OwnerRow(_Base, table=True):
    """A person whose plan circleback runs. Every other row belongs to exactly one owner."""

    __tablename__ = "owner"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(sa_type=Text, unique=True)
    created_at: datetime = Field(sa_type=UTCDateTime)


def _owner_column() -> Any:
    return Field(foreign_key="owner.id", index=True)


def _owner_key() -> Any:
    return Field(foreign_key="owner.id", primary_key=True)


class ConnectionRow(_Base, table=True):
    """A mirror of the plan's connections, so status and audit queries can join against them.

    `conn_id` is the plan's stable id for the connection (today its case-folded name); `name` is the
    current display name, so a rename keeps the row and its history."""

    __tablename__ = "connection"
    __table_args__ = (
        UniqueConstraint("owner_id", "conn_id", name="uq_connection_owner_conn_id"),
        CheckConstraint(_one_of("kind", ("person", "group")), name="kind"),
        CheckConstraint(_one_of("stage", ("find", "nurture", "elevate")), name="stage"),
    )

    id: int | None = Field(default=None, primary_key=True)
    owner_id: int = _owner_column()
    conn_id: str = Field(sa_type=Text)
    name: str = Field(sa_type=Text)
    kind: str = Field(sa_type=Text)
    stage: str = Field(sa_type=Text)
    email: str | None = Field(default=None, sa_type=Text)
    emails: str = Field(default="", sa_type=Text)  # every address, one per line (email first)
    target: bool = False
    every: str = Field(sa_type=Text)
    duration_minutes: int
    next_action: str = Field(sa_type=Text)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class OccurrenceRow(_Base, table=True):
    __tablename__ = "occurrence"
    __table_args__ = (
        UniqueConstraint("owner_id", "uid", name="uq_occurrence_owner_uid"),
        CheckConstraint(_one_of("kind", [k.value for k in OccurrenceKind]), name="kind"),
        CheckConstraint(_one_of("status", [s.value for s in OccurrenceStatus]), name="status"),
    )

    owner_id: int = _owner_key()
    key: str = Field(sa_type=Text, primary_key=True)
    uid: str = Field(sa_type=Text)
    kind: str = Field(sa_type=Text)
    connection: str | None = Field(default=None, sa_type=Text)
    due: date
    start: datetime = Field(sa_type=UTCDateTime, index=True)
    end: datetime = Field(sa_type=UTCDateTime)
    title: str = Field(sa_type=Text)
    description: str = Field(sa_type=Text)
    status: str = Field(sa_type=Text, index=True)
    overdue: bool = False
    sequence: int = 0
    created: datetime = Field(sa_type=UTCDateTime)
    last_modified: datetime = Field(sa_type=UTCDateTime)
    completed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    event_uid: str | None = Field(default=None, sa_type=Text)


class InteractionRow(_Base, table=True):
    """One log entry. `dedupe_key` is what makes reconciliation idempotent: the same observed event for the
    same connection always yields the same key, and a UNIQUE constraint on a NOT NULL column behaves the
    same on every back end (a unique constraint over a NULL-able event_uid would not). The key is unique
    per owner: two people may log the very same event."""

    __tablename__ = "interaction"
    __table_args__ = (
        UniqueConstraint("owner_id", "dedupe_key", name="uq_interaction_owner_dedupe_key"),
        CheckConstraint(_one_of("kind", [k.value for k in InteractionKind]), name="kind"),
        CheckConstraint(_one_of("source", INTERACTION_SOURCES), name="source"),
    )

    id: int | None = Field(default=None, primary_key=True)
    owner_id: int = _owner_column()
    connection: str = Field(sa_type=Text, index=True)
    at: datetime = Field(sa_type=UTCDateTime)
    kind: str = Field(sa_type=Text)
    note: str = Field(default="", sa_type=Text)
    source: str = Field(sa_type=Text)
    event_uid: str | None = Field(default=None, sa_type=Text)
    occurrence_key: str | None = Field(default=None, sa_type=Text)
    undone: bool = False
    recorded_at: datetime = Field(sa_type=UTCDateTime)
    dedupe_key: str = Field(sa_type=Text)


class ReviewRow(_Base, table=True):
    """A self-review the person did (step 4 of the method), recorded by hand or seen in a calendar."""

    __tablename__ = "review"
    __table_args__ = (CheckConstraint(_one_of("source", INTERACTION_SOURCES), name="source"),)

    id: int | None = Field(default=None, primary_key=True)
    owner_id: int = _owner_column()
    at: datetime = Field(sa_type=UTCDateTime)
    note: str = Field(default="", sa_type=Text)
    source: str = Field(sa_type=Text)
    recorded_at: datetime = Field(sa_type=UTCDateTime)
    undone: bool = False


class SourceStateRow(_Base, table=True):
    """What the last fetch of a source calendar left behind: validators for conditional requests and the
    failure count that drives backoff."""

    __tablename__ = "source_state"

    owner_id: int = _owner_key()
    name: str = Field(sa_type=Text, primary_key=True)
    etag: str | None = Field(default=None, sa_type=Text)
    last_modified_header: str | None = Field(default=None, sa_type=Text)
    fetched_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    ok_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_error: str | None = Field(default=None, sa_type=Text)
    failures: int = 0
    next_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class CalendarStateRow(_Base, table=True):
    """One entry of a calendar's key-value state (sync token, validators, cursors), opaque to the store."""

    __tablename__ = "calendar_state"

    owner_id: int = _owner_key()
    calendar: str = Field(sa_type=Text, primary_key=True)
    key: str = Field(sa_type=Text, primary_key=True)
    value: str = Field(sa_type=Text)


class PlacementRow(_Base, table=True):
    """What one writable calendar holds for one occurrence, and whether the last write there failed.

    No foreign key to `occurrence`: a placement outlives its occurrence until the calendar has deleted the
    event (a failed delete keeps the row, so the next cycle tries again). A failed create leaves a row
    without a remote id, only to carry the reason to `status`."""

    __tablename__ = "placement"
    __table_args__ = (CheckConstraint(_one_of("state", PLACEMENT_STATES), name="state"),)

    owner_id: int = _owner_key()
    occurrence_key: str = Field(sa_type=Text, primary_key=True)
    calendar: str = Field(sa_type=Text, primary_key=True)
    remote_id: str | None = Field(default=None, sa_type=Text)
    etag: str | None = Field(default=None, sa_type=Text)
    sequence: int = 0
    state: str = Field(sa_type=Text)
    last_error: str | None = Field(default=None, sa_type=Text)
    retryable: bool = True
    updated_at: datetime = Field(sa_type=UTCDateTime)


class PersonRow(_Base, table=True):
    """A person of an organisation (organisation mode): the owner whose cycle the workers run.

    The owner row stays when a person is removed without purge, so their history is kept; the person row
    going is what stops their cycles."""

    __tablename__ = "person"

    owner_id: int = _owner_key()
    name: str = Field(sa_type=Text)
    google_subject: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = Field(sa_type=UTCDateTime)


class PlanVersionRow(_Base, table=True):
    """One version of a person's focus plan, as its YAML text; the newest (highest id) is in force."""

    __tablename__ = "plan_version"

    id: int | None = Field(default=None, primary_key=True)
    owner_id: int = _owner_column()
    text: str = Field(sa_type=Text)
    checksum: str = Field(sa_type=Text)  # sha256 of the UTF-8 text, hex
    created_at: datetime = Field(sa_type=UTCDateTime)


class PersonFeedRow(_Base, table=True):
    """A person's rendered feed and the hash of its secret token: every replica serves the same bytes,
    ETag and Last-Modified from here. Only the token's SHA-256 is kept, so the database does not hold
    working feed URLs."""

    __tablename__ = "person_feed"
    # Owner last: lookups by token hash use the index. A token is 256 random bits, so two people never
    # share a hash; the owner is in the key like in every other unique key of the store.
    __table_args__ = (UniqueConstraint("token_hash", "owner_id", name="uq_person_feed_token_hash"),)

    owner_id: int = _owner_key()
    token_hash: str = Field(sa_type=Text)
    body: bytes | None = Field(default=None, sa_type=LargeBinary)
    etag: str | None = Field(default=None, sa_type=Text)
    last_modified: datetime | None = Field(default=None, sa_type=UTCDateTime)


class PersonSourceRow(_Base, table=True):
    """A calendar a person gave as their own (busy time, past meetings): an http(s) address, read only in
    that person's cycle, through the address guard (connectors.address_guard). `position` keeps the order
    they were given in; `name` keys the calendar's health, as a source's name does in the personal mode."""

    __tablename__ = "person_source"
    __table_args__ = (UniqueConstraint("owner_id", "name", name="uq_person_source_owner_id"),)

    owner_id: int = _owner_key()
    position: int = Field(primary_key=True)
    name: str = Field(sa_type=Text)
    location: str = Field(sa_type=Text)  # may hold a secret (a private calendar address): never shown


class MarkerSecretRow(_Base, table=True):
    """A person's secret for signing the key markers of their events (organisation mode; the personal
    mode keeps its secret in a 0600 file). One per person, so one person's signed markers (which they can
    read in their own feed) can never pass for another's. 64 lower-case hex digits; never logged."""

    __tablename__ = "marker_secret"

    owner_id: int = _owner_key()
    secret: str = Field(sa_type=Text)
    created_at: datetime = Field(sa_type=UTCDateTime)


class ApiRequestCountRow(_Base, table=True):
    """HTTP requests the organisation's cycles sent to each calendar's API, summed over people and cycles
    (organisation mode's `circleback_api_requests_total`). Kept by calendar name, not by person: a
    Prometheus counter never goes down, so removing or purging a person must not take their share away,
    and metrics carry no addresses."""

    __tablename__ = "api_request_count"

    calendar: str = Field(sa_type=Text, primary_key=True)
    total: int = Field(sa_type=BigInteger)


def table_of(model: type[SQLModel]) -> Table:
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table

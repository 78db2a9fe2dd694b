"""The people of an organisation: who they are and every version of their focus plan.

A person is an owner of the store (their email, case-folded, is the owner key) with a `person` row; the
workers run a cycle for every person. Their plans live in the database as YAML text with a checksum, newest
last, so any replica can run anyone's cycle without shared files. These are the cross-owner queries of
organisation mode; everything else a person owns is read and written through `Store(url, owner=email)`.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import Engine, func, text
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, delete, select

from connectors.address_guard import address_problem
from connectors.fetch import redact
from daemon.dbtypes import (
    PLACEMENT_FAILED,
    OwnerRow,
    PersonFeedRow,
    PersonRow,
    PersonSourceRow,
    PlacementRow,
    PlanVersionRow,
    SourceStateRow,
    metadata,
)
from daemon.errors import BadInput
from daemon.feed_cache import FeedSnapshot, feed_etag, http_date
from daemon.sources import source_name
from daemon.store import DEFAULT_OWNER, StoreError
from schedules.model import Plan
from schedules.plan import parse_plan

# Deliberately loose: the address is a key and the Google subject, not something circleback mails to.
_EMAIL: Final = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class UnknownPerson(BadInput):
    def __init__(self, email: str) -> None:
        super().__init__(f"no person {email!r} (see `circleback people list`)")


class PersonExists(BadInput):
    def __init__(self, email: str) -> None:
        super().__init__(f"{email!r} is already a person (change their plan with `people set-plan`)")


@dataclass(frozen=True)
class Person:
    email: str
    name: str
    google_subject: str | None
    created_at: datetime
    plan_versions: int
    plan_checksum: str | None
    plan_updated_at: datetime | None


@dataclass(frozen=True)
class PersonHealth:
    """What `people show` reports about one person's cycles and calendars."""

    last_cycle: str | None  # the state of their newest cycle job (organisation mode), None if none yet
    last_cycle_at: datetime | None
    failing_sources: list[tuple[str, str]]  # (calendar, reason) of calendars that cannot be read
    failing_writes: list[tuple[str, int]]  # (calendar, events it refused)


@dataclass(frozen=True)
class PlanVersion:
    number: int  # 1 for a person's first plan
    text: str
    checksum: str
    created_at: datetime


@dataclass(frozen=True)
class PersonSource:
    """A calendar a person gave as their own: its name (from its host, like a source's default name) and
    its address, which may carry a secret (`shown` is safe to print)."""

    name: str
    location: str

    @property
    def shown(self) -> str:
        return redact(self.location)


def person_sources(locations: Sequence[str]) -> list[PersonSource]:
    """Checked and named calendars for a person; BadInput naming every address that is not an https:// or
    webcal:// one (files and other schemes are refused: a worker's files are not the person's to read)."""
    problems = []
    named: list[PersonSource] = []
    for number, raw in enumerate(locations, 1):
        location = raw.strip()
        problem = address_problem(location)
        if problem is not None:
            problems.append(f"source {number} ({redact(location)}) {problem}")
            continue
        base = source_name(location)
        name, n = base, 1
        while any(s.name == name for s in named):
            n += 1
            name = f"{base} ({n})"
        named.append(PersonSource(name, location))
    if problems:
        raise BadInput("; ".join(problems))
    return named


def owner_key(email: str) -> str:
    """The owner key of a person: the address without surrounding spaces, case-folded, checked."""
    key = email.strip().casefold()
    if not _EMAIL.match(key):
        raise BadInput(f"{email!r} is not an email address")
    if key == DEFAULT_OWNER:
        raise BadInput(f"{email!r} is reserved for the personal mode")
    return key


def checksum(plan_text: str) -> str:
    return hashlib.sha256(plan_text.encode("utf-8")).hexdigest()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _new_token() -> str:
    return secrets.token_urlsafe(32)


def plan_label(email: str) -> str:
    """Where a stored plan's problems are said to be (in place of a file name)."""
    return f"plan of {email}"


class People:
    """The people in one database; `engine` is a migrated store's engine (`Store.engine`)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @property
    def engine(self) -> Engine:
        return self._engine

    @contextmanager
    def _session(self) -> Iterator[Session]:
        try:
            with Session(self._engine, expire_on_commit=False) as session, session.begin():
                yield session
        except SQLAlchemyError as exc:
            raise StoreError(f"database error, nothing was changed: {exc}") from exc

    # -- reads ---------------------------------------------------------------------------------------------

    def everyone(self) -> list[Person]:
        with self._session() as s:
            keys = s.exec(
                select(OwnerRow.key).join(PersonRow, col(PersonRow.owner_id) == col(OwnerRow.id))
            ).all()
            return sorted((self._person(s, key) for key in keys), key=lambda p: p.email)

    def emails(self) -> list[str]:
        """Every person's key, in one query (the tick asks for it every period)."""
        with self._session() as s:
            return list(
                s.exec(
                    select(OwnerRow.key)
                    .join(PersonRow, col(PersonRow.owner_id) == col(OwnerRow.id))
                    .order_by(col(OwnerRow.key))
                ).all()
            )

    def get(self, email: str) -> Person:
        with self._session() as s:
            return self._person(s, owner_key(email))

    def plan_versions(self, email: str) -> list[PlanVersion]:
        with self._session() as s:
            owner_id = self._person_owner_id(s, owner_key(email))
            rows = s.exec(
                select(PlanVersionRow)
                .where(col(PlanVersionRow.owner_id) == owner_id)
                .order_by(col(PlanVersionRow.id))
            ).all()
            return [PlanVersion(n, r.text, r.checksum, r.created_at) for n, r in enumerate(rows, 1)]

    def latest_plan(self, email: str) -> tuple[str, Plan]:
        """The plan in force for a person, parsed (it was valid when stored; parsing again keeps one path)."""
        newest = self.plan_versions(email)[-1]
        key = owner_key(email)
        return newest.text, parse_plan(newest.text, plan_label(key))

    def sources(self, email: str) -> list[PersonSource]:
        """The calendars a person gave as their own, in the order given."""
        with self._session() as s:
            owner_id = self._person_owner_id(s, owner_key(email))
            rows = s.exec(
                select(PersonSourceRow)
                .where(col(PersonSourceRow.owner_id) == owner_id)
                .order_by(col(PersonSourceRow.position))
            ).all()
            return [PersonSource(row.name, row.location) for row in rows]

    def health(self, email: str) -> PersonHealth:
        key = owner_key(email)
        with self._session() as s:
            owner_id = self._person_owner_id(s, key)
            sources = s.exec(
                select(SourceStateRow.name, SourceStateRow.last_error)
                .where(col(SourceStateRow.owner_id) == owner_id, col(SourceStateRow.failures) > 0)
                .order_by(col(SourceStateRow.name))
            ).all()
            writes = s.exec(
                select(PlacementRow.calendar, func.count())
                .where(col(PlacementRow.owner_id) == owner_id, col(PlacementRow.state) == PLACEMENT_FAILED)
                .group_by(col(PlacementRow.calendar))
                .order_by(col(PlacementRow.calendar))
            ).all()
            state, at = self._last_cycle(s, key)
        return PersonHealth(
            last_cycle=state,
            last_cycle_at=at,
            failing_sources=[(name, error or "failing") for name, error in sources],
            failing_writes=[(name, int(count)) for name, count in writes],
        )

    def _last_cycle(self, s: Session, key: str) -> tuple[str | None, datetime | None]:
        if self._engine.dialect.name != "postgresql":
            return None, None
        if not s.execute(text("SELECT to_regclass('procrastinate_jobs') IS NOT NULL")).scalar_one():
            return None, None
        row = s.execute(
            text(
                "SELECT j.status::text, (SELECT max(e.at) FROM procrastinate_events e WHERE e.job_id = j.id) "
                "FROM procrastinate_jobs j WHERE j.task_name = 'circleback.cycle' AND j.lock = :key "
                # The last cycle that ran to an end: a job queued for the next period is not news yet.
                "AND j.status::text NOT IN ('todo', 'doing') "
                "ORDER BY j.id DESC LIMIT 1"
            ),
            {"key": key},
        ).first()
        return (str(row[0]), row[1]) if row is not None else (None, None)

    # -- writes --------------------------------------------------------------------------------------------

    def add(
        self,
        email: str,
        *,
        name: str,
        plan_text: str,
        google_subject: str | None,
        now: datetime,
        sources: Sequence[str] = (),
    ) -> tuple[Person, str]:
        """The new person and the secret token of their feed URL (only its hash is kept); `sources` are
        calendar addresses of their own (checked first: a bad one adds nobody)."""
        key = owner_key(email)
        if not name.strip():
            raise BadInput("--name must not be empty")
        subject = owner_key(google_subject) if google_subject else None
        own = person_sources(sources)
        with self._session() as s:
            owner_id = self._owner_id(s, key, now)
            if s.get(PersonRow, owner_id) is not None:
                raise PersonExists(key)
            s.add(PersonRow(owner_id=owner_id, name=name.strip(), google_subject=subject, created_at=now))
            digest = checksum(plan_text)
            s.add(PlanVersionRow(owner_id=owner_id, text=plan_text, checksum=digest, created_at=now))
            self._replace_sources(s, owner_id, own)
            token = _new_token()
            feed = s.get(PersonFeedRow, owner_id)
            if feed is None:
                s.add(PersonFeedRow(owner_id=owner_id, token_hash=token_hash(token)))
            else:  # back after a removal without purge: their feed keeps its bytes, with a new URL
                feed.token_hash = token_hash(token)
        return self.get(key), token

    def rotate_feed_token(self, email: str) -> str:
        """A new secret feed URL for a person; the old one stops working at once on every replica."""
        key = owner_key(email)
        token = _new_token()
        with self._session() as s:
            feed = s.get(PersonFeedRow, self._person_owner_id(s, key))
            assert feed is not None
            feed.token_hash = token_hash(token)
        return token

    def save_feed(self, email: str, body: bytes, now: datetime) -> bool:
        """Keep a person's newly rendered feed; Last-Modified moves only when the bytes change (and never
        backwards). False when the bytes are the ones already kept."""
        etag = feed_etag(body)
        with self._session() as s:
            feed = s.get(PersonFeedRow, self._person_owner_id(s, owner_key(email)), with_for_update=True)
            assert feed is not None
            if feed.etag == etag and feed.body == body:
                return False
            stamp = now.replace(microsecond=0)
            if feed.last_modified is not None:
                stamp = max(stamp, feed.last_modified)
            feed.body, feed.etag, feed.last_modified = body, etag, stamp
            return True

    def feed_by_token(self, token: str) -> FeedSnapshot | None:
        """The feed whose URL carries `token`, if that person is still here and it was rendered. The lookup
        is by the token's hash, so how long it takes says nothing about the tokens that exist."""
        with self._session() as s:
            row = s.exec(
                select(PersonFeedRow)
                .join(PersonRow, col(PersonRow.owner_id) == col(PersonFeedRow.owner_id))
                .where(col(PersonFeedRow.token_hash) == token_hash(token))
            ).first()
            if row is None or row.body is None or row.etag is None or row.last_modified is None:
                return None
            return FeedSnapshot(row.body, row.etag, row.last_modified, http_date(row.last_modified))

    def set_plan(self, email: str, plan_text: str, *, now: datetime) -> bool:
        """Store a new version; False (and nothing stored) when it is the version already in force."""
        key = owner_key(email)
        digest = checksum(plan_text)
        with self._session() as s:
            owner_id = self._person_owner_id(s, key)
            newest = s.exec(
                select(PlanVersionRow.checksum)
                .where(col(PlanVersionRow.owner_id) == owner_id)
                .order_by(col(PlanVersionRow.id).desc())
                .limit(1)
            ).first()
            if newest == digest:
                return False
            s.add(PlanVersionRow(owner_id=owner_id, text=plan_text, checksum=digest, created_at=now))
            return True

    def set_sources(self, email: str, locations: Sequence[str]) -> list[PersonSource]:
        """Replace a person's own calendars (none: they have none); a bad address changes nothing."""
        own = person_sources(locations)
        with self._session() as s:
            self._replace_sources(s, self._person_owner_id(s, owner_key(email)), own)
        return own

    def _replace_sources(self, s: Session, owner_id: int, own: Sequence[PersonSource]) -> None:
        s.exec(delete(PersonSourceRow).where(col(PersonSourceRow.owner_id) == owner_id))
        s.flush()
        for position, source in enumerate(own):
            s.add(
                PersonSourceRow(
                    owner_id=owner_id, position=position, name=source.name, location=source.location
                )
            )

    def remove(self, email: str, *, purge: bool) -> None:
        """Stop a person's cycles; `purge` also deletes everything they own (plans, log, placements...)."""
        key = owner_key(email)
        with self._session() as s:
            owner_id = self._person_owner_id(s, key)
            s.exec(delete(PersonRow).where(col(PersonRow.owner_id) == owner_id))
            if not purge:
                return
            for table in reversed(metadata.sorted_tables):
                if "owner_id" in table.c:
                    s.execute(table.delete().where(table.c.owner_id == owner_id))
            s.exec(delete(OwnerRow).where(col(OwnerRow.id) == owner_id))

    # -- helpers -------------------------------------------------------------------------------------------

    def _owner_id(self, s: Session, key: str, now: datetime) -> int:
        found = s.exec(select(OwnerRow.id).where(col(OwnerRow.key) == key)).first()
        if found is not None:
            return found
        row = OwnerRow(key=key, created_at=now)
        s.add(row)
        s.flush()
        assert row.id is not None
        return row.id

    def _person_owner_id(self, s: Session, key: str) -> int:
        found = s.exec(
            select(OwnerRow.id)
            .join(PersonRow, col(PersonRow.owner_id) == col(OwnerRow.id))
            .where(col(OwnerRow.key) == key)
        ).first()
        if found is None:
            raise UnknownPerson(key)
        return found

    def _person(self, s: Session, key: str) -> Person:
        owner_id = self._person_owner_id(s, key)
        person = s.get(PersonRow, owner_id)
        assert person is not None
        count = s.exec(
            select(func.count()).select_from(PlanVersionRow).where(col(PlanVersionRow.owner_id) == owner_id)
        ).one()
        newest = s.exec(
            select(PlanVersionRow)
            .where(col(PlanVersionRow.owner_id) == owner_id)
            .order_by(col(PlanVersionRow.id).desc())
            .limit(1)
        ).first()
        return Person(
            email=key,
            name=person.name,
            google_subject=person.google_subject,
            created_at=person.created_at,
            plan_versions=int(count),
            plan_checksum=newest.checksum if newest else None,
            plan_updated_at=newest.created_at if newest else None,
        )

"""Each person's key-marker secret in organisation mode, kept in the database (table `marker_secret`).

Why one per person, not one per organisation: a marker's signature covers the occurrence key alone
(`touchpoint:<name>:<period>`), and every person can read the signed markers of their own feed. With one
secret for everybody, Ada could copy a signed marker from her feed into an invitation to Bo for a
connection they share, and Bo's cycle would take it for his own touchpoint. With one each, nobody's
signatures count in anyone else's calendar. Purging a person deletes theirs with everything they own.

Made by the first cycle that needs it, on any replica: INSERT ... ON CONFLICT DO NOTHING, then read back,
in one transaction. Two replicas creating it at once both insert; the database keeps one (the second
waits for the first to commit, then does nothing) and both read that one. Never logged, never in an error.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from daemon.dbtypes import MarkerSecretRow, OwnerRow, table_of
from daemon.marker_secret import new_marker_secret, parse_marker_secret
from daemon.people import UnknownPerson, owner_key
from daemon.store import StoreError


def person_marker_secret(engine: Engine, email: str) -> bytes:
    """The person's secret, made now if they have none yet (whichever replica asks first)."""
    key = owner_key(email)
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    try:
        with Session(engine) as s, s.begin():
            owner_id = s.exec(select(OwnerRow.id).where(col(OwnerRow.key) == key)).first()
            if owner_id is None:
                raise UnknownPerson(key)
            query = select(MarkerSecretRow.secret).where(col(MarkerSecretRow.owner_id) == owner_id)
            stored = s.exec(query).first()
            if stored is None:  # the first cycle ever: a write, then everybody reads the one kept
                s.execute(
                    dialect.insert(table_of(MarkerSecretRow))
                    .values(owner_id=owner_id, secret=new_marker_secret(), created_at=datetime.now(UTC))
                    .on_conflict_do_nothing(index_elements=["owner_id"])
                )
                stored = s.exec(query).one()
    except SQLAlchemyError as exc:
        # The statement is not shown: its parameters hold the secret.
        raise StoreError(f"database error reading the marker secret of {key}: {type(exc).__name__}") from None
    return parse_marker_secret(stored.encode("ascii", errors="replace"), f"the marker secret of {key}")

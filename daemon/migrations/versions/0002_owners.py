"""Owners, stable connection ids, reviews apart from the log, calendar state and placements.

Revision ID: 0002
Revises: 0001

Every existing row is given to the owner "default" (the personal mode's owner), and every unique key gains
the owner: occurrence (owner_id, key) and (owner_id, uid), interaction (owner_id, dedupe_key), connection
(owner_id, conn_id), source_state (owner_id, name). Keys and UIDs are kept as they are, so calendars that
subscribed to the feed see no change. A connection's stable id starts as its case-folded name. Review
entries of the log (connection "@review") move to the new `review` table. On SQLite, batch mode rebuilds
the tables whose keys change; on PostgreSQL they are altered in place. The whole upgrade is one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFAULT_OWNER = "default"
REVIEW_CONNECTION = "@review"
SOURCES = "source IN ('manual', 'calendar', 'touchpoint')"


def _instant(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _text(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.Text(), nullable=nullable)


def _owner_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["owner_id"], ["owner.id"], name=f"fk_{table}_owner_id_owner")


def _stamp(value: datetime) -> object:
    # SQLite keeps instants as naive UTC text (see daemon.dbtypes.UTCDateTime); a raw insert must too.
    return value.replace(tzinfo=None) if op.get_bind().dialect.name == "sqlite" else value


def _create_default_owner() -> int:
    owner = sa.table("owner", sa.column("id", sa.Integer()), sa.column("key", sa.Text()))
    bind = op.get_bind()
    bind.execute(
        sa.text("INSERT INTO owner (key, created_at) VALUES (:key, :at)"),
        {"key": DEFAULT_OWNER, "at": _stamp(datetime.now(UTC))},
    )
    found = bind.execute(sa.select(owner.c.id).where(owner.c.key == DEFAULT_OWNER)).scalar_one()
    return int(found)


def _add_owner_column(table: str, owner_id: int) -> None:
    with op.batch_alter_table(table) as batch:
        batch.add_column(sa.Column("owner_id", sa.Integer(), nullable=True))
    op.execute(sa.text(f"UPDATE {table} SET owner_id = :owner").bindparams(owner=owner_id))


def _move_reviews(owner_id: int) -> None:
    """The log's review entries become reviews: same time, note, source, record time and undone flag."""
    op.execute(
        sa.text(
            "INSERT INTO review (owner_id, at, note, source, recorded_at, undone) "
            "SELECT :owner, at, note, source, recorded_at, undone FROM interaction "
            "WHERE lower(connection) = :review ORDER BY id"
        ).bindparams(owner=owner_id, review=REVIEW_CONNECTION)
    )
    op.execute(
        sa.text("DELETE FROM interaction WHERE lower(connection) = :review").bindparams(
            review=REVIEW_CONNECTION
        )
    )


def _fill_connection_ids() -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, name, email FROM connection ORDER BY id")).all()
    taken: set[str] = set()
    for row_id, name, email in rows:
        conn_id = name.casefold()
        if conn_id in taken:
            # Two names that differ only in case were distinct rows before; keep them distinct.
            conn_id = name
        taken.add(conn_id)
        bind.execute(
            sa.text("UPDATE connection SET conn_id = :conn_id, emails = :emails WHERE id = :id"),
            {"conn_id": conn_id, "emails": email or "", "id": row_id},
        )


def upgrade() -> None:
    op.create_table(
        "owner",
        sa.Column("id", sa.Integer(), nullable=False),
        _text("key"),
        _instant("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_owner"),
        sa.UniqueConstraint("key", name="uq_owner_key"),
    )
    owner_id = _create_default_owner()
    op.create_table(
        "review",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        _instant("at"),
        _text("note"),
        _text("source"),
        _instant("recorded_at"),
        sa.Column("undone", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_review"),
        _owner_fk("review"),
        sa.CheckConstraint(SOURCES, name="ck_review_source"),
    )
    op.create_index("ix_review_owner_id", "review", ["owner_id"])
    _move_reviews(owner_id)

    _add_owner_column("connection", owner_id)
    with op.batch_alter_table("connection") as batch:
        batch.add_column(sa.Column("conn_id", sa.Text(), nullable=True))
        batch.add_column(sa.Column("emails", sa.Text(), nullable=True))
    _fill_connection_ids()
    with op.batch_alter_table("connection") as batch:
        batch.alter_column("owner_id", existing_type=sa.Integer(), nullable=False)
        batch.alter_column("conn_id", existing_type=sa.Text(), nullable=False)
        batch.alter_column("emails", existing_type=sa.Text(), nullable=False)
        batch.drop_constraint("uq_connection_name", type_="unique")
        batch.create_unique_constraint("uq_connection_owner_conn_id", ["owner_id", "conn_id"])
        batch.create_foreign_key("fk_connection_owner_id_owner", "owner", ["owner_id"], ["id"])
        batch.create_index("ix_connection_owner_id", ["owner_id"])

    _add_owner_column("occurrence", owner_id)
    with op.batch_alter_table("occurrence") as batch:
        batch.alter_column("owner_id", existing_type=sa.Integer(), nullable=False)
        batch.drop_constraint("pk_occurrence", type_="primary")
        batch.create_primary_key("pk_occurrence", ["owner_id", "key"])
        batch.drop_constraint("uq_occurrence_uid", type_="unique")
        batch.create_unique_constraint("uq_occurrence_owner_uid", ["owner_id", "uid"])
        batch.create_foreign_key("fk_occurrence_owner_id_owner", "owner", ["owner_id"], ["id"])

    _add_owner_column("interaction", owner_id)
    with op.batch_alter_table("interaction") as batch:
        batch.alter_column("owner_id", existing_type=sa.Integer(), nullable=False)
        batch.drop_constraint("uq_interaction_dedupe_key", type_="unique")
        batch.create_unique_constraint("uq_interaction_owner_dedupe_key", ["owner_id", "dedupe_key"])
        batch.create_foreign_key("fk_interaction_owner_id_owner", "owner", ["owner_id"], ["id"])
        batch.create_index("ix_interaction_owner_id", ["owner_id"])

    _add_owner_column("source_state", owner_id)
    with op.batch_alter_table("source_state") as batch:
        batch.alter_column("owner_id", existing_type=sa.Integer(), nullable=False)
        batch.drop_constraint("pk_source_state", type_="primary")
        batch.create_primary_key("pk_source_state", ["owner_id", "name"])
        batch.create_foreign_key("fk_source_state_owner_id_owner", "owner", ["owner_id"], ["id"])

    op.create_table(
        "calendar_state",
        sa.Column("owner_id", sa.Integer(), nullable=False),
        _text("calendar"),
        _text("key"),
        _text("value"),
        sa.PrimaryKeyConstraint("owner_id", "calendar", "key", name="pk_calendar_state"),
        _owner_fk("calendar_state"),
    )
    op.create_table(
        "placement",
        sa.Column("owner_id", sa.Integer(), nullable=False),
        _text("occurrence_key"),
        _text("calendar"),
        _text("remote_id", nullable=True),
        _text("etag", nullable=True),
        sa.Column("sequence", sa.Integer(), nullable=False),
        _text("state"),
        _text("last_error", nullable=True),
        sa.Column("retryable", sa.Boolean(), nullable=False),
        _instant("updated_at"),
        sa.PrimaryKeyConstraint("owner_id", "occurrence_key", "calendar", name="pk_placement"),
        _owner_fk("placement"),
        sa.CheckConstraint("state IN ('placed', 'failed')", name="ck_placement_state"),
    )


def downgrade() -> None:
    """Back to one implicit owner: refused when the database holds more than one, since 0001 has no room
    for a second person's rows. Reviews go back into the log; placements and calendar state are dropped
    (0001 had nowhere to keep them; the next cycle of the newer version rebuilds them)."""
    bind = op.get_bind()
    owners = bind.execute(sa.text("SELECT id FROM owner")).scalars().all()
    if len(owners) > 1:
        raise RuntimeError(f"cannot downgrade below 0002: the database holds {len(owners)} owners")
    op.drop_table("placement")
    op.drop_table("calendar_state")

    with op.batch_alter_table("source_state") as batch:
        batch.drop_constraint("fk_source_state_owner_id_owner", type_="foreignkey")
        batch.drop_constraint("pk_source_state", type_="primary")
        batch.create_primary_key("pk_source_state", ["name"])
        batch.drop_column("owner_id")

    with op.batch_alter_table("interaction") as batch:
        batch.drop_index("ix_interaction_owner_id")
        batch.drop_constraint("fk_interaction_owner_id_owner", type_="foreignkey")
        batch.drop_constraint("uq_interaction_owner_dedupe_key", type_="unique")
        batch.create_unique_constraint("uq_interaction_dedupe_key", ["dedupe_key"])
        batch.drop_column("owner_id")
    rows = bind.execute(
        sa.text("SELECT id, at, note, source, recorded_at, undone FROM review ORDER BY id")
    ).all()
    for review_id, at, note, source, recorded_at, undone in rows:
        bind.execute(
            sa.text(
                "INSERT INTO interaction "
                "(connection, at, kind, note, source, undone, recorded_at, dedupe_key) "
                "VALUES (:connection, :at, 'give', :note, :source, :undone, :recorded_at, :dedupe_key)"
            ),
            {
                "connection": REVIEW_CONNECTION,
                "at": at,
                "note": note,
                "source": source,
                "undone": undone,
                "recorded_at": recorded_at,
                "dedupe_key": f"{source}:{REVIEW_CONNECTION}:entry:review-{review_id}",
            },
        )

    with op.batch_alter_table("occurrence") as batch:
        batch.drop_constraint("fk_occurrence_owner_id_owner", type_="foreignkey")
        batch.drop_constraint("uq_occurrence_owner_uid", type_="unique")
        batch.create_unique_constraint("uq_occurrence_uid", ["uid"])
        batch.drop_constraint("pk_occurrence", type_="primary")
        batch.create_primary_key("pk_occurrence", ["key"])
        batch.drop_column("owner_id")

    with op.batch_alter_table("connection") as batch:
        batch.drop_index("ix_connection_owner_id")
        batch.drop_constraint("fk_connection_owner_id_owner", type_="foreignkey")
        batch.drop_constraint("uq_connection_owner_conn_id", type_="unique")
        batch.create_unique_constraint("uq_connection_name", ["name"])
        batch.drop_column("emails")
        batch.drop_column("conn_id")
        batch.drop_column("owner_id")

    op.drop_index("ix_review_owner_id", table_name="review")
    op.drop_table("review")
    op.drop_table("owner")

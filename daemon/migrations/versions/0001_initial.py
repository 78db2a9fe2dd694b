"""The initial schema: connections, occurrences, the interaction log, source fetch state.

Revision ID: 0001
Revises:

Instants are `timestamp with time zone` (on SQLite: UTC text, see daemon.dbtypes). Enumerations are text
with CHECK constraints rather than native enum types, so adding a value later is a plain constraint
change on both back ends.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _instant(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _text(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.Text(), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "connection",
        sa.Column("id", sa.Integer(), nullable=False),
        _text("name"),
        _text("kind"),
        _text("stage"),
        _text("email", nullable=True),
        sa.Column("target", sa.Boolean(), nullable=False),
        _text("every"),
        sa.Column("duration_minutes", sa.Integer(), nullable=False),
        _text("next_action"),
        _instant("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_connection"),
        sa.UniqueConstraint("name", name="uq_connection_name"),
        sa.CheckConstraint("kind IN ('person', 'group')", name="ck_connection_kind"),
        sa.CheckConstraint("stage IN ('find', 'nurture', 'elevate')", name="ck_connection_stage"),
    )
    op.create_table(
        "occurrence",
        _text("key"),
        _text("uid"),
        _text("kind"),
        _text("connection", nullable=True),
        sa.Column("due", sa.Date(), nullable=False),
        _instant("start"),
        _instant("end"),
        _text("title"),
        _text("description"),
        _text("status"),
        sa.Column("overdue", sa.Boolean(), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        _instant("created"),
        _instant("last_modified"),
        _instant("completed_at", nullable=True),
        _text("event_uid", nullable=True),
        sa.PrimaryKeyConstraint("key", name="pk_occurrence"),
        sa.UniqueConstraint("uid", name="uq_occurrence_uid"),
        sa.CheckConstraint("kind IN ('touchpoint', 'review')", name="ck_occurrence_kind"),
        sa.CheckConstraint(
            "status IN ('planned', 'placed', 'completed', 'skipped', 'missed')", name="ck_occurrence_status"
        ),
    )
    op.create_index("ix_occurrence_start", "occurrence", ["start"])
    op.create_index("ix_occurrence_status", "occurrence", ["status"])
    op.create_table(
        "interaction",
        sa.Column("id", sa.Integer(), nullable=False),
        _text("connection"),
        _instant("at"),
        _text("kind"),
        _text("note"),
        _text("source"),
        _text("event_uid", nullable=True),
        _text("occurrence_key", nullable=True),
        sa.Column("undone", sa.Boolean(), nullable=False),
        _instant("recorded_at"),
        _text("dedupe_key"),
        sa.PrimaryKeyConstraint("id", name="pk_interaction"),
        sa.UniqueConstraint("dedupe_key", name="uq_interaction_dedupe_key"),
        sa.CheckConstraint("kind IN ('give', 'ask')", name="ck_interaction_kind"),
        sa.CheckConstraint("source IN ('manual', 'calendar', 'touchpoint')", name="ck_interaction_source"),
    )
    op.create_index("ix_interaction_connection", "interaction", ["connection"])
    op.create_table(
        "source_state",
        _text("name"),
        _text("etag", nullable=True),
        _text("last_modified_header", nullable=True),
        _instant("fetched_at", nullable=True),
        _instant("ok_at", nullable=True),
        _text("last_error", nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        _instant("next_attempt_at", nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_source_state"),
    )


def downgrade() -> None:
    op.drop_table("source_state")
    op.drop_index("ix_interaction_connection", table_name="interaction")
    op.drop_table("interaction")
    op.drop_index("ix_occurrence_status", table_name="occurrence")
    op.drop_index("ix_occurrence_start", table_name="occurrence")
    op.drop_table("occurrence")
    op.drop_table("connection")

"""People of an organisation and the history of each person's focus plan.

Revision ID: 0003
Revises: 0002

Organisation mode keeps each person's plan in the database, so any replica can run anyone's cycle without
shared files. `person` marks an owner as a person whose cycles the workers run; `plan_version` keeps every
plan they were given (the newest is in force). Both are empty in the personal mode.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _instant(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def _owner_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["owner_id"], ["owner.id"], name=f"fk_{table}_owner_id_owner")


def upgrade() -> None:
    op.create_table(
        "person",
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("google_subject", sa.Text(), nullable=True),
        _instant("created_at"),
        sa.PrimaryKeyConstraint("owner_id", name="pk_person"),
        _owner_fk("person"),
    )
    op.create_table(
        "plan_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("checksum", sa.Text(), nullable=False),
        _instant("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_plan_version"),
        _owner_fk("plan_version"),
    )
    op.create_index("ix_plan_version_owner_id", "plan_version", ["owner_id"])


def downgrade() -> None:
    op.drop_index("ix_plan_version_owner_id", table_name="plan_version")
    op.drop_table("plan_version")
    op.drop_table("person")

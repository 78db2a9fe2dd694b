"""The calendars people give as their own.

Revision ID: 0006
Revises: 0005

In organisation mode a person may read busy time from their own calendar addresses (`people add --source`,
`people set-sources`). They live here, not in a replica's files, and are read only in that person's cycle.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "person_source",
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("location", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("owner_id", "position", name="pk_person_source"),
        sa.ForeignKeyConstraint(["owner_id"], ["owner.id"], name="fk_person_source_owner_id_owner"),
        sa.UniqueConstraint("owner_id", "name", name="uq_person_source_owner_id"),
    )


def downgrade() -> None:
    op.drop_table("person_source")

"""Each person's key-marker secret, in the database.

Revision ID: 0007
Revises: 0006

The personal mode signs its events' key markers with a secret in a 0600 file of its state directory.
Replicas of organisation mode share no files, so each person's secret lives here, made by whichever replica
needs it first (INSERT ... ON CONFLICT DO NOTHING: replicas starting at once agree on one).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "marker_secret",
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("owner_id", name="pk_marker_secret"),
        sa.ForeignKeyConstraint(["owner_id"], ["owner.id"], name="fk_marker_secret_owner_id_owner"),
    )


def downgrade() -> None:
    op.drop_table("marker_secret")

"""Each person's rendered feed, served by any replica.

Revision ID: 0005
Revises: 0004

Organisation mode renders a person's feed in their cycle and keeps it here with its ETag and the time the
bytes last changed, so every replica answers with identical bytes and validators. Only the SHA-256 of the
person's secret token is stored.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "person_feed",
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.Column("etag", sa.Text(), nullable=True),
        sa.Column("last_modified", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("owner_id", name="pk_person_feed"),
        sa.ForeignKeyConstraint(["owner_id"], ["owner.id"], name="fk_person_feed_owner_id_owner"),
        sa.UniqueConstraint("token_hash", "owner_id", name="uq_person_feed_token_hash"),
    )


def downgrade() -> None:
    op.drop_table("person_feed")

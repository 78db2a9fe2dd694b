"""API requests per calendar, summed over the organisation's cycles.

Revision ID: 0008
Revises: 0007

Each cycle of organisation mode adds the requests it sent to each calendar's API here, so every replica's
/metrics reports the same `circleback_api_requests_total{calendar=...}`. By calendar name only: no person
in it, and a person's removal takes nothing away from the counter.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_request_count",
        sa.Column("calendar", sa.Text(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("calendar", name="pk_api_request_count"),
    )


def downgrade() -> None:
    op.drop_table("api_request_count")

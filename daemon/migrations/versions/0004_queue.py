"""procrastinate's queue tables, on PostgreSQL (organisation mode).

Revision ID: 0004
Revises: 0003

The schema SQL comes from the installed procrastinate (daemon.org_schema); without procrastinate the
revision records itself and the first organisation worker creates the tables. SQLite: nothing to do.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from daemon import org_schema

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql" and not org_schema.present(bind):
        org_schema.apply(bind)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        org_schema.drop(bind)

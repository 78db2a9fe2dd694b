"""procrastinate's tables in circleback's database, applied by circleback's own migrations.

procrastinate (the organisation mode's task queue) ships its schema as SQL (`SchemaManager.get_schema()`,
the same text `procrastinate schema --read` prints). Migration 0004 applies it on PostgreSQL, in the
migration's transaction, so the queue's tables come and go with circleback's schema and nobody runs SQL by
hand. procrastinate is an optional extra (`circleback[org]`): a PostgreSQL database migrated without it gets
the tables the first time an organisation worker starts (`ensure_schema`). SQLite never has them.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import text
from sqlalchemy.engine import Connection

PREFIX: Final = "procrastinate_"
TABLES: Final = (
    "procrastinate_events",
    "procrastinate_periodic_defers",
    "procrastinate_jobs",
    "procrastinate_workers",
)


class QueueUnavailable(RuntimeError):
    """Organisation mode was asked for without procrastinate installed."""


def is_circleback_object(name: str | None, type_: str, _parent: object = None) -> bool:
    """Alembic's `include_name`: procrastinate's objects are not circleback's models, so autogenerate and
    the schema comparison leave them alone."""
    return not (type_ == "table" and name is not None and name.startswith(PREFIX))


def schema_sql() -> str | None:
    try:
        from procrastinate.schema import SchemaManager
    except ImportError:
        return None
    return SchemaManager.get_schema()


def present(connection: Connection) -> bool:
    return (
        connection.execute(text("SELECT to_regclass('procrastinate_jobs') IS NOT NULL")).scalar_one() is True
    )


def apply(connection: Connection) -> bool:
    """Create procrastinate's objects on this connection's search path; False when procrastinate is not
    installed. The SQL goes to the driver as it is: it holds `%` and `:` that a bind-parameter parser would
    misread."""
    sql = schema_sql()
    if sql is None:
        return False
    driver = connection.connection.driver_connection
    assert driver is not None
    driver.execute(sql)  # psycopg: a query without parameters is sent unchanged
    return True


def drop(connection: Connection) -> None:
    for table in TABLES:
        connection.execute(text(f"DROP TABLE IF EXISTS {table} CASCADE"))
    # Enums and composite types (the tables' own row types went with them).
    types = connection.execute(
        text(
            "SELECT t.oid::regtype::text FROM pg_type t LEFT JOIN pg_class c ON c.oid = t.typrelid "
            "WHERE t.typnamespace = current_schema()::regnamespace AND t.typname LIKE 'procrastinate\\_%' "
            "AND (t.typtype = 'e' OR c.relkind = 'c')"
        )
    ).scalars()
    for type_ in list(types):
        connection.execute(text(f"DROP TYPE IF EXISTS {type_} CASCADE"))
    # procrastinate's functions, in the schema the tables were in (the first on the search path).
    functions = connection.execute(
        text(
            "SELECT p.oid::regprocedure::text FROM pg_proc p "
            "WHERE p.pronamespace = current_schema()::regnamespace AND p.proname LIKE 'procrastinate\\_%'"
        )
    ).scalars()
    for signature in list(functions):
        connection.execute(text(f"DROP FUNCTION IF EXISTS {signature} CASCADE"))


def ensure_schema(connection: Connection) -> None:
    """For a worker starting on a database migrated without procrastinate installed."""
    if present(connection):
        return
    if not apply(connection):
        raise QueueUnavailable("organisation mode needs procrastinate: pip install 'circleback[org]'")

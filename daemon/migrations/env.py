"""Alembic environment for circleback.

Normally `daemon.store.Store` runs the migrations itself and hands over an open connection (already inside
the transaction the whole upgrade runs in). From the command line (`alembic -c daemon/migrations/alembic.ini
upgrade head`) the database URL comes from `-x url=...` or CIRCLEBACK_DATABASE_URL.
"""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from daemon.dbtypes import metadata
from daemon.org_schema import is_circleback_object
from daemon.store import create_engine, normalise_url

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things in place; batch mode rebuilds tables for later migrations.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_name=is_circleback_object,
    )
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or os.environ.get("CIRCLEBACK_DATABASE_URL")
    if not url:
        raise SystemExit("give the database URL with -x url=... or CIRCLEBACK_DATABASE_URL")
    return url


def main() -> None:
    given = config.attributes.get("connection")
    if given is not None:
        _run(given)
        return
    if config.config_file_name is not None:
        # Only from the alembic command line: inside the service the daemon owns logging.
        fileConfig(config.config_file_name)
    if context.is_offline_mode():
        context.configure(url=normalise_url(_url()), target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(_url())
    try:
        with engine.connect() as connection:
            _run(connection)
            connection.commit()
    finally:
        engine.dispose()


main()

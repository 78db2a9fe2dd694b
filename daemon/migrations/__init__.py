"""Alembic migrations for circleback's store; `daemon.store.Store` runs them when it opens a database."""

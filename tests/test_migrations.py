"""The Alembic migrations, on SQLite and on the real PostgreSQL of this machine."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Integer, MetaData, inspect, text

from daemon import org_schema
from daemon.dbtypes import metadata
from daemon.org_schema import is_circleback_object
from daemon.store import MIGRATIONS_DIR, Store, StoreError, alembic_config
from schedules.events import Interaction

REPO = Path(__file__).resolve().parents[1]
TABLES = {"connection", "occurrence", "interaction", "source_state"}
# 0002 added owners, reviews apart from the log, calendar state and placements.
TABLES_0002 = TABLES | {"owner", "review", "calendar_state", "placement"}


def _tables(store: Store) -> set[str]:
    return set(inspect(store.engine).get_table_names())


def _diff(store: Store, target: MetaData) -> list[object]:
    with store.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_name": is_circleback_object}
        )
        return list(compare_metadata(context, target))


def test_one_linear_history_with_a_single_head() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert script.get_heads() == ["0008"]
    assert [r.revision for r in script.walk_revisions()] == [
        "0008",
        "0007",
        "0006",
        "0005",
        "0004",
        "0003",
        "0002",
        "0001",
    ]


def test_upgrade_from_empty_reaches_head(db_url: str) -> None:
    with Store(db_url) as store:
        assert store.at_head()
        assert store.current_revisions() == {"0008"}
        assert _tables(store) >= TABLES_0002 | {"alembic_version"}


def test_reopening_a_migrated_database_keeps_its_data(db_url: str) -> None:
    with Store(db_url) as store:
        store.engine.dispose()
        with store.engine.begin() as conn:
            # The personal mode's owner exists from the migration on; rows belong to it.
            owner = conn.execute(text("SELECT id FROM owner WHERE key = 'default'")).scalar_one()
            conn.execute(
                text("INSERT INTO source_state (owner_id, name, failures) VALUES (:o, 'work', 2)"),
                {"o": owner},
            )
    with Store(db_url) as again:
        assert again.at_head()
        state = again.source_state("work")
        assert state is not None and state.failures == 2


def test_downgrade_to_base_then_upgrade_again(db_url: str) -> None:
    with Store(db_url) as store:
        with store.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "base")
        assert not store.at_head()
        assert store.current_revisions() == frozenset()
        assert not (_tables(store) & TABLES_0002)
        store.migrate()
        assert store.at_head()
        assert _tables(store) >= TABLES_0002


@pytest.mark.postgres
def test_the_queue_schema_comes_and_goes_with_circleback_migrations(postgres_url: str) -> None:
    with Store(postgres_url) as store:
        assert _tables(store) >= set(org_schema.TABLES)
        with store.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0003")
        assert not {t for t in _tables(store) if t.startswith("procrastinate")}
        with store.engine.connect() as conn:
            left = conn.execute(
                text(
                    "SELECT count(*) FROM pg_proc WHERE proname LIKE 'procrastinate%' "
                    "AND pronamespace = current_schema()::regnamespace"
                )
            ).scalar_one()
        assert left == 0
        store.migrate()
        assert _tables(store) >= set(org_schema.TABLES)


def test_the_queue_schema_is_postgresql_only(sqlite_url: str) -> None:
    with Store(sqlite_url) as store:
        assert store.at_head()
        assert not {t for t in _tables(store) if t.startswith("procrastinate")}


def test_models_match_the_migrated_schema(db_url: str) -> None:
    with Store(db_url) as store:
        assert _diff(store, metadata) == []


def test_the_schema_comparison_does_notice_drift(sqlite_url: str) -> None:
    # Guards the test above against passing vacuously: one extra model column must show up as a diff.
    drifted = MetaData(naming_convention=metadata.naming_convention)
    for table in metadata.sorted_tables:
        table.to_metadata(drifted)
    drifted.tables["interaction"].append_column(Column("mood", Integer(), nullable=True))
    with Store(sqlite_url) as store:
        diff = _diff(store, drifted)
    assert [(d[0], d[3].name) for d in diff if isinstance(d, tuple)] == [("add_column", "mood")]


def test_autogenerate_against_head_writes_an_empty_revision(sqlite_url: str, tmp_path: Path) -> None:
    # Exercises script.py.mako too: the generated file must be valid Python with nothing to do.
    copy = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    with Store(sqlite_url) as store, store.engine.begin() as conn:
        config = alembic_config(conn)
        config.set_main_option("script_location", str(copy))
        script = command.revision(
            config, message="nothing to do", autogenerate=True, rev_id=f"{int(head) + 1:04d}"
        )
    assert script is not None and not isinstance(script, list)
    source = Path(script.path).read_text()
    compile(source, script.path, "exec")
    body = source.split("def upgrade() -> None:", 1)[1].split("def downgrade", 1)[0]
    assert "op." not in body, body
    assert f"down_revision: str | None = '{head}'" in source


def test_a_database_from_a_newer_version_is_refused_clearly(sqlite_url: str) -> None:
    with Store(sqlite_url) as store, store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(StoreError, match=r"9999.*newer version of circleback"):
        Store(sqlite_url)


def test_alembic_command_line_uses_the_packaged_ini(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "alembic",
            "-c",
            str(MIGRATIONS_DIR / "alembic.ini"),
            "-x",
            f"url={url}",
            "upgrade",
            "head",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Running upgrade  -> 0001" in result.stderr
    assert "Running upgrade 0001 -> 0002" in result.stderr
    with Store(url, migrate=False) as store:
        assert store.at_head()


def test_migrations_are_declared_as_package_data() -> None:
    # From an installed wheel the store finds its migrations beside itself; that only works if the
    # packaging metadata ships every file the migrations need.
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert {"daemon.migrations", "daemon.migrations.versions"} <= set(config["packages"])
    data = config["package-data"]["daemon.migrations"]
    assert {"alembic.ini", "script.py.mako"} <= set(data)
    for relative in data:
        if "*" not in relative:
            assert (REPO / "daemon" / "migrations" / relative).is_file(), relative
    for package in ("daemon/migrations", "daemon/migrations/versions"):
        assert (REPO / package / "__init__.py").is_file()
    assert MIGRATIONS_DIR == REPO / "daemon" / "migrations"


def test_downgrade_to_0001_puts_reviews_back_into_the_log(db_url: str) -> None:
    at = datetime(2025, 3, 3, 9, tzinfo=UTC)
    with Store(db_url, clock=lambda: at) as store:
        store.add_review(at, "on the train")
        store.add_interaction(Interaction("Grace Hopper", at, source="manual"))
        with store.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0001")
        with store.engine.connect() as conn:
            rows = conn.execute(text("SELECT connection, note FROM interaction ORDER BY connection")).all()
        assert [tuple(r) for r in rows] == [("@review", "on the train"), ("Grace Hopper", "")]
        assert not (_tables(store) & {"owner", "review", "placement", "calendar_state"})
        store.migrate()
        assert [r.note for r in store.reviews()] == ["on the train"]
        assert [i.interaction.connection for i in store.interactions()] == ["Grace Hopper"]


def test_downgrade_below_0002_is_refused_while_two_owners_share_the_database(db_url: str) -> None:
    with Store(db_url) as store, Store(db_url, owner="grace", migrate=False) as grace:
        grace.add_review(datetime(2025, 3, 3, 9, tzinfo=UTC))
        with pytest.raises(RuntimeError, match="2 owners"), store.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0001")
        assert store.at_head()
        assert len(grace.reviews()) == 1

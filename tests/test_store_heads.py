"""Opening a database whose schema is current needs no alembic: a command pays for it only to upgrade."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory

from daemon.store import Store, alembic_config, script_heads

_OPEN = """
import sys
from daemon.store import Store
with Store(sys.argv[1]) as store:
    assert store.at_head()
print("alembic" in sys.modules)
"""


def test_the_heads_read_from_the_scripts_are_alembics() -> None:
    assert script_heads() == frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())


def _opens_with_alembic(url: str) -> bool:
    proc = subprocess.run(
        [sys.executable, "-c", _OPEN, url], capture_output=True, text=True, timeout=60, check=True
    )
    return proc.stdout.strip() == "True"


def test_only_an_upgrade_imports_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/store.db"
    assert _opens_with_alembic(url)  # a new database is migrated
    assert not _opens_with_alembic(url)  # a current one is just opened
    with Store(url) as store, store.engine.begin() as conn:
        command.downgrade(alembic_config(conn), "-1")
    assert _opens_with_alembic(url)  # an older one is upgraded
    with Store(url, migrate=False) as store:
        assert store.at_head()

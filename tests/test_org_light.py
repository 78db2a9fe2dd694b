"""The personal mode stays as light as it was: organisation mode is opt-in and never imported there."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cli_runner import run_in_process, xdg_env
from sqlalchemy import text

from daemon.people import People
from daemon.store import Store

REPO = Path(__file__).resolve().parents[1]


def test_the_personal_mode_never_imports_procrastinate() -> None:
    probe = (
        # daemon.purge too: `people remove --purge` works on an install without the [org] extra.
        "import sys, daemon.cli, daemon.service, daemon.web, daemon.people, daemon.owner_cycle, daemon.purge;"
        "print(sorted(m for m in sys.modules if m.startswith('procrastinate')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_run_org_on_sqlite_is_bad_input(tmp_path: Path, sqlite_url: str) -> None:
    for sub in ("config", "data", "state"):
        (tmp_path / sub).mkdir()
    result = run_in_process(tmp_path, "run", "--org", "--db", sqlite_url)
    assert result.returncode == 2
    assert "organisation mode needs a PostgreSQL" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.postgres
def test_run_on_postgresql_with_people_starts_a_procrastinate_worker(
    tmp_path: Path, postgres_url: str
) -> None:

    plan = (REPO / "tests" / "fixtures" / "plans" / "ada.yaml").read_text(encoding="utf-8")
    with Store(postgres_url) as store:
        People(store.engine).add(
            "ada@example.org", name="Ada", plan_text=plan, google_subject=None, now=datetime.now(UTC)
        )
    for sub in ("config", "data", "state"):
        (tmp_path / sub).mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon.cli", "run", "--db", postgres_url],
        cwd=tmp_path,
        env={**xdg_env(tmp_path), "PYTHONPATH": str(REPO), "CIRCLEBACK_HTTP_ENABLED": "false"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        # Wait for a heartbeat after the one the worker registers with: procrastinate installs its SIGTERM
        # handler between the two, and a SIGTERM before that ends the process by default (harmless then,
        # no job has started; but this test is about the graceful stop).
        deadline = time.monotonic() + 30
        beats: set[object] = set()
        workers = 0
        while time.monotonic() < deadline and len(beats) < 2:
            time.sleep(0.5)
            with Store(postgres_url) as store, store.engine.connect() as conn:
                rows = conn.execute(text("SELECT last_heartbeat FROM procrastinate_workers")).all()
            workers = len(rows)
            beats.update(row[0] for row in rows)
        assert workers == 1 and len(beats) >= 2
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 0, output
    assert "organisation mode" in output


def test_people_remove_purge_works_without_the_org_extra(tmp_path: Path) -> None:
    # Purging reaches the person's calendars as their cycles do, but must not need procrastinate: the
    # probe makes importing it fail, as on an install without `circleback[org]`.
    for sub in ("config", "data", "state"):
        (tmp_path / sub).mkdir()
    plan = REPO / "tests" / "fixtures" / "plans" / "ada.yaml"
    probe = (
        "import sys; sys.modules['procrastinate'] = None\n"
        "from daemon.cli import main\n"
        f"assert main(['people', 'add', 'ada@example.com', '--name', 'Ada', '--plan', {str(plan)!r}]) == 0\n"
        "print(main(['people', 'remove', 'ada@example.com', '--purge']))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=xdg_env(tmp_path), capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("0") and "removed with everything they owned" in out.stdout

"""`circleback --help` and commands that need no database or calendar start without loading those layers.

Each case runs the real command in a fresh interpreter (a module imported by an earlier test would hide
the import) and lists what it imported; the heavy layers cost a second of start-up between them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_runner import xdg_env

ADA = Path(__file__).parent / "fixtures" / "plans" / "ada.yaml"

# The database layer, the calendar parser, the HTTP client, the scheduler and the web server.
HEAVY = ("sqlalchemy", "sqlmodel", "alembic", "icalendar", "recurring_ical_events", "httpx", "apscheduler")
SERVICE_ONLY = ("uvicorn", "starlette")

_PROBE = """
import json, sys
from daemon.cli import main
try:
    status = main(sys.argv[1:])
except SystemExit as exc:
    status = exc.code
sys.stdout.flush()
print("\\n" + json.dumps({"status": status, "modules": sorted(sys.modules)}))
"""


def _imported(home: Path, *args: str) -> tuple[int, set[str]]:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        env=xdg_env(home),
        cwd=home,
        capture_output=True,
        text=True,
        timeout=60,
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result["status"], {name.partition(".")[0] for name in result["modules"]}


@pytest.mark.parametrize(
    "args",
    [("--help",), ("sync", "--help"), ("plan", "check"), ("config",), ("feed", "url")],
    ids=["help", "sync-help", "plan-check", "config", "feed-url"],
)
def test_light_commands_do_not_import_heavy_layers(tmp_path: Path, args: tuple[str, ...]) -> None:
    shutil.copy(ADA, tmp_path / "plan.yaml")
    status, modules = _imported(tmp_path, *args, "--plan", str(tmp_path / "plan.yaml"))
    assert status == 0
    loaded = sorted(set(HEAVY + SERVICE_ONLY) & modules)
    assert loaded == [], f"`circleback {' '.join(args)}` imported {loaded}"


def test_the_probe_sees_heavy_imports_where_they_are_needed(tmp_path: Path) -> None:
    """A command that opens the store does load the database layer: the probe above can see it."""
    shutil.copy(ADA, tmp_path / "plan.yaml")
    status, modules = _imported(tmp_path, "log", "list", "--plan", str(tmp_path / "plan.yaml"))
    assert status == 0
    assert {"sqlalchemy", "sqlmodel"} <= modules

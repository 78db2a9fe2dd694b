"""A relative calendar file in the config is found where the plan is: beside the config file, whatever the
working directory (a service started by systemd or launchd runs from `/`). From the command line or the
environment it is relative to the working directory, as any command-line path is."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cli_runner import home_with_plan, run_in_process

from daemon.config import load_settings

FIXTURES = Path(__file__).parent / "fixtures"


def _config_dir(tmp_path: Path) -> Path:
    conf = tmp_path / "conf"
    (conf / "cals").mkdir(parents=True)
    shutil.copy(FIXTURES / "ics" / "google.ics", conf / "cals" / "work.ics")
    shutil.copy(FIXTURES / "ics" / "apple.ics", conf / "home.ics")
    return conf


def test_relative_sources_and_locations_resolve_beside_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = _config_dir(tmp_path)
    config = conf / "circleback.toml"
    config.write_text(
        '[ics]\nsources = ["cals/work.ics", { name = "Web", location = "https://example.com/a.ics" }]\n'
        '[calendars.home]\ntype = "ics"\nlocation = "home.ics"\n',
        encoding="utf-8",
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings = load_settings(config, environ={})
    locations = {c.name: c.options["location"] for c in settings.calendars if "location" in c.options}
    assert locations["work.ics"] == str(conf / "cals" / "work.ics")
    assert locations["Web"] == "https://example.com/a.ics", "an address is left as written"
    assert locations["home"] == str(conf / "home.ics")


def test_a_relative_source_on_the_command_line_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = _config_dir(tmp_path)
    monkeypatch.chdir(conf / "cals")
    settings = load_settings(None, overrides={"sources": ("work.ics",)}, environ={})
    found = [c.options["location"] for c in settings.calendars if c.name == "work.ics"]
    assert [Path(p).resolve() for p in found] == [(conf / "cals" / "work.ics").resolve()]


def test_sync_from_another_directory_reads_the_calendar_beside_the_config(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    home = home_with_plan(tmp_path / "home", FIXTURES / "plans" / "ada.yaml")
    conf = home / "config" / "circleback"
    shutil.copy(FIXTURES / "ics" / "google.ics", conf / "work.ics")
    (conf / "config.toml").write_text('[ics]\nsources = ["work.ics"]\n', encoding="utf-8")
    # The command runs in `home`, not where the config is.
    synced = run_in_process(home, "sync", "--now", "2026-11-20T09:00:00+00:00")
    assert synced.returncode == 0, synced.stderr
    assert "no such file" not in synced.stderr
    status = run_in_process(home, "status", "--json", "--now", "2026-11-20T09:00:00+00:00")
    assert status.returncode == 0, status.stderr
    calendars = {c["name"]: c for c in json.loads(status.stdout)["calendars"]}
    assert calendars["work.ics"]["last_error"] in (None, ""), calendars

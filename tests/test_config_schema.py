"""One schema drives the file, the environment, the flags, the starter config and the docs; calendars are
configured by name and type, each type with the options its back end declares.

Real files, the real command in this process, real back ends built through the registry.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import tomllib
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from builders import london_plan
from cli_runner import Cli, in_process, private_home

from connectors import registry
from connectors.ics_feed import FeedFile
from connectors.ics_source import IcsSource
from connectors.memory import MemoryCalendar
from daemon.app import build_calendars
from daemon.cli import build_parser
from daemon.config import (
    CONFIG_OPTION,
    SCHEMA,
    ConfigError,
    Settings,
    calendar_types_table,
    load_settings,
    settings_table,
    starter_config,
)
from schedules.events import Interval

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures"
ADA = FIXTURES / "plans" / "ada.yaml"
GOOGLE_ICS = FIXTURES / "ics" / "google.ics"
TEMPLATE = ROOT / "daemon" / "templates" / "config.toml"
DOCS = ROOT / "docs" / "configuration.md"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    shutil.copy(ADA, private_home(tmp_path) / "plan.yaml")
    return tmp_path


@pytest.fixture
def cli(home: Path) -> Cli:
    return in_process(home)


def write(home: Path, text: str, name: str = "c.toml") -> Path:
    path = home / name
    path.write_text(text, encoding="utf-8")
    return path


def problems(config: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(config, environ={})
    return caught.value.problems


# -- one declaration, everything derived from it ------------------------------------------------------


def test_every_setting_is_declared_once_and_is_a_field_of_settings() -> None:
    declared = [option.name for option in (CONFIG_OPTION, *SCHEMA)]
    assert len(declared) == len(set(declared))
    assert len({o.key for o in SCHEMA}) == len(SCHEMA)
    assert {f.name for f in fields(Settings)} == {*declared, "calendars", "origin"}
    for option in SCHEMA:
        assert option.help and option.key, option.name


def test_the_shipped_starter_config_is_the_one_the_schema_makes() -> None:
    assert TEMPLATE.read_text(encoding="utf-8") == starter_config(), (
        "regenerate it: python -c 'from daemon.config import starter_config as s; print(s(), end=\"\")' "
        "> daemon/templates/config.toml"
    )


def _uncommented_starter(leave_out: set[str]) -> str:
    """The starter config with every setting line uncommented, but those of the keys in `leave_out`."""
    settings_part = starter_config().split("# More calendars")[0]
    starters = {option.path[-1] for option in SCHEMA if option.starter is not None}
    lines = []
    for line in settings_part.splitlines():
        setting = re.match(r"^(?:# )?([a-z_]+) = ", line)
        if setting is None:
            lines.append(line)
        elif setting.group(1) in starters and line.startswith("# "):
            continue  # an example of a setting the starter sets
        elif setting.group(1) not in leave_out:
            lines.append(line.removeprefix("# "))
    return "\n".join(lines) + "\n"


def test_the_starter_config_lists_exactly_the_schemas_keys_with_their_real_defaults(home: Path) -> None:
    data = tomllib.loads(_uncommented_starter(set()))
    found = {key for key, value in data.items() if not isinstance(value, dict)}
    found |= {f"{table}.{key}" for table, value in data.items() if isinstance(value, dict) for key in value}
    assert found == {option.key for option in SCHEMA}
    # Uncommented, every shown default loads as the value the setting has when nothing is written (the
    # machine-dependent directories are shown as examples, so they are left out).
    examples = {option.path[-1] for option in SCHEMA if option.shown_default is not None}
    from_template = load_settings(write(home, _uncommented_starter(examples), "t.toml"), environ={})
    nothing = load_settings(write(home, "", "empty.toml"), environ={})
    for option in SCHEMA:
        if option.shown_default is None:
            assert getattr(from_template, option.name) == getattr(nothing, option.name), option.key
            assert from_template.origin[option.name].startswith("config file"), option.key


def test_the_docs_tables_are_the_ones_the_schema_and_the_registry_make() -> None:
    docs = DOCS.read_text(encoding="utf-8")
    assert settings_table() in docs, "regenerate the settings table in docs/configuration.md"
    assert calendar_types_table() in docs, "regenerate the calendar types table in docs/configuration.md"
    for option in (CONFIG_OPTION, *SCHEMA):
        if option.env:
            assert f"`{option.env}`" in settings_table()
        for flag in option.flags:
            assert f"`{flag}`" in settings_table()


def test_every_environment_variable_in_the_schema_is_read(home: Path) -> None:
    samples = {"port": "9000", "bool": "no", "path": "/x/y", "str": "text"}
    for option in SCHEMA:
        if option.env is None:
            continue
        given = option.kind in {"span", "choice"} and isinstance(option.default, str)
        sample = str(option.default) if given else samples[option.kind]
        settings = load_settings(write(home, ""), environ={option.env: sample})
        assert settings.origin[option.name] == f"environment ({option.env})", option.env


def test_the_global_flags_come_from_the_schema(cli: Cli, home: Path) -> None:
    parser = build_parser()
    flags = {
        flag
        for action in parser._actions
        if isinstance(action, argparse.Action)
        for flag in action.option_strings
    }
    for option in (CONFIG_OPTION, *SCHEMA):
        assert set(option.flags) <= flags, option.name
    status, out, err = cli("config", "--db", f"sqlite:///{home / 'x.db'}", "--busy", str(GOOGLE_ICS))
    assert (status, err) == (0, "")
    assert f'database_url = "sqlite:///{home / "x.db"}"' in out
    db_line = next(line for line in out.splitlines() if line.startswith("database_url"))
    assert db_line.endswith("# command line")
    assert '{ name = "google.ics"' in out
    # A flag after the subcommand counts as much as one before it.
    status, out, _err = cli("--plan", str(home / "other.yaml"), "config")
    assert status == 0 and f'plan = "{home / "other.yaml"}"' in out


def test_a_bad_flag_value_names_the_flag(cli: Cli, home: Path) -> None:
    status, _out, err = cli("config", "--source", "")
    assert status == 2
    assert err.startswith("--source[1]: an empty location")


# -- calendars by name and type ---------------------------------------------------------------------------

WINDOW = Interval(datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 3, 1, tzinfo=UTC))


def test_an_ics_calendar_table_is_read_through_the_registry(home: Path) -> None:
    config = write(
        home,
        f'[ics]\ntimeout = "45s"\nsources = ["{GOOGLE_ICS}"]\n'
        f'[calendars.Work]\ntype = "ics"\nlocation = "{GOOGLE_ICS}"\n'
        f'[calendars.slow]\ntype = "ics"\nlocation = "{FIXTURES / "ics" / "apple.ics"}"\ntimeout = "2m"\n',
    )
    settings = load_settings(config, environ={})
    assert [(c.name, c.type) for c in settings.calendars] == [
        ("google.ics", "ics"),
        ("Work", "ics"),
        ("slow", "ics"),
        ("feed", "ics_feed"),
    ]
    by_name = {c.name: c for c in settings.calendars}
    assert by_name["Work"].options["timeout"].total_seconds() == 45, "[ics] timeout is every ics default"
    assert by_name["slow"].options["timeout"].total_seconds() == 120
    calendars = build_calendars(settings, london_plan())
    assert [r.name for r in calendars.readers] == ["google.ics", "Work", "slow"]
    assert all(isinstance(r, IcsSource) for r in calendars.readers)
    (work_reader,) = [r for r in calendars.readers if r.name == "Work"]
    assert isinstance(work_reader, IcsSource) and work_reader.fetcher.timeout == 45
    assert work_reader.read(WINDOW).observations, "the named calendar reads the real file"
    (feed,) = calendars.writers
    assert isinstance(feed, FeedFile) and feed.name == "feed" and feed.path == settings.feed_path


def test_an_ics_feed_calendar_writes_a_second_feed_file(cli: Cli, home: Path) -> None:
    config = write(
        home,
        'plan = "plan.yaml"\n[calendars.team]\ntype = "ics_feed"\npath = "team.ics"\ntitle = "Team view"\n',
    )
    status, out, err = cli("sync", "--config", str(config), "--now", "2026-11-23T09:30:00+00:00")
    assert status == 0, (out, err)
    team = home / "state" / "circleback" / "team.ics"
    main_feed = home / "state" / "circleback" / "circleback.ics"
    assert team.exists() and main_feed.exists()
    assert "X-WR-CALNAME:Team view" in team.read_text(encoding="utf-8")
    assert "X-WR-CALNAME:circleback" in main_feed.read_text(encoding="utf-8")
    status, out, _err = cli("config", "--config", str(config))
    assert status == 0
    assert 'calendars.team.type = "ics_feed"' in out
    assert f'calendars.team.path = "{team}"' in out


def test_a_memory_calendar_is_both_read_and_written(home: Path) -> None:
    config = write(home, '[calendars.scratch-config-test]\ntype = "memory"\n')
    calendars = build_calendars(load_settings(config, environ={}), london_plan())
    (reader,) = calendars.readers
    assert isinstance(reader, MemoryCalendar) and reader in calendars.writers


def test_calendar_problems_name_file_line_and_key_all_at_once(home: Path) -> None:
    config = write(
        home,
        "[calendars.a]\n"  # 1
        'type = "gogle"\n'  # 2
        "[calendars.b]\n"  # 3
        'type = "ics"\n'  # 4
        'locaton = "x.ics"\n'  # 5
        "[calendars.c]\n"  # 6
        'location = "x.ics"\n'  # 7
        "[calendars.d]\n"  # 8
        'type = "ics"\n'  # 9
        'location = "x.ics"\n'  # 10
        'timeout = "1h"\n'  # 11
        "[calendars.feed]\n"  # 12
        'type = "ics_feed"\n'  # 13
        'path = "x.ics"\n'  # 14
        "[http]\n"  # 15
        "port = 99999\n",  # 16
    )
    assert problems(config) == [
        f"{config}:2: calendars.a.type: unknown calendar type 'gogle' (known: google, ics, ics_feed, memory)",
        f"{config}:3: calendars.b: location is required",
        f"{config}:5: calendars.b.locaton: unknown option for type 'ics' (did you mean 'location'?)",
        f"{config}:6: calendars.c: needs a type (one of google, ics, ics_feed, memory)",
        f"{config}:11: calendars.d.timeout: '1h' is too long: at most 10m",
        f"{config}:12: calendars.feed: the name is the [feed] file's; names must differ",
        f"{config}:16: http.port: 99999 is not a valid port (0-65535)",
    ]


def test_calendars_must_be_tables(home: Path) -> None:
    assert problems(write(home, "calendars = 3\n")) == [
        f"{home / 'c.toml'}:1: calendars: must be a table ([calendars.NAME])"
    ]
    assert problems(write(home, "[calendars]\nwork = 3\n")) == [
        f"{home / 'c.toml'}:2: calendars.work: must be a table ([calendars.work] with a type)"
    ]


def test_names_of_sources_and_calendar_tables_never_clash(home: Path) -> None:
    chosen = write(
        home,
        f'[ics]\nsources = [{{ name = "work", location = "{GOOGLE_ICS}" }}]\n'
        f'[calendars.Work]\ntype = "ics"\nlocation = "/elsewhere/w.ics"\n',
    )
    assert problems(chosen) == [
        f"{chosen}:2: ics.sources: entry 1 is named 'work' like [calendars.Work]; names must differ"
    ]
    # A default name steps aside, as it does for a chosen name among the sources.
    stepping = write(
        home,
        f'[ics]\nsources = ["{GOOGLE_ICS}"]\n[calendars."google.ics"]\ntype = "ics"\nlocation = "/x/g.ics"\n',
    )
    names = [c.name for c in load_settings(stepping, environ={}).calendars]
    assert names == ["ics/google.ics", "google.ics", "feed"]


# -- secrets ----------------------------------------------------------------------------------------------


@pytest.fixture
def vault_type(monkeypatch: pytest.MonkeyPatch) -> str:
    """A back end registered as a new connector would be, with a secret option."""

    def build(name: str, options: Any, context: registry.Context) -> MemoryCalendar:
        return MemoryCalendar(name)

    backend = registry.Backend(
        "vault-test",
        "a test calendar with a password",
        build,
        reads=True,
        writes=False,
        options=(
            registry.ConnectorOption("url", "str", "the server", required=True),
            registry.ConnectorOption("password", "str", "the password", required=True, secret=True),
        ),
    )
    monkeypatch.setitem(registry.BACKENDS, backend.type, backend)
    return backend.type


def test_secret_options_are_never_printed(cli: Cli, home: Path, vault_type: str) -> None:
    config = write(
        home,
        f'[calendars.safe]\ntype = "{vault_type}"\nurl = "https://dav.example.com/"\n'
        'password = "hunter2-xyz"\n'
        '[ics]\nsources = ["https://calendar.example.com/private-0a1b2c3d4e5f6a7b8c9d/basic.ics"]\n',
    )
    status, out, err = cli("config", "--config", str(config))
    assert (status, err) == (0, "")
    assert "hunter2-xyz" not in out and "0a1b2c3d4e5f" not in out
    password = next(line for line in out.splitlines() if line.startswith("calendars.safe.password"))
    assert password.split("#")[0].rstrip() == "calendars.safe.password = <secret>"
    assert password.endswith(f"# config file ({config})")
    assert 'calendars.safe.url = "https://dav.example.com/"' in out
    assert "secret: never shown" in calendar_types_table()
    settings = load_settings(config, environ={})
    assert next(c for c in settings.calendars if c.name == "safe").options["password"] == "hunter2-xyz"


def test_status_reports_the_health_of_named_calendars(cli: Cli, home: Path) -> None:
    config = write(home, f'plan = "plan.yaml"\n[calendars.Work]\ntype = "ics"\nlocation = "{GOOGLE_ICS}"\n')
    now = ("--now", "2026-11-23T09:30:00+00:00")
    status, out, err = cli("sync", "--config", str(config), *now)
    assert status == 0, (out, err)
    status, out, err = cli("status", "--config", str(config), "--json", *now)
    assert status == 0, (out, err)
    assert [(c["name"], c["health"]) for c in json.loads(out)["calendars"]] == [("Work", "ok")]
    broken = write(
        home, f'plan = "plan.yaml"\n[calendars.Work]\ntype = "ics"\nlocation = "{home / "nope.ics"}"\n'
    )
    status, _out, err = cli("sync", "--config", str(broken), *now)
    assert status == 1 and "Work" in err

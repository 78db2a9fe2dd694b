"""The config file, environment and flags: every problem at once, at FILE:LINE, and never a traceback.

Run through the real command (`circleback config`, `circleback agenda`) in this process, on real files.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from cli_runner import Cli, in_process, private_home

from daemon.config import load_settings

FIXTURES = Path(__file__).parent / "fixtures"
ADA = FIXTURES / "plans" / "ada.yaml"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    shutil.copy(ADA, private_home(tmp_path) / "plan.yaml")
    return tmp_path


@pytest.fixture
def cli(home: Path) -> Cli:
    return in_process(home)


def write(home: Path, text: str | bytes, name: str = "c.toml") -> Path:
    path = home / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def bad(cli: Cli, config: Path, command: str = "config") -> list[str]:
    """The lines a config makes `circleback COMMAND` print, checking it is bad input told plainly."""
    status, out, err = cli(command, "--config", str(config))
    assert status == 2, (out, err)
    assert "Traceback" not in err and out == ""
    return err.splitlines()


# -- every problem at once, each with its line ------------------------------------------------------


def test_all_problems_are_reported_at_once_with_file_line_and_key(cli: Cli, home: Path) -> None:
    config = write(
        home,
        'plan = "plan.yaml"\n'  # 1
        'horizon = "soon"\n'  # 2
        'log_level = "verbose"\n'  # 3
        "\n"  # 4
        "[http]\n"  # 5
        "prot = 8080\n"  # 6
        "port = 1.5\n"  # 7
        "\n"  # 8
        "[schedule]\n"  # 9
        'jitter = "9999999999w"\n',  # 10
    )
    assert bad(cli, config) == [
        f"{config}:2: horizon: cannot read 'soon' as a time span (use '15m', '1h', '13 weeks')",
        f"{config}:3: log_level: must be one of debug, info, warning, error, critical (got 'verbose')",
        f"{config}:6: http.prot: unknown key (did you mean 'port'?)",
        f"{config}:7: http.port: expected a whole number, got 1.5",
        f"{config}:10: schedule.jitter: '9999999999w' is too long: at most 1h",
    ]


def test_keys_are_found_in_dotted_keys_inline_tables_and_quoted_headers(cli: Cli, home: Path) -> None:
    config = write(
        home,
        "# a comment = not a key\n"  # 1
        'http.port = "x"\n'  # 2
        'feed = { refresh = "0s" }\n'  # 3
        '[ "schedule" ]\n'  # 4
        'sync_every = "1s"\n',  # 5
    )
    assert bad(cli, config) == [
        f"{config}:2: http.port: expected a whole number, got 'x'",
        f"{config}:3: feed.refresh: '0s' is too short: at least 1m",
        f"{config}:5: schedule.sync_every: '1s' is too short: at least 1m",
    ]


def test_unknown_keys_and_sections_are_all_listed(cli: Cli, home: Path) -> None:
    config = write(home, 'colour = "red"\n[feeds]\npath = "x"\n[http]\nenabled = true\nhots = "::1"\n')
    assert bad(cli, config) == [
        f"{config}:1: colour: unknown key",
        f"{config}:2: feeds: unknown key (did you mean 'feed'?)",
        f"{config}:6: http.hots: unknown key (did you mean 'host'?)",
    ]


def test_a_section_that_is_not_a_table(cli: Cli, home: Path) -> None:
    config = write(home, 'log_format = "text"\nhttp = 8080\n')
    assert bad(cli, config) == [f"{config}:2: http: must be a table ([http])"]


# -- spans: bounded, so nothing overflows later -------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "section", "value", "message"),
    [
        ("horizon", None, "9999999999w", "'9999999999w' is too long: at most 52w"),
        (
            "horizon",
            None,
            "99999999999999999999 weeks",
            "'99999999999999999999 weeks' is too long: at most 52w",
        ),
        ("horizon", None, "3d", "'3d' is too short: at least 1w"),
        ("jitter", "schedule", "2h", "'2h' is too long: at most 1h"),
        ("grace", "ics", "9999999999w", "'9999999999w' is too long: at most 30d"),
        ("timeout", "ics", "0s", "'0s' is too short: at least 1s"),
        ("refresh", "feed", "100w", "'100w' is too long: at most 1w"),
        ("sync_every", "schedule", "2d", "'2d' is too long: at most 1d"),
        ("grace", "ics", "9" * 5000 + "s", f"'{'9' * 39}…' is too long: at most 30d"),
    ],
)
def test_every_span_setting_is_bounded(
    cli: Cli, home: Path, key: str, section: str | None, value: str, message: str
) -> None:
    header = f"[{section}]\n" if section else ""
    config = write(home, f'{header}{key} = "{value}"\n')
    dotted = f"{section}.{key}" if section else key
    line = 2 if section else 1
    assert bad(cli, config) == [f"{config}:{line}: {dotted}: {message}"]


@pytest.mark.parametrize(
    ("toml", "name", "seconds"),
    [
        ('[ics]\ngrace = "90s"', "grace", 90),
        ('[ics]\ngrace = "1h30m"', "grace", 5400),
        ('[ics]\ngrace = "1h 30m"', "grace", 5400),
        ('[ics]\ngrace = "3 days"', "grace", 3 * 86400),
        ('[ics]\ngrace = "0s"', "grace", 0),
        ('horizon = "13 weeks"', "horizon", 13 * 7 * 86400),
        ('horizon = "quarter"', "horizon", 90 * 86400),
        ('horizon = "52w"', "horizon", 52 * 7 * 86400),
    ],
)
def test_spans_short_and_long_forms(home: Path, toml: str, name: str, seconds: int) -> None:
    settings = load_settings(write(home, toml + "\n"), environ={})
    assert getattr(settings, name).total_seconds() == seconds


# -- types -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"), [("1.5", "1.5"), ("true", "True"), ('"80a"', "'80a'"), ("70000", None)]
)
def test_port_must_be_a_whole_number_in_range(cli: Cli, home: Path, value: str, shown: str | None) -> None:
    config = write(home, f"[http]\nport = {value}\n")
    message = f"expected a whole number, got {shown}" if shown else "70000 is not a valid port (0-65535)"
    assert bad(cli, config) == [f"{config}:2: http.port: {message}"]


def test_port_from_the_environment_must_be_digits(cli: Cli, home: Path) -> None:
    status, _out, err = cli("config", env={"CIRCLEBACK_HTTP_PORT": "1.5"})
    assert status == 2
    assert err.splitlines() == ["CIRCLEBACK_HTTP_PORT: http.port: expected a whole number, got '1.5'"]


def test_paths_and_texts_must_be_strings(cli: Cli, home: Path) -> None:
    config = write(home, 'plan = 5\n[feed]\nname = ["a"]\n')
    assert bad(cli, config) == [
        f"{config}:1: plan: expected a path in quotes, got 5",
        f"{config}:3: feed.name: expected a string, got ['a']",
    ]


def test_log_level_is_checked_when_loading_not_when_the_service_starts(cli: Cli, home: Path) -> None:
    config = write(home, 'log_level = "verbose"\n')
    assert bad(cli, config, "run") == [
        f"{config}:1: log_level: must be one of debug, info, warning, error, critical (got 'verbose')"
    ]
    assert load_settings(write(home, 'log_level = "DEBUG"\n'), environ={}).log_level == "debug"


# -- files that are not TOML ---------------------------------------------------------------------------


def test_invalid_utf8_names_the_line(cli: Cli, home: Path) -> None:
    config = write(home, b'plan = "plan.yaml"\nhorizon = "\xff"\n')
    assert bad(cli, config) == [
        f"{config}:2: not UTF-8: byte 0xff at column 12 cannot be read (save the file as UTF-8)"
    ]


def test_toml_syntax_error_names_the_line(cli: Cli, home: Path) -> None:
    config = write(home, 'plan = "plan.yaml"\n\nhorizon = 14 weeks\n')
    (line,) = bad(cli, config)
    assert line.startswith(f"{config}:3: invalid TOML: ")


def test_deeply_nested_toml_is_bad_input(cli: Cli, home: Path) -> None:
    config = write(home, 'plan = "plan.yaml"\nx = ' + "[" * 5000 + "]" * 5000 + "\n")
    (line,) = bad(cli, config)
    assert line.startswith(f"{config}:2: invalid TOML: nested more than ")


def test_a_config_that_is_not_a_regular_file(cli: Cli, home: Path) -> None:
    (home / "dir.toml").mkdir()
    assert bad(cli, home / "dir.toml") == [f"{home / 'dir.toml'}: not a regular file"]


def test_a_huge_config_file_is_refused(cli: Cli, home: Path) -> None:
    config = write(home, "# " + "x" * (2 << 20) + "\n")
    assert bad(cli, config) == [f"{config}: too large for a config file (more than 1 MiB)"]


def test_a_good_config_still_loads(cli: Cli, home: Path) -> None:
    config = write(
        home,
        'plan = "plan.yaml"\nhorizon = "20 weeks"\nlog_level = "warning"\n'
        '[http]\nport = 9000\n[ics]\ngrace = "2h"\n[schedule]\njitter = "0s"\n',
    )
    status, out, err = cli("config", "--config", str(config))
    assert (status, err) == (0, "")
    assert 'horizon = "20 weeks"' in out and "http.port = 9000" in out
    settings = load_settings(config, environ={})
    assert (settings.http_port, settings.log_level, settings.horizon.days) == (9000, "warning", 140)


def test_relative_feed_files_are_inside_the_state_directory_as_documented(home: Path) -> None:
    # Regression: a relative `[feed] path` in the file used to land beside the config file, while the
    # starter config (and the default) put it inside state_dir.
    config = write(home, f'state_dir = "{home / "state"}"\n[feed]\npath = "x.ics"\ntoken_file = "t"\n')
    settings = load_settings(config, environ={})
    assert settings.feed_path == home / "state" / "x.ics"
    assert settings.feed_token_file == home / "state" / "t"
    from_env = load_settings(config, environ={"CIRCLEBACK_FEED_TOKEN_FILE": "other"})
    assert from_env.feed_token_file == home / "state" / "other"

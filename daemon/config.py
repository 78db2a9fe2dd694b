"""One settings schema for the TOML file, environment variables and command-line flags.

Every setting is declared once, in `SCHEMA` (Radicale's habit): its TOML key, type, default, help text,
environment variable, command-line flag and whether it is secret. The file's parsing and validation, the
environment overrides, the global flags (`add_flags`), the starter config (`starter_config`) and the
README's table (`settings_table`) all come from that declaration. Calendars are `[calendars.NAME]`
tables whose options each back end declares in `connectors.registry`.

Precedence is flags > environment > config file > defaults, and every value remembers where it came
from so `circleback config` can explain a surprising setting.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import platformdirs

from connectors import registry
from connectors.registry import ConnectorOption
from daemon.sources import Source, SourceError, parse_sources
from schedules.plan import first_too_deep

APP = "circleback"


class ConfigError(ValueError):
    """Config problems, one line each, every one found at once: `FILE:LINE: key: message` for the file,
    `CIRCLEBACK_X: key: message` for the environment, `--flag: message` for the command line."""

    def __init__(self, problems: str | Sequence[str]) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class CalendarConfig:
    """One calendar by name and type, with its options checked against what its back end declares."""

    name: str
    type: str
    options: Mapping[str, Any]
    where: str  # `FILE:LINE` of its table, or the setting it came from (`ics.sources`, `feed`)
    implied: bool = False  # made from `[ics] sources` or `[feed]`, not a `[calendars.NAME]` table
    origin: Mapping[str, str] = field(default_factory=dict)  # per option: where its value came from


@dataclass(frozen=True)
class Settings:
    """The settings in force; one field per `SCHEMA` option (a test keeps the two in step)."""

    config_file: Path | None
    plan: Path
    database_url: str
    state_dir: Path
    horizon: timedelta
    log_format: str
    log_level: str
    feed_path: Path
    feed_name: str
    feed_refresh: timedelta
    feed_token_file: Path
    feed_base_url: str
    http_enabled: bool
    http_host: str
    http_port: int
    http_access_log: bool
    sources: tuple[Source, ...]
    source_timeout: timedelta
    grace: timedelta
    sync_every: timedelta
    jitter: timedelta
    allow_private_sources: bool
    # Every calendar, in order: `[ics] sources`, then `[calendars.NAME]` tables, then the `[feed]` file.
    calendars: tuple[CalendarConfig, ...] = ()
    origin: Mapping[str, str] = field(default_factory=dict)


def default_config_path() -> Path:
    return Path(platformdirs.user_config_dir(APP)) / "config.toml"


def default_plan_path() -> Path:
    return Path(platformdirs.user_config_dir(APP)) / "plan.yaml"


def default_database_url() -> str:
    return f"sqlite:///{Path(platformdirs.user_data_dir(APP)) / 'circleback.db'}"


def default_state_dir() -> Path:
    return Path(platformdirs.user_state_dir(APP))


_SPAN_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SHORT_SPAN = re.compile(r"^(?:\d+[smhdw])+$")
_LONG_SPAN = re.compile(r"^(?:(\d+)\s*)?([a-z]+?)s?$")
_LONG_UNITS = {
    "sec": 1,
    "second": 1,
    "min": 60,
    "minute": 60,
    "hr": 3600,
    "hour": 3600,
    "day": 86400,
    "week": 604800,
    "fortnight": 2 * 604800,
    "month": 30 * 86400,
    "quarter": 90 * 86400,
    "year": 365 * 86400,
}
# Longer spans are read as this: far beyond every setting's bound (which then reports the text as
# written), and far inside what timedelta can hold (a few billion weeks overflowed it).
_SPAN_CEILING_S = 100 * 365 * 86400


def _count(digits: str | None) -> int:
    # int() refuses more than 4300 digits; any count that long is past every bound anyway.
    if not digits:
        return 1
    return int(digits) if len(digits) <= 15 else 10**15


def _span_seconds(text: str) -> int | None:
    raw = text.strip().lower()
    compact = raw.replace(" ", "")
    if _SHORT_SPAN.match(compact):
        return sum(_count(n) * _SPAN_UNITS[u] for n, u in re.findall(r"(\d+)([smhdw])", compact))
    match = _LONG_SPAN.match(raw)
    if match is None or match.group(2) not in _LONG_UNITS:
        return None
    return _count(match.group(1)) * _LONG_UNITS[match.group(2)]


def format_span(seconds: int) -> str:
    """The shortest exact short form: 604800 is '1w', 5400 is '90m'."""
    for unit, size in sorted(_SPAN_UNITS.items(), key=lambda item: -item[1]):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def parse_span(text: str, where: str) -> timedelta:
    """Short spans like '90s', '15m', '1h30m', '2d'; longer ones like '13 weeks', '3 days' or 'quarter'."""
    seconds = _span_seconds(str(text))
    if seconds is None:
        raise ConfigError(f"{where}: cannot read {text!r} as a time span (use '15m', '1h', '13 weeks')")
    return timedelta(seconds=min(seconds, _SPAN_CEILING_S + 1))


# -- the schema ------------------------------------------------------------------------------------------

Kind = Literal["path", "str", "span", "bool", "port", "choice", "sources"]
_KIND_NAMES = {
    "path": "path",
    "str": "text",
    "span": "time span",
    "bool": "true/false",
    "port": "port",
    "choice": "one of",
    "sources": "list of calendars",
    "location": "file or address",
}


@dataclass(frozen=True)
class Option:
    """One setting. `default` is written in the config's own notation ("14 weeks", "circleback.ics"), or is
    a function for defaults that depend on the machine (XDG directories), shown as `shown_default`."""

    name: str  # the Settings field
    key: str  # the dotted TOML key; "" for what only the command line and environment set (--config)
    kind: Kind
    default: str | int | bool | tuple[str, ...] | Callable[[], Any]
    help: str
    env: str | None = None
    flags: tuple[str, ...] = ()
    metavar: str | None = None
    flag_help: str | None = None  # when --help says it differently (what a flag does to the file's value)
    secret: bool = False  # never printed by `circleback config`
    bounds: tuple[int, int] | None = None  # (shortest, longest) in seconds, for spans
    choices: tuple[str, ...] = ()
    fold_case: bool = False  # a choice given in any case ("DEBUG")
    in_state_dir: bool = False  # a relative path resolves inside state_dir (else: beside the config file)
    shown_default: str | None = None
    starter: str | None = None  # the TOML value the starter config sets, not commented out
    example: str | None = None  # a TOML value the starter config shows, commented out, as an example

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(self.key.split(".")) if self.key else ()


_SPAN_HELP = "a time span: '90s', '15m', '1h30m', '2d', '13 weeks'"

CONFIG_OPTION = Option(
    "config_file",
    "",
    "path",
    lambda: default_config_path(),
    "the TOML config file",
    env="CIRCLEBACK_CONFIG",
    flags=("--config",),
    metavar="FILE",
    flag_help="TOML config file",
    shown_default="~/.config/circleback/config.toml",
)

SCHEMA: tuple[Option, ...] = (
    Option(
        "plan",
        "plan",
        "path",
        lambda: default_plan_path(),
        "the focus plan (relative: beside this file)",
        env="CIRCLEBACK_PLAN",
        flags=("--plan",),
        flag_help="focus plan YAML file",
        shown_default="~/.config/circleback/plan.yaml",
        starter='"plan.yaml"',
    ),
    Option(
        "database_url",
        "database_url",
        "str",
        lambda: default_database_url(),
        "where the log and the placed events are kept: sqlite:///FILE or postgresql+psycopg://...",
        env="CIRCLEBACK_DATABASE_URL",
        flags=("--db",),
        metavar="URL",
        flag_help="database URL (default: SQLite, XDG)",
        shown_default="sqlite:////home/you/.local/share/circleback/circleback.db",
    ),
    Option(
        "state_dir",
        "state_dir",
        "path",
        lambda: default_state_dir(),
        "source cache, feed file, feed token",
        env="CIRCLEBACK_STATE_DIR",
        shown_default="/home/you/.local/state/circleback",
    ),
    Option(
        "horizon",
        "horizon",
        "span",
        "14 weeks",
        "how far ahead to place and publish; keep it over a quarter",
        env="CIRCLEBACK_HORIZON",
        bounds=(7 * 86400, 52 * 604800),
    ),
    Option(
        "log_format",
        "log_format",
        "choice",
        "auto",
        "auto (json under the systemd journal, text otherwise), text or json",
        env="CIRCLEBACK_LOG_FORMAT",
        choices=("auto", "text", "json"),
    ),
    Option(
        "log_level",
        "log_level",
        "choice",
        "info",
        "the least important log lines shown",
        env="CIRCLEBACK_LOG_LEVEL",
        choices=("debug", "info", "warning", "error", "critical"),
        fold_case=True,
    ),
    Option(
        "feed_path",
        "feed.path",
        "path",
        "circleback.ics",
        "the feed file written on every cycle (relative: inside state_dir)",
        env="CIRCLEBACK_FEED_PATH",
        in_state_dir=True,
    ),
    Option(
        "feed_name",
        "feed.name",
        "str",
        "circleback",
        "the calendar's name in calendar apps",
        env="CIRCLEBACK_FEED_NAME",
    ),
    Option(
        "feed_refresh",
        "feed.refresh",
        "span",
        "1h",
        "how often subscribers should refresh",
        env="CIRCLEBACK_FEED_REFRESH",
        bounds=(60, 604800),
    ),
    Option(
        "feed_token_file",
        "feed.token_file",
        "path",
        "feed-token",
        "the secret part of the feed address, mode 0600 (relative: inside state_dir)",
        env="CIRCLEBACK_FEED_TOKEN_FILE",
        in_state_dir=True,
    ),
    Option(
        "feed_base_url",
        "feed.base_url",
        "str",
        "",
        "what `circleback feed url` prints, e.g. https://cal.example.com (empty: http://host:port)",
        env="CIRCLEBACK_FEED_BASE_URL",
    ),
    Option(
        "http_enabled",
        "http.enabled",
        "bool",
        True,
        "serve the feed over HTTP while `circleback run` runs",
        env="CIRCLEBACK_HTTP_ENABLED",
    ),
    Option(
        "http_host",
        "http.host",
        "str",
        "127.0.0.1",
        "keep it on loopback unless a reverse proxy sits in front",
        env="CIRCLEBACK_HTTP_HOST",
    ),
    Option("http_port", "http.port", "port", 8765, "the feed's HTTP port", env="CIRCLEBACK_HTTP_PORT"),
    Option(
        "http_access_log",
        "http.access_log",
        "bool",
        # Calendar apps poll the feed all day; a line per poll is noise, and costs half the 304 rate.
        False,
        "a log line per feed request (calendar apps poll all day)",
        env="CIRCLEBACK_HTTP_ACCESS_LOG",
    ),
    Option(
        "sources",
        "ics.sources",
        "sources",
        (),
        "calendars to read busy time and past meetings from: .ics files or secret https:// / webcal:// "
        'addresses (a relative file: beside this file), each a string or { name = "Work", location = "..." }',
        flags=("--source", "--busy"),
        metavar="FILE_OR_URL",
        flag_help="a calendar to read busy time and meetings from (.ics file, http(s):// or webcal://); "
        "repeatable; replaces [ics] sources from the config",
        starter="[]",
        example='["~/calendars/team.ics", '
        '{ name = "Work", location = "https://calendar.google.com/calendar/ical/…/basic.ics" }]',
    ),
    Option(
        "source_timeout",
        "ics.timeout",
        "span",
        "20s",
        "how long to wait for a calendar's address (every ics calendar's default)",
        env="CIRCLEBACK_ICS_TIMEOUT",
        bounds=(1, 600),
    ),
    Option(
        "grace",
        "ics.grace",
        "span",
        "24h",
        "how long after a touchpoint before it counts as missed",
        env="CIRCLEBACK_ICS_GRACE",
        bounds=(0, 30 * 86400),
    ),
    Option(
        "sync_every",
        "schedule.sync_every",
        "span",
        "15m",
        "how often `circleback run` runs a cycle",
        env="CIRCLEBACK_SCHEDULE_SYNC_EVERY",
        bounds=(60, 86400),
    ),
    Option(
        "jitter",
        "schedule.jitter",
        "span",
        "1m",
        "up to this much random delay on each cycle, so many installs do not poll a server at once",
        env="CIRCLEBACK_SCHEDULE_JITTER",
        bounds=(0, 3600),
    ),
    Option(
        "allow_private_sources",
        "organisation.allow_private_sources",
        "bool",
        False,
        "organisation mode: let people's own calendar addresses reach loopback, private, link-local and "
        "other non-public addresses (refused by default: people do not trust each other)",
        env="CIRCLEBACK_ORGANISATION_ALLOW_PRIVATE_SOURCES",
    ),
)
OPTIONS: dict[str, Option] = {option.name: option for option in SCHEMA}
_BY_KEY: dict[str, Option] = {option.key: option for option in SCHEMA}
_SECTIONS = {option.path[0] for option in SCHEMA if len(option.path) == 2}
CALENDARS = "calendars"
# The `[feed]` file is the calendar of this name.
FEED_CALENDAR = "feed"
GOOGLE = "google"  # the `[google]` table: one Google calendar, named `google`


def toml_key(name: str) -> str:
    """The dotted TOML key of a setting: `feed_path` is `feed.path`."""
    return OPTIONS[name].key if name in OPTIONS else name


# -- the command line ------------------------------------------------------------------------------------


def add_flags(group: argparse._ArgumentGroup | argparse.ArgumentParser, *, suppress: bool) -> None:
    """The global flags of every option that has one; `suppress` leaves values a subcommand does not see
    alone (so a flag given before the subcommand is not reset by it)."""
    for option in (CONFIG_OPTION, *SCHEMA):
        if not option.flags:
            continue
        if option.kind == "sources":
            group.add_argument(
                *option.flags,
                dest=option.name,
                action="append",
                default=argparse.SUPPRESS if suppress else [],
                metavar=option.metavar,
                help=option.flag_help or option.help,
            )
        else:
            group.add_argument(
                *option.flags,
                dest=option.name,
                default=argparse.SUPPRESS if suppress else None,
                metavar=option.metavar,
                help=option.flag_help or option.help,
            )


def flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The values the command line gave (None or empty where a flag was not given), by setting name."""
    values: dict[str, Any] = {}
    for option in (CONFIG_OPTION, *SCHEMA):
        if option.flags:
            value = getattr(args, option.name, None)
            values[option.name] = tuple(value or ()) if option.kind == "sources" else value
    return values


# -- checking values -------------------------------------------------------------------------------------


def _lookup(data: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = data
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _unknown(
    path: tuple[str, ...], known: set[str], at: _Lines, where: str, what: str = "key"
) -> tuple[int, str]:
    guess = difflib.get_close_matches(path[-1], sorted(known), n=1, cutoff=0.6)
    hint = f" (did you mean '{guess[0]}'?)" if guess else ""
    line = at.line(path)
    return line, f"{where}:{line}: {'.'.join(path)}: unknown {what}{hint}"


def _unknown_keys(data: Mapping[str, Any], at: _Lines, where: str) -> list[tuple[int, str]]:
    known_top = {o.path[0] for o in SCHEMA if len(o.path) == 1} | _SECTIONS | {CALENDARS, GOOGLE}
    problems: list[tuple[int, str]] = []
    for key, value in data.items():
        if key not in known_top:
            problems.append(_unknown((key,), known_top, at, where))
        elif key in _SECTIONS | {CALENDARS}:
            if not isinstance(value, Mapping):
                line = at.line((key,))
                shown = f"{key}.NAME" if key == CALENDARS else key
                problems.append((line, f"{where}:{line}: {key}: must be a table ([{shown}])"))
                continue
            if key == CALENDARS:
                continue  # each calendar is checked against its own type's options
            known = {o.path[1] for o in SCHEMA if len(o.path) == 2 and o.path[0] == key}
            for sub in value:
                if sub not in known:
                    problems.append(_unknown((key, sub), known, at, where))
    return problems


def _beside(location: str, base: Path | None) -> str:
    """A relative file path resolved as the plan's is: beside the config file it is written in (from the
    command line or the environment, `base` is the working directory). Addresses are left as written."""
    if base is None or "://" in location or location.strip().startswith("~"):
        return location
    path = Path(location)
    return location if path.is_absolute() else str(base / path)


def _convert(kind: str, value: Any, where: str, base: Path | None, reserved: Sequence[str] = ()) -> Any:
    if kind == "path":
        if not isinstance(value, str | Path):
            raise ConfigError(f"{where}: expected a path in quotes, got {value!r}")
        path = Path(os.path.expanduser(str(value)))
        return path if path.is_absolute() or base is None else base / path
    if kind == "span":
        return parse_span(str(value), where)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        lowered = str(value).strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if kind == "port":
        # int() would take 1.5 and true for 1: only a TOML integer or a string of digits is a number.
        whole = isinstance(value, int) and not isinstance(value, bool)
        digits = isinstance(value, str) and value.strip().isascii() and value.strip().isdigit()
        if not (whole or digits):
            raise ConfigError(f"{where}: expected a whole number, got {value!r}")
        text = str(value).strip()
        # Checked as text first: int() refuses strings of more than 4300 digits.
        if len(text.lstrip("0")) > 5 or not 0 <= int(text) <= 65535:
            raise ConfigError(f"{where}: {_clip(text)} is not a valid port (0-65535)")
        return int(text)
    if kind == "sources":
        try:
            sources = parse_sources(value, where, reserved=reserved)
        except SourceError as exc:
            raise ConfigError(str(exc)) from None
        return tuple(dataclasses.replace(s, location=_beside(s.location, base)) for s in sources)
    if kind == "location":
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{where}: expected a file or an address in quotes, got {value!r}")
        return _beside(value, base)
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _in_bounds(bounds: tuple[int, int] | None, value: timedelta, raw: Any, where: str) -> None:
    if bounds is None:
        return
    shortest, longest = bounds
    seconds = value.total_seconds()
    if seconds > longest:
        raise ConfigError(f"{where}: {_clip(str(raw))!r} is too long: at most {format_span(longest)}")
    if seconds < shortest:
        raise ConfigError(f"{where}: {_clip(str(raw))!r} is too short: at least {format_span(shortest)}")


def _checked(option: Option, value: Any, raw: Any, where: str) -> Any:
    """The value once it passes the setting's own rule (bounds, choices); `raw` is what was written."""
    if option.kind == "span":
        _in_bounds(option.bounds, value, raw, where)
    if option.kind == "choice":
        given = value.strip().lower() if option.fold_case else value
        if given not in option.choices:
            raise ConfigError(f"{where}: must be one of {', '.join(option.choices)} (got {_clip(value)!r})")
        return given
    return value


def _value(option: Option, raw: Any, where: str, base: Path | None, reserved: Sequence[str] = ()) -> Any:
    kind = "str" if option.kind == "choice" else option.kind
    return _checked(option, _convert(kind, raw, where, base, reserved), raw, where)


def _default(option: Option) -> Any:
    if callable(option.default):
        return option.default()
    return _value(option, option.default, f"default of {option.key}", None)


# -- calendars -------------------------------------------------------------------------------------------


def _calendar_tables(
    data: Mapping[str, Any], at: _Lines, where: str, settings: Mapping[str, Any]
) -> tuple[list[CalendarConfig], list[tuple[int, str]]]:
    """`[calendars.NAME]` tables, each checked against the options its type declares."""
    tables = data.get(CALENDARS)
    if not isinstance(tables, Mapping):
        return [], []
    found: list[CalendarConfig] = []
    problems: list[tuple[int, str]] = []
    seen: dict[str, str] = {FEED_CALENDAR: FEED_CALENDAR}
    for name, table in tables.items():
        path = (CALENDARS, name)
        line = at.line(path)
        here = f"{where}:{line}: {CALENDARS}.{name}"
        if not isinstance(table, Mapping):
            problems.append((line, f"{here}: must be a table ([{CALENDARS}.{name}] with a type)"))
            continue
        if not name.strip() or not name.isprintable():
            problems.append((line, f"{here}: a calendar's name must be a line of text"))
            continue
        if name.casefold() in seen:
            other = seen[name.casefold()]
            taken = "the [feed] file's" if other == FEED_CALENDAR else f"[{CALENDARS}.{other}]'s"
            problems.append((line, f"{here}: the name is {taken}; names must differ"))
            continue
        seen[name.casefold()] = name
        calendar, trouble = _calendar(name, table, at, where, settings)
        problems.extend(trouble)
        if calendar is not None:
            found.append(calendar)
    return found, problems


def _calendar(
    name: str, table: Mapping[str, Any], at: _Lines, where: str, settings: Mapping[str, Any]
) -> tuple[CalendarConfig | None, list[tuple[int, str]]]:
    path = (CALENDARS, name)
    line = at.line(path)
    kind = table.get("type")
    if kind is None:
        known = ", ".join(sorted(registry.BACKENDS))
        return None, [(line, f"{where}:{line}: {CALENDARS}.{name}: needs a type (one of {known})")]
    type_line = at.line((*path, "type"))
    if not isinstance(kind, str) or kind not in registry.BACKENDS:
        known = ", ".join(sorted(registry.BACKENDS))
        message = f"unknown calendar type {kind!r} (known: {known})"
        return None, [(type_line, f"{where}:{type_line}: {CALENDARS}.{name}.type: {message}")]
    backend = registry.BACKENDS[kind]
    if backend.check is not None:
        return _checked_calendar(name, kind, {k: v for k, v in table.items() if k != "type"}, line, where)
    problems: list[tuple[int, str]] = []
    names = {option.name for option in backend.options}
    for key in table:
        if key != "type" and key not in names:
            problems.append(_unknown((*path, key), names | {"type"}, at, where, f"option for type {kind!r}"))
    options: dict[str, Any] = {}
    base = settings.get("state_dir", default_state_dir())
    origin = {"type": f"config file ({where})"}
    for option in backend.options:
        key_line = at.line((*path, option.name))
        here = f"{where}:{key_line}: {CALENDARS}.{name}.{option.name}"
        if option.name not in table:
            if option.required:
                problems.append((line, f"{where}:{line}: {CALENDARS}.{name}: {option.name} is required"))
            elif option.inherit is not None:
                options[option.name] = settings[_BY_KEY[option.inherit].name]
                origin[option.name] = f"from {option.inherit}"
            elif option.default is not None:
                options[option.name] = _connector_value(option, option.default, here, base, where)
                origin[option.name] = "default"
            continue
        try:
            options[option.name] = _connector_value(option, table[option.name], here, base, where)
            origin[option.name] = f"config file ({where})"
        except ConfigError as exc:
            problems.extend((key_line, problem) for problem in exc.problems)
    if problems:
        return None, problems
    return CalendarConfig(name, kind, options, f"{where}:{line}", origin=origin), []


def _checked_calendar(
    name: str, kind: str, table: Mapping[str, Any], line: int, where: str
) -> tuple[CalendarConfig | None, list[tuple[int, str]]]:
    """A calendar whose back end checks its own table (`registry.Backend.check`)."""
    check = registry.BACKENDS[kind].check
    assert check is not None
    try:
        settings = check(table, f"{where}:{line}: {name}")
    except ValueError as exc:
        return None, [(line, str(exc))]
    origin = {key: f"config file ({where})" for key in table}
    return CalendarConfig(name, kind, {"settings": settings}, f"{where}:{line}", origin=origin), []


def _google_table(
    data: Mapping[str, Any], at: _Lines, where: str
) -> tuple[list[CalendarConfig], list[tuple[int, str]]]:
    """The issue's `[google]` table: the Google calendar named `google`."""
    table = data.get(GOOGLE)
    if table is None:
        return [], []
    line = at.line((GOOGLE,))
    if not isinstance(table, Mapping):
        return [], [(line, f"{where}:{line}: {GOOGLE}: must be a table ([{GOOGLE}])")]
    calendar, problems = _checked_calendar(GOOGLE, GOOGLE, table, line, where)
    return ([calendar] if calendar is not None else []), problems


def _connector_value(option: ConnectorOption, raw: Any, where: str, state_dir: Path, config: str) -> Any:
    # A calendar's file is found as the plan is (beside the config file); its own files (a feed's path)
    # live in the state directory, as the option's help says.
    base = Path(config).parent if option.kind == "location" else state_dir
    value = _convert(option.kind, raw, where, base)
    if option.kind == "span":
        _in_bounds(option.bounds, value, raw, where)
    return value


def _implied_calendars(settings: Mapping[str, Any]) -> tuple[list[CalendarConfig], CalendarConfig]:
    """`[ics] sources` as ics calendars, and the `[feed]` file as the ics_feed calendar `feed`."""
    sources = [
        CalendarConfig(
            s.name,
            "ics",
            {"location": s.location, "timeout": settings["source_timeout"]},
            "ics.sources",
            implied=True,
        )
        for s in settings["sources"]
    ]
    feed = CalendarConfig(
        FEED_CALENDAR,
        "ics_feed",
        {"path": settings["feed_path"], "title": settings["feed_name"], "refresh": settings["feed_refresh"]},
        "feed",
        implied=True,
    )
    return sources, feed


# -- the file -------------------------------------------------------------------------------------------

_MAX_CONFIG_BYTES = 1 << 20
_MAX_NESTING = 50
_TOML_POSITION = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)\s*$")
_KEY_PART = re.compile(r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'""")
_HEADER_LINE = re.compile(r"^\s*\[\[?([^\[\]]+)\]\]?\s*(?:#.*)?$")
_KEY_LINE = re.compile(
    r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*="""
)


class _Lines:
    """Where each table and key of a TOML file is written. tomllib keeps no positions, so this is a small
    line scan: table headers, `key =` lines (dotted and quoted keys too), multi-line strings skipped. A key
    inside an inline table is found at the line of the key holding the table."""

    def __init__(self, text: str) -> None:
        self._first: dict[tuple[str, ...], int] = {}
        table: tuple[str, ...] = ()
        in_string = False
        for number, line in enumerate(text.splitlines(), start=1):
            quotes = line.count('"""') + line.count("'''")
            if in_string:
                in_string = quotes % 2 == 0
                continue
            if header := _HEADER_LINE.match(line):
                table = _key_parts(header.group(1))
                self._first.setdefault(table, number)
            elif key := _KEY_LINE.match(line):
                self._first.setdefault((*table, *_key_parts(key.group(1))), number)
            in_string = quotes % 2 == 1

    def line(self, path: tuple[str, ...]) -> int:
        for length in range(len(path), 0, -1):
            if path[:length] in self._first:
                return self._first[path[:length]]
        return 1


def _key_parts(text: str) -> tuple[str, ...]:
    return tuple(part.strip("\"'") for part in _KEY_PART.findall(text))


def _position(data: bytes | str, index: int) -> tuple[int, int]:
    newline = b"\n" if isinstance(data, bytes) else "\n"
    line = data.count(newline, 0, index) + 1  # type: ignore[arg-type]
    return line, index - (data.rfind(newline, 0, index) + 1) + 1  # type: ignore[arg-type]


def _read_toml(path: Path) -> tuple[dict[str, Any], str]:
    if not path.is_file():
        raise ConfigError(f"{path}: not a regular file")
    try:
        with path.open("rb") as handle:
            raw = handle.read(_MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    if len(raw) > _MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: too large for a config file (more than 1 MiB)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = _position(raw, exc.start)
        raise ConfigError(
            f"{path}:{line}: not UTF-8: byte 0x{raw[exc.start]:02x} at column {column} cannot be read "
            "(save the file as UTF-8)"
        ) from None
    deep = first_too_deep(text, _MAX_NESTING)
    if deep is not None:
        line, _column = _position(text, deep)
        raise ConfigError(f"{path}:{line}: invalid TOML: nested more than {_MAX_NESTING} levels deep")
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = _TOML_POSITION.search(message)
        at_line = int(found.group(1)) if found and found.group(1) else max(text.count("\n"), 1)
        detail = message[: found.start()] if found else message
        at_column = f" (column {found.group(2)})" if found and found.group(2) else ""
        raise ConfigError(f"{path}:{at_line}: invalid TOML: {detail}{at_column}") from None
    except RecursionError:
        raise ConfigError(f"{path}:1: invalid TOML: nested too deeply") from None


def load_settings(
    config_path: Path | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build the settings; `overrides` are command-line values by setting name (None or () means 'not
    given'; `config_file` there is the same as `config_path`).

    Raises ConfigError listing every problem found, file problems first in line order."""
    env = os.environ if environ is None else environ
    given = dict(overrides or {})
    flag_config = given.pop("config_file", None)
    config_path = config_path or (Path(flag_config) if flag_config else None)
    env_config = env.get(CONFIG_OPTION.env or "")
    explicit = config_path is not None or bool(env_config)
    path = config_path or (Path(env_config) if env_config else None) or default_config_path()
    data: dict[str, Any] = {}
    lines = _Lines("")
    problems: list[tuple[int, str]] = []  # (line, message); not from the file: after every file line
    if path.exists():
        data, text = _read_toml(path)
        lines = _Lines(text)
        problems.extend(_unknown_keys(data, lines, str(path)))
    elif explicit:
        raise ConfigError(f"{path}: config file not found")
    base = path.parent if path.exists() else None
    tables = data.get(CALENDARS)
    reserved = [str(name) for name in tables] if isinstance(tables, Mapping) else []

    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for option in SCHEMA:
        cli = given.get(option.name)
        line = 1 << 30
        relative_to: Path | None
        if cli is not None and cli != ():
            raw, where, came, relative_to = cli, option.flags[0], "command line", Path.cwd()
        elif option.env and env.get(option.env):
            raw, relative_to = env[option.env], Path.cwd()
            where, came = f"{option.env}: {option.key}", f"environment ({option.env})"
        elif (raw := _lookup(data, option.path)) is not None:
            line = lines.line(option.path)
            where, came, relative_to = f"{path}:{line}: {option.key}", f"config file ({path})", base
        else:
            continue
        if option.in_state_dir:
            relative_to = None  # joined to the state directory once that is known, as the help says
        try:
            values[option.name] = _value(option, raw, where, relative_to, reserved)
        except ConfigError as exc:
            problems.extend((line, problem) for problem in exc.problems)
            continue
        origin[option.name] = came

    resolved = _resolve(values, origin)
    calendars, trouble = _calendar_tables(data, lines, str(path), resolved)
    problems.extend(trouble)
    google, trouble = _google_table(data, lines, str(path))
    problems.extend(trouble)
    if google and any(c.name.casefold() == GOOGLE for c in calendars):
        line = lines.line((GOOGLE,))
        problems.append((line, f"{path}:{line}: {GOOGLE}: [{CALENDARS}.{GOOGLE}] takes that name already"))
    calendars = [*google, *calendars]
    if problems:
        raise ConfigError([message for _line, message in sorted(problems, key=lambda p: p[0])])
    for calendar in calendars:
        for key, came in calendar.origin.items():
            origin[f"{CALENDARS}.{calendar.name}.{key}"] = came
    sources, feed = _implied_calendars(resolved)
    return Settings(
        config_file=path if path.exists() else None,
        calendars=(*sources, *calendars, feed),
        origin=origin,
        **resolved,
    )


def _resolve(values: Mapping[str, Any], origin: dict[str, str]) -> dict[str, Any]:
    """Every setting's value: given, or its default; paths meant for the state directory put there."""
    resolved: dict[str, Any] = {}
    for option in SCHEMA:
        if option.name in values:
            resolved[option.name] = values[option.name]
        else:
            origin.setdefault(option.name, "default")
            resolved[option.name] = _default(option)
    state_dir: Path = resolved["state_dir"]
    for option in SCHEMA:
        value = resolved[option.name]
        if option.in_state_dir and not value.is_absolute():
            resolved[option.name] = state_dir / value
    return resolved


# -- what is derived for people: the starter config and the README's tables -------------------------------


def _toml_default(option: Option) -> str:
    if option.shown_default is not None:
        return json.dumps(option.shown_default)
    if isinstance(option.default, bool):
        return "true" if option.default else "false"
    if isinstance(option.default, int):
        return str(option.default)
    if isinstance(option.default, tuple):
        return "[" + ", ".join(json.dumps(item) for item in option.default) + "]"
    return json.dumps(option.default)


_STARTER_HEAD = """\
# circleback configuration. Every key is optional; the values shown are the defaults.
# Relative paths resolve against this file's directory (plan) or the state directory (feed files).
# Generated from daemon/config.py's SCHEMA (docs/configuration.md lists every setting).
"""
_STARTER_CALENDARS = """\
# More calendars, each by a name of your choice and a type (docs/configuration.md lists each type's options):
# [calendars.work]
# type = "ics"
# location = "https://calendar.example.com/work/basic.ics"
# timeout = "20s"
"""


def starter_config() -> str:
    """The starter `config.toml`: every key of the schema with its default, its help above it."""
    out = [_STARTER_HEAD]
    section = ""
    for option in SCHEMA:
        table = option.path[0] if len(option.path) == 2 else ""
        if table != section:
            out.append(f"\n[{table}]\n")
            section = table
        setting = f"{option.path[-1]} = {option.starter or _toml_default(option)}"
        out.append(f"\n# {option.help}\n")
        if option.example is not None:
            out.append(f"# {option.path[-1]} = {option.example}\n")
        out.append(f"{setting if option.starter else '# ' + setting}\n")
    out.append("\n" + _STARTER_CALENDARS)
    return "".join(out)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _kind_text(option: Option) -> str:
    if option.kind == "choice":
        return " \\| ".join(f"`{choice}`" for choice in option.choices)
    text = _KIND_NAMES[option.kind]
    if option.bounds is not None:
        text += f" ({format_span(option.bounds[0])} to {format_span(option.bounds[1])})"
    return text


def settings_table() -> str:
    """The README's table of every setting, generated from the schema."""
    rows = ["| Key | Type | Default | Environment | Flag | Meaning |", "|---|---|---|---|---|---|"]
    for option in (CONFIG_OPTION, *SCHEMA):
        key = f"`{option.key}`" if option.key else "(not in the file)"
        flags = ", ".join(f"`{flag}`" for flag in option.flags)
        env = f"`{option.env}`" if option.env else ""
        secret = " (secret: never shown)" if option.secret else ""
        rows.append(
            f"| {key} | {_kind_text(option)} | `{_cell(_toml_default(option))}` | {env} | {flags} | "
            f"{_cell(option.help)}{secret} |"
        )
    return "\n".join(rows) + "\n"


def calendar_types_table() -> str:
    """The README's table of every calendar type and its options, from the registry."""
    rows = ["| Type | Option | Type | Default | Meaning |", "|---|---|---|---|---|"]
    for backend in registry.BACKENDS.values():
        role = " and ".join(r for r, on in (("read", backend.reads), ("written", backend.writes)) if on)
        rows.append(f"| `{backend.type}` | | | | {_cell(backend.help)} (is {role}) |")
        for option in backend.options:
            if option.required:
                default = "required"
            elif option.inherit:
                default = f"`{option.inherit}`"
            else:
                default = f"`{json.dumps(option.default)}`" if option.default is not None else ""
            text = _KIND_NAMES[option.kind]
            if option.bounds is not None:
                text += f" ({format_span(option.bounds[0])} to {format_span(option.bounds[1])})"
            secret = " (secret: never shown)" if option.secret else ""
            rows.append(f"| | `{option.name}` | {text} | {default} | {_cell(option.help)}{secret} |")
    return "\n".join(rows) + "\n"

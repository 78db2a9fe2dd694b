"""One settings schema for the TOML file, environment variables and command-line flags.

Precedence is flags > environment > config file > defaults, and every value remembers where it came
from so `circleback config show` can explain a surprising setting.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import platformdirs

from daemon.sources import Source, SourceError, parse_sources

APP = "circleback"


class ConfigError(ValueError):
    """Config problems, one line each, every one found at once: `FILE:LINE: key: message` for the file,
    `CIRCLEBACK_X: key: message` for the environment, `--flag: message` for the command line."""

    def __init__(self, problems: str | Sequence[str]) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class Settings:
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
# (shortest, longest) in seconds for every span setting: bounds keep the service's arithmetic in range
# and catch a unit typed wrong ("15d" for "15m").
_SPAN_BOUNDS: dict[str, tuple[int, int]] = {
    "horizon": (7 * 86400, 52 * 604800),
    "feed_refresh": (60, 604800),
    "source_timeout": (1, 600),
    "grace": (0, 30 * 86400),
    "sync_every": (60, 86400),
    "jitter": (0, 3600),
}
_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


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


# key -> (TOML path, environment variable, kind)
_SCHEMA: dict[str, tuple[tuple[str, ...], str | None, str]] = {
    "plan": (("plan",), "CIRCLEBACK_PLAN", "path"),
    "database_url": (("database_url",), "CIRCLEBACK_DATABASE_URL", "str"),
    "state_dir": (("state_dir",), "CIRCLEBACK_STATE_DIR", "path"),
    "horizon": (("horizon",), None, "span"),
    "log_format": (("log_format",), "CIRCLEBACK_LOG_FORMAT", "str"),
    "log_level": (("log_level",), "CIRCLEBACK_LOG_LEVEL", "str"),
    "feed_path": (("feed", "path"), None, "path"),
    "feed_name": (("feed", "name"), None, "str"),
    "feed_refresh": (("feed", "refresh"), None, "span"),
    "feed_token_file": (("feed", "token_file"), "CIRCLEBACK_FEED_TOKEN_FILE", "path"),
    "feed_base_url": (("feed", "base_url"), "CIRCLEBACK_FEED_BASE_URL", "str"),
    "http_enabled": (("http", "enabled"), None, "bool"),
    "http_host": (("http", "host"), "CIRCLEBACK_HTTP_HOST", "str"),
    "http_port": (("http", "port"), "CIRCLEBACK_HTTP_PORT", "int"),
    "http_access_log": (("http", "access_log"), None, "bool"),
    "sources": (("ics", "sources"), None, "sources"),
    "source_timeout": (("ics", "timeout"), None, "span"),
    "grace": (("ics", "grace"), None, "span"),
    "sync_every": (("schedule", "sync_every"), None, "span"),
    "jitter": (("schedule", "jitter"), None, "span"),
}
_SECTIONS = {"feed", "http", "ics", "schedule"}
_LOG_FORMATS = ("auto", "text", "json")


def toml_key(name: str) -> str:
    """The dotted TOML key of a setting: `feed_path` is `feed.path`."""
    return ".".join(_SCHEMA[name][0]) if name in _SCHEMA else name


def _lookup(data: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = data
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _unknown_keys(data: Mapping[str, Any], at: _Lines, where: str) -> list[tuple[int, str]]:
    known_top = {p[0] for p, _, _ in _SCHEMA.values() if len(p) == 1} | _SECTIONS
    problems: list[tuple[int, str]] = []

    def unknown(path: tuple[str, ...], known: set[str]) -> None:
        guess = difflib.get_close_matches(path[-1], sorted(known), n=1, cutoff=0.6)
        hint = f" (did you mean '{guess[0]}'?)" if guess else ""
        line = at.line(path)
        problems.append((line, f"{where}:{line}: {'.'.join(path)}: unknown key{hint}"))

    for key, value in data.items():
        if key not in known_top:
            unknown((key,), known_top)
        elif key in _SECTIONS:
            if not isinstance(value, Mapping):
                line = at.line((key,))
                problems.append((line, f"{where}:{line}: {key}: must be a table ([{key}])"))
                continue
            known = {p[1] for p, _, _ in _SCHEMA.values() if len(p) == 2 and p[0] == key}
            for sub in value:
                if sub not in known:
                    unknown((key, sub), known)
    return problems


def _convert(kind: str, value: Any, where: str, base: Path | None) -> Any:
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
    if kind == "int":
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
            return parse_sources(value, "--source" if where == "--sources" else where)
        except SourceError as exc:
            raise ConfigError(str(exc)) from None
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _checked(key: str, value: Any, raw: Any, where: str) -> Any:
    """The value once it passes the setting's own rule (bounds, choices); `raw` is what was written."""
    if key in _SPAN_BOUNDS:
        shortest, longest = _SPAN_BOUNDS[key]
        seconds = value.total_seconds()
        if seconds > longest:
            raise ConfigError(f"{where}: {_clip(str(raw))!r} is too long: at most {format_span(longest)}")
        if seconds < shortest:
            raise ConfigError(f"{where}: {_clip(str(raw))!r} is too short: at least {format_span(shortest)}")
    if key == "log_level" and value.strip().lower() not in _LOG_LEVELS:
        choices = ", ".join(_LOG_LEVELS)
        raise ConfigError(f"{where}: must be one of {choices} (got {_clip(value)!r})")
    if key == "log_level":
        return value.strip().lower()
    if key == "log_format" and value not in _LOG_FORMATS:
        raise ConfigError(f"{where}: must be one of {', '.join(_LOG_FORMATS)} (got {_clip(value)!r})")
    return value


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


def _too_deep(text: str) -> int | None:
    """Where brackets open past _MAX_NESTING levels, counted naively (tomllib recurses per level); no real
    config comes near, so brackets inside strings do not matter."""
    depth = 0
    for index, char in enumerate(text):
        if char in "[{":
            depth += 1
            if depth > _MAX_NESTING:
                return index
        elif char in "]}":
            depth = max(depth - 1, 0)
    return None


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
    deep = _too_deep(text)
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
    """Build the settings; `overrides` are command-line values (None means 'not given').

    Raises ConfigError listing every problem found, file problems first in line order."""
    env = os.environ if environ is None else environ
    explicit = config_path is not None or bool(env.get("CIRCLEBACK_CONFIG"))
    path = config_path or (Path(env["CIRCLEBACK_CONFIG"]) if env.get("CIRCLEBACK_CONFIG") else None)
    path = path or default_config_path()
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

    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for key, (toml_path, env_name, kind) in _SCHEMA.items():
        cli = (overrides or {}).get(key)
        line = 1 << 30
        relative_to: Path | None
        if cli is not None and cli != ():
            raw, where, came, relative_to = cli, f"--{key.replace('_', '-')}", "command line", Path.cwd()
        elif env_name and env.get(env_name):
            raw, relative_to = env[env_name], Path.cwd()
            where, came = f"{env_name}: {'.'.join(toml_path)}", f"environment ({env_name})"
        elif (raw := _lookup(data, toml_path)) is not None:
            line = lines.line(toml_path)
            where, came, relative_to = f"{path}:{line}: {'.'.join(toml_path)}", f"config file ({path})", base
        else:
            continue
        try:
            values[key] = _checked(key, _convert(kind, raw, where, relative_to), raw, where)
        except ConfigError as exc:
            problems.extend((line, problem) for problem in exc.problems)
            continue
        origin[key] = came
    if problems:
        raise ConfigError([message for _line, message in sorted(problems, key=lambda p: p[0])])

    state_dir: Path = values.get("state_dir", default_state_dir())

    def pick(key: str, default: Any) -> Any:
        if key not in values:
            origin.setdefault(key, "default")
            return default
        return values[key]

    def in_state(value: Path) -> Path:
        return value if value.is_absolute() else state_dir / value

    return Settings(
        config_file=path if path.exists() else None,
        plan=pick("plan", default_plan_path()),
        database_url=pick("database_url", default_database_url()),
        state_dir=pick("state_dir", state_dir),
        horizon=pick("horizon", timedelta(weeks=14)),
        log_format=pick("log_format", "auto"),
        log_level=pick("log_level", "info"),
        feed_path=in_state(pick("feed_path", Path("circleback.ics"))),
        feed_name=pick("feed_name", "circleback"),
        feed_refresh=pick("feed_refresh", timedelta(hours=1)),
        feed_token_file=in_state(pick("feed_token_file", Path("feed-token"))),
        feed_base_url=pick("feed_base_url", ""),
        http_enabled=pick("http_enabled", True),
        http_host=pick("http_host", "127.0.0.1"),
        http_port=pick("http_port", 8765),
        # Calendar apps poll the feed all day; a line per poll is noise, and costs half the 304 rate.
        http_access_log=pick("http_access_log", False),
        sources=pick("sources", ()),
        source_timeout=pick("source_timeout", timedelta(seconds=20)),
        grace=pick("grace", timedelta(hours=24)),
        sync_every=pick("sync_every", timedelta(minutes=15)),
        jitter=pick("jitter", timedelta(minutes=1)),
        origin=origin,
    )

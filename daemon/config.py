"""One settings schema for the TOML file, environment variables and command-line flags.

Precedence is flags > environment > config file > defaults, and every value remembers where it came
from so `circleback config show` can explain a surprising setting.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import platformdirs

from daemon.sources import Source, SourceError, parse_sources
from schedules.cadence import CadenceError, parse_cadence

APP = "circleback"


class ConfigError(ValueError):
    """A config file or setting that cannot be used; the message names the file and the key."""


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


def parse_span(text: str, where: str) -> timedelta:
    """Short spans like '90s', '15m', '1h30m', '2d'; longer ones like '13 weeks' or '3 months'."""
    raw = str(text).strip().lower().replace(" ", "") if _SHORT_SPAN.match(str(text).strip().lower()) else ""
    if raw:
        seconds = sum(int(n) * _SPAN_UNITS[u] for n, u in re.findall(r"(\d+)([smhdw])", raw))
        return timedelta(seconds=seconds)
    try:
        cadence = parse_cadence(str(text))
    except CadenceError:
        raise ConfigError(
            f"{where}: cannot read {text!r} as a time span (use '15m', '1h', '13 weeks')"
        ) from None
    return timedelta(days=cadence.count * (7 if cadence.unit == "week" else 30))


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


def _check_unknown_keys(data: Mapping[str, Any], where: str) -> None:
    known_top = {p[0] for p, _, _ in _SCHEMA.values() if len(p) == 1} | _SECTIONS
    for key, value in data.items():
        if key not in known_top:
            raise ConfigError(f"{where}: unknown key '{key}'")
        if key in _SECTIONS:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: [{key}] must be a table")
            known = {p[1] for p, _, _ in _SCHEMA.values() if len(p) == 2 and p[0] == key}
            for sub in value:
                if sub not in known:
                    raise ConfigError(f"{where}: unknown key '{key}.{sub}'")


def _convert(kind: str, value: Any, where: str, base: Path | None) -> Any:
    if kind == "path":
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
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a whole number, got {value!r}") from None
        if not 0 <= number <= 65535:
            raise ConfigError(f"{where}: {number} is not a valid port")
        return number
    if kind == "sources":
        try:
            return parse_sources(value, "--source" if where == "--sources" else where)
        except SourceError as exc:
            raise ConfigError(str(exc)) from None
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def load_settings(
    config_path: Path | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build the settings; `overrides` are command-line values (None means 'not given')."""
    env = os.environ if environ is None else environ
    explicit = config_path is not None or bool(env.get("CIRCLEBACK_CONFIG"))
    path = config_path or (Path(env["CIRCLEBACK_CONFIG"]) if env.get("CIRCLEBACK_CONFIG") else None)
    path = path or default_config_path()
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
        _check_unknown_keys(data, str(path))
    elif explicit:
        raise ConfigError(f"{path}: config file not found")
    base = path.parent if path.exists() else None

    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for key, (toml_path, env_name, kind) in _SCHEMA.items():
        cli = (overrides or {}).get(key)
        if cli is not None and cli != ():
            values[key] = _convert(kind, cli, f"--{key.replace('_', '-')}", Path.cwd())
            origin[key] = "command line"
        elif env_name and env.get(env_name):
            values[key] = _convert(kind, env[env_name], env_name, Path.cwd())
            origin[key] = f"environment ({env_name})"
        elif (raw := _lookup(data, toml_path)) is not None:
            values[key] = _convert(kind, raw, f"{path}: {'.'.join(toml_path)}", base)
            origin[key] = f"config file ({path})"

    state_dir: Path = values.get("state_dir", default_state_dir())

    def pick(key: str, default: Any) -> Any:
        if key not in values:
            origin.setdefault(key, "default")
            return default
        return values[key]

    def in_state(value: Path) -> Path:
        return value if value.is_absolute() else state_dir / value

    settings = Settings(
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
    if settings.log_format not in _LOG_FORMATS:
        raise ConfigError(f"log_format: must be one of {', '.join(_LOG_FORMATS)}")
    if settings.horizon < timedelta(days=7):
        raise ConfigError("horizon: must be at least a week")
    if settings.sync_every < timedelta(minutes=1):
        raise ConfigError("schedule.sync_every: must be at least a minute")
    return settings

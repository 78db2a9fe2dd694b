"""The Google Calendar connector's settings: exactly the keys issue 11 names, checked one by one.

`google_options(table, where)` turns a TOML table (or any mapping) into a frozen `GoogleOptions`;
every problem is a ValueError whose message starts with `where` and the key, so the config loader can
report it with its file and line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

KEYS = (
    "calendar_id",
    "busy_calendars",
    "token_file",
    "client_secrets",
    "service_account_file",
    "subject",
    "horizon",
    "api_endpoint",
    "token_uri",
    "invite",
)

DEFAULT_API_ENDPOINT = "https://www.googleapis.com/"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
DEFAULT_HORIZON = timedelta(weeks=8)
MAX_HORIZON = timedelta(weeks=104)
_HORIZON_RE = re.compile(r"^\s*(\d{1,4})\s*(day|days|week|weeks)\s*$", re.IGNORECASE)


def default_token_file() -> Path:
    """`$XDG_CONFIG_HOME/circleback/google-token.json` (`~/.config` when the variable is unset)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "circleback" / "google-token.json"


@dataclass(frozen=True)
class GoogleOptions:
    calendar_id: str = "primary"
    busy_calendars: tuple[str, ...] = ("primary",)
    token_file: Path | None = None  # None: the XDG default, see `token_path`
    client_secrets: Path | None = None
    service_account_file: Path | None = None
    subject: str | None = None
    horizon: timedelta = DEFAULT_HORIZON
    api_endpoint: str = DEFAULT_API_ENDPOINT  # the root URL; `calendar/v3/` and `batch/...` are joined to it
    token_uri: str = DEFAULT_TOKEN_URI
    invite: bool = False

    @property
    def token_path(self) -> Path:
        return self.token_file if self.token_file is not None else default_token_file()

    @property
    def service_endpoint(self) -> str:
        """What google-api-python-client's `api_endpoint` option wants: the root plus the service path."""
        return self.api_endpoint + "calendar/v3/"

    @property
    def batch_uri(self) -> str:
        # The client's own batch URI comes from the discovery document and ignores api_endpoint.
        return self.api_endpoint + "batch/calendar/v3"


def parse_horizon(text: str) -> timedelta:
    match = _HORIZON_RE.match(text)
    if match is None:
        raise ValueError(f"cannot read {text!r}: use forms like '8 weeks' or '30 days'")
    count = int(match.group(1))
    span = timedelta(days=count) if match.group(2).lower().startswith("day") else timedelta(weeks=count)
    if not timedelta(days=1) <= span <= MAX_HORIZON:
        raise ValueError(f"{text!r} is out of range: from 1 day to {MAX_HORIZON.days // 7} weeks")
    return span


def google_options(table: Mapping[str, Any], where: str) -> GoogleOptions:
    """Validate a `[google]` table. Unknown keys and wrong types are errors naming `where` and the key."""
    unknown = sorted(set(table) - set(KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r}; known keys: {', '.join(KEYS)}")
    values: dict[str, Any] = {}
    for key in ("calendar_id", "subject"):
        if key in table:
            values[key] = _text(table[key], where, key)
    if "busy_calendars" in table:
        values["busy_calendars"] = _calendars(table["busy_calendars"], where)
    for key in ("token_file", "client_secrets", "service_account_file"):
        if key in table:
            values[key] = Path(_text(table[key], where, key)).expanduser()
    if "horizon" in table:
        try:
            values["horizon"] = parse_horizon(_text(table["horizon"], where, "horizon"))
        except ValueError as exc:
            if str(exc).startswith(where):
                raise
            raise ValueError(f"{where}: horizon: {exc}") from None
    for key in ("api_endpoint", "token_uri"):
        if key in table:
            values[key] = _url(table[key], where, key)
    if "api_endpoint" in values and not values["api_endpoint"].endswith("/"):
        values["api_endpoint"] += "/"
    if "invite" in table:
        if not isinstance(table["invite"], bool):
            raise ValueError(f"{where}: invite must be true or false, not {table['invite']!r}")
        values["invite"] = table["invite"]
    options = GoogleOptions(**values)
    if options.subject is not None and options.service_account_file is None:
        raise ValueError(f"{where}: subject is only used with service_account_file")
    return options


def _text(value: object, where: str, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: {key} must be a non-empty string, not {value!r}")
    return value.strip()


def _calendars(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not value:
        raise ValueError(f"{where}: busy_calendars must be a non-empty list of calendar ids, not {value!r}")
    items = tuple(_text(item, where, "busy_calendars") for item in value)
    if len(set(items)) != len(items):
        raise ValueError(f"{where}: busy_calendars names a calendar twice: {list(items)!r}")
    return items


def _url(value: object, where: str, key: str) -> str:
    text = _text(value, where, key)
    if not re.match(r"^https?://[^/\s]+(/\S*)?$", text):
        raise ValueError(f"{where}: {key} must be an http(s) URL, not {text!r}")
    return text

"""The calendars to read, each with a name a person recognises: `[ics] sources` and `--source`.

An entry is a location (a file or an address) or a table `{ name = "Work", location = "..." }`. A
calendar without a chosen name gets a default one: a file's name (`basic.ics`), or an address's host and,
when it looks like a file name, its last segment (`calendar.google.com/basic.ics`). Secret addresses
carry the secret in the path, so no other part of a path is ever shown. Names key the calendar's health in
the store, so they depend only on the configured list: the same list gives the same names on every run.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from urllib.parse import unquote, urlsplit

from connectors.fetch import cache_identity as identity
from connectors.fetch import http_url, local_path, redact

_CALENDAR_FILE = re.compile(r"^(?P<stem>[^/\\%?#=&;]{1,40})\.(?:ics|ical|ifb|icalendar|vcs)$", re.IGNORECASE)
_TOKEN_RUN = re.compile(r"[A-Za-z0-9]{16,}")
_MAX_DIGITS = 4
_TABLE_KEYS = {"name", "location"}


class SourceError(ValueError):
    """An `[ics] sources` entry that cannot be used; the message says which entry and why."""


@dataclass(frozen=True)
class Source:
    """One calendar to read: its name (chosen or default) and its location (may hold a secret)."""

    name: str
    location: str
    chosen: bool = False  # named in the config, rather than given a default name


def source_name(location: str) -> str:
    """The default name of a calendar: readable, stable, and free of the secret part of an address."""
    try:
        url = http_url(location)
    except ValueError:
        return redact(location)  # fetching it reports the bad address; the name must not fail first
    if url is None:
        path = local_path(location)
        return path.name or str(path)
    segment = unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])
    host = _host(location)
    return f"{host}/{segment}" if _looks_like_a_file_name(segment) else host


def _is_address(location: str) -> bool:
    try:
        return http_url(location) is not None
    except ValueError:
        return True  # an address that cannot be parsed, not a file name


def _host(location: str) -> str:
    """host[:port] as written, without any user name or password."""
    netloc = urlsplit(location.strip()).netloc
    return netloc.rsplit("@", 1)[-1].lower() or "?"


def _looks_like_a_file_name(segment: str) -> bool:
    """`basic.ics` yes; a random token (Nextcloud, iCloud, a `private-…` path) no."""
    match = _CALENDAR_FILE.match(segment)
    if match is None:
        return False
    stem = match["stem"]
    return not _TOKEN_RUN.search(stem) and sum(c.isdigit() for c in stem) <= _MAX_DIGITS


def parse_sources(value: object, where: str, *, reserved: Sequence[str] = ()) -> tuple[Source, ...]:
    """The configured calendars, named; raises SourceError naming `where` and the entry.

    `reserved` are names other calendars (`[calendars.NAME]`) already go by: a chosen name may not be
    one of them, and a default name steps around them."""
    entries = [value] if isinstance(value, str | Mapping) else value
    if not isinstance(entries, Sequence) or isinstance(entries, str):
        raise SourceError(f"{where}: expected a list of calendars (files or addresses)")
    given = [_entry(item, f"{where}[{index + 1}]") for index, item in enumerate(entries)]
    _refuse_repeats(given, where)
    _refuse_reserved(given, reserved, where)
    return _name(given, where, reserved)


def _entry(item: object, where: str) -> tuple[str | None, str]:
    if isinstance(item, str):
        if not item.strip():
            raise SourceError(f"{where}: an empty location")
        return None, item
    if not isinstance(item, Mapping):
        raise SourceError(
            f"{where}: expected a file, an address or {{ name = ..., location = ... }}, got {item!r}"
        )
    unknown = sorted(set(item) - _TABLE_KEYS)
    if unknown:
        raise SourceError(f"{where}: unknown key {unknown[0]!r} (a calendar has a name and a location)")
    location, name = item.get("location"), item.get("name")
    if not isinstance(location, str) or not location.strip():
        raise SourceError(f"{where}: location must be a file or an address")
    if name is not None and (not isinstance(name, str) or not name.strip() or not name.isprintable()):
        raise SourceError(f"{where}: name must be a non-empty line of text")
    return (name.strip() if isinstance(name, str) else None), location


def _refuse_repeats(given: list[tuple[str | None, str]], where: str) -> None:
    seen: dict[str, int] = {}
    for index, (_name, location) in enumerate(given, start=1):
        key = identity(location)
        if key in seen:
            shown = source_name(location)
            raise SourceError(f"{where}: {shown!r} is listed twice (entries {seen[key]} and {index})")
        seen[key] = index
    chosen: dict[str, tuple[str, int]] = {}
    for index, (name, _location) in enumerate(given, start=1):
        if name is None:
            continue
        if name.casefold() in chosen:
            first, at = chosen[name.casefold()]
            same = repr(name) if name == first else f"{first!r} and {name!r}"
            raise SourceError(f"{where}: entries {at} and {index} are both named {same}; names must differ")
        chosen[name.casefold()] = (name, index)


def _refuse_reserved(given: list[tuple[str | None, str]], reserved: Sequence[str], where: str) -> None:
    others = {name.casefold(): name for name in reserved}
    for index, (name, _location) in enumerate(given, start=1):
        if name is not None and name.casefold() in others:
            raise SourceError(
                f"{where}: entry {index} is named {name!r} like [calendars.{others[name.casefold()]}]; "
                "names must differ"
            )


def _name(
    given: list[tuple[str | None, str]], where: str, reserved: Sequence[str] = ()
) -> tuple[Source, ...]:
    """Chosen names as given; default names made unique by the fewest folders (or a short digest)."""
    taken = {name.casefold() for name, _ in given if name is not None} | {r.casefold() for r in reserved}
    ladders = {i: _ladder(location) for i, (name, location) in enumerate(given) if name is None}
    level = dict.fromkeys(ladders, 0)
    while True:
        current = {i: ladders[i][level[i]] for i in ladders}
        clashing = {
            i
            for i, name in current.items()
            if name.casefold() in taken
            or any(j != i and other.casefold() == name.casefold() for j, other in current.items())
        }
        if not clashing:
            break
        for i in clashing:
            if level[i] + 1 >= len(ladders[i]):
                raise SourceError(
                    f"{where}: cannot give {current[i]!r} a name of its own; name it in a table"
                )
            level[i] += 1
    return tuple(
        Source(name, location, chosen=True) if name is not None else Source(current[i], location)
        for i, (name, location) in enumerate(given)
    )


def _ladder(location: str) -> list[str]:
    """Default names from shortest to longest: each step tells the calendar apart from more others."""
    base = source_name(location)
    if _is_address(location):
        digest = hashlib.sha256(identity(location).encode()).hexdigest()[:6]
        return [base, f"{base} #{digest}"]
    parts = PurePath(identity(location)).parts
    return [base, *("/".join(parts[-n:]) for n in range(2, len(parts))), identity(location)]

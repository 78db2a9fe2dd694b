"""A person's own calendar, read from an ICS file or a (secret) ICS address: the Reader for ICS sources.

A read fetches (conditionally), falls back to the last good copy when the source cannot be read, and
parses only when the content really changed: the parsed calendar is kept under a hash of the content that
ignores DTSTAMP, which Google and Outlook rewrite on every export without anything else changing.

Only the events that can reach the window (widened by `COVER_MARGIN` each side) are parsed
(connectors.ics_window): a ten-year export is mostly history no window asks for. What is kept between
reads is that parse of a few months, not of the whole file; a window that leaves the widened one (the
service's window moves on a week, or a command asks for another period) is parsed again from the bytes.
"""

from __future__ import annotations

import ctypes
import gc
import hashlib
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

from connectors.base import EMPTY_STATE, CalendarState, Capability, ConnectorError
from connectors.fetch import Fetcher, FetchResult, redact
from connectors.ics_parse import ParsedCalendar, expand, load_calendar, resolve_zone, summarise_warnings
from schedules.events import Interval, Snapshot

_DTSTAMP = re.compile(rb"\nDTSTAMP[:;][^\n]*")
_KEPT_WINDOWS = 8
# How far past the window asked for a parse reaches: the service's window moves by minutes each cycle, and
# must not cost a parse each time; a week means one parse a week on an unchanged calendar (seconds, for a
# ten-year export), while keeping the first read, which parses the margin too, close to the window's cost.
COVER_MARGIN = timedelta(days=7)


def content_key(data: bytes) -> str:
    """A hash of what a read depends on: the bytes without their DTSTAMP lines."""
    return hashlib.sha256(_DTSTAMP.sub(b"", data)).hexdigest()


@dataclass(frozen=True)
class _Parsed:
    sha256: str  # of the exact bytes, to skip even computing the key when nothing changed
    key: str
    calendar: ParsedCalendar


class IcsSource:
    """Implements `connectors.base.Reader` for a local `.ics` file or an http(s)/webcal URL."""

    def __init__(
        self,
        name: str,
        location: str,
        *,
        cache_dir: Path,
        timeout: float = 20,
        default_tz: str | None = None,
        fetcher: Fetcher | None = None,
        marker_secret: Callable[[], bytes] | None = None,
    ) -> None:
        if default_tz is not None and resolve_zone(default_tz) is None:
            raise ValueError(f"{name}: unknown time zone {default_tz!r}")
        self.name = name
        self.location = location
        self.default_tz = default_tz
        self.fetcher = fetcher or Fetcher(cache_dir, timeout)
        # Recognises copies of circleback's own events (signed key markers); asked for only when parsing.
        self.marker_secret = marker_secret
        self.parses = 0  # how often the content really had to be parsed (health figures, tests)
        self._parsed: _Parsed | None = None
        self._snapshots: OrderedDict[tuple[str, Interval], Snapshot] = OrderedDict()
        # What this reader has already said about the current content: the service reuses it cycle after
        # cycle, and the same broken event must not be reported every few minutes.
        self._said: set[str] = set()

    def __repr__(self) -> str:
        return f"IcsSource({self.name!r}, {redact(self.location)!r})"

    capabilities = frozenset({Capability.READ})

    def read(self, window: Interval, state: CalendarState = EMPTY_STATE) -> Snapshot:
        """Busy time and observations in `window`; raises ConnectorError only when no copy exists at all."""
        notes: list[str] = []
        result, stale = self._fetch(notes)
        if result.warning:
            notes.append(result.warning)
        parses = self.parses
        parsed = self._parse(result, window)
        snapshot = self._snapshots.get((parsed.key, window))
        if snapshot is None:
            snapshot = expand(parsed.calendar, window)
            self._snapshots[(parsed.key, window)] = snapshot
            while len(self._snapshots) > _KEPT_WINDOWS:
                self._snapshots.popitem(last=False)
            if self.parses != parses:
                del result
                _give_back_memory()
        else:
            self._snapshots.move_to_end((parsed.key, window))
        fresh = [warning for warning in snapshot.warnings if warning not in self._said]
        self._said.update(fresh)
        warnings = (*notes, *summarise_warnings(self.name, fresh))
        if warnings == snapshot.warnings and stale is None:
            return snapshot
        return replace(snapshot, warnings=warnings, stale=stale)

    def _fetch(self, notes: list[str]) -> tuple[FetchResult, str | None]:
        """The fresh copy, or the last good one plus the reason the fresh one could not be had."""
        try:
            return self.fetcher.fetch(self.name, self.location), None
        except ConnectorError as error:
            copy = self.fetcher.cached(self.name, self.location)
            if copy is None:
                raise ConnectorError(
                    self.name, f"{error.reason}; no earlier copy to fall back on", retryable=error.retryable
                ) from None
            when = f" fetched {copy.fetched_at:%Y-%m-%d %H:%M} UTC" if copy.fetched_at else ""
            notes.append(f"{self.name}: {error.reason}; using the last good copy{when}")
            return copy, error.reason

    def _parse(self, result: FetchResult, window: Interval) -> _Parsed:
        known = self._parsed
        if known is not None and known.sha256 != result.sha256:
            key = content_key(result.data)
            known = replace(known, sha256=result.sha256) if known.key == key else None
            if known is None:
                self._snapshots.clear()
                self._said.clear()
        if known is not None and known.calendar.covers(window):
            self._parsed = known
            return known
        cover = Interval(window.start - COVER_MARGIN, window.end + COVER_MARGIN)
        key = known.key if known is not None else content_key(result.data)
        # The old parse goes first: two parses of a big calendar are not held at once.
        self._parsed = None
        calendar = load_calendar(
            result.data, self.name, default_tz=self.default_tz, marker_secret=self._secret(), cover=cover
        )
        self.parses += 1
        self._parsed = _Parsed(result.sha256, key, calendar)
        return self._parsed

    def _secret(self) -> bytes | None:
        if self.marker_secret is None:
            return None
        try:
            return self.marker_secret()
        except (OSError, RuntimeError, ValueError) as exc:  # the message names the file, never the secret
            raise ConnectorError(self.name, f"cannot check copies of circleback's events: {exc}") from None


def _give_back_memory() -> None:
    """Return the memory a parse used to the system. The allocator keeps freed memory for reuse, so a
    long-running service would otherwise stay at the parse's peak (hundreds of MiB for a big export)
    between parses that come a week apart. Collecting first frees the parse's reference cycles (it runs
    with the collector paused); trimming is glibc's, and is skipped where there is none."""
    gc.collect()
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the process's own symbols: glibc's, where it is glibc
    except (AttributeError, OSError):
        return
    trim(0)

"""A person's own calendar, read from an ICS file or a (secret) ICS address: the Reader for ICS sources.

A read fetches (conditionally), falls back to the last good copy when the source cannot be read, and
parses only when the content really changed: what a parse produced is kept (connectors.ics_kept) under a
hash of the content that ignores DTSTAMP, which Google and Outlook rewrite on every export without
anything else changing.

Only the events that can reach the window (widened by `COVER_MARGIN` each side, the *cover*) are parsed
(connectors.ics_window): a ten-year export is mostly history no window asks for. They are expanded over
the whole cover at once, and that expansion is what is kept, not the parse: it goes back to the caller as
the calendar's state, which the store persists, so the next command (another process) reads an unchanged
calendar without parsing it, and a running service holds a few months of instances instead of a parse. A
window that leaves the cover (the service's window moves on a week, or a command asks for another period)
is parsed again from the bytes.
"""

from __future__ import annotations

import ctypes
import gc
import hashlib
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from connectors import ics_kept
from connectors.base import EMPTY_STATE, CalendarState, Capability, ConnectorError
from connectors.fetch import Fetcher, FetchResult, redact
from connectors.ics_kept import KeptRead, summarise_warnings
from schedules.events import Interval, Snapshot

_DTSTAMP = re.compile(rb"\nDTSTAMP[:;][^\n]*")
# How far past the window asked for a parse reaches: the service's window moves by minutes each cycle, and
# must not cost a parse each time; a week means one parse a week on an unchanged calendar (seconds, for a
# ten-year export), while keeping the first read, which parses the margin too, close to the window's cost.
COVER_MARGIN = timedelta(days=7)
# A parse of more bytes than this leaves enough freed memory behind to be worth handing back at once.
_BIG = 2 * 2**20


def content_key(data: bytes) -> str:
    """A hash of what a read depends on: the bytes without their DTSTAMP lines."""
    return hashlib.sha256(_DTSTAMP.sub(b"", data)).hexdigest()


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
        if default_tz is not None and not _known_zone(default_tz):
            raise ValueError(f"{name}: unknown time zone {default_tz!r}")
        self.name = name
        self.location = location
        self.default_tz = default_tz
        self.fetcher = fetcher or Fetcher(cache_dir, timeout)
        # Recognises copies of circleback's own events (signed key markers).
        self.marker_secret = marker_secret
        self.parses = 0  # how often the content really had to be parsed (health figures, tests)
        # The state of the last read, for a caller that keeps none (given a state, a read uses that):
        # compressed instances, a small fraction of the parse they came from.
        self._state: CalendarState = EMPTY_STATE

    def __repr__(self) -> str:
        return f"IcsSource({self.name!r}, {redact(self.location)!r})"

    capabilities = frozenset({Capability.READ})

    def read(self, window: Interval, state: CalendarState = EMPTY_STATE) -> Snapshot:
        """Busy time and observations in `window`; raises ConnectorError only when no copy exists at all.

        `state` is what an earlier read returned in `Snapshot.state`; with it, an unchanged calendar is
        not parsed again. Without it, the reader uses the state of its own last read. The snapshot carries
        a state only when it differs from the one used (given, or the reader's own)."""
        given = state if ics_kept.READ in state else self._state
        notes: list[str] = []
        result, stale = self._fetch(notes)
        if result.warning:
            notes.append(result.warning)
        secret = self._secret()
        reading = ics_kept.reading_fingerprint(self.default_tz, secret)
        same_bytes = bool(result.sha256) and given.get(ics_kept.SHA256) == result.sha256
        key = given.get(ics_kept.KEY, "") if same_bytes else content_key(result.data)
        kept = ics_kept.decode(given, self.name) if given.get(ics_kept.KEY) == key else None
        after: CalendarState
        if kept is not None and kept.reading == reading and kept.covers(window):
            # What it says was said when it was parsed: an unchanged calendar has nothing new to say.
            fresh: tuple[str, ...] = ()
            after = given if same_bytes else {**given, ics_kept.SHA256: result.sha256}
        else:
            said = set(kept.warnings) if kept is not None and kept.reading == reading else set()
            kept = None  # the old instances go first: two reads of a big calendar are not held at once
            kept = self._parse(result.data, window, key, reading, secret)
            fresh = tuple(warning for warning in kept.warnings if warning not in said)
            after = ics_kept.encode(kept, result.sha256)
            if len(result.data) > _BIG:
                del result
                _give_back_memory()
        self._state = after
        return Snapshot(
            observations=kept.within(window),
            warnings=(*notes, *summarise_warnings(self.name, fresh)),
            stale=stale,
            state=None if dict(after) == dict(given) else after,
        )

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

    def _parse(self, data: bytes, window: Interval, key: str, reading: str, secret: bytes | None) -> KeptRead:
        """Parse what can reach the window widened by COVER_MARGIN, and expand it over all of that."""
        from connectors.ics_parse import expand, load_calendar

        cover = Interval(window.start - COVER_MARGIN, window.end + COVER_MARGIN)
        calendar = load_calendar(
            data, self.name, default_tz=self.default_tz, marker_secret=secret, cover=cover
        )
        self.parses += 1
        snapshot = expand(calendar, cover)
        return KeptRead(key, reading, cover, snapshot.observations, snapshot.warnings)

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


def _known_zone(name: str) -> bool:
    """An IANA name, or one the parser knows (a Windows name); the parser is imported only for those."""
    try:
        ZoneInfo(name)
        return True
    except (ZoneInfoNotFoundError, ValueError):
        from connectors.ics_parse import resolve_zone

        return resolve_zone(name) is not None

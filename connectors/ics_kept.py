"""What a read of an ICS source keeps in the store, so the next process need not parse it again.

A read parses the events that can reach a window widened by a margin (the *cover*) and expands them over
the whole cover. That expansion (observations and warnings) is the reusable part: any window inside the
cover is a filter over it, which is exactly what expanding the parse for that window gives. It is kept as
the calendar's `CalendarState` (connectors.base), which the store persists per owner and calendar:

- `ics.sha256`: the exact bytes' hash, so an unchanged file is recognised without hashing it again;
- `ics.key`: the hash that ignores DTSTAMP (`content_key`), so a re-export with new stamps is too;
- `ics.read`: the expansion, as versioned, compressed JSON (`FORMAT`).

Nothing here names the source's location (an address may carry a secret). What the parse depended on
besides the bytes (the default zone, which signed markers count) is kept as a fingerprint, `reading`:
a different one means the kept read does not apply. A kept read that cannot be decoded, of another
format, or for another content, reads as none, and the caller parses.

No icalendar here: a command on an unchanged calendar must not pay for importing the parser.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from connectors.base import CalendarState
from schedules.events import Attendee, Interval, Observation, PartStat

# Bump when what a read produces changes (the parser's rules, this encoding): kept reads of an older
# format are then parsed again instead of being trusted.
FORMAT = 1
SHA256 = "ics.sha256"
KEY = "ics.key"
READ = "ics.read"
# A calendar with more warnings than this shows the first few and a count: a broken export can hold a
# hundred thousand of the same mistake, and logging each one helps nobody.
MAX_WARNINGS = 10
WARNING_EXAMPLES = 5

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)
_CANCELLED, _TRANSPARENT, _ALL_DAY = 1, 2, 4


@dataclass(frozen=True)
class KeptRead:
    """The expansion of one content over `cover`: every instance overlapping it, and what was said."""

    key: str  # `content_key` of the bytes read
    reading: str  # fingerprint of what else the read depended on (`reading_fingerprint`)
    cover: Interval
    observations: tuple[Observation, ...]  # in the order `expand` gives them
    warnings: tuple[str, ...]

    def covers(self, window: Interval) -> bool:
        return self.cover.start <= window.start and window.end <= self.cover.end

    def within(self, window: Interval) -> tuple[Observation, ...]:
        return tuple(o for o in self.observations if overlaps(o, window))


def overlaps(observation: Observation, window: Interval) -> bool:
    """Whether an instance belongs to a read of `window` (an instant event: when it starts inside)."""
    if observation.start == observation.end:
        return window.start <= observation.start < window.end
    return observation.start < window.end and window.start < observation.end


def summarise_warnings(source: str, warnings: Sequence[str]) -> tuple[str, ...]:
    """All the warnings, or with more than MAX_WARNINGS the first few and a count of the rest."""
    if len(warnings) <= MAX_WARNINGS:
        return tuple(warnings)
    rest = len(warnings) - WARNING_EXAMPLES
    summary = f"{source}: {rest:,} more warning(s) like these ({len(warnings):,} in all)"
    return (*warnings[:WARNING_EXAMPLES], summary)


def reading_fingerprint(default_tz: str | None, marker_secret: bytes | None) -> str:
    """What a read depends on besides the bytes. The secret enters only through a keyed hash of a fixed
    label, so the stored value tells nothing about it."""
    secret = "" if marker_secret is None else _digest(marker_secret, b"circleback kept-read")
    return f"{FORMAT}|{default_tz or ''}|{secret}"


def encode(kept: KeptRead, sha256: str) -> dict[str, str]:
    """The calendar state that keeps `kept`, read from bytes hashing to `sha256`."""
    # The instances of a series share one attendee list: written, and decoded, once.
    lists: dict[tuple[Attendee, ...], int] = {}
    rows = [_row(o, lists.setdefault(o.attendees, len(lists))) for o in kept.observations]
    body = {
        "format": FORMAT,
        "key": kept.key,
        "reading": kept.reading,
        "cover": [_micros(kept.cover.start), _micros(kept.cover.end)],
        "warnings": list(kept.warnings),
        "attendees": [[[a.email, a.partstat.value] for a in attendees] for attendees in lists],
        "observations": rows,
    }
    raw = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    blob = base64.b64encode(zlib.compress(raw, 6)).decode("ascii")
    return {SHA256: sha256, KEY: kept.key, READ: f"{FORMAT}:{blob}"}


def decode(state: CalendarState, source: str) -> KeptRead | None:
    """The read kept in `state` for calendar `source`, or None: none kept, another format, or corrupt."""
    value = state.get(READ)
    if not value:
        return None
    version, _, blob = value.partition(":")
    if version != str(FORMAT):
        return None
    try:
        body = json.loads(zlib.decompress(base64.b64decode(blob, validate=True)))
        if body["format"] != FORMAT or body["key"] != state.get(KEY):
            return None
        start, end = body["cover"]
        attendees = [
            tuple(Attendee(_text(email), PartStat(status)) for email, status in people)
            for people in body["attendees"]
        ]
        return KeptRead(
            key=_text(body["key"]),
            reading=_text(body["reading"]),
            cover=Interval(_moment(start), _moment(end)),
            observations=tuple(_observation(row, source, attendees) for row in body["observations"]),
            warnings=tuple(_text(w) for w in body["warnings"]),
        )
    except (ValueError, TypeError, KeyError, IndexError, zlib.error, binascii.Error, OverflowError):
        return None


def _row(o: Observation, attendees: int) -> list[object]:
    flags = (_CANCELLED if o.cancelled else 0) | (_TRANSPARENT if o.transparent else 0)
    flags |= _ALL_DAY if o.all_day else 0
    return [
        o.uid,
        _micros(o.start),
        _micros(o.end),
        o.summary,
        attendees,
        o.organizer,
        flags,
        None if o.recurrence_id is None else _micros(o.recurrence_id),
        o.circleback_key,
    ]


def _observation(row: list[object], source: str, attendees: list[tuple[Attendee, ...]]) -> Observation:
    uid, start, end, summary, people, organizer, flags, recurrence_id, key = row
    if not isinstance(flags, int) or not isinstance(people, int) or people < 0:
        raise TypeError("malformed observation")
    return Observation(
        source=source,
        uid=_text(uid),
        start=_moment(start),
        end=_moment(end),
        summary=_text(summary),
        attendees=attendees[people],
        organizer=_optional_text(organizer),
        cancelled=bool(flags & _CANCELLED),
        transparent=bool(flags & _TRANSPARENT),
        all_day=bool(flags & _ALL_DAY),
        recurrence_id=None if recurrence_id is None else _moment(recurrence_id),
        circleback_key=_optional_text(key),
    )


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICRO


def _moment(value: object) -> datetime:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"not a time: {value!r}")
    return _EPOCH + value * _MICRO


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"not text: {value!r}")
    return value


def _optional_text(value: object) -> str | None:
    return None if value is None else _text(value)


def _digest(secret: bytes, label: bytes) -> str:
    return hashlib.blake2b(label, key=secret[:64], digest_size=16).hexdigest()

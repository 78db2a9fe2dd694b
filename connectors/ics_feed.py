"""The ICS feed: circleback's occurrences as an iCalendar file any calendar app can subscribe to.

`render_feed` is a pure function of its inputs: the same revisions and plan give the same bytes, so the feed
can be served with a stable ETag and subscribers only see a change when something really changed. The
traps subscribers fall into are handled here on purpose:

- no calendar-level UID (vdirsyncer and others would merge every event into one item);
- DTSTAMP is the revision's LAST-MODIFIED, never the time of rendering;
- every TZID has its VTIMEZONE, built from the zone's real transitions (see `_timezone_component`);
- REFRESH-INTERVAL carries VALUE=DURATION (RFC 7986) and X-PUBLISHED-TTL repeats it for older clients;
- an occurrence that leaves the plan simply leaves the feed: a published feed has no CANCEL semantics.

Alarms: touchpoints get a 10-minute DISPLAY alarm, because a touchpoint involves another person and the
reminder is the moment to read the next wise action. Review blocks get none: they are time with yourself,
already visible as busy time, and a pop-up for them is noise.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from icalendar import (
    Alarm,
    Calendar,
    Component,
    Event,
    Timezone,
    TimezoneDaylight,
    TimezoneStandard,
    vDuration,
    vText,
)

from connectors.atomic import write_atomic
from connectors.base import (
    EMPTY_PLACEMENTS,
    EMPTY_STATE,
    Applied,
    CalendarState,
    Capability,
    ConnectorError,
    Placement,
    results_for,
)
from schedules.model import Plan
from schedules.occurrence import Occurrence, OccurrenceKind, Revision

PRODID = "-//circleback//circleback feed//EN"
KEY_PROPERTY = "X-CIRCLEBACK-KEY"
# The key again, as the description's last line: copying an event into another calendar ("Copy to",
# drag and drop) gives it a new UID and drops X- properties, but keeps the description, so this is what
# lets circleback recognise a touchpoint the person moved into their own calendar.
KEY_MARKER = "circleback-key: "
KEY_MARKER_RE = re.compile(r"(?m)^circleback-key: ([^\r\n]+?)\s*$")
# Both copies of the key are signed: `<key> sig=<HMAC>`. Anyone can write a marker line into an event (and
# keys are guessable), so a reader counts a key only when its signature is right (see `verified_key`).
SIGNATURE_RE = re.compile(r"^(.*\S) sig=([0-9a-f]{32})$")
_SIGNATURE_CONTEXT = b"circleback-key\x00"
ALARM_BEFORE = timedelta(minutes=10)
DEFAULT_REFRESH = timedelta(hours=1)

__all__ = [
    "ALARM_BEFORE",
    "DEFAULT_REFRESH",
    "KEY_MARKER",
    "KEY_PROPERTY",
    "PRODID",
    "FeedFile",
    "circleback_key",
    "published_description",
    "render_feed",
    "sign_key",
    "signed_key",
    "unsigned_key",
    "verified_key",
]


def render_feed(
    revisions: Sequence[Revision],
    *,
    plan: Plan,
    name: str = "circleback",
    refresh: timedelta = DEFAULT_REFRESH,
    marker_secret: bytes | None = None,
) -> bytes:
    """The feed's bytes: events sorted by start then UID, CRLF line endings, lines folded at 75 octets.

    With `marker_secret`, the key markers are signed (they must be, for copies to be recognised).

    Raises ValueError for input no calendar could represent (duplicate keys, an event ending before it
    starts, a non-positive refresh interval, an unknown time zone).
    """
    if not _one_line(name):
        raise ValueError("feed name must not be empty")
    if refresh <= timedelta(0):
        raise ValueError(f"feed refresh interval must be positive, got {refresh}")
    zone = _zone(plan.timezone)
    ordered = sorted(revisions, key=lambda r: (r.occurrence.start, r.occurrence.uid))
    _check(ordered)

    calendar = Calendar()
    calendar.add("PRODID", PRODID)
    calendar.add("VERSION", "2.0")
    calendar.add("CALSCALE", "GREGORIAN")
    calendar.add("METHOD", "PUBLISH")
    calendar.calendar_name = _one_line(name)  # NAME (RFC 7986) and X-WR-CALNAME
    calendar.add("X-WR-TIMEZONE", plan.timezone)
    calendar.add("REFRESH-INTERVAL", vDuration(refresh), parameters={"VALUE": "DURATION"})
    calendar.add("X-PUBLISHED-TTL", vDuration(refresh))

    events = [_event(revision, zone, marker_secret) for revision in ordered]
    for event in events:
        calendar.add_component(event)
    # VTIMEZONEs go first: some readers resolve a TZID only against zones they have already seen.
    for index, tzid in enumerate(sorted(calendar.get_missing_tzids())):
        calendar.subcomponents.insert(index, _timezone_component(tzid, _span(ordered, _zone(tzid))))
    data: bytes = calendar.to_ical()
    return data


def published_description(occ: Occurrence, marker_secret: bytes | None = None) -> str:
    """The description as published: the occurrence's own text, then the (signed) key marker line."""
    body = f"{occ.description}\n\n" if occ.description else ""
    return f"{body}{KEY_MARKER}{signed_key(occ.key, marker_secret)}"


def sign_key(key: str, marker_secret: bytes) -> str:
    """The signature of an occurrence key: HMAC-SHA256 under the install's secret, 128 bits in hex. It
    signs the key alone, not the time or UID, so a copy moved elsewhere still verifies."""
    mac = hmac.new(marker_secret, _SIGNATURE_CONTEXT + key.encode("utf-8"), hashlib.sha256)
    return mac.hexdigest()[:32]


def signed_key(key: str, marker_secret: bytes | None) -> str:
    return key if marker_secret is None else f"{key} sig={sign_key(key, marker_secret)}"


def unsigned_key(text: str) -> str:
    """The key part of a marker, signature (right or wrong) left off: for comparing feeds, never trust."""
    found = SIGNATURE_RE.match(text)
    return found.group(1) if found else text


def verified_key(text: str, marker_secret: bytes | None) -> str | None:
    """The key of a marker signed with `marker_secret`; None for an unsigned or wrongly signed one."""
    found = SIGNATURE_RE.match(text.strip())
    if found is None or marker_secret is None:
        return None
    key, signature = found.groups()
    return key if hmac.compare_digest(sign_key(key, marker_secret), signature) else None


def circleback_key(component: Component) -> str | None:
    """The X-CIRCLEBACK-KEY value as written (signature included, not checked), or None without one.

    The feed writes the key as TEXT (`;VALUE=TEXT`, so commas in names are escaped); a calendar that
    round-trips the event may drop the parameter, so an unparsed value is unescaped here as well.
    """
    value = component.get(KEY_PROPERTY)
    if isinstance(value, list):
        value = value[0] if value else None
    if value is None:
        return None
    if isinstance(value, vText):
        return str(value)
    return _TEXT_ESCAPE.sub(lambda m: "\n" if m.group(1) in "nN" else m.group(1), str(value))


class FeedFile:
    """The feed written to a file: the Writer for people who subscribe to a file or a static web server.

    `name` (as for every connector) is the connector's name in the config and in error messages; the
    calendar's display name is `calendar_name`. `plan` may be replaced when the plan file changes.
    """

    def __init__(
        self,
        path: Path,
        *,
        plan: Plan,
        name: str = "circleback",
        refresh: timedelta = DEFAULT_REFRESH,
        connector: str = "feed",
        marker_secret: Callable[[], bytes] | None = None,
    ) -> None:
        self.path = Path(path)
        self.plan = plan
        self.calendar_name = name
        self.refresh = refresh
        self.name = connector
        self.marker_secret = marker_secret  # asked for only when writing

    capabilities = frozenset({Capability.WRITE})

    def apply(
        self,
        desired: Sequence[Revision],
        *,
        placements: Mapping[str, Placement] = EMPTY_PLACEMENTS,
        state: CalendarState = EMPTY_STATE,
    ) -> Applied:
        """Render the full desired set and replace the file; report what changed against the old file.

        The file is written whole or not at all, so every event has the same outcome."""
        warnings: list[str] = []
        old_bytes = self._read_previous(warnings)
        secret = self._secret()
        try:
            new_bytes = render_feed(
                desired, plan=self.plan, name=self.calendar_name, refresh=self.refresh, marker_secret=secret
            )
        except ValueError as exc:
            raise ConnectorError(self.name, f"cannot render {self.path}: {exc}", retryable=False) from exc

        if new_bytes == old_bytes:
            return Applied(warnings=tuple(warnings), results=results_for(desired, (), (), (), _uid))
        before: dict[str, bytes] = {}
        if old_bytes is not None:
            try:
                before = _events_by_key(old_bytes)
            except Exception as exc:  # any failure of a third-party parser on foreign bytes
                warnings.append(
                    f"{self.name}: previous feed {self.path} is unreadable ({exc}); treating it as empty"
                )
        after = _events_by_key(new_bytes)

        try:
            write_atomic(self.path, new_bytes)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise ConnectorError(self.name, f"cannot write {self.path}: {reason}") from exc
        created = tuple(key for key in after if key not in before)
        updated = tuple(key for key in after if key in before and before[key] != after[key])
        removed = tuple(sorted(key for key in before if key not in after))
        return Applied(
            created=created,
            updated=updated,
            removed=removed,
            warnings=tuple(warnings),
            results=results_for(desired, created, updated, removed, _uid),
        )

    def _secret(self) -> bytes | None:
        if self.marker_secret is None:
            return None
        try:
            return self.marker_secret()
        except (OSError, RuntimeError, ValueError) as exc:  # the message names the file, never the secret
            reason = f"cannot sign the feed's events: {exc}"
            raise ConnectorError(self.name, reason, retryable=False) from None

    def _read_previous(self, warnings: list[str]) -> bytes | None:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            warnings.append(
                f"{self.name}: cannot read previous feed {self.path} ({exc.strerror}); treating it as empty"
            )
            return None


# --- events ------------------------------------------------------------------------------------------


def _uid(revision: Revision) -> str:
    return revision.occurrence.uid


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def _check(revisions: Sequence[Revision]) -> None:
    seen: set[str] = set()
    for revision in revisions:
        occ = revision.occurrence
        if occ.key in seen:
            raise ValueError(f"occurrence {occ.key!r} appears twice; a feed needs one event per key")
        seen.add(occ.key)
        if occ.end <= occ.start:
            raise ValueError(
                f"occurrence {occ.key!r} ends ({occ.end}) before or when it starts ({occ.start})"
            )
        if revision.sequence < 0:
            raise ValueError(f"occurrence {occ.key!r} has a negative SEQUENCE {revision.sequence}")


def _event(revision: Revision, zone: tzinfo, marker_secret: bytes | None) -> Event:
    occ = revision.occurrence
    event = Event()
    event.add("UID", occ.uid)
    # DTSTAMP is "when this version of the event was made": the revision's, so the bytes stay identical
    # from one render to the next while nothing changes.
    event.add("DTSTAMP", revision.last_modified)
    event.add("CREATED", revision.created)
    event.add("LAST-MODIFIED", revision.last_modified)
    event.add("SEQUENCE", revision.sequence)
    event.add("SUMMARY", _clean_text(occ.title))
    event.add("DESCRIPTION", _clean_text(published_description(occ, marker_secret)))
    event.add("DTSTART", occ.start.astimezone(zone))
    event.add("DTEND", occ.end.astimezone(zone))
    event.add("TRANSP", "OPAQUE")
    event.add("STATUS", "CONFIRMED")
    event.add("CATEGORIES", ["circleback", occ.kind.value])
    # VALUE=TEXT makes readers (icalendar among them) unescape the key instead of handing back raw bytes.
    event.add(KEY_PROPERTY, vText(signed_key(occ.key, marker_secret)), parameters={"VALUE": "TEXT"})
    # Both kinds get a reminder: a review block nobody is reminded of is the first one to be skipped.
    if occ.kind in (OccurrenceKind.TOUCHPOINT, OccurrenceKind.REVIEW):
        alarm = Alarm()
        alarm.add("ACTION", "DISPLAY")
        alarm.add("TRIGGER", -ALARM_BEFORE)
        alarm.add("DESCRIPTION", _clean_text(occ.title))
        event.add_component(alarm)
    return event


_TEXT_ESCAPE = re.compile(r"\\([\\;,nN])")  # RFC 5545 3.3.11
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _clean_text(text: str) -> str:
    """RFC 5545 TEXT allows no control characters but tab and (escaped) newline; a stray one from a pasted
    note would make strict readers reject the whole feed."""
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def _one_line(text: str) -> str:
    return " ".join(_clean_text(text).split())


def _events_by_key(data: bytes) -> dict[str, bytes]:
    """circleback's events in a feed, by occurrence key, each as its canonical serialisation.

    Comparing whole events (not only SEQUENCE) also catches a change that kept its SEQUENCE, and
    serialising after parsing makes the comparison independent of how the old file was folded.
    """
    calendar = Calendar.from_ical(data)
    found: dict[str, bytes] = {}
    for component in calendar.walk("VEVENT"):
        key = circleback_key(component)
        if key is not None:
            found[unsigned_key(key)] = component.to_ical()
    return found


# --- time zones --------------------------------------------------------------------------------------
#
# icalendar's Timezone.from_tzinfo writes a spring-forward onset in the new offset (e.g. 02:00 for London
# with TZOFFSETFROM:+0000), one hour later than RFC 5545 section 3.6.5 means: DTSTART of an observance is
# the local time *in the offset before the change*. The VTIMEZONE is therefore built here from the exact
# transition instants that zoneinfo knows.

_SCAN_STEP = 6 * 3600  # seconds; no zone in the tz database changes twice within six hours


@dataclass(frozen=True)
class _Rules:
    """What a zone's clocks do between two transitions."""

    offset: timedelta
    dst: bool
    name: str


@dataclass(frozen=True)
class _Transition:
    at: int  # POSIX seconds of the first instant under `after`
    before: _Rules
    after: _Rules


def _rules_at(zone: tzinfo, seconds: int) -> _Rules:
    local = datetime.fromtimestamp(seconds, UTC).astimezone(zone)
    offset = local.utcoffset() or timedelta(0)
    return _Rules(offset, bool(local.dst()), local.tzname() or _format_offset(offset))


def _format_offset(offset: timedelta) -> str:
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"


def _span(revisions: Iterable[Revision], zone: tzinfo) -> tuple[int, int]:
    """Whole local years covering every event, so the VTIMEZONE (and the bytes) change at most yearly."""
    years = [
        moment.astimezone(zone).year
        for revision in revisions
        for moment in (revision.occurrence.start, revision.occurrence.end)
    ]
    return min(years), max(years)


@functools.lru_cache(maxsize=64)
def _transitions(tzid: str, first_year: int, last_year: int) -> tuple[_Rules, int, tuple[_Transition, ...]]:
    zone = ZoneInfo(tzid)
    start = int(datetime(first_year, 1, 1, tzinfo=zone).timestamp())
    end = int(datetime(last_year + 1, 1, 1, tzinfo=zone).timestamp())
    initial = current = _rules_at(zone, start)
    found: list[_Transition] = []
    low = start
    while low < end:
        high = min(low + _SCAN_STEP, end)
        if _rules_at(zone, high) == current:
            low = high
            continue
        # Bisect to the second: rules(low) == current != rules(high).
        while high - low > 1:
            middle = (low + high) // 2
            if _rules_at(zone, middle) == current:
                low = middle
            else:
                high = middle
        after = _rules_at(zone, high)
        found.append(_Transition(high, current, after))
        current, low = after, high
    return initial, start, tuple(found)


def _naive_local(seconds: int, offset: timedelta) -> datetime:
    return (datetime.fromtimestamp(seconds, UTC) + offset).replace(tzinfo=None)


def _timezone_component(tzid: str, years: tuple[int, int]) -> Timezone:
    initial, start, transitions = _transitions(tzid, *years)
    # One observance per distinct (offset before, rules after), listing every onset in the span.
    onsets: dict[tuple[timedelta, _Rules], list[datetime]] = {
        (initial.offset, initial): [_naive_local(start, initial.offset)]
    }
    for transition in transitions:
        group = (transition.before.offset, transition.after)
        onsets.setdefault(group, []).append(_naive_local(transition.at, transition.before.offset))

    component = Timezone()
    component.add("TZID", tzid)
    for (offset_from, rules), moments in sorted(onsets.items(), key=lambda item: min(item[1])):
        observance = TimezoneDaylight() if rules.dst else TimezoneStandard()
        ordered = sorted(moments)
        observance.add("DTSTART", ordered[0])
        # Every onset, the first included, is also an RDATE: RFC 5545 lets RDATE repeat DTSTART, and
        # readers that build the onsets from RRULE/RDATE alone (allenporter's ical) would otherwise
        # never see the first one.
        for moment in ordered:
            observance.add("RDATE", moment)
        observance.add("TZOFFSETFROM", offset_from)
        observance.add("TZOFFSETTO", rules.offset)
        observance.add("TZNAME", rules.name)
        component.add_component(observance)
    return component

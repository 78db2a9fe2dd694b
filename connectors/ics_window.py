"""Which events of an ICS export can reach a window, found without parsing them.

A ten-year export holds tens of thousands of events, and icalendar costs a millisecond or more for each;
a read needs the few that can overlap its window. One regular-expression pass over the bytes finds every
VEVENT's timing lines (DTSTART, DTEND, DURATION, RRULE, RDATE, RECURRENCE-ID) and its UID, and bounds the
times its instances can take. An event is left out only when that bound is certain to miss the window;
everything the scan does not fully understand (a broken structure, an unreadable value, a rule whose last
instance is not easy to bound, a line that is not a content line) is kept and parsed as before.

Times are compared as written (wall-clock, labelled UTC), with `SLACK` either side: a zone moves a time by
less than a day, and a DTEND written in another zone than DTSTART changes a duration by less than two. All
the events of one UID (a series, its moved instances, duplicates) are kept or left out together, so the
library sees a series whole or not at all.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

# A zone's offset is less than a day; two of them (DTSTART and DTEND in different zones) less than two.
SLACK = timedelta(days=3)
_FAR = datetime.max.replace(tzinfo=UTC) - timedelta(days=10)

# Anchored on the line break before (not `^`): the engine then skips ahead to each LF, which is several
# times faster on a big file. A component starting on the file's first line is not seen, and is kept.
_LINE = re.compile(
    rb"\n(BEGIN|END|DTSTART|DTEND|DURATION|RRULE|RDATE|RECURRENCE-ID|UID)"
    rb"([;:][^\r\n]*(?:\r?\n[ \t][^\r\n]*)*)",
    re.IGNORECASE,
)
# After a UID or timing line, the next line must be a content line: the lexer joins any other line to
# it (repairing broken folding), which would change the value this scan read, so the event is kept.
_NEXT_IS_PROPERTY = re.compile(rb"\r?\n[A-Za-z0-9-]+(?::|;(?:[^\r\n]|\r?\n[ \t])*?:)")
# A CR alone: the lexer reads it as a line break, this scan does not; such a file is not filtered.
_LONE_CR = re.compile(rb"\r(?!\n)")
_FOLD = re.compile(rb"\r?\n[ \t]")
_STAMP = re.compile(r"(\d{4})(\d{2})(\d{2})(?:T(\d{2})(\d{2})(\d{2})Z?)?")
_DURATION = re.compile(r"([+-]?)P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?")
_TOP_LEVEL = frozenset(
    {b"VCALENDAR", b"VEVENT", b"VTODO", b"VJOURNAL", b"VFREEBUSY", b"VTIMEZONE", b"VAVAILABILITY"}
)
_UNIT = {"SECONDLY": timedelta(seconds=1), "MINUTELY": timedelta(minutes=1), "HOURLY": timedelta(hours=1)}
_WEEKDAYS = frozenset({"MO", "TU", "WE", "TH", "FR", "SA", "SU"})
_FINER = frozenset({"BYHOUR", "BYMINUTE", "BYSECOND", "WKST"})


@dataclass(frozen=True)
class Span:
    """One VEVENT as written: bytes [start, end) of the data."""

    start: int
    end: int


class _Unknown(Exception):
    """The scan cannot bound this event: it is kept."""


class _Event:
    __slots__ = ("end", "lines", "start", "uid", "unknown")

    def __init__(self, start: int) -> None:
        self.start = start
        self.end = -1
        self.uid = b""
        self.lines: dict[bytes, list[bytes]] = {}  # timing lines by upper-case name, values unfolded
        self.unknown = False


def outside(data: bytes, first: datetime, last: datetime) -> list[Span]:
    """The VEVENTs of `data` none of whose instances can overlap [first, last), in order.

    Leaving them out changes no instance in the window: a UID is left out only when every event that
    carries it is."""
    if _LONE_CR.search(data):
        return []
    reaches: dict[bytes, bool] = defaultdict(bool)
    first, last = first - SLACK, last + SLACK
    days = (f"{first:%Y%m%d}".encode(), f"{last:%Y%m%d}".encode())
    # Decided as they are found: only (UID, span) is held per event, not its lines.
    candidates: list[tuple[bytes, int, int]] = []
    for event in _events(data):
        if _may_reach(event, first, last, days):
            reaches[event.uid] = True
        else:
            candidates.append((event.uid, event.start, event.end))
    return [Span(start, end) for uid, start, end in candidates if not reaches[uid]]


def _events(data: bytes) -> Iterator[_Event]:
    """Every VEVENT with its timing lines, as the lexer would split them; a structure the lexer would
    repair or drop makes the event unknown."""
    stack: list[bytes] = []
    event: _Event | None = None
    next_is_property = _NEXT_IS_PROPERTY.match
    for match in _LINE.finditer(data):
        name, raw = match.group(1, 2)
        name = name.upper()
        if b"\n" in raw:
            raw = _FOLD.sub(b"", raw)
        if name == b"BEGIN" or name == b"END":
            if raw[:1] != b":":
                continue  # the lexer reads "BEGIN;..." as a property, not as a component
            component = raw[1:].strip().upper()
            at = match.start() + 1  # the line's start, after the LF the pattern begins with
            if name == b"BEGIN":
                if stack and component in _TOP_LEVEL:  # the open component was cut short
                    if event is not None:
                        event.unknown = True
                        event.end = at
                        yield event
                    stack, event = [], None
                if not stack:
                    if component != b"VCALENDAR":
                        stack = [component]
                        event = _Event(at) if component == b"VEVENT" else None
                    continue
                stack.append(component)
                continue
            if not stack:
                continue
            if component != stack[-1]:
                if event is not None:
                    event.unknown = True
                    event.end = _line_end(data, match.end())
                    yield event
                stack, event = [], None
                continue
            stack.pop()
            if not stack and event is not None:
                event.end = _line_end(data, match.end())
                yield event
                event = None
            continue
        if event is not None and len(stack) == 1:
            if not next_is_property(data, match.end()):
                event.unknown = True
            if name == b"UID":
                event.uid = _uid(raw)
            elif name in event.lines:
                event.lines[name].append(raw)
            else:
                event.lines[name] = [raw]
    if event is not None:  # no END before the end of the file
        event.unknown = True
        event.end = len(data)
        yield event


def _line_end(data: bytes, index: int) -> int:
    if data.startswith(b"\r\n", index):
        return index + 2
    if data.startswith(b"\n", index):
        return index + 1
    return index


def _uid(raw: bytes) -> bytes:
    """A loose form of the UID: two spellings of one UID must never be told apart (which could split a
    series from its moved instances); two UIDs taken as one only keep more. Without a readable value,
    every such event is taken as one UID: all are kept if any is."""
    try:
        value = _value(raw)
    except _Unknown:
        return b""
    return b"".join(value.replace(b"\\", b"").split()).lower()


def _value(raw: bytes) -> bytes:
    """The value after the parameters (which may quote a colon)."""
    if b'"' not in raw:
        _, colon, value = raw.partition(b":")
        if not colon:
            raise _Unknown
        return value
    quoted = False
    for index, char in enumerate(raw):
        if char == 34:  # "
            quoted = not quoted
        elif char == 58 and not quoted:  # :
            return raw[index + 1 :]
    raise _Unknown


def _may_reach(event: _Event, first: datetime, last: datetime, days: tuple[bytes, bytes]) -> bool:
    if event.unknown:
        return True
    lines = event.lines
    if len(lines) == 2 and len(lines.get(b"DTSTART", ())) == 1 and len(lines.get(b"DTEND", ())) == 1:
        # Most events: one DTSTART, one DTEND, no recurrence. Their days, compared as YYYYMMDD strings,
        # decide (an instance lies within its start day and its end day).
        start, end = _day(lines[b"DTSTART"][0]), _day(lines[b"DTEND"][0])
        if start is not None and end is not None and start <= end:
            return start <= days[1] and end >= days[0]
    try:
        low, high = _bounds(event.lines)
    except (_Unknown, ValueError, OverflowError, IndexError):
        return True
    return low < last and high > first


def _day(raw: bytes) -> bytes | None:
    """YYYYMMDD of a DATE or DATE-TIME value, or None."""
    value = raw.rpartition(b":")[2].strip()
    day = value[:8]
    return day if len(value) in (8, 15, 16) and day.isdigit() else None


def _text(raw: bytes) -> str:
    """A timing value; anything but ASCII is not one (UnicodeDecodeError: the event is kept)."""
    return _value(raw).decode("ascii")


def _bounds(lines: dict[bytes, list[bytes]]) -> tuple[datetime, datetime]:
    """The earliest start and the latest end any instance of the event can have, as written."""
    starts = lines.get(b"DTSTART") or []
    if len(starts) != 1:
        raise _Unknown
    start, all_day = _moment(_text(starts[0]))
    duration = _duration(lines, start, all_day)
    low, high = start, start + duration
    for text in lines.get(b"RECURRENCE-ID", ()):
        (rid, _) = _moment(_text(text))
        low, high = min(low, rid), max(high, rid + duration)
    for text in lines.get(b"RRULE", ()):
        high = max(high, _last_start(_text(text), start) + duration)
    for text in lines.get(b"RDATE", ()):
        for item in _text(text).split(","):
            begin, _, period = item.strip().partition("/")
            moment, _ = _moment(begin)
            end = moment + duration
            if period:
                end = moment + _parse_duration(period) if period[:1] in "P+-" else _moment(period)[0]
            low, high = min(low, moment), max(high, end, moment)
    return low, high


def _moment(text: str) -> tuple[datetime, bool]:
    match = _STAMP.fullmatch(text.strip())
    if match is None:
        raise _Unknown
    year, month, day, hour, minute, second = match.groups()
    if hour is None:
        return datetime(int(year), int(month), int(day), tzinfo=UTC), True
    return datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=UTC), False


def _duration(lines: dict[bytes, list[bytes]], start: datetime, all_day: bool) -> timedelta:
    ends, durations = lines.get(b"DTEND", ()), lines.get(b"DURATION", ())
    if len(ends) + len(durations) > 1:
        raise _Unknown
    if ends:
        length = _moment(_text(ends[0]))[0] - start
    elif durations:
        length = _parse_duration(_text(durations[0]))
    else:
        length = timedelta(days=1) if all_day else timedelta(0)
    if length < timedelta(0):
        raise _Unknown  # the parser says why it is skipped
    return length


def _parse_duration(text: str) -> timedelta:
    match = _DURATION.fullmatch(text.strip())
    if match is None or text.strip() in ("P", "PT", "+P", "-P"):
        raise _Unknown
    sign, weeks, days, hours, minutes, seconds = match.groups()
    length = timedelta(
        weeks=int(weeks or 0),
        days=int(days or 0),
        hours=int(hours or 0),
        minutes=int(minutes or 0),
        seconds=int(seconds or 0),
    )
    return -length if sign == "-" else length


def _last_start(rule: str, start: datetime) -> datetime:
    """No instance of the rule starts later than this; `_FAR` when that is not easy to bound."""
    parts: dict[str, str] = {}
    for part in rule.split(";"):
        name, _, value = part.partition("=")
        if name.strip().upper() in parts:
            raise _Unknown
        parts[name.strip().upper()] = value.strip().upper()
    if "RSCALE" in parts or "SKIP" in parts:
        return _FAR  # another calendar scale (RFC 7529): not bounded here
    if "UNTIL" in parts:
        until, whole_day = _moment(parts["UNTIL"])
        return max(start, until + timedelta(days=1) if whole_day else until)
    if "COUNT" not in parts:
        return _FAR
    count, interval = int(parts["COUNT"]), int(parts.get("INTERVAL", "1"))
    if count < 1 or interval < 1:
        raise _Unknown
    by = {k: v for k, v in parts.items() if k.startswith("BY")}
    period = _period(parts.get("FREQ", ""), by, start, interval)
    if period is None:
        return _FAR
    # The first period may hold no instance (DTSTART after the rule's days); every later one holds one.
    try:
        return start + period * interval * (count + 1)
    except OverflowError:
        return _FAR


def _period(freq: str, by: dict[str, str], start: datetime, interval: int) -> timedelta | None:
    """The longest time between consecutive periods that each hold at least one instance, for rules where
    that is easy to see; None otherwise."""
    names = set(by) - _FINER
    if freq in _UNIT:
        return _UNIT[freq] if not by else None
    if freq == "DAILY":
        if not names:
            return timedelta(days=1)
        # Stepping INTERVAL days reaches every weekday within seven steps, unless INTERVAL is a multiple
        # of seven; the caller multiplies by INTERVAL.
        plain = names == {"BYDAY"} and _plain_weekdays(by["BYDAY"])
        return timedelta(days=7) if plain and interval % 7 else None
    if freq == "WEEKLY":
        if not names or (names == {"BYDAY"} and _plain_weekdays(by["BYDAY"])):
            return timedelta(days=7)
        return None
    if freq == "MONTHLY":
        if not names and start.day <= 28:
            return timedelta(days=31)
        if names == {"BYDAY"} and _monthly_weekdays(by["BYDAY"]):
            return timedelta(days=31)
        if names == {"BYMONTHDAY"} and all(0 < abs(int(v)) <= 28 for v in by["BYMONTHDAY"].split(",")):
            return timedelta(days=31)
        return None
    if freq == "YEARLY" and names <= {"BYMONTH"} and start.day <= 28:
        return timedelta(days=366)
    return None


def _plain_weekdays(text: str) -> bool:
    return all(day in _WEEKDAYS for day in text.split(","))


def _monthly_weekdays(text: str) -> bool:
    """Every month holds an instance: plain weekdays, or the first to fourth (or last to fourth-last)."""
    for item in text.split(","):
        day, number = item[-2:], item[:-2]
        if day not in _WEEKDAYS:
            return False
        if number and not (number.lstrip("+-").isdigit() and 1 <= abs(int(number)) <= 4):
            return False
    return True

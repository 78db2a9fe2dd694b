"""Read an ICS export into busy time and observed events, skipping (and naming) what cannot be read.

When an event blocks time (the busy rule):
- A cancelled event (STATUS:CANCELLED) never blocks; it is still observed, with `cancelled=True`, so the
  reconciler knows it did not happen. An event one of the owner's addresses declined (PARTSTAT=DECLINED)
  neither blocks nor is observed.
- Outlook's X-MICROSOFT-CDO-BUSYSTATUS decides when present: BUSY, OOF and TENTATIVE block, FREE and
  WORKINGELSEWHERE do not.
- Otherwise TRANSP decides: OPAQUE blocks, TRANSPARENT does not.
- With neither, a timed event blocks (RFC 5545's default) and an all-day event does not: Google and Apple
  mark all-day events TRANSPARENT unless the person chose "busy", and birthdays and holidays arrive with no
  mark at all, so only an explicit mark makes a whole day busy.
- An all-day event covers whole days in the calendar's zone: X-WR-TIMEZONE, else the caller's default
  zone, else UTC. Floating times (no zone) are read in that zone too.
- circleback's own touchpoints (an X-CIRCLEBACK-KEY, or a UID circleback issued) never block: they are
  what circleback places, and a subscriber's copy must not push the original out of its own slot.
`Observation.transparent` is true exactly when the event's own marks say it does not block.
"""

from __future__ import annotations

import gc
import hashlib
import re
import sys
import threading
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from time import monotonic
from typing import Any
from urllib.parse import unquote

from icalendar import Component, vDDDLists, vDDDTypes, vText
from icalendar.timezone import tzp
from recurring_ical_events import EventAdapter, Occurrence, Series

from connectors.ics_blocks import Block, lex
from connectors.ics_feed import KEY_MARKER, KEY_MARKER_RE, circleback_key, verified_key
from connectors.ics_kept import overlaps
from connectors.ics_window import outside
from schedules.events import Attendee, Interval, Observation, PartStat, Snapshot

# A series denser than this is a broken or hostile rule; expanding it could take minutes.
MAX_PER_DAY = 24

# The reading budget (README, "Reading budgets"). A calendar is data from elsewhere: a few hundred bytes of
# it can ask for an expansion that runs for hours (a rule that never matches is searched up to the year
# 9999) or yields millions of instances. Over a series' budget, that series is skipped and named; over the
# calendar's, the series not yet expanded are skipped and counted; the other calendars are not affected.
SERIES_MAX_INSTANCES = 10_000  # instances of one series in one window
SERIES_MAX_STEPS = 200_000  # periods (days for a daily rule) searched from DTSTART to the window's end
SERIES_MAX_SECONDS = 5.0
CALENDAR_MAX_INSTANCES = 50_000  # instances of all series together in one window
CALENDAR_MAX_STEPS = 2_000_000
CALENDAR_MAX_SECONDS = 60.0

# Everything the reader looks at; the lexer leaves the rest of an event out before parsing.
_READ = frozenset(
    {
        "UID", "DTSTART", "DTEND", "DURATION", "RRULE", "RDATE", "EXDATE", "RECURRENCE-ID", "SEQUENCE",
        "SUMMARY", "STATUS", "TRANSP", "ATTENDEE", "ORGANIZER", "X-MICROSOFT-CDO-BUSYSTATUS",
        "X-CIRCLEBACK-KEY", "DESCRIPTION",
    }
)  # fmt: skip
_TIMING = frozenset({"DTSTART", "DTEND", "DURATION", "RRULE", "RDATE", "EXDATE", "RECURRENCE-ID"})
_BUSY_STATUS = {"BUSY": True, "OOF": True, "TENTATIVE": True, "FREE": False, "WORKINGELSEWHERE": False}
_PER_DAY = {"SECONDLY": 86400, "MINUTELY": 1440, "HOURLY": 24}
_FINER_THAN = {
    "BYHOUR": ("HOURLY", "MINUTELY", "SECONDLY"),
    "BYMINUTE": ("MINUTELY", "SECONDLY"),
    "BYSECOND": ("SECONDLY",),
}
_RANGES = {  # (lowest, highest, may count from the end)
    "BYSECOND": (0, 60, False),
    "BYMINUTE": (0, 59, False),
    "BYHOUR": (0, 23, False),
    "BYMONTH": (1, 12, False),
    "BYMONTHDAY": (1, 31, True),
    "BYYEARDAY": (1, 366, True),
    "BYWEEKNO": (1, 53, True),
    "BYSETPOS": (1, 366, True),
}
_NOT_NUMBERS = frozenset({"FREQ", "UNTIL", "WKST", "BYDAY", "RSCALE", "SKIP"})
_MONTH_DAYS = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30, 12: 31}
_DAY = timedelta(days=1)


class _Skip(Exception):
    """This component cannot be used; the message says why."""


@dataclass(frozen=True)
class _Details:
    """What one VEVENT says about itself, read once and shared by every instance it produces."""

    uid: str
    summary: str
    attendees: tuple[Attendee, ...]
    organizer: str | None
    cancelled: bool
    blocks: bool  # by its own marks; cancellation and the owner's decline are applied later
    circleback_key: str | None
    recurrence_id: date | None
    start: date


@dataclass(frozen=True)
class _Seen:
    observation: Observation
    blocks: bool


class _Adapter(EventAdapter):  # type: ignore[misc]
    """The library's event adapter, carrying our reading of the component to its occurrences."""

    def __init__(self, component: Component, details: _Details) -> None:
        super().__init__(component)
        self.details = details


class _Occurrence(Occurrence):  # type: ignore[misc]
    def __init__(self, adapter: _Adapter, start: Any, end: Any, sequence: int) -> None:
        super().__init__(adapter, start, end, sequence=sequence)
        self.details = adapter.details


class _Series(Series):  # type: ignore[misc]
    """Uses the library's documented hook for the occurrence class, so instances keep their `_Details`
    and need not be copied into new components (a copy per instance is most of the cost)."""

    def occurrence(self, adapter: _Adapter, start: Any = None, end: Any = None) -> _Occurrence:
        return _Occurrence(adapter, start, end, self.sequence)


@dataclass(frozen=True)
class _Recurring:
    uid: str
    line: int
    series: _Series


@dataclass(frozen=True)
class ParsedCalendar:
    """A calendar read once and reusable for any window (the expensive part of a read)."""

    source: str
    zone: tzinfo
    singles: tuple[_Seen, ...]
    recurring: tuple[_Recurring, ...]
    warnings: tuple[str, ...]
    # The events read are all those that can reach this interval (None: all of them); it can be expanded
    # for any window inside it.
    cover: Interval | None = None

    def covers(self, window: Interval) -> bool:
        return self.cover is None or (self.cover.start <= window.start and window.end <= self.cover.end)


def load_calendar(
    data: bytes,
    source: str,
    *,
    default_tz: str | None = None,
    marker_secret: bytes | None = None,
    cover: Interval | None = None,
) -> ParsedCalendar:
    """Parse and validate every component; each bad one becomes a warning naming `source` and its UID/line.

    With `cover`, the events that certainly cannot reach it are left out unread (connectors.ics_window),
    and nothing is said about them; the result can be expanded for windows inside `cover` only.
    An event is recognised as a copy of one of circleback's own only by a key marker signed with
    `marker_secret`; without a secret, none is."""
    try:
        with _collector_paused():
            return _Loader(source, default_tz, marker_secret).load(data, cover)
    except Exception as exc:  # the contract is "never raises": a bug here must not stop a cycle
        what = None if out_of_memory(exc) else f"{type(exc).__name__}: {exc}"
    # Said outside the handler: its traceback holds the partial read, which must go before anything
    # new is allocated when memory is what ran out.
    if what is None:
        gc.collect()
        what = "ran out of memory"
    reason = f"could not be read ({what}); no events read"
    return ParsedCalendar(source, UTC, (), (), (f"{source}: {reason}",), cover)


def expand(
    parsed: ParsedCalendar,
    window: Interval,
    *,
    budget: Budget | None = None,
) -> Snapshot:
    """The instances of a parsed calendar overlapping `window`, recurrences expanded within `budget`.

    Every warning is returned, however many; callers summarise (`summarise_warnings`)."""
    if not parsed.covers(window):
        raise ValueError(f"{parsed.source}: read for {parsed.cover}, cannot be expanded for {window}")
    warnings = list(parsed.warnings)
    seen = [item for item in parsed.singles if overlaps(item.observation, window)]
    meter = _Meter(budget or Budget())
    previous = getattr(_CURRENT, "meter", None)
    _CURRENT.meter = meter
    try:
        with _collector_paused():
            for index, recurring in enumerate(parsed.recurring):
                if not _expand_one(recurring, parsed, window, meter, seen, warnings):
                    warnings.append(_over_budget(parsed, index, meter))
                    break
    finally:
        _CURRENT.meter = previous
    seen.sort(key=lambda item: _order(item.observation))
    # Translation only: which of these block time (cancelled, marked free, declined by the owner,
    # circleback's own) is the core's busy rule, schedules.busy.
    return Snapshot(observations=tuple(item.observation for item in seen), warnings=tuple(warnings))


def _expand_one(
    recurring: _Recurring,
    parsed: ParsedCalendar,
    window: Interval,
    meter: _Meter,
    seen: list[_Seen],
    warnings: list[str],
) -> bool:
    """Add one series' instances to `seen`; False when the calendar's budget ran out (nothing added)."""
    label = f"{parsed.source}: line {recurring.line}: event {recurring.uid!r}"
    meter.start_series()
    try:
        seen.extend(_instances(recurring, parsed, window, warnings, meter))
    except _OverBudget as over:
        if over.calendar:
            meter.reason = str(over)
            return False
        warnings.append(f"{label}: {over}; skipped")
    except Exception as exc:
        if out_of_memory(exc):  # the next series would fare no better: the calendar stops here
            meter.reason = "ran out of memory"
            return False
        warnings.append(f"{label}: cannot expand its recurrence ({exc}); skipped")
    return True


def out_of_memory(exc: BaseException) -> bool:
    """Whether `exc` means memory ran out. CPython 3.11 reports a frame it cannot allocate (a call, deep in
    dateutil's search, say) as this SystemError rather than as a MemoryError: a process under a memory
    limit (tests/bounded.py, a container's) sees it where the limit is reached."""
    if isinstance(exc, MemoryError):
        return True
    return isinstance(exc, SystemError) and "error return without exception set" in str(exc)


def _over_budget(parsed: ParsedCalendar, index: int, meter: _Meter) -> str:
    left = parsed.recurring[index:]
    return (
        f"{parsed.source}: over its reading budget ({meter.reason}); {len(left)} recurring event(s) "
        f"not read, the first at line {left[0].line} ({left[0].uid!r})"
    )


def _instances(
    recurring: _Recurring, parsed: ParsedCalendar, window: Interval, warnings: list[str], meter: _Meter
) -> list[_Seen]:
    # A day of margin each side: all-day and floating instances are compared before zones are applied.
    result: list[_Seen] = []
    limit = meter.budget.series_instances
    for count, occurrence in enumerate(recurring.series.between(window.start - _DAY, window.end + _DAY)):
        if count == limit:
            warnings.append(
                f"{parsed.source}: line {recurring.line}: event {recurring.uid!r}: more than "
                f"{limit} instances in the window; the rest are ignored"
            )
            break
        meter.add_instance()
        details: _Details = occurrence.details
        # A moved instance keeps the RECURRENCE-ID it was written with; any other instance is named by
        # its start, as RFC 5545 does.
        own = details.recurrence_id is not None and occurrence.start == details.start
        item = _observe(
            details,
            occurrence.start,
            occurrence.end,
            parsed.source,
            parsed.zone,
            recurrence_id=details.recurrence_id if own else occurrence.start,
        )
        if overlaps(item.observation, window):
            result.append(item)
    return result


# --- the budget ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    """Limits for expanding one calendar in one window; the defaults are the module's constants."""

    series_instances: int = SERIES_MAX_INSTANCES
    series_steps: int = SERIES_MAX_STEPS
    series_seconds: float = SERIES_MAX_SECONDS
    calendar_instances: int = CALENDAR_MAX_INSTANCES
    calendar_steps: int = CALENDAR_MAX_STEPS
    calendar_seconds: float = CALENDAR_MAX_SECONDS


class _OverBudget(Exception):
    """A series (or, with `calendar`, the whole calendar) used up its budget; the message says how."""

    def __init__(self, reason: str, *, calendar: bool = False) -> None:
        super().__init__(reason)
        self.calendar = calendar


class _PastWindow(Exception):
    """dateutil is searching months after the window's end: nothing it finds from there on is wanted."""


_CURRENT = threading.local()  # the meter of the expansion running in this thread, seen by `_Probe`
# dateutil tests `_bynweekday` at most once per month searched, so once it has been tested this many times
# more than there are months from DTSTART to the window's end, the search is past the window and every
# instance in the window has been found. A year's margin, for rounding and the first test at DTSTART.
_MARGIN_MONTHS = 13
_CHECK_CLOCK_EVERY = 256  # instances
# How long one step of dateutil's search is, by its FREQ constant (YEARLY = 0 ... SECONDLY = 6).
_STEP = (
    timedelta(days=365),
    timedelta(days=28),
    timedelta(days=7),
    timedelta(days=1),
    timedelta(hours=1),
    timedelta(minutes=1),
    timedelta(seconds=1),
)


class _Meter:
    """What one expansion has used of its budget."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        now = monotonic()
        self.calendar_deadline = now + budget.calendar_seconds
        self.series_deadline = now + budget.series_seconds
        self.instances = 0
        self.steps = 0
        self.months = 0
        self.month_limit = sys.maxsize
        self.reason = ""

    def start_series(self) -> None:
        self.series_deadline = monotonic() + self.budget.series_seconds

    def check_clock(self) -> None:
        now = monotonic()
        if now > self.calendar_deadline:
            raise _OverBudget(f"more than {self.budget.calendar_seconds:g} s", calendar=True)
        if now > self.series_deadline:
            raise _OverBudget(f"expanding it took more than {self.budget.series_seconds:g} s")

    def month_searched(self) -> None:
        self.months += 1
        if self.months > self.month_limit:
            raise _PastWindow
        self.check_clock()

    def add_steps(self, steps: int) -> None:
        if steps > self.budget.series_steps:
            raise _OverBudget(
                f"its RRULE would be searched {steps:,} times from DTSTART to the end of the window "
                f"(more than {self.budget.series_steps:,})"
            )
        self.steps += steps
        if self.steps > self.budget.calendar_steps:
            reason = f"RRULEs searched more than {self.budget.calendar_steps:,} times"
            raise _OverBudget(reason, calendar=True)

    def add_instance(self) -> None:
        self.instances += 1
        if self.instances > self.budget.calendar_instances:
            raise _OverBudget(f"more than {self.budget.calendar_instances:,} instances", calendar=True)
        if self.instances % _CHECK_CLOCK_EVERY == 0:
            self.check_clock()


class _Probe(tuple[Any, ...]):
    """Stands in for a dateutil rule's `_bynweekday`, which dateutil's search tests once for every month
    it searches (every period, for monthly and yearly rules), whether anything matched or not. It is the
    one place where a search that never finds anything (a rule that never matches is searched up to the
    year 9999) can be stopped. tests/test_ics_budget.py fails if a dateutil release changes this."""

    def __bool__(self) -> bool:
        meter: _Meter | None = getattr(_CURRENT, "meter", None)
        if meter is not None:
            meter.month_searched()
        return len(self) > 0


class _BoundedRule:
    """A dateutil rule as recurring-ical-events uses it (`between` and `until`), searching no further than
    the window asked for and within the budget."""

    def __init__(self, rule: Any) -> None:
        self.rule = rule
        self.until = rule.until
        self.string = getattr(rule, "string", "")
        # dateutil's cache holds a lock while it searches; a search stopped half-way would leave it held.
        rule._cache = None
        rule._bynweekday = _Probe(rule._bynweekday or ())
        self.step = _STEP[rule._freq] * rule._interval

    def between(self, after: datetime, before: datetime, inc: bool = False) -> Iterator[datetime]:
        meter: _Meter | None = getattr(_CURRENT, "meter", None)
        start: datetime = self.rule._dtstart
        if meter is not None:
            meter.add_steps(max(0, int(_span(start, self._search_end(before)) / self.step)))
            meter.months = 0
            meter.month_limit = _months(start, before) + _MARGIN_MONTHS
        try:
            for moment in self.rule:
                if moment > before or (moment == before and not inc):
                    return
                if moment > after or (moment == after and inc):
                    yield moment
        except _PastWindow:
            return
        finally:
            if meter is not None:
                meter.month_limit = sys.maxsize

    def _search_end(self, before: datetime) -> datetime:
        """Where dateutil's search ends at the latest: the window's end, or UNTIL when that is earlier."""
        until = self.until
        if isinstance(until, date) and not isinstance(until, datetime):
            until = datetime.combine(until, time(0))
        if isinstance(until, datetime) and until.replace(tzinfo=None) < before.replace(tzinfo=None):
            return until
        return before


def _span(start: datetime, end: datetime) -> timedelta:
    return end.replace(tzinfo=None) - start.replace(tzinfo=None)


def _months(start: datetime, end: datetime) -> int:
    return max(0, (end.year - start.year) * 12 + end.month - start.month)


class _Loader:
    def __init__(self, source: str, default_tz: str | None, marker_secret: bytes | None) -> None:
        self.source = source
        self.default_tz = default_tz
        self.marker_secret = marker_secret
        self.warnings: list[str] = []
        self.zone: tzinfo = UTC
        self.shift_utc = False
        self.cover: Interval | None = None

    def load(self, data: bytes, cover: Interval | None = None) -> ParsedCalendar:
        self.cover = cover
        skip = () if cover is None else outside(data, cover.start, cover.end)
        lexed = lex(data, self.source, event_properties=_READ, skip=[(s.start, s.end) for s in skip])
        del skip
        self.warnings.extend(lexed.warnings)
        self._choose_zone(lexed.properties)
        scale = lexed.properties.get("CALSCALE", "GREGORIAN").upper()
        if scale != "GREGORIAN":
            self.warnings.append(f"{self.source}: CALSCALE {scale} is not supported; no events read")
            return self._result([], [])
        # Parsing a VTIMEZONE registers its TZID with icalendar, which events then resolve at parse time.
        for block in lexed.blocks:
            if block.name == "VTIMEZONE":
                self._timezone(block)
        groups: dict[str, list[tuple[Block, Component]]] = defaultdict(list)
        for block in lexed.blocks:
            if block.name == "VEVENT":
                read = self._event(block)
                if read is not None:
                    groups[read[0]].append((block, read[1]))
        singles: list[_Seen] = []
        recurring: list[_Recurring] = []
        for uid, group in groups.items():
            for part in self._by_master(uid, group):
                self._group(uid, part, singles, recurring)
        return self._result(singles, recurring)

    def _by_master(
        self, uid: str, group: list[tuple[Block, Component]]
    ) -> list[list[tuple[Block, Component]]]:
        """One group per event: a UID should name one event (or one series with its moved instances), but
        some exports give one UID to several events. Read together, the library would keep one of them and
        drop the rest without a word, and a dropped busy event lets a touchpoint land on top of it; so each
        is read on its own. An event repeated word for word is read once."""
        masters: list[tuple[Block, Component]] = []
        seen: set[tuple[str, ...]] = set()
        for block, component in group:
            if "RECURRENCE-ID" in component:
                continue
            text = tuple(line for line in block.lines if not line.upper().startswith("DTSTAMP"))
            if text not in seen:
                seen.add(text)
                masters.append((block, component))
        if len(masters) <= 1:
            overrides = [item for item in group if "RECURRENCE-ID" in item[1]]
            return [masters + overrides]
        self.warnings.append(
            f"{self.source}: line {masters[0][0].line}: event {uid!r}: {len(masters)} different events share "
            "this UID; all are kept as busy time"
        )
        # The moved instances go with the master the library would have chosen: the highest SEQUENCE.
        chosen = max(range(len(masters)), key=lambda i: (_sequence(masters[i][1]), -i))
        overrides = [item for item in group if "RECURRENCE-ID" in item[1]]
        return [[master, *(overrides if i == chosen else [])] for i, master in enumerate(masters)]

    def _result(self, singles: list[_Seen], recurring: list[_Recurring]) -> ParsedCalendar:
        return ParsedCalendar(
            self.source, self.zone, tuple(singles), tuple(recurring), tuple(self.warnings), self.cover
        )

    def _choose_zone(self, properties: dict[str, str]) -> None:
        fallback = "UTC"
        wr = properties.get("X-WR-TIMEZONE", "").strip().strip('"')
        if wr:
            zone = resolve_zone(wr)
            if zone is not None:
                self.zone, self.shift_utc = zone, True
                return
            fallback = self.default_tz or "UTC"
            self.warnings.append(f"{self.source}: unknown X-WR-TIMEZONE {wr!r}; using {fallback}")
        if self.default_tz:
            zone = resolve_zone(self.default_tz)
            if zone is not None:
                self.zone = zone
                return
            self.warnings.append(f"{self.source}: unknown default time zone {self.default_tz!r}; using UTC")

    def _timezone(self, block: Block) -> None:
        try:
            Component.from_ical(block.text)
        except Exception as exc:
            self.warnings.append(
                f"{self.source}: line {block.line}: VTIMEZONE {block.first('TZID')!r}: unreadable ({exc}); "
                "events using it may be read in the calendar's zone"
            )

    def _event(self, block: Block) -> tuple[str, Component] | None:
        uid = block.uid()
        label = f"{self.source}: line {block.line}: event " + (repr(uid) if uid else "without UID")
        self.warnings.extend(f"{label}: {note}" for note in block.notes)
        try:
            component = Component.from_ical(_lean(block.lines))
            self._check(component, label)
            uid = self._uid(component, block, label)
            return uid, component
        except _Skip as skip:
            self.warnings.append(f"{label}: {skip}; skipped")
        except Exception as exc:
            self.warnings.append(f"{label}: unreadable ({type(exc).__name__}: {exc}); skipped")
        return None

    def _uid(self, component: Component, block: Block, label: str) -> str:
        uid = _text(component.get("UID")).strip()
        if uid:
            return uid
        # A stand-in that stays the same while the event does, so re-reading never duplicates it.
        stable = "\n".join(line for line in block.lines if not line.upper().startswith("DTSTAMP"))
        uid = "no-uid-" + hashlib.sha256(stable.encode()).hexdigest()[:16]
        component["UID"] = vText(uid)
        self.warnings.append(f"{label}: no UID; using {uid!r}")
        return uid

    def _check(self, component: Component, label: str) -> None:
        broken = sorted({name for name, _ in component.errors if name in _TIMING})
        if broken:
            details = "; ".join(f"{name}: {msg}" for name, msg in component.errors if name in broken)
            raise _Skip(f"unreadable {', '.join(broken)} ({details})")
        other = sorted({name or "content line" for name, _ in component.errors})
        if other:
            self.warnings.append(f"{label}: ignored unreadable {', '.join(other)}")
        if "SEQUENCE" in other:
            del component["SEQUENCE"]  # the library compares it as a number
        for name in ("DTSTART", "DTEND", "DURATION", "RECURRENCE-ID"):
            if isinstance(component.get(name), list):
                raise _Skip(f"more than one {name}")
        if "DTSTART" not in component:
            raise _Skip("no DTSTART")
        for note in self._anchor(component):
            self.warnings.append(f"{label}: {note}")
        start = _when(component, "DTSTART")
        end = _end(component, start)
        if end < start:
            raise _Skip(f"ends before it starts ({_show(end)} < {_show(start)})")
        if "RRULE" in component:
            _check_rules(_prop(component, "RRULE"))
        if "RDATE" in component:
            _check_dates(_prop(component, "RDATE"))

    def _anchor(self, component: Component) -> list[str]:
        """Give every time a zone: floating ones (and unknown TZIDs) the calendar's, and with X-WR-TIMEZONE
        UTC ones too, as Google means them (so a weekly 09:00 stays 09:00 across DST)."""
        notes: list[str] = []
        for name in ("DTSTART", "DTEND", "RECURRENCE-ID"):
            prop = component.get(name)
            if prop is None:
                continue
            value = self._anchored(prop.dt, prop.params.get("TZID"), notes)
            if value is not prop.dt:
                replacement = vDDDTypes(value)
                for key, param in prop.params.items():
                    if key not in ("TZID", "VALUE"):
                        replacement.params[key] = param
                component[name] = replacement
        for name in ("EXDATE", "RDATE"):
            prop = component.get(name)
            if prop is None:
                continue
            lists = prop if isinstance(prop, list) else [prop]
            anchored = [self._anchored_list(each, notes) for each in lists]
            if any(new is not old for new, old in zip(anchored, lists, strict=True)):
                component[name] = anchored if isinstance(prop, list) else anchored[0]
        return sorted(set(notes))

    def _anchored_list(self, values: vDDDLists, notes: list[str]) -> vDDDLists:
        tzid = values.params.get("TZID")
        items: list[Any] = []
        changed = False
        for item in values.dts:
            old = item.dt
            if isinstance(old, tuple):
                first = self._anchored(old[0], tzid, notes)
                second = old[1] if isinstance(old[1], timedelta) else self._anchored(old[1], tzid, notes)
                new: Any = (first, second)
                changed = changed or first is not old[0] or second is not old[1]
            else:
                new = self._anchored(old, tzid, notes)
                changed = changed or new is not old
            items.append(new)
        if not changed:
            return values
        result = vDDDLists(items)
        if "VALUE" in values.params:
            result.params["VALUE"] = values.params["VALUE"]
        return result

    def _anchored(self, value: Any, tzid: str | None, notes: list[str]) -> Any:
        if not isinstance(value, datetime):
            return value
        if value.tzinfo is None:
            if tzid:
                notes.append(f"unknown TZID {tzid!r}; read in {zone_name(self.zone)}")
            return value.replace(tzinfo=self.zone)
        if self.shift_utc and value.utcoffset() == timedelta(0) and (value.tzname() or "").upper() == "UTC":
            return value.astimezone(self.zone)
        return value

    def _group(
        self,
        uid: str,
        group: list[tuple[Block, Component]],
        singles: list[_Seen],
        recurring: list[_Recurring],
    ) -> None:
        line = group[0][0].line
        component = group[0][1]
        if len(group) == 1 and "RRULE" not in component and "RDATE" not in component:
            try:
                details = _details(component, self.marker_secret)
                end = _end(component, details.start)
                singles.append(
                    _observe(
                        details,
                        details.start,
                        end,
                        self.source,
                        self.zone,
                        recurrence_id=details.recurrence_id,
                    )
                )
            except Exception as exc:
                self.warnings.append(
                    f"{self.source}: line {line}: event {uid!r}: "
                    f"unreadable ({type(exc).__name__}: {exc}); skipped"
                )
            return
        try:
            # Master, RECURRENCE-ID overrides and SEQUENCE duplicates are resolved by the library.
            series = _Series([_Adapter(each, _details(each, self.marker_secret)) for _, each in group])
            if series.recurrence.has_core:
                rules = series.recurrence.rrules
                series.recurrence.rrules = [rules[0], *(_BoundedRule(rule) for rule in rules[1:])]
            recurring.append(_Recurring(uid, line, series))
        except Exception as exc:
            self.warnings.append(
                f"{self.source}: line {line}: event {uid!r}: "
                f"its recurrence cannot be read ({type(exc).__name__}: {exc}); skipped"
            )


# A calendar address as written: its parameters (a value may be quoted, or a list) and its value. The
# reader looks at PARTSTAT and EMAIL only; exports carry four or five more on every attendee (CN, ROLE,
# CUTYPE, RSVP, X-NUM-GUESTS), and icalendar's parameter parsing is a third of an event's cost.
_PARAM = r'(?:"[^"]*"|[^";:,]*)'
_ADDRESS = re.compile(rf"(ATTENDEE|ORGANIZER)((?:;[A-Za-z0-9-]+={_PARAM}(?:,{_PARAM})*)+)(:.*)", re.I | re.S)
_ONE_PARAM = re.compile(rf";([A-Za-z0-9-]+)=({_PARAM}(?:,{_PARAM})*)")
_ADDRESS_PARAMS = frozenset({"PARTSTAT", "EMAIL"})


def _lean(lines: list[str]) -> str:
    """An event's text without what the reader never looks at: a DESCRIPTION without a key marker (only
    the marker is read from it, and descriptions are often the longest part of an event), and the
    parameters of an attendee or organizer other than PARTSTAT and EMAIL. A line not of the plain shape
    is left whole, for icalendar to read (or reject) as it is."""
    kept: list[str] = []
    for line in lines:
        head = line[:9].upper()
        if head.startswith("DESCRIPTI") and KEY_MARKER not in line:
            continue
        if head.startswith(("ATTENDEE;", "ORGANIZER")):
            match = _ADDRESS.fullmatch(line)
            if match is not None:
                params = "".join(
                    f";{name}={value}"
                    for name, value in _ONE_PARAM.findall(match[2])
                    if name.upper() in _ADDRESS_PARAMS
                )
                line = f"{match[1]}{params}{match[3]}"
        kept.append(line)
    return "\r\n".join(kept) + "\r\n"


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Parsing allocates hundreds of thousands of long-lived objects and no cycles worth collecting; left
    on, the cyclic collector rescans them all again and again and a 50,000-event read takes twice as long."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def resolve_zone(name: str) -> tzinfo | None:
    """An IANA name, a Windows name ("W. Europe Standard Time") or a VTIMEZONE seen earlier; else None."""
    try:
        return tzp.timezone(name)
    except Exception:
        return None


def zone_name(zone: tzinfo) -> str:
    return str(getattr(zone, "key", None) or zone.tzname(None) or zone)


def _end(component: Component, start: date) -> date:
    if "DTEND" in component:
        end = _when(component, "DTEND")
        if isinstance(end, datetime) != isinstance(start, datetime):
            raise _Skip("DTSTART and DTEND are not both dates or both date-times")
        return end
    if "DURATION" in component:
        duration = _prop(component, "DURATION").dt
        if not isinstance(duration, timedelta):
            raise _Skip(f"DURATION is not a duration ({duration!r})")
        if not isinstance(start, datetime) and duration % _DAY:
            raise _Skip("an all-day event with a DURATION of part of a day")
        return start + duration
    return start if isinstance(start, datetime) else start + _DAY


def _sequence(component: Component) -> int:
    try:
        return int(str(_text(component.get("SEQUENCE")) or 0))
    except ValueError:
        return 0


def _prop(component: Component, name: str) -> Any:
    """A property as icalendar parsed it (its declared type is a union of every value type)."""
    return component.get(name)


def _when(component: Component, name: str) -> date:
    value = _prop(component, name).dt
    if not isinstance(value, date):
        raise _Skip(f"{name} is not a date or a date-time ({value!r})")
    return value


def _check_rules(rules: Any) -> None:
    """Reject rules that would make expansion hang or run for minutes (dateutil loops forever on INTERVAL=0
    and searches to the year 9999 for a rule that never matches); real calendars never contain them."""
    for rule in rules if isinstance(rules, list) else [rules]:
        try:
            parts = {
                str(name).upper(): [_int(v) for v in values]
                for name, values in rule.items()
                if str(name).upper() not in _NOT_NUMBERS
            }
        except ValueError as exc:
            raise _Skip(f"unreadable RRULE ({exc})") from None
        for name, (low, high, signed) in _RANGES.items():
            bad = [v for v in parts.get(name, []) if (v < 0 and not signed) or not low <= abs(v) <= high]
            if bad:
                raise _Skip(f"RRULE {name}={bad[0]} is out of range")
        if parts.get("INTERVAL", [1])[0] < 1:
            raise _Skip("RRULE INTERVAL must be at least 1")
        freq = str((rule.get("FREQ") or ["?"])[0]).upper()
        never = _never(freq, parts, len(rule.get("BYDAY") or ()))
        if never:
            raise _Skip(f"RRULE never occurs ({never})")
        per_day = _PER_DAY.get(freq, 1) / parts.get("INTERVAL", [1])[0]
        for part, finer in _FINER_THAN.items():
            if part in parts and freq not in finer:
                per_day *= len(parts[part])
        if per_day > MAX_PER_DAY:
            raise _Skip(f"RRULE repeats {per_day:g} times a day (more than {MAX_PER_DAY} is not a meeting)")


def _check_dates(rdates: Any) -> None:
    """The density rule of `_check_rules` for RDATE lists: more than MAX_PER_DAY dates on one day is not a
    meeting, however the dates are written."""
    per_day: Counter[date] = Counter()
    for values in rdates if isinstance(rdates, list) else [rdates]:
        for item in values.dts:
            value = item.dt[0] if isinstance(item.dt, tuple) else item.dt
            per_day[value.date() if isinstance(value, datetime) else value] += 1
    most = max(per_day.values(), default=0)
    if most > MAX_PER_DAY:
        raise _Skip(f"RDATE lists {most} dates on one day (more than {MAX_PER_DAY} is not a meeting)")


def _never(freq: str, parts: dict[str, list[int]], weekdays: int) -> str | None:
    """Why a rule can never produce an instance, for the shapes that are cheap to see; dateutil would search
    such a rule up to the year 9999 (the reading budget stops the shapes not recognised here)."""
    months = parts.get("BYMONTH")
    days = parts.get("BYMONTHDAY")
    if months and days and not any(abs(d) <= _MONTH_DAYS[m] for d in days for m in months):
        return "no such day in those months"
    weeks = parts.get("BYWEEKNO")
    if months and weeks and not set(months) & {m for n in weeks for m in _WEEK_MONTHS[n]}:
        return "no such week in those months"
    positions = parts.get("BYSETPOS")
    if positions and min(abs(p) for p in positions) > _set_size(freq, parts, weekdays):
        return "BYSETPOS beyond the instances of each period"
    return None


def _set_size(freq: str, parts: dict[str, list[int]], weekdays: int) -> int:
    """The most instances one period of the rule can hold, which BYSETPOS picks from."""
    days = {"YEARLY": 366, "MONTHLY": 31, "WEEKLY": 7}.get(freq, 1)
    if weekdays and freq in ("MONTHLY", "WEEKLY", "YEARLY"):
        days = min(days, weekdays * (53 if freq == "YEARLY" else 5))
    finer = {"HOURLY": ("BYMINUTE", "BYSECOND"), "MINUTELY": ("BYSECOND",), "SECONDLY": ()}
    size = days
    for part in finer.get(freq, ("BYHOUR", "BYMINUTE", "BYSECOND")):
        size *= len(parts.get(part) or [0])
    return size


def _week_months() -> dict[int, frozenset[int]]:
    """The months a week number can fall in, in any year: week 1 starts between 29 December and
    4 January, the last week (-1) between 22 and 28 December (whatever WKST)."""
    found: dict[int, frozenset[int]] = {}
    for year in (2001, 2004):  # a common and a leap year
        for number in range(1, 54):
            first = date(year - 1, 12, 29) + timedelta(weeks=number - 1)
            last = date(year, 1, 4) + timedelta(weeks=number - 1, days=6)
            found[number] = found.get(number, frozenset()) | _months_between(first, last)
            first = date(year, 12, 22) - timedelta(weeks=number - 1)
            last = date(year + 1, 1, 3) - timedelta(weeks=number - 1)
            found[-number] = found.get(-number, frozenset()) | _months_between(first, last)
    return found


def _months_between(first: date, last: date) -> frozenset[int]:
    return frozenset((first + timedelta(days=n)).month for n in range((last - first).days + 1))


_WEEK_MONTHS = _week_months()


def _int(value: Any) -> int:
    return int(str(value).rstrip("Ll"))  # a leap month ("5L", RFC 7529) counts as its month


def _own_key(component: Component, marker_secret: bytes | None) -> str | None:
    """The occurrence key of one of circleback's own events (or a copy): X-CIRCLEBACK-KEY, else the marker
    the feed writes as the description's last line, kept by copies that lost the X- property. Either
    counts only when signed with this install's secret: anyone can write a marker, and keys are guessable."""
    written = circleback_key(component)
    if written is not None:
        key = verified_key(written, marker_secret)
        if key is not None:
            return key
    description = _text(component.get("DESCRIPTION"))
    if KEY_MARKER not in description:
        return None
    for marker in reversed(KEY_MARKER_RE.findall(description)):
        key = verified_key(marker, marker_secret)
        if key is not None:
            return key
    return None


def _details(component: Component, marker_secret: bytes | None) -> _Details:
    start = _when(component, "DTSTART")
    rid = component.get("RECURRENCE-ID")
    return _Details(
        uid=_text(component.get("UID")).strip(),
        summary=_text(component.get("SUMMARY")),
        attendees=tuple(_attendees(component.get("ATTENDEE"))),
        organizer=_address(component.get("ORGANIZER")),
        cancelled=_text(component.get("STATUS")).strip().upper() == "CANCELLED",
        blocks=_blocks(component, all_day=not isinstance(start, datetime)),
        circleback_key=_own_key(component, marker_secret),
        recurrence_id=rid.dt if rid is not None else None,
        start=start,
    )


def _observe(
    details: _Details,
    start: date,
    end: date,
    source: str,
    zone: tzinfo,
    *,
    recurrence_id: date | None,
) -> _Seen:
    start_utc = _to_utc(start, zone)
    observation = Observation(
        source=source,
        uid=details.uid,
        start=start_utc,
        end=max(_to_utc(end, zone), start_utc),
        summary=details.summary,
        attendees=details.attendees,
        organizer=details.organizer,
        cancelled=details.cancelled,
        transparent=not details.blocks,
        all_day=not isinstance(start, datetime),
        recurrence_id=_to_utc(recurrence_id, zone) if recurrence_id is not None else None,
        circleback_key=details.circleback_key,
    )
    return _Seen(observation, details.blocks)


def _blocks(component: Component, all_day: bool) -> bool:
    status = _text(component.get("X-MICROSOFT-CDO-BUSYSTATUS")).strip().upper()
    if status in _BUSY_STATUS:
        return _BUSY_STATUS[status]
    transp = _text(component.get("TRANSP")).strip().upper()
    if transp in ("OPAQUE", "TRANSPARENT"):
        return transp == "OPAQUE"
    return not all_day


def _attendees(value: Any) -> Iterator[Attendee]:
    seen: set[str] = set()
    for item in value if isinstance(value, list) else [value] if value is not None else []:
        email = _address(item)
        if email is None or email in seen:
            continue
        seen.add(email)
        params = getattr(item, "params", {})
        try:
            partstat = PartStat(str(params.get("PARTSTAT", "NEEDS-ACTION")).upper())
        except ValueError:
            partstat = PartStat.NEEDS_ACTION
        yield Attendee(email=email, partstat=partstat)


def _address(value: Any) -> str | None:
    """The lower-cased e-mail of a CAL-ADDRESS: its mailto: value, else its EMAIL parameter (Apple writes
    iCloud attendees as urn:uuid: with the address in EMAIL), else None."""
    if isinstance(value, list):
        value = value[0] if value else None
    if value is None:
        return None
    text = normalise_address(str(value))
    if "@" in text:
        return text
    email = normalise_address(str(getattr(value, "params", {}).get("EMAIL", "")).strip('"'))
    return email if "@" in email else None


def normalise_address(text: str) -> str:
    """An address as mail clients write it into calendars, reduced to `name@domain` in lower case:
    `MAILTO:` in any case, `<...>` around it, a `?subject=...` after it, percent-encoding (RFC 6068)."""
    text = text.strip()
    if text[:7].lower() == "mailto:":
        text = text[7:]
    text = unquote(text.partition("?")[0]).strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    return text.lower()


def _text(value: Any) -> str:
    if isinstance(value, list):
        value = value[0] if value else None
    return "" if value is None else str(value)


def _to_utc(value: date, zone: tzinfo) -> datetime:
    if not isinstance(value, datetime):
        value = datetime.combine(value, time(0), tzinfo=zone)
    elif value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.astimezone(UTC)


def _show(value: date) -> str:
    return value.isoformat()


_EPOCH = datetime(1, 1, 1, tzinfo=UTC)


def _order(observation: Observation) -> tuple[datetime, datetime, str, datetime]:
    return (observation.start, observation.end, observation.uid, observation.recurrence_id or _EPOCH)

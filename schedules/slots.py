"""Free time inside working hours, and the rules for choosing a slot in it.

Working hours are wall-clock times in the plan's zone. A day's working time is every instant whose local
date is that day and whose wall-clock time is within the hours, so a 09:00-17:30 day stays 09:00-17:30 on
the day the clocks change, and hours that cover the change are as long as the clocks make them. On the
night the clocks go back that set can be two spans (the repeated hour may fall outside the hours).
Everything else is UTC instants. Searches are bounded by the planning window's last day, so a horizon
with no working day ends the search instead of looping.

A slot fits when it lies inside one open day's working hours and keeps `buffer` free before and after
everything taken (other meetings and what is already placed). A day is closed, whatever its free time,
when it is a public holiday of the plan's country, or when one busy stretch of a whole day or more (an
all-day out-of-office or opaque all-day event, as the calendar readers turn them into busy time) reaches
into its working hours: such a day is not a working day at all, so it does not count towards how late
a touchpoint is.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from itertools import pairwise
from zoneinfo import ZoneInfo

import holidays as holiday_data

from schedules.events import Interval, require_utc
from schedules.model import Window, WorkingHours

QUARTER = timedelta(minutes=15)
# A busy stretch this long is an all-day (or longer) event: 23 hours is a whole day on the night the
# clocks go forward.
WHOLE_DAY = timedelta(hours=23)
# The holiday package's categories that close a day: public holidays, and the days it knows are taken
# off in practice or worked only half (Christmas Eve and New Year's Eve in several countries).
HOLIDAY_CATEGORIES = frozenset({holiday_data.PUBLIC, holiday_data.HALF_DAY, holiday_data.DE_FACTO})


def split_region(code: str) -> tuple[str, str | None]:
    """'GB-SCT' -> ('GB', 'SCT'); 'GB' -> ('GB', None)."""
    country, _, subdivision = code.partition("-")
    return country, subdivision or None


@lru_cache(maxsize=64)
def _holidays_in(code: str, years: tuple[int, ...]) -> frozenset[date]:
    country, subdivision = split_region(code)
    supported = holiday_data.country_holidays(country, subdiv=subdivision).supported_categories
    found = holiday_data.country_holidays(
        country,
        subdiv=subdivision,
        years=years,
        categories=tuple(sorted(HOLIDAY_CATEGORIES & set(supported))),
    )
    return frozenset(found.keys())


def public_holidays(code: str | None, first: date, last: date) -> frozenset[date]:
    """The days off of region `code` (see HOLIDAY_CATEGORIES) from `first` to `last`."""
    if code is None or last < first:
        return frozenset()
    days = _holidays_in(code, tuple(range(first.year, last.year + 1)))
    return frozenset(day for day in days if first <= day <= last)


def whole_days_blocked(
    busy: Iterable[Interval],
    hours: WorkingHours,
    zone: ZoneInfo,
    first: date = date.min,
    last: date = date.max,
) -> frozenset[date]:
    """Working days from `first` to `last` into whose hours a busy stretch of a whole day or more reaches."""
    blocked: set[date] = set()
    for item in busy:
        if item.end - item.start < WHOLE_DAY:
            continue
        day = max(local_date(item.start, zone), first)
        while day <= min(local_date(item.end, zone), last):
            if any(span.overlaps(item) for span in working_spans(hours, zone, day)):
                blocked.add(day)
            day += timedelta(days=1)
    return frozenset(blocked)


def local_date(moment: datetime, zone: ZoneInfo) -> date:
    return moment.astimezone(zone).date()


def floor_to_quarter(clock: time) -> time:
    return clock.replace(minute=clock.minute - clock.minute % 15, second=0, microsecond=0)


def _offset(moment: datetime, zone: ZoneInfo) -> timedelta:
    offset = moment.astimezone(zone).utcoffset()
    assert offset is not None  # a ZoneInfo always knows its offset
    return offset


def _offset_changes(start: datetime, end: datetime, zone: ZoneInfo) -> list[datetime]:
    """Instants in (start, end) where the zone's UTC offset changes (zone rules change on whole seconds)."""
    changes: list[datetime] = []
    while start < end and _offset(start, zone) != _offset(end - timedelta(seconds=1), zone):
        before = _offset(start, zone)
        low, high = 0, int((end - start).total_seconds())  # offset at start+low is `before`, at +high not
        while high - low > 1:
            middle = (low + high) // 2
            if _offset(start + timedelta(seconds=middle), zone) == before:
                low = middle
            else:
                high = middle
        start = start + timedelta(seconds=high)
        changes.append(start)
    return changes


def working_spans(hours: WorkingHours, zone: ZoneInfo, day: date) -> tuple[Interval, ...]:
    """The instants of local `day` whose wall-clock time is within working hours, as UTC spans.

    Between two offset changes the wall clock runs evenly, so each such piece holds the hours as one plain
    span; pieces that touch are merged.
    """
    if day.weekday() not in hours.days:
        return ()
    # Every instant whose local date is `day` lies in [first, last); a few outside it are filtered below.
    first = min(datetime.combine(day, time(0)).replace(tzinfo=zone, fold=f).astimezone(UTC) for f in (0, 1))
    after = datetime.combine(day + timedelta(days=1), time(0))
    last = max(after.replace(tzinfo=zone, fold=f).astimezone(UTC) for f in (0, 1))
    bounds = [first, *_offset_changes(first, last, zone), last]
    spans: list[Interval] = []
    for piece_start, piece_end in pairwise(bounds):
        offset = _offset(piece_start, zone)
        start = max(piece_start, datetime.combine(day, hours.start, tzinfo=UTC) - offset)
        end = min(piece_end, datetime.combine(day, hours.end, tzinfo=UTC) - offset)
        if start >= end:
            continue
        if spans and spans[-1].end == start:
            spans[-1] = Interval(spans[-1].start, end)
        else:
            spans.append(Interval(start, end))
    return tuple(spans)


def align_to_quarter(moment: datetime, zone: ZoneInfo) -> datetime:
    """The first instant at or after `moment` that falls on a quarter hour of the local clock."""
    moment = require_utc(moment, "moment")
    for _ in range(4):  # an offset change between the two steps can shift the wall clock once more
        local = moment.astimezone(zone)
        past = timedelta(minutes=local.minute % 15, seconds=local.second, microseconds=local.microsecond)
        if not past:
            return moment
        moment = moment + (QUARTER - past)
    return moment


class Occupancy:
    """Taken time as disjoint, sorted intervals, so gap queries are a bisect and a short walk."""

    def __init__(self, intervals: Iterable[Interval] = ()) -> None:
        self._starts: list[datetime] = []
        self._ends: list[datetime] = []
        merged: list[list[datetime]] = []
        for item in sorted(intervals, key=lambda i: (i.start, i.end)):
            if item.end <= item.start:
                continue
            if merged and item.start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], item.end)
            else:
                merged.append([item.start, item.end])
        for start, end in merged:
            self._starts.append(start)
            self._ends.append(end)

    def __iter__(self) -> Iterator[Interval]:
        return (Interval(s, e) for s, e in zip(self._starts, self._ends, strict=True))

    def add(self, interval: Interval) -> None:
        if interval.end <= interval.start:
            return
        low = bisect_left(self._ends, interval.start)  # first block that ends at or after our start
        high = bisect_right(self._starts, interval.end)  # blocks from here start after our end
        start, end = interval.start, interval.end
        if low < high:
            start = min(start, self._starts[low])
            end = max(end, self._ends[high - 1])
        self._starts[low:high] = [start]
        self._ends[low:high] = [end]

    def is_free(self, interval: Interval) -> bool:
        index = bisect_right(self._ends, interval.start)  # first block ending after our start
        return index >= len(self._starts) or self._starts[index] >= interval.end

    def gaps(self, window: Interval) -> list[Interval]:
        """The free parts of `window`, in order."""
        out: list[Interval] = []
        cursor = window.start
        index = bisect_right(self._ends, window.start)
        while index < len(self._starts) and self._starts[index] < window.end:
            if self._starts[index] > cursor:
                out.append(Interval(cursor, self._starts[index]))
            cursor = max(cursor, self._ends[index])
            index += 1
        if cursor < window.end:
            out.append(Interval(cursor, window.end))
        return out


def clip_windows(windows: Sequence[Window], hours: WorkingHours) -> tuple[Window, ...]:
    """The windows' parts inside working hours; all of working hours when none is left."""
    clipped = [
        Window(max(w.start, hours.start), min(w.end, hours.end))
        for w in windows
        if max(w.start, hours.start) < min(w.end, hours.end)
    ]
    return tuple(clipped) if clipped else (Window(hours.start, hours.end),)


def clock_minutes(clock: time) -> int:
    return clock.hour * 60 + clock.minute


@dataclass
class Slots:
    """The free time of one planning run: working hours of open days in [not_before, until), minus what
    is taken and a buffer around it.

    `closed` are local dates that get nothing (holidays, whole days out of office); `per_day` counts
    circleback's own occurrences per local date, for the spreading rule.
    """

    hours: WorkingHours
    zone: ZoneInfo
    not_before: datetime
    until: datetime
    taken: Occupancy = field(default_factory=Occupancy)
    buffer: timedelta = timedelta(0)
    closed: frozenset[date] = frozenset()
    per_day: Counter[date] = field(default_factory=Counter)
    _spans: dict[date, tuple[Interval, ...]] = field(default_factory=dict, repr=False)

    @classmethod
    def build(
        cls,
        hours: WorkingHours,
        zone: ZoneInfo,
        busy: Iterable[Interval],
        not_before: datetime,
        until: datetime,
        *,
        buffer: timedelta = timedelta(0),
        holidays: Iterable[date] = (),
    ) -> Slots:
        busy = list(busy)
        # A year-long all-day event must not cost a walk over every day it spans: only the window's count.
        window = (local_date(not_before, zone), local_date(until, zone))
        closed = whole_days_blocked(busy, hours, zone, *window) | frozenset(holidays)
        return cls(
            hours,
            zone,
            require_utc(not_before, "not_before"),
            require_utc(until, "until"),
            Occupancy(busy),
            buffer,
            closed,
        )

    @property
    def first_day(self) -> date:
        return local_date(self.not_before, self.zone)

    @property
    def last_day(self) -> date:
        return local_date(self.until, self.zone)

    def is_open(self, day: date) -> bool:
        """A working day that is neither a holiday nor blocked whole by an all-day busy event."""
        return day.weekday() in self.hours.days and day not in self.closed

    def spans(self, day: date) -> tuple[Interval, ...]:
        """The bookable parts of an open day's working hours (clipped to the planning window)."""
        if not self.is_open(day):
            return ()
        if day not in self._spans:
            clipped = (
                (max(span.start, self.not_before), min(span.end, self.until))
                for span in working_spans(self.hours, self.zone, day)
            )
            self._spans[day] = tuple(Interval(start, end) for start, end in clipped if start < end)
        return self._spans[day]

    def clear(self, slot: Interval) -> bool:
        """Whether `slot` and the buffer around it overlap nothing taken."""
        return self.taken.is_free(Interval(slot.start - self.buffer, slot.end + self.buffer))

    def fits(self, slot: Interval) -> bool:
        """Whether `slot` lies inside one open day's bookable hours and keeps its buffer free."""
        return (
            slot.start < slot.end
            and any(
                span.start <= slot.start and slot.end <= span.end
                for span in self.spans(local_date(slot.start, self.zone))
            )
            and self.clear(slot)
        )

    def has_room(self, day: date, duration: timedelta) -> bool:
        """Whether any slot of `duration` fits on `day` (`on(day, duration)` is not empty)."""
        return next(self._slots(day, duration), None) is not None

    def on(self, day: date, duration: timedelta) -> list[Interval]:
        """Every slot of `duration` that fits on `day`, starting on a quarter hour, in order."""
        return list(self._slots(day, duration))

    def _slots(self, day: date, duration: timedelta) -> Iterator[Interval]:
        for span in self.spans(day):
            for gap in self.taken.gaps(Interval(span.start - self.buffer, span.end + self.buffer)):
                low = max(gap.start + self.buffer, span.start)
                high = min(gap.end - self.buffer, span.end)
                start = align_to_quarter(low, self.zone)
                if start + duration > high:
                    continue
                if start.astimezone(self.zone).utcoffset() == high.astimezone(self.zone).utcoffset():
                    # No clock change inside the gap: the local quarter hours are every 15 minutes of UTC,
                    # so the walk needs no time zone arithmetic (it is the planner's innermost loop).
                    last = high - duration
                    while start <= last:
                        yield Interval(start, start + duration)
                        start += QUARTER
                    continue
                while start + duration <= high:
                    yield Interval(start, start + duration)
                    start = align_to_quarter(start + QUARTER, self.zone)

    def open_days(self, first: date, last: date | None = None) -> Iterator[date]:
        """Open days from `first` to `last` (or the window's end) with working hours left in the planning
        window (today's count only while some of them are still ahead)."""
        day = max(first, self.first_day)
        end = self.last_day if last is None else min(last, self.last_day)
        while day <= end:
            if self.spans(day):
                yield day
            day += timedelta(days=1)

    def inside(self, slot: Interval, windows: Sequence[Window]) -> bool:
        """Whether `slot` lies wholly inside one of the wall-clock windows, on its own local day."""
        start, end = slot.start.astimezone(self.zone), slot.end.astimezone(self.zone)
        if end.date() != start.date() and end.time() != time(0):
            return False
        end_minutes = 24 * 60 if end.date() != start.date() else clock_minutes(end.time())
        return any(
            clock_minutes(w.start) <= clock_minutes(start.time()) and end_minutes <= clock_minutes(w.end)
            for w in windows
        )

    def reserve(self, slot: Interval) -> None:
        self.taken.add(slot)
        self.per_day[local_date(slot.start, self.zone)] += 1

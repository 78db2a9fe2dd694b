"""Free time inside working hours, and the rules for choosing a slot in it.

Working hours are wall-clock times in the plan's zone. A day's working time is every instant whose local
date is that day and whose wall-clock time is within the hours, so a 09:00-17:30 day stays 09:00-17:30 on
the day the clocks change, and hours that cover the change are as long as the clocks make them. On the
night the clocks go back that set can be two spans (the repeated hour may fall outside the hours).
Everything else is UTC instants. Searches are bounded by the planning window's last day, so a horizon
with no working day ends the search instead of looping.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

from schedules.events import Interval, require_utc
from schedules.model import WorkingHours

QUARTER = timedelta(minutes=15)
SPREAD_DAYS = 7  # how far past the earliest day a new occurrence may go to find a day of its own


def local_date(moment: datetime, zone: ZoneInfo) -> date:
    return moment.astimezone(zone).date()


def floor_to_quarter(clock: time) -> time:
    return clock.replace(minute=clock.minute - clock.minute % 15, second=0, microsecond=0)


def local_instant(day: date, clock: time, zone: ZoneInfo) -> datetime:
    """The UTC instant wall-clock `clock` shows on `day`.

    In the autumn fold this is the first of the two instants; inside the spring gap the time is read
    with the offset before the gap (RFC 5545), so 01:30 on a night that skips from 01:00 to 02:00 is 02:30.
    """
    naive = datetime.combine(day, clock)
    candidates = [naive.replace(tzinfo=zone, fold=fold).astimezone(UTC) for fold in (0, 1)]
    real = [c for c in candidates if c.astimezone(zone).replace(tzinfo=None) == naive]
    return min(real) if real else max(candidates)


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


@dataclass
class Slots:
    """The free time of one planning run: working hours in [not_before, until) minus what is taken.

    `used_days` are the local dates that already hold an occurrence, for the spreading rule.
    """

    hours: WorkingHours
    zone: ZoneInfo
    not_before: datetime
    until: datetime
    taken: Occupancy = field(default_factory=Occupancy)
    used_days: set[date] = field(default_factory=set)
    _spans: dict[date, tuple[Interval, ...]] = field(default_factory=dict, repr=False)

    @classmethod
    def build(
        cls,
        hours: WorkingHours,
        zone: ZoneInfo,
        busy: Iterable[Interval],
        not_before: datetime,
        until: datetime,
    ) -> Slots:
        return cls(
            hours, zone, require_utc(not_before, "not_before"), require_utc(until, "until"), Occupancy(busy)
        )

    @property
    def first_day(self) -> date:
        return local_date(self.not_before, self.zone)

    @property
    def last_day(self) -> date:
        return local_date(self.until, self.zone)

    def spans(self, day: date) -> tuple[Interval, ...]:
        """The bookable parts of a day's working hours (clipped to the planning window)."""
        if day not in self._spans:
            clipped = (
                (max(span.start, self.not_before), min(span.end, self.until))
                for span in working_spans(self.hours, self.zone, day)
            )
            self._spans[day] = tuple(Interval(start, end) for start, end in clipped if start < end)
        return self._spans[day]

    def fits(self, slot: Interval) -> bool:
        """Whether `slot` lies inside one day's bookable hours and overlaps nothing taken."""
        return (
            slot.start < slot.end
            and any(
                span.start <= slot.start and slot.end <= span.end
                for span in self.spans(local_date(slot.start, self.zone))
            )
            and self.taken.is_free(slot)
        )

    def first_on(self, day: date, duration: timedelta) -> Interval | None:
        for span in self.spans(day):
            for gap in self.taken.gaps(span):
                start = align_to_quarter(gap.start, self.zone)
                if start + duration <= gap.end:
                    return Interval(start, start + duration)
        return None

    def _days(self, first: date, last: date) -> Iterator[date]:
        day = max(first, self.first_day)
        last = min(last, self.last_day)
        while day <= last:
            yield day
            day += timedelta(days=1)

    def earliest(self, first: date, duration: timedelta, last: date | None = None) -> Interval | None:
        """The first free slot on or after local date `first` (and not after `last`)."""
        for day in self._days(first, self.last_day if last is None else last):
            slot = self.first_on(day, duration)
            if slot is not None:
                return slot
        return None

    def spread(self, first: date, duration: timedelta, last: date | None = None) -> Interval | None:
        """Prefer a day with no occurrence yet, up to a week past `first`; double up only if none has room."""
        limit = self.last_day if last is None else last
        for day in self._days(first, min(limit, first + timedelta(days=SPREAD_DAYS))):
            if day not in self.used_days:
                slot = self.first_on(day, duration)
                if slot is not None:
                    return slot
        return self.earliest(first, duration, limit)

    def stable(self, due: date, duration: timedelta, weekday: int, clock: time) -> Interval | None:
        """The slot on `weekday` at wall-clock `clock` within the week starting at `due`, if it is free."""
        day = due + timedelta(days=(weekday - due.weekday()) % 7)
        start = local_instant(day, floor_to_quarter(clock), self.zone)
        if local_date(start, self.zone) != day:
            return None
        slot = Interval(start, start + duration)
        return slot if self.fits(slot) else None

    def reserve(self, slot: Interval) -> None:
        self.taken.add(slot)
        self.used_days.add(local_date(slot.start, self.zone))

"""From a focus plan and what really happened, the touchpoints and review blocks to put in the calendar.

The planner first works out what is due (a demand: which connection or review, which due date), then
places each demand into free time. Due dates come only from the plan, the interaction log and the reviews
done, never from where earlier occurrences landed, so an occurrence's key (what it is) is independent of
its slot (where it is). Placement runs in two passes: every still-valid slot from `previous` is kept
first, so a new demand can never push an existing event around; then the rest are placed in demand order.

Where a demand lands (the plan's `placement` settings): only on an open day (a working day that is not a
public holiday of the plan's country nor blocked whole by an all-day out-of-office or busy event), with
`buffer` kept free around every other meeting. Its days: from the first open day with room on or after
its due date (today for an overdue one), a working week of open days; of those with room, the first
three still under `max_per_day` (or, when all are full, the first three). Among their slots it takes, in
order, one inside a preferred window, the weekday of the last meeting (the rhythm, only up to two open
days after the due date), the earlier day, the time of day nearest the last meeting's (or the chain's
last placement), the earlier start. So a preference skips at most two days the demand could have taken,
and with no rhythm yet it goes to the start of the first free preferred window.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from schedules.cadence import Cadence
from schedules.describe import review_description, review_title, touchpoint_description, touchpoint_title
from schedules.events import Interaction, Interval, require_utc
from schedules.keys import OccurrenceKey
from schedules.model import REVIEW_LOG_NAME, Connection, Plan, Window, WorkingHours
from schedules.occurrence import Occurrence, OccurrenceKind
from schedules.slots import Slots, clip_windows, clock_minutes, floor_to_quarter, local_date, public_holidays

REVIEWS = REVIEW_LOG_NAME  # first_due's key for the review rhythm
KICKOFF_KEY = "review:kickoff"
KICKOFF_DURATION = timedelta(minutes=30)


@dataclass(frozen=True)
class Demand:
    """Something that should be in the calendar: `chain` groups the demands of one connection (or the
    reviews), `rank` is the connection's position in the plan (reviews rank first)."""

    key: str
    kind: OccurrenceKind
    chain: str
    due: date
    duration: timedelta
    rank: int
    connection: Connection | None = None
    overdue: bool = False
    kickoff: bool = False

    @property
    def order(self) -> tuple[date, int, int, str]:
        return (self.due, 0 if self.kind is OccurrenceKind.REVIEW else 1, self.rank, self.key)


@dataclass(frozen=True)
class Anchor:
    """A recognisable rhythm: the weekday and wall-clock time of the last meeting."""

    weekday: int
    clock: time

    @classmethod
    def of(cls, moment: datetime, zone: ZoneInfo) -> Anchor:
        local = moment.astimezone(zone)
        return cls(local.weekday(), floor_to_quarter(local.time()))

    def usable(self, hours: WorkingHours, duration: timedelta) -> bool:
        start = datetime.combine(date.min, self.clock)
        return (
            self.weekday in hours.days
            and hours.start <= self.clock
            and start + duration <= datetime.combine(date.min, hours.end)
        )


def due_dates(
    cadence: Cadence,
    since: date,
    today: date,
    last_day: date,
    *,
    first_step: int = 1,
    placed_from: date | None = None,
) -> list[tuple[date, bool]]:
    """Due dates `since` + n cadences for n = first_step, first_step + 1, ... up to `last_day`, as
    (due, overdue).

    Each is counted from `since` (the last real meeting), not from the previous due date, so a monthly
    rhythm that started on the 31st comes back to the 31st after February. Missed periods collapse into
    one overdue demand (the first due date); the chain then resumes at the first due date at least half a
    cadence after today, so catching up does not stack two touchpoints in a few days.

    `placed_from` is the earliest due date of this chain's regular occurrences already placed (and still
    ahead): those stay in the chain even once their due date is behind today, so an event placed a day
    after its due date does not vanish, and a threshold that moves every day cannot churn the calendar.
    """
    out: list[tuple[date, bool]] = []
    first = cadence.add(since, first_step)
    resume = first
    floor = today if placed_from is None else min(today, placed_from)
    if first < floor:
        out.append((first, True))
        resume = today + timedelta(days=math.ceil(cadence.approx_days() / 2))
        if placed_from is not None:
            resume = min(resume, placed_from)
    # Jump close to `resume` instead of walking years of missed periods one by one; a period never
    # lasts longer than `longest`, so no due date at or after `resume` is skipped.
    longest = cadence.count * (7 if cadence.unit == "week" else 31)
    step = first_step + max(0, (resume - first).days // longest - 1)
    while (due := cadence.add(since, step)) <= last_day:
        if due >= resume:
            out.append((due, False))
        step += 1
    return out


def _placed_from(previous: Mapping[str, Occurrence], prefix: str) -> date | None:
    """The earliest due date among a chain's regular (not overdue) occurrences already placed."""
    dues = [
        occ.due
        for key, occ in previous.items()
        if key.startswith(prefix) and key != KICKOFF_KEY and not occ.overdue
    ]
    return min(dues, default=None)


def _touchpoint_demands(
    plan: Plan,
    last_met: Mapping[str, datetime],
    first_due: Mapping[str, date],
    previous: Mapping[str, Occurrence],
    zone: ZoneInfo,
    today: date,
    last_day: date,
) -> list[Demand]:
    demands: list[Demand] = []
    for rank, connection in enumerate(plan.connections):
        folded = connection.name.casefold()
        met = last_met.get(folded)
        # Never met: due from the day it was first planned (so its identity does not drift day by day,
        # and it turns overdue when that first touchpoint is missed), or today for a new connection,
        # because choosing the connection is the decision to act.
        never_met_since = min(first_due.get(folded, today), today)
        since, first_step = (local_date(met, zone), 1) if met else (never_met_since, 0)
        chain = due_dates(
            connection.every,
            since,
            today,
            last_day,
            first_step=first_step,
            placed_from=_placed_from(previous, f"touchpoint:{connection.ident}:"),
        )
        for due, overdue in chain:
            # The key names the connection by its stable id, so a rename keeps every identity (and UID).
            key = str(OccurrenceKey.touchpoint(connection.ident, connection.every.period_label(due)))
            demands.append(
                Demand(
                    key,
                    OccurrenceKind.TOUCHPOINT,
                    f"touchpoint:{folded}",
                    due,
                    connection.duration,
                    rank,
                    connection,
                    overdue,
                )
            )
    return demands


def _review_demands(
    plan: Plan,
    reviews_done: Sequence[datetime],
    first_due: date | None,
    previous: Mapping[str, Occurrence],
    zone: ZoneInfo,
    today: date,
    last_day: date,
) -> list[Demand]:
    demands: list[Demand] = []
    every = plan.review.every
    placed_from = _placed_from(previous, "review:")
    if reviews_done:
        base = max(local_date(require_utc(d, "reviews_done"), zone) for d in reviews_done)
        chain = due_dates(every, base, today, last_day, placed_from=placed_from)
    else:
        # No review done yet: the rhythm counts from the day the plan first asked for one (remembered by
        # earlier runs), so review blocks come due instead of receding one cadence ahead of every run.
        start = min(first_due or today, today)
        if plan.review.kickoff:
            # Placed after its due date because the week had no room (a weekend, a full week), the
            # kickoff is still waiting for its slot, not overdue: a new day must not rewrite it.
            waiting = previous.get(KICKOFF_KEY)
            late = start < today and (waiting is None or waiting.due != start or waiting.overdue)
            demands.append(
                Demand(
                    KICKOFF_KEY,
                    OccurrenceKind.REVIEW,
                    "review:kickoff",
                    start,
                    KICKOFF_DURATION,
                    -1,
                    overdue=late,
                    kickoff=True,
                )
            )
        chain = due_dates(every, start, today, last_day, placed_from=placed_from)
    for due, overdue in chain:
        key = f"review:{every.period_label(due)}"
        demands.append(
            Demand(key, OccurrenceKind.REVIEW, "review", due, plan.review.duration, -1, overdue=overdue)
        )
    return demands


def _keep(demand: Demand, previous: Occurrence | None, slots: Slots) -> Interval | None:
    """The previous slot, if it still suits: due the same day as before (a new real meeting or review
    moves the rhythm, and then the slot is chosen again), not before the due date, on an open day, and
    free with its buffer. Preferred windows and the per-day limit are preferences: a slot chosen under
    them is not moved when they change, so the calendar stays calm."""
    if previous is None or previous.due != demand.due or local_date(previous.start, slots.zone) < demand.due:
        return None
    slot = Interval(previous.start, previous.start + demand.duration)
    return slot if slots.fits(slot) else None


LATE_DAYS = 2  # how many open days past its due date a preference may push an occurrence
SPREAD_DAYS = 5  # open days from the first with room (a working week) where an occurrence may find its own


@dataclass(frozen=True)
class Unplaced:
    """A demand that found no slot before the horizon: which, for whom, due when, and why."""

    key: str
    connection: str | None  # None for a review block
    due: date
    reason: str


@dataclass(frozen=True)
class PlacementResult:
    occurrences: tuple[Occurrence, ...]
    unplaced: tuple[Unplaced, ...] = ()


class _Placer:
    def __init__(
        self,
        plan: Plan,
        slots: Slots,
        today: date,
        anchors: Mapping[str, Anchor],
        previous: Mapping[str, Occurrence],
    ) -> None:
        self.plan = plan
        self.slots = slots
        self.today = today
        self.anchors = anchors
        self.previous = previous
        self.placed: dict[str, Interval] = {}
        self.by_chain: dict[str, list[tuple[date, Interval]]] = {}

    def reserve(self, demand: Demand, slot: Interval) -> None:
        self.slots.reserve(slot)
        self.placed[demand.key] = slot
        self.by_chain.setdefault(demand.chain, []).append((demand.due, slot))

    def anchor(self, demand: Demand) -> Anchor | None:
        """Last real meeting first; else this chain's previous placement; else last run's placement; each
        only if its weekday and time of day are inside working hours."""
        zone = self.slots.zone
        earlier = [(due, slot) for due, slot in self.by_chain.get(demand.chain, []) if due < demand.due]
        before = sorted(
            (occ.start, occ.key)
            for occ in self.previous.values()
            if occ.key != KICKOFF_KEY and _chain_of(occ) == demand.chain
        )
        candidates = [
            self.anchors.get(demand.chain),
            Anchor.of(max(earlier, key=lambda item: item[0])[1].start, zone) if earlier else None,
            Anchor.of(before[0][0], zone) if before else None,
        ]
        return next(
            (a for a in candidates if a is not None and a.usable(self.slots.hours, demand.duration)), None
        )

    def windows(self, demand: Demand) -> tuple[Window, ...]:
        own = demand.connection.prefer if demand.connection is not None else None
        return clip_windows(own or self.plan.placement.prefer, self.plan.working_hours)

    def candidate_days(self, demand: Demand) -> list[tuple[date, int]]:
        """The days the demand may go to, each with how many open days after its due date it is.

        The kickoff: this week's open days with room. Any other: of the SPREAD_DAYS open days from the
        first with room on or after its due date (today for an overdue one), those with room; of them the
        first LATE_DAYS + 1 still under max_per_day, or, when every one is full, the first LATE_DAYS + 1.
        So a preference skips at most LATE_DAYS days it could have taken, and the daily limit pushes it at
        most a working week on."""
        slots, duration, limit = self.slots, demand.duration, self.plan.placement.max_per_day
        start = self.today if demand.overdue or demand.kickoff else max(demand.due, self.today)
        if demand.kickoff:
            week_end = self.today + timedelta(days=6 - self.today.weekday())
            this_week = [
                (day, late)
                for late, day in enumerate(slots.open_days(self.today, week_end))
                if slots.has_room(day, duration)
            ]
            under = [(day, late) for day, late in this_week if slots.per_day[day] < limit]
            if this_week:
                return under or this_week
        roomy: list[tuple[date, int]] = []
        first: int | None = None
        for late, day in enumerate(slots.open_days(start)):
            if first is not None and late >= first + SPREAD_DAYS:
                break
            if slots.has_room(day, duration):
                first = late if first is None else first
                roomy.append((day, late))
        under = [(day, late) for day, late in roomy if slots.per_day[day] < limit]
        return (under or roomy)[: LATE_DAYS + 1]

    def choose(self, demand: Demand) -> Interval | None:
        """The best slot on the demand's days, by, in order: inside a preferred window; the anchor's
        weekday (not for overdue or kickoff, and only up to LATE_DAYS open days after the due date); the
        earlier day; the wall-clock time nearest the anchor's; the earlier start."""
        slots = self.slots
        windows = self.windows(demand)
        anchor = None if demand.kickoff else self.anchor(demand)
        weekday = anchor.weekday if anchor is not None and not demand.overdue else None
        best: tuple[tuple[bool, bool, int, int], Interval] | None = None
        for index, (day, late) in enumerate(self.candidate_days(demand)):
            rhythm = weekday is not None and day.weekday() == weekday and late <= LATE_DAYS
            for slot in slots.on(day, demand.duration):
                clock = clock_minutes(slot.start.astimezone(slots.zone).time())
                score = (
                    not slots.inside(slot, windows),
                    not rhythm,
                    index,
                    abs(clock - clock_minutes(anchor.clock)) if anchor is not None else 0,
                )
                if best is None or score < best[0]:
                    best = (score, slot)
        return best[1] if best is not None else None

    def why_not(self, demand: Demand) -> str:
        """Why `choose` found nothing, in the words `sync` and `status` show."""
        slots = self.slots
        start = self.today if demand.overdue or demand.kickoff else max(demand.due, self.today)
        span = f"from {start.isoformat()} to {slots.last_day.isoformat()}"
        if start > slots.last_day:
            return f"due {demand.due.isoformat()}, after the planning horizon ({slots.last_day.isoformat()})"
        if next(slots.open_days(start), None) is None:
            return f"no working day {span}: holidays, days out of office or days off fill it"
        minutes = int(demand.duration.total_seconds() // 60)
        buffer = int(slots.buffer.total_seconds() // 60)
        around = f" with {buffer} minutes free around other meetings" if buffer else ""
        return f"no free {minutes}-minute slot{around} in working hours {span}"


def _chain_of(occ: Occurrence) -> str:
    if occ.kind is OccurrenceKind.REVIEW:
        return "review"
    return f"touchpoint:{(occ.connection or '').casefold()}"


_INSTANT = timedelta(microseconds=1)  # the smallest step a datetime takes


def plan_placement(
    plan: Plan,
    *,
    interactions: Sequence[Interaction],
    reviews_done: Sequence[datetime],
    busy: Sequence[Interval],
    now: datetime,
    horizon: timedelta,
    previous: Mapping[str, Occurrence] = {},
    first_due: Mapping[str, date] = {},
) -> PlacementResult:
    """The touchpoints and review blocks due up to the horizon, placed inside (now, now + horizon),
    sorted by start; and the demands that found no slot, with the reason.

    `first_due` maps a connection (name, case-folded) that has never been met to the local date its
    first touchpoint became due, and `REVIEWS` to the date the first review block became due, as
    recorded by earlier runs.

    `previous` holds the occurrences already placed, by key: each keeps its slot while that slot is still
    in the future, on an open working day, free with its buffer, and not before its due date. A demand
    with no free slot before the horizon is reported in `unplaced` (a later run may place it).
    Deterministic: the same inputs, in any order, give the same occurrences with the same keys.
    """
    now = require_utc(now, "now")
    if horizon <= timedelta(0):
        return PlacementResult(())
    zone = ZoneInfo(plan.timezone)
    settings = plan.placement
    first_day, last_day = local_date(now, zone), local_date(now + horizon, zone)
    slots = Slots.build(
        plan.working_hours,
        zone,
        busy,
        # Strictly after `now`: a slot that begins at `now` is under way as it is created, and a calendar
        # that did not take it in that very cycle is never given it (see Decision.withheld).
        now + _INSTANT,
        now + horizon,
        buffer=settings.buffer,
        holidays=public_holidays(settings.holidays, first_day, last_day),
    )
    today = slots.first_day

    last_met: dict[str, datetime] = {}
    names = {c.name.casefold() for c in plan.connections}
    if len(names) != len(plan.connections):
        raise ValueError(
            "plan has two connections with the same name (names are compared case-insensitively)"
        )
    for interaction in interactions:
        folded = interaction.connection.casefold()
        if folded in names and (folded not in last_met or interaction.at > last_met[folded]):
            last_met[folded] = interaction.at

    demands = sorted(
        _review_demands(plan, reviews_done, first_due.get(REVIEWS), previous, zone, today, last_day)
        + _touchpoint_demands(plan, last_met, first_due, previous, zone, today, last_day),
        key=lambda d: d.order,
    )
    anchors = {f"touchpoint:{name}": Anchor.of(at, zone) for name, at in last_met.items()}
    placer = _Placer(plan, slots, today, anchors, previous)
    for demand in demands:
        kept = _keep(demand, previous.get(demand.key), slots)
        if kept is not None:
            placer.reserve(demand, kept)
    unplaced: list[Unplaced] = []
    for demand in demands:
        if demand.key not in placer.placed:
            slot = placer.choose(demand)
            if slot is not None:
                placer.reserve(demand, slot)
            else:
                name = demand.connection.name if demand.connection else None
                unplaced.append(Unplaced(demand.key, name, demand.due, placer.why_not(demand)))

    met_dates = {name: local_date(at, zone) for name, at in last_met.items()}
    # The same first due dates the touchpoint chains use (today for a connection never planned before), so
    # the review text of the first run is the text of every run after it.
    context = _ReviewContext(interactions, {n: min(first_due.get(n, today), today) for n in names})
    out = [
        _occurrence(plan, demand, placer.placed[demand.key], met_dates, zone, context)
        for demand in demands
        if demand.key in placer.placed
    ]
    return PlacementResult(
        tuple(sorted(out, key=lambda occ: (occ.start, occ.key))),
        tuple(sorted(unplaced, key=lambda u: (u.due, u.key))),
    )


@dataclass(frozen=True)
class _ReviewContext:
    """What a review block's pre-filled audit is read from: the log and the first due dates."""

    interactions: Sequence[Interaction]
    first_due: Mapping[str, date]


def _occurrence(
    plan: Plan,
    demand: Demand,
    slot: Interval,
    met: Mapping[str, date],
    zone: ZoneInfo,
    review: _ReviewContext,
) -> Occurrence:
    connection = demand.connection
    overdue_since = demand.due if demand.overdue else None
    if connection is None:
        title = review_title(kickoff=demand.kickoff)
        # Read as of the block's own date, never the planning run's: the text then changes only when the
        # plan or the log does, so the feed stays byte for byte the same from run to run.
        description = review_description(
            plan,
            last_met=met,
            today=local_date(slot.start, zone),
            kickoff=demand.kickoff,
            overdue_since=overdue_since,
            due=demand.due,
            interactions=review.interactions,
            first_due=review.first_due,
        )
    else:
        title = touchpoint_title(connection)
        description = touchpoint_description(
            connection,
            last_met=met.get(connection.name.casefold()),
            on=local_date(slot.start, zone),
            overdue_since=overdue_since,
            due=demand.due,
        )
    return Occurrence(
        key=demand.key,
        kind=demand.kind,
        connection=connection.name if connection else None,
        due=demand.due,
        start=slot.start,
        end=slot.end,
        title=title,
        description=description,
        overdue=demand.overdue,
    )

"""From a focus plan and what really happened, the touchpoints and review blocks to put in the calendar.

The planner first works out what is due (a demand: which connection or review, which due date), then
places each demand into free time. Due dates come only from the plan, the interaction log and the reviews
done, never from where earlier occurrences landed, so an occurrence's key (what it is) is independent of
its slot (where it is). Placement runs in two passes: every still-valid slot from `previous` is kept
first, so a new demand can never push an existing event around; then the rest are placed in demand order.
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
from schedules.model import REVIEW_LOG_NAME, Connection, Plan, WorkingHours
from schedules.occurrence import Occurrence, OccurrenceKind
from schedules.slots import Slots, floor_to_quarter, local_date

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
            placed_from=_placed_from(previous, f"touchpoint:{folded}:"),
        )
        for due, overdue in chain:
            key = f"touchpoint:{folded}:{connection.every.period_label(due)}"
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
    moves the rhythm, and then the slot is chosen again), not before the due date, and free."""
    if previous is None or previous.due != demand.due or local_date(previous.start, slots.zone) < demand.due:
        return None
    slot = Interval(previous.start, previous.start + demand.duration)
    return slot if slots.fits(slot) else None


class _Placer:
    def __init__(
        self,
        slots: Slots,
        today: date,
        anchors: Mapping[str, Anchor],
        previous: Mapping[str, Occurrence],
    ) -> None:
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
        """Last real meeting first; else this chain's previous placement; else last run's placement."""
        zone = self.slots.zone
        met = self.anchors.get(demand.chain)
        if met is not None and met.usable(self.slots.hours, demand.duration):
            return met
        earlier = [(due, slot) for due, slot in self.by_chain.get(demand.chain, []) if due < demand.due]
        if earlier:
            return Anchor.of(max(earlier, key=lambda item: item[0])[1].start, zone)
        before = sorted(
            (occ.start, occ.key)
            for occ in self.previous.values()
            if occ.key != KICKOFF_KEY and _chain_of(occ) == demand.chain
        )
        return Anchor.of(before[0][0], zone) if before else None

    def choose(self, demand: Demand) -> Interval | None:
        slots, today = self.slots, self.today
        if demand.kickoff:
            week_end = today + timedelta(days=6 - today.weekday())
            return slots.spread(today, demand.duration, week_end) or slots.earliest(
                week_end + timedelta(days=1), demand.duration
            )
        if demand.overdue:
            return slots.earliest(today, demand.duration)
        anchor = self.anchor(demand)
        if anchor is not None:
            slot = slots.stable(demand.due, demand.duration, anchor.weekday, anchor.clock)
            if slot is not None:
                return slot
        return slots.spread(max(demand.due, today), demand.duration)


def _chain_of(occ: Occurrence) -> str:
    if occ.kind is OccurrenceKind.REVIEW:
        return "review"
    return f"touchpoint:{(occ.connection or '').casefold()}"


def plan_occurrences(
    plan: Plan,
    *,
    interactions: Sequence[Interaction],
    reviews_done: Sequence[datetime],
    busy: Sequence[Interval],
    now: datetime,
    horizon: timedelta,
    previous: Mapping[str, Occurrence] = {},
    first_due: Mapping[str, date] = {},
) -> list[Occurrence]:
    """The touchpoints and review blocks due up to the horizon, placed inside [now, now + horizon),
    sorted by start.

    `first_due` maps a connection (name, case-folded) that has never been met to the local date its
    first touchpoint became due, and `REVIEWS` to the date the first review block became due, as
    recorded by earlier runs.

    `previous` holds the occurrences already placed, by key: each keeps its slot while that slot is still
    in the future, inside working hours, free, and not before its due date. A demand with no free slot
    before the horizon is left out (a later run places it). Deterministic: the same inputs, in any order,
    give the same occurrences with the same keys.
    """
    now = require_utc(now, "now")
    if horizon <= timedelta(0):
        return []
    zone = ZoneInfo(plan.timezone)
    slots = Slots.build(plan.working_hours, zone, busy, now, now + horizon)
    today, last_day = slots.first_day, slots.last_day

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
    placer = _Placer(slots, today, anchors, previous)
    for demand in demands:
        kept = _keep(demand, previous.get(demand.key), slots)
        if kept is not None:
            placer.reserve(demand, kept)
    for demand in demands:
        if demand.key not in placer.placed:
            slot = placer.choose(demand)
            if slot is not None:
                placer.reserve(demand, slot)

    met_dates = {name: local_date(at, zone) for name, at in last_met.items()}
    # The same first due dates the touchpoint chains use (today for a connection never planned before), so
    # the review text of the first run is the text of every run after it.
    context = _ReviewContext(interactions, {n: min(first_due.get(n, today), today) for n in names})
    out = [
        _occurrence(plan, demand, placer.placed[demand.key], met_dates, zone, context)
        for demand in demands
        if demand.key in placer.placed
    ]
    return sorted(out, key=lambda occ: (occ.start, occ.key))


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

"""The network audit (step 2 of the method): a SWOT of the focus connections, from the plan, the log and what
became of the planned touchpoints, with the give/ask balance beside the method's rule of thumb.

Pure: plain values and `today` in, plain values out. Every finding carries its reason and the dates it
rests on. The rules, with `c` a connection's cadence and "met" a log entry for it on or before `today`:

- strength: met in each of the last two cadence periods, (today - 2c, today - c] and (today - c, today];
- weakness: no connection with the role sponsor, or mentor; nobody outside the owner's organisation (every
  address in the plan is at the owner's email domain); a connection whose entries are mostly asks (more
  asks than gives);
- opportunity: each target's progress: no first meeting yet, first meeting done, or becoming regular (met
  in each of the last two cadence periods), with its next wise action;
- threat: a connection overdue by more than one cadence (its due date, last met + c, or the first due date
  if never met, is more than c before today); a target stalled for more than two cadences (no meeting for
  more than 2c, or never met more than 2c after it was first due), which for a target replaces "overdue";
  a sponsor or mentor going cold (met before, not within c of today); the last two or more settled
  touchpoints of a connection skipped or missed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from schedules.events import Interaction, InteractionKind
from schedules.model import REVIEW_LOG_NAME, Connection, Plan, Role
from schedules.occurrence import Occurrence, OccurrenceKind, OccurrenceStatus

GIVE_RULE_OF_THUMB = 0.9  # the method: about 90% of touchpoints give, at most 10% ask
REPEATED = 2  # this many skipped or missed touchpoints in a row is a pattern, not an accident
_SETTLED = (OccurrenceStatus.COMPLETED, OccurrenceStatus.SKIPPED, OccurrenceStatus.MISSED)
_NOT_DONE = (OccurrenceStatus.SKIPPED, OccurrenceStatus.MISSED)


class Section(StrEnum):
    STRENGTHS = "strengths"
    WEAKNESSES = "weaknesses"
    OPPORTUNITIES = "opportunities"
    THREATS = "threats"


class Rule(StrEnum):
    AT_CADENCE = "met at cadence"
    NO_SPONSOR = "no sponsor"
    NO_MENTOR = "no mentor"
    NO_PEER_OUTSIDE = "no peer outside the company"
    NO_CLIENT = "no client voice"
    NOBODY_OUTSIDE = "nobody outside your organisation"
    MOSTLY_ASKS = "mostly asks"
    TARGET_PROGRESS = "target progress"
    OVERDUE = "overdue"
    STALLED = "target stalled"
    GOING_COLD = "going cold"
    SKIPPED = "repeatedly skipped or missed"


RULE_SECTION = {
    Rule.AT_CADENCE: Section.STRENGTHS,
    Rule.NO_SPONSOR: Section.WEAKNESSES,
    Rule.NO_MENTOR: Section.WEAKNESSES,
    Rule.NO_PEER_OUTSIDE: Section.WEAKNESSES,
    Rule.NO_CLIENT: Section.WEAKNESSES,
    Rule.NOBODY_OUTSIDE: Section.WEAKNESSES,
    Rule.MOSTLY_ASKS: Section.WEAKNESSES,
    Rule.TARGET_PROGRESS: Section.OPPORTUNITIES,
    Rule.OVERDUE: Section.THREATS,
    Rule.STALLED: Section.THREATS,
    Rule.GOING_COLD: Section.THREATS,
    Rule.SKIPPED: Section.THREATS,
}


class Progress(StrEnum):
    NOT_MET = "no first meeting yet"
    FIRST_MET = "first meeting done"
    REGULAR = "becoming regular"


@dataclass(frozen=True)
class Finding:
    rule: Rule
    connection: str | None  # None for what the plan as a whole lacks
    text: str  # the line as shown: who, what, why and when
    dates: tuple[date, ...] = ()

    @property
    def section(self) -> Section:
        return RULE_SECTION[self.rule]


@dataclass(frozen=True)
class Balance:
    give: int = 0
    ask: int = 0

    @property
    def total(self) -> int:
        return self.give + self.ask

    @property
    def give_share(self) -> float | None:
        return None if self.total == 0 else self.give / self.total

    def __add__(self, other: Balance) -> Balance:
        return Balance(self.give + other.give, self.ask + other.ask)

    def phrase(self) -> str:
        share = self.give_share
        if share is None:
            return "nothing logged yet"
        return f"{self.give} give, {self.ask} ask: {share:.0%} give"


@dataclass(frozen=True)
class ConnectionFacts:
    """What the log says about one focus connection, as of the audit's date."""

    connection: Connection
    met: tuple[date, ...]  # local dates of its log entries, oldest first
    asked: tuple[date, ...]  # local dates of the entries that were asks, oldest first
    due: date | None  # next due date: last met + cadence, or the first due date if never met (if known)
    balance: Balance
    at_cadence: bool

    @property
    def name(self) -> str:
        return self.connection.name

    @property
    def last_met(self) -> date | None:
        return self.met[-1] if self.met else None

    def overdue(self, today: date) -> bool:
        return self.due is not None and self.due < today

    @property
    def progress(self) -> Progress:
        if not self.met:
            return Progress.NOT_MET
        return Progress.REGULAR if self.at_cadence else Progress.FIRST_MET


@dataclass(frozen=True)
class Audit:
    today: date
    findings: tuple[Finding, ...]
    facts: tuple[ConnectionFacts, ...]  # one per plan connection, in plan order
    balance: Balance  # every entry in the log up to today, reviews aside
    elsewhere: Balance  # entries for names no longer in the plan (part of `balance`)

    def section(self, section: Section) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.section is section)

    def names(self, rule: Rule) -> tuple[str, ...]:
        return tuple(f.connection for f in self.findings if f.rule is rule and f.connection is not None)


def audit(
    plan: Plan,
    interactions: Sequence[Interaction],
    occurrences: Sequence[tuple[Occurrence, OccurrenceStatus]],
    today: date,
    *,
    first_due: Mapping[str, date] = {},
) -> Audit:
    """The SWOT as of `today` (a local date in the plan's time zone).

    `interactions` is the log without undone entries; `occurrences` are the stored occurrences with their
    status; `first_due` maps a never-met connection (casefolded) to the date its first touchpoint became
    due, as the planner remembers it (the earliest touchpoint in `occurrences` counts too).
    """
    zone = ZoneInfo(plan.timezone)
    # The end of `today` as an instant: comparing instants is cheap, and an organisation's log is long;
    # only the focus connections' entries need their local dates.
    day_after = datetime.combine(today + timedelta(days=1), time(0), zone)
    in_plan = {c.name.casefold() for c in plan.connections}
    met: dict[str, list[date]] = {}
    asked: dict[str, list[date]] = {}
    counts: dict[tuple[str, InteractionKind], int] = {}
    for entry in interactions:
        if entry.at >= day_after or entry.connection == REVIEW_LOG_NAME:
            continue
        folded = entry.connection.casefold()
        counts[folded, entry.kind] = counts.get((folded, entry.kind), 0) + 1
        if folded in in_plan:
            day = entry.at.astimezone(zone).date()
            met.setdefault(folded, []).append(day)
            if entry.kind is InteractionKind.ASK:
                asked.setdefault(folded, []).append(day)
    balances: dict[str, Balance] = {}
    for (folded, kind), count in counts.items():
        one = Balance(count, 0) if kind is InteractionKind.GIVE else Balance(0, count)
        balances[folded] = balances.get(folded, Balance()) + one
    touchpoints = _touchpoints_by_connection(occurrences, today)
    firsts = dict(first_due)
    for name, rows in touchpoints.items():
        earliest = min(occ.due for occ, _ in rows)
        firsts[name] = min(firsts.get(name, earliest), earliest)

    facts = tuple(
        _facts(c, met.get(c.name.casefold(), []), asked.get(c.name.casefold(), []), balances, firsts, today)
        for c in plan.connections
    )
    findings: list[Finding] = []
    for fact in facts:
        findings += _strength(fact, today)
    findings += _missing_roles(plan)
    findings += _nobody_outside(plan)
    for fact in facts:
        findings += _mostly_asks(fact)
    for fact in facts:
        findings += _target_progress(fact, firsts)
    for fact in facts:
        findings += _overdue_or_stalled(fact, today)
        findings += _going_cold(fact, today)
        findings += _skipped(fact, touchpoints.get(fact.name.casefold(), []))
    elsewhere = sum((b for name, b in sorted(balances.items()) if name not in in_plan), Balance())
    total = sum((f.balance for f in facts), Balance()) + elsewhere
    return Audit(today, tuple(findings), facts, total, elsewhere)


def _touchpoints_by_connection(
    occurrences: Sequence[tuple[Occurrence, OccurrenceStatus]], today: date
) -> dict[str, list[tuple[Occurrence, OccurrenceStatus]]]:
    out: dict[str, list[tuple[Occurrence, OccurrenceStatus]]] = {}
    for occ, status in occurrences:
        if occ.kind is OccurrenceKind.TOUCHPOINT and occ.connection and occ.due <= today:
            out.setdefault(occ.connection.casefold(), []).append((occ, status))
    for rows in out.values():
        rows.sort(key=lambda row: (row[0].due, row[0].start, row[0].key))
    return out


def _facts(
    connection: Connection,
    met: list[date],
    asked: list[date],
    balances: Mapping[str, Balance],
    firsts: Mapping[str, date],
    today: date,
) -> ConnectionFacts:
    every = connection.every
    folded = connection.name.casefold()
    met = sorted(met)
    due = every.add(met[-1]) if met else firsts.get(folded)
    one_back, two_back = every.add(today, -1), every.add(today, -2)
    at_cadence = any(one_back < d <= today for d in met) and any(two_back < d <= one_back for d in met)
    balance = balances.get(folded, Balance())
    return ConnectionFacts(connection, tuple(met), tuple(sorted(asked)), due, balance, at_cadence)


def _dates(days: Sequence[date]) -> str:
    return ", ".join(d.isoformat() for d in days)


def _strength(fact: ConnectionFacts, today: date) -> list[Finding]:
    if not fact.at_cadence:
        return []
    since = fact.connection.every.add(today, -2)
    recent = tuple(d for d in fact.met if d > since)
    text = (
        f"{fact.name}: met at or above the cadence (every {fact.connection.every}) over the last two "
        f"cadences: {_dates(recent)} (since {since.isoformat()})"
    )
    return [Finding(Rule.AT_CADENCE, fact.name, text, recent)]


def _missing_roles(plan: Plan) -> list[Finding]:
    """The method's gaps (no mentor, no sponsor, no peer outside the company, no client voice), from the
    plan's `role:` fields."""
    roles = {c.role for c in plan.connections}
    out: list[Finding] = []
    for role, rule in (
        (Role.SPONSOR, Rule.NO_SPONSOR),
        (Role.MENTOR, Rule.NO_MENTOR),
        (Role.CLIENT, Rule.NO_CLIENT),
    ):
        if role not in roles:
            label = "client voice" if role is Role.CLIENT else role.value
            text = f"No {label}: no connection in the plan has role: {role.value}"
            out.append(Finding(rule, None, text[0].upper() + text[1:]))
    home = _domain(plan.owner.email) if plan.owner.email else None
    peers = [c for c in plan.connections if c.role is Role.PEER]
    # A peer counts as outside unless every address of theirs is at the owner's own domain.
    outside = [
        p for p in peers if home is None or not p.all_emails or any(_domain(a) != home for a in p.all_emails)
    ]
    if not outside:
        why = (
            "no connection has role: peer" if not peers else f"every peer's address is at {home}, as yours is"
        )
        out.append(Finding(Rule.NO_PEER_OUTSIDE, None, f"No peer outside the company: {why}"))
    return out


def _domain(address: str) -> str:
    return address.rsplit("@", 1)[-1].casefold()


def _nobody_outside(plan: Plan) -> list[Finding]:
    """Only when it can be told: the owner has an address and at least one connection has one."""
    owner = plan.owner.email
    addresses = [a for c in plan.connections for a in c.all_emails]
    if owner is None or not addresses:
        return []
    home = _domain(owner)
    if any(_domain(a) != home for a in addresses):
        return []
    text = (
        f"Nobody outside your organisation: every address in the plan is at {home}, as yours is "
        f"({owner}); the method asks for a peer outside the company and a client voice"
    )
    return [Finding(Rule.NOBODY_OUTSIDE, None, text)]


def _mostly_asks(fact: ConnectionFacts) -> list[Finding]:
    if fact.balance.ask <= fact.balance.give:
        return []
    text = (
        f"{fact.name}: mostly asks: {fact.balance.ask} of {fact.balance.total} log entries were asks "
        f"(asked on {_dates(fact.asked[-3:])}); help first, ask later"
    )
    return [Finding(Rule.MOSTLY_ASKS, fact.name, text, fact.asked)]


def _target_progress(fact: ConnectionFacts, firsts: Mapping[str, date]) -> list[Finding]:
    connection = fact.connection
    if not connection.target:
        return []
    action = f"next wise action ({connection.stage.value}): {connection.next_action}"
    progress = fact.progress
    if progress is Progress.NOT_MET:
        first = firsts.get(fact.name.casefold())
        since = f" (first touchpoint due {first.isoformat()})" if first else ""
        text = f"{fact.name} (target): {progress.value}{since}; {action}"
        return [Finding(Rule.TARGET_PROGRESS, fact.name, text, (first,) if first else ())]
    if progress is Progress.FIRST_MET:
        detail = f"first met {fact.met[0].isoformat()}, last met {fact.met[-1].isoformat()}"
    else:
        detail = f"met in each of the last two cadences (every {connection.every}), last {fact.met[-1]}"
    text = f"{fact.name} (target): {progress.value}: {detail}; {action}"
    return [Finding(Rule.TARGET_PROGRESS, fact.name, text, (fact.met[0], fact.met[-1]))]


def _overdue_or_stalled(fact: ConnectionFacts, today: date) -> list[Finding]:
    every = fact.connection.every
    if fact.due is None:
        return []
    last = fact.last_met
    if fact.connection.target:
        since = last if last is not None else fact.due
        if every.add(since, 2) >= today:
            return []
        what = f"no meeting since {last.isoformat()}" if last else f"never met; first due {fact.due}"
        text = f"{fact.name} (target): stalled for more than two cadences (every {every}): {what}"
        return [Finding(Rule.STALLED, fact.name, text, (since,))]
    if every.add(fact.due) >= today:
        return []
    met = f"last met {last.isoformat()}" if last else "never met"
    text = f"{fact.name}: overdue by more than one cadence (every {every}): {met}, due {fact.due.isoformat()}"
    return [Finding(Rule.OVERDUE, fact.name, text, tuple(d for d in (last, fact.due) if d is not None))]


def _going_cold(fact: ConnectionFacts, today: date) -> list[Finding]:
    role = fact.connection.role
    last = fact.last_met
    if role not in (Role.SPONSOR, Role.MENTOR) or last is None or fact.due is None or fact.due >= today:
        return []
    assert role is not None
    text = (
        f"{fact.name} ({role.value}): going cold: last met {last.isoformat()}, due again since "
        f"{fact.due.isoformat()} (every {fact.connection.every})"
    )
    return [Finding(Rule.GOING_COLD, fact.name, text, (last, fact.due))]


def _skipped(fact: ConnectionFacts, rows: Sequence[tuple[Occurrence, OccurrenceStatus]]) -> list[Finding]:
    settled = [(occ, status) for occ, status in rows if status in _SETTLED]
    streak: list[tuple[Occurrence, OccurrenceStatus]] = []
    for occ, status in reversed(settled):
        if status not in _NOT_DONE:
            break
        streak.insert(0, (occ, status))
    if len(streak) < REPEATED:
        return []
    listed = ", ".join(f"due {occ.due.isoformat()} ({status.value})" for occ, status in streak)
    text = f"{fact.name}: the last {len(streak)} touchpoints were skipped or missed: {listed}"
    return [Finding(Rule.SKIPPED, fact.name, text, tuple(occ.due for occ, _ in streak))]

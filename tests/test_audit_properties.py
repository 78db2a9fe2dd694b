"""Properties of the audit over generated plans, logs and touchpoint histories.

Each connection lands in exactly the sections its facts put it in (stated here from the facts directly,
in the method's words), the give/ask balance adds up, and the order of the log does not matter.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, time, timedelta

from builders import connection, london_plan
from hypothesis import given, settings
from hypothesis import strategies as st

from schedules.audit import Balance, Section, audit
from schedules.events import Interaction, InteractionKind
from schedules.model import Connection, Plan, Role
from schedules.occurrence import Occurrence, OccurrenceKind, OccurrenceStatus

TODAY = date(2026, 11, 23)
NAMES = ("Grace Hopper", "Linus", "Ada's Mentor", "Big Client", "Meetup Crowd")
SETTLED = (OccurrenceStatus.COMPLETED, OccurrenceStatus.SKIPPED, OccurrenceStatus.MISSED)


@st.composite
def connections(draw: st.DrawFn) -> tuple[Connection, ...]:
    count = draw(st.integers(1, 5))
    out = []
    for name in NAMES[:count]:
        every = draw(st.sampled_from(["week", "2 weeks", "3 weeks", "month", "2 months", "quarter"]))
        domain = draw(st.sampled_from([None, "example.com", "elsewhere.example"]))
        made = connection(
            name,
            every=every,
            target=draw(st.booleans()),
            email=None if domain is None else f"{name.split()[0].lower().strip(chr(39))}@{domain}",
        )
        out.append(dataclasses.replace(made, role=draw(st.sampled_from([None, *Role]))))
    return tuple(out)


def entries(names: tuple[str, ...]) -> st.SearchStrategy[list[Interaction]]:
    entry = st.builds(
        lambda who, offset, kind: Interaction(
            who, datetime.combine(TODAY + timedelta(days=offset), time(12), UTC), kind
        ),
        st.sampled_from([*names, *(n.upper() for n in names), "Someone Else", "@review"]),
        st.integers(-400, 20),
        st.sampled_from(list(InteractionKind)),
    )
    return st.lists(entry, max_size=40)


def histories(names: tuple[str, ...]) -> st.SearchStrategy[list[tuple[Occurrence, OccurrenceStatus]]]:
    def make(who: str, offset: int, status: OccurrenceStatus) -> tuple[Occurrence, OccurrenceStatus]:
        due = TODAY + timedelta(days=offset)
        start = datetime.combine(due, time(10), UTC)
        occ = Occurrence(
            f"touchpoint:{who.casefold()}:{due}",
            OccurrenceKind.TOUCHPOINT,
            who,
            due,
            start,
            start + timedelta(minutes=30),
            who,
            "",
        )
        return occ, status

    row = st.builds(
        make, st.sampled_from(names), st.integers(-200, 30), st.sampled_from(list(OccurrenceStatus))
    )
    return st.lists(row, max_size=12, unique_by=lambda r: r[0].key)


@st.composite
def cases(draw: st.DrawFn) -> tuple[Plan, list[Interaction], list[tuple[Occurrence, OccurrenceStatus]]]:
    conns = draw(connections())
    names = tuple(c.name for c in conns)
    return london_plan(*conns), draw(entries(names)), draw(histories(names))


def expected_sections(
    c: Connection, log: list[Interaction], rows: list[tuple[Occurrence, OccurrenceStatus]]
) -> set[Section]:
    """The method's rules, read straight from one connection's facts."""
    mine = [i for i in log if i.connection.casefold() == c.name.casefold() and i.at.date() <= TODAY]
    days = sorted(i.at.date() for i in mine)
    asks = sum(1 for i in mine if i.kind is InteractionKind.ASK)
    one, two = c.every.add(TODAY, -1), c.every.add(TODAY, -2)
    touch = sorted(
        ((o, s) for o, s in rows if o.due <= TODAY), key=lambda r: (r[0].due, r[0].start, r[0].key)
    )
    first_due = min((o.due for o, _ in touch), default=None)
    due = c.every.add(days[-1]) if days else first_due

    found: set[Section] = set()
    if any(one < d <= TODAY for d in days) and any(two < d <= one for d in days):
        found.add(Section.STRENGTHS)
    if asks > len(mine) - asks:
        found.add(Section.WEAKNESSES)
    if c.target:
        found.add(Section.OPPORTUNITIES)
    settled = [s for _, s in touch if s in SETTLED]
    trailing = len(settled) - max(
        (i + 1 for i, s in enumerate(settled) if s is OccurrenceStatus.COMPLETED), default=0
    )
    late = due is not None and (
        c.every.add(days[-1] if days else due, 2) < TODAY if c.target else c.every.add(due) < TODAY
    )
    cold = c.role in (Role.SPONSOR, Role.MENTOR) and bool(days) and due is not None and due < TODAY
    if late or cold or trailing >= 2:
        found.add(Section.THREATS)
    return found


@settings(max_examples=300, deadline=None)
@given(cases())
def test_every_connection_is_in_exactly_the_sections_its_facts_put_it_in(
    case: tuple[Plan, list[Interaction], list[tuple[Occurrence, OccurrenceStatus]]],
) -> None:
    plan, log, rows = case
    result = audit(plan, log, rows, TODAY)
    for c in plan.connections:
        got = {f.section for f in result.findings if f.connection == c.name}
        mine = [r for r in rows if r[0].connection == c.name]
        assert got == expected_sections(c, log, mine), c.name
    for finding in result.findings:
        assert finding.connection is None or plan.connection(finding.connection) is not None
        if finding.connection is None:
            assert finding.section is Section.WEAKNESSES
        assert finding.text  # every line says why


@settings(max_examples=300, deadline=None)
@given(cases())
def test_the_give_ask_balance_adds_up(
    case: tuple[Plan, list[Interaction], list[tuple[Occurrence, OccurrenceStatus]]],
) -> None:
    plan, log, rows = case
    result = audit(plan, log, rows, TODAY)
    counted = [i for i in log if i.connection != "@review" and i.at.date() <= TODAY]
    assert result.balance.total == len(counted)
    assert result.balance.ask == sum(1 for i in counted if i.kind is InteractionKind.ASK)
    assert sum((f.balance for f in result.facts), Balance()) + result.elsewhere == result.balance
    for facts in result.facts:
        assert facts.balance.total == sum(
            1 for i in counted if i.connection.casefold() == facts.name.casefold()
        )
        share = facts.balance.give_share
        assert share is None or 0 <= share <= 1
    assert result.elsewhere.total == sum(1 for i in counted if plan.connection(i.connection) is None)


@settings(max_examples=100, deadline=None)
@given(cases(), st.randoms())
def test_the_order_of_the_log_and_the_history_does_not_matter(
    case: tuple[Plan, list[Interaction], list[tuple[Occurrence, OccurrenceStatus]]], rng: object
) -> None:
    import random

    assert isinstance(rng, random.Random)
    plan, log, rows = case
    shuffled_log, shuffled_rows = list(log), list(rows)
    rng.shuffle(shuffled_log)
    rng.shuffle(shuffled_rows)
    assert audit(plan, shuffled_log, shuffled_rows, TODAY) == audit(plan, log, rows, TODAY)

"""The audit's rules with plain values: a plan, a log and a date in, a SWOT out; one test per rule."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta

import pytest
from builders import connection, london_plan

from schedules.audit import Audit, Balance, Progress, Rule, Section, audit
from schedules.events import Interaction, InteractionKind
from schedules.model import Connection, Plan, Role
from schedules.occurrence import Occurrence, OccurrenceKind, OccurrenceStatus
from schedules.plan import PlanInvalid, parse_plan
from schedules.planner import REVIEWS, plan_placement

TODAY = date(2026, 11, 23)  # a Monday


def met(name: str, day: date, kind: str = "give") -> Interaction:
    return Interaction(name, datetime.combine(day, time(12), UTC), InteractionKind(kind))


def role(c: Connection, value: str) -> Connection:
    return dataclasses.replace(c, role=Role(value))


GRACE = connection("Grace Hopper", every="2 weeks", email="grace@navy.example")
LINUS = connection("Linus", every="month", email="linus@kernel.example")
WITL = connection("Women in Tech London", group=True, stage="find", every="month", target=True)


def run(
    plan: Plan, log: list[Interaction], occurrences: Sequence[tuple[Occurrence, OccurrenceStatus]] = ()
) -> Audit:
    return audit(plan, log, occurrences, TODAY)


def touchpoint(name: str, due: date) -> Occurrence:
    start = datetime.combine(due, time(10), UTC)
    return Occurrence(
        f"touchpoint:{name.casefold()}:{due.isoformat()}",
        OccurrenceKind.TOUCHPOINT,
        name,
        due,
        start,
        start.replace(hour=11),
        f"Nurture: {name}",
        "",
    )


def only(result: Audit, rule: Rule) -> list[str]:
    return [f.text for f in result.findings if f.rule is rule]


def test_strength_met_in_each_of_the_last_two_cadences() -> None:
    plan = london_plan(GRACE, WITL)
    regular = run(plan, [met("Grace Hopper", date(2026, 11, 2)), met("Grace Hopper", date(2026, 11, 16))])
    assert only(regular, Rule.AT_CADENCE) == [
        "Grace Hopper: met at or above the cadence (every 2 weeks) over the last two cadences: "
        "2026-11-02, 2026-11-16 (since 2026-10-26)"
    ]
    assert regular.section(Section.STRENGTHS)[0].dates == (date(2026, 11, 2), date(2026, 11, 16))
    # Two meetings in the last cadence and none in the one before: not yet at cadence.
    bunched = run(plan, [met("Grace Hopper", date(2026, 11, 16)), met("Grace Hopper", date(2026, 11, 20))])
    assert only(bunched, Rule.AT_CADENCE) == []


def test_weakness_no_sponsor_and_no_mentor_from_roles() -> None:
    none = run(london_plan(GRACE, WITL), [])
    assert only(none, Rule.NO_SPONSOR) == ["No sponsor: no connection in the plan has role: sponsor"]
    assert only(none, Rule.NO_MENTOR) == ["No mentor: no connection in the plan has role: mentor"]
    both = run(london_plan(role(GRACE, "mentor"), role(WITL, "sponsor")), [])
    assert only(both, Rule.NO_SPONSOR) == [] and only(both, Rule.NO_MENTOR) == []


def test_weakness_no_client_voice_and_no_peer_outside_the_company() -> None:
    # METHOD.md: "no mentor, no sponsor, no peer outside the company, no client voice".
    none = run(london_plan(GRACE, WITL), [])
    assert only(none, Rule.NO_CLIENT) == ["No client voice: no connection in the plan has role: client"]
    assert only(none, Rule.NO_PEER_OUTSIDE) == ["No peer outside the company: no connection has role: peer"]
    inside = run(london_plan(role(connection("Ann", email="ann@example.com"), "peer"), WITL), [])
    assert only(inside, Rule.NO_PEER_OUTSIDE) == [
        "No peer outside the company: every peer's address is at example.com, as yours is"
    ]
    outside = run(
        london_plan(role(connection("Bo", email="bo@other.example"), "peer"), role(WITL, "client")), []
    )
    assert only(outside, Rule.NO_PEER_OUTSIDE) == [] and only(outside, Rule.NO_CLIENT) == []


def test_weakness_nobody_outside_the_owners_domain() -> None:
    inside = connection("Charles Babbage", email="charles@example.com")
    plan = london_plan(inside, WITL)  # the owner is ada@example.com
    assert only(run(plan, []), Rule.NOBODY_OUTSIDE) == [
        "Nobody outside your organisation: every address in the plan is at example.com, as yours is "
        "(ada@example.com); the method asks for a peer outside the company and a client voice"
    ]
    assert only(run(london_plan(inside, GRACE, WITL), []), Rule.NOBODY_OUTSIDE) == []
    # Without any address to compare, nothing can be said.
    assert only(run(london_plan(WITL), []), Rule.NOBODY_OUTSIDE) == []
    assert only(run(london_plan(inside, WITL, owner_email=None), []), Rule.NOBODY_OUTSIDE) == []


def test_weakness_a_connection_where_the_person_mostly_asks() -> None:
    log = [
        met("Linus", date(2026, 10, 1), "ask"),
        met("Linus", date(2026, 10, 15), "give"),
        met("Linus", date(2026, 11, 1), "ask"),
    ]
    result = run(london_plan(LINUS, WITL), log)
    assert only(result, Rule.MOSTLY_ASKS) == [
        "Linus: mostly asks: 2 of 3 log entries were asks (asked on 2026-10-01, 2026-11-01); "
        "help first, ask later"
    ]
    even = run(london_plan(LINUS, WITL), log[:2])
    assert only(even, Rule.MOSTLY_ASKS) == []


def test_opportunity_each_targets_progress_with_its_next_wise_action() -> None:
    plan = london_plan(GRACE, WITL)
    first = touchpoint("Women in Tech London", date(2026, 11, 2))
    fresh = run(plan, [], [(first, OccurrenceStatus.PLACED)])
    assert only(fresh, Rule.TARGET_PROGRESS) == [
        "Women in Tech London (target): no first meeting yet (first touchpoint due 2026-11-02); "
        "next wise action (find): Say hello"
    ]
    once = run(plan, [met("Women in Tech London", date(2026, 11, 10))])
    assert once.facts[1].progress is Progress.FIRST_MET
    assert (
        "first meeting done: first met 2026-11-10, last met 2026-11-10" in only(once, Rule.TARGET_PROGRESS)[0]
    )
    regular = run(
        plan,
        [met("Women in Tech London", date(2026, 10, 12)), met("Women in Tech London", date(2026, 11, 10))],
    )
    assert regular.facts[1].progress is Progress.REGULAR
    assert "becoming regular" in only(regular, Rule.TARGET_PROGRESS)[0]
    assert only(regular, Rule.TARGET_PROGRESS)[0].endswith("next wise action (find): Say hello")
    # Only targets are opportunities.
    assert regular.names(Rule.TARGET_PROGRESS) == ("Women in Tech London",)


def test_threat_overdue_by_more_than_one_cadence() -> None:
    plan = london_plan(GRACE, WITL)
    # Due 2026-11-09 (two weeks after 10-26): overdue, but by less than a cadence.
    assert only(run(plan, [met("Grace Hopper", date(2026, 10, 26))]), Rule.OVERDUE) == []
    late = run(plan, [met("Grace Hopper", date(2026, 10, 19))])
    assert only(late, Rule.OVERDUE) == [
        "Grace Hopper: overdue by more than one cadence (every 2 weeks): last met 2026-10-19, due 2026-11-02"
    ]
    assert late.section(Section.THREATS)[0].dates == (date(2026, 10, 19), date(2026, 11, 2))
    never = run(plan, [], [(touchpoint("Grace Hopper", date(2026, 11, 2)), OccurrenceStatus.MISSED)])
    assert only(never, Rule.OVERDUE) == [
        "Grace Hopper: overdue by more than one cadence (every 2 weeks): never met, due 2026-11-02"
    ]


def test_threat_target_stalled_for_more_than_two_cadences() -> None:
    plan = london_plan(GRACE, WITL)
    stalled = run(plan, [met("Women in Tech London", date(2026, 9, 20))])
    assert only(stalled, Rule.STALLED) == [
        "Women in Tech London (target): stalled for more than two cadences (every month): "
        "no meeting since 2026-09-20"
    ]
    assert only(stalled, Rule.OVERDUE) == []  # for a target, stalled says it
    assert only(run(plan, [met("Women in Tech London", date(2026, 9, 24))]), Rule.STALLED) == []
    never = audit(plan, [], [], TODAY, first_due={"women in tech london": date(2026, 9, 1)})
    assert only(never, Rule.STALLED) == [
        "Women in Tech London (target): stalled for more than two cadences (every month): "
        "never met; first due 2026-09-01"
    ]


def test_threat_sponsor_or_mentor_going_cold() -> None:
    plan = london_plan(role(GRACE, "mentor"), role(LINUS, "peer"), WITL)
    log = [met("Grace Hopper", date(2026, 11, 2)), met("Linus", date(2026, 9, 1))]
    assert only(run(plan, log), Rule.GOING_COLD) == [
        "Grace Hopper (mentor): going cold: last met 2026-11-02, due again since 2026-11-16 (every 2 weeks)"
    ]
    assert only(run(plan, [met("Grace Hopper", date(2026, 11, 16))]), Rule.GOING_COLD) == []


def test_threat_touchpoints_repeatedly_skipped_or_missed() -> None:
    plan = london_plan(GRACE, WITL)
    rows = [
        (touchpoint("Grace Hopper", date(2026, 10, 5)), OccurrenceStatus.COMPLETED),
        (touchpoint("Grace Hopper", date(2026, 10, 19)), OccurrenceStatus.SKIPPED),
        (touchpoint("Grace Hopper", date(2026, 11, 2)), OccurrenceStatus.MISSED),
        (touchpoint("Grace Hopper", date(2026, 11, 30)), OccurrenceStatus.PLACED),  # not due yet
    ]
    assert only(run(plan, [met("Grace Hopper", date(2026, 11, 16))], rows), Rule.SKIPPED) == [
        "Grace Hopper: the last 2 touchpoints were skipped or missed: "
        "due 2026-10-19 (skipped), due 2026-11-02 (missed)"
    ]
    once = [rows[0], rows[2]]
    assert only(run(plan, [], once), Rule.SKIPPED) == []


def test_balance_overall_per_connection_and_elsewhere() -> None:
    log = [
        met("Grace Hopper", date(2026, 11, 2)),
        met("grace hopper", date(2026, 11, 3), "ask"),  # names match case-insensitively
        met("Women in Tech London", date(2026, 11, 4)),
        met("Dropped Person", date(2026, 5, 1)),
        met("@review", date(2026, 11, 1)),  # a self-review is not a touchpoint
        met("Grace Hopper", date(2026, 12, 1), "ask"),  # after the audit's date
    ]
    result = run(london_plan(GRACE, WITL), log)
    assert [f.balance for f in result.facts] == [Balance(1, 1), Balance(1, 0)]
    assert result.elsewhere == Balance(1, 0)
    assert result.balance == Balance(3, 1)
    assert result.balance.phrase() == "3 give, 1 ask: 75% give"
    assert Balance().phrase() == "nothing logged yet"


def test_role_is_read_from_the_plan_and_checked_with_its_place() -> None:
    text = (
        "owner: {name: Ada}\ntimezone: Europe/London\nmindset: m\n"
        "working_hours: {days: [mon], start: '09:00', end: '17:00'}\nreview: {every: month}\n"
        "connections:\n"
        "  - {name: Grace, stage: nurture, every: month, next_action: a, role: Mentor}\n"
        "  - {name: Linus, stage: find, every: month, next_action: b, target: true, role: boss}\n"
    )
    with pytest.raises(PlanInvalid) as caught:
        parse_plan(text, "plan.yaml")
    assert str(caught.value) == (
        "plan.yaml:8:82: connections[1].role: must be one of mentor, sponsor, peer, client, team, community"
    )
    plan = parse_plan(text.replace("role: boss", "role: sponsor"), "plan.yaml")
    assert [c.role for c in plan.connections] == [Role.MENTOR, Role.SPONSOR]
    bare = parse_plan(text.replace(", role: boss", "").replace(", role: Mentor", ""), "plan.yaml")
    assert [c.role for c in bare.connections] == [None, None]


# --- the pre-filled review ------------------------------------------------------------------------------

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def reviews(
    plan: Plan, log: Sequence[Interaction], now: datetime, previous: Sequence[Occurrence] = ()
) -> dict[str, Occurrence]:
    got = list(
        plan_placement(
            plan,
            interactions=log,
            reviews_done=[],
            busy=[],
            now=now,
            horizon=timedelta(days=70),
            previous={o.key: o for o in previous},
            first_due={"women in tech london": date(2026, 9, 1), REVIEWS: date(2026, 11, 23)},
        ).occurrences
    )
    return {o.key: o for o in got if o.kind is OccurrenceKind.REVIEW}


def test_review_block_carries_mindset_headline_balance_and_three_questions() -> None:
    plan = london_plan(GRACE, LINUS, WITL)
    log = [
        met("Grace Hopper", date(2026, 11, 2)),
        met("Grace Hopper", date(2026, 11, 16)),
        met("Linus", date(2026, 9, 1), "ask"),
    ]
    text = reviews(plan, log, NOW)["review:kickoff"].description
    parts = text.split("\n\n")
    assert parts[0] == "Kickoff: 30 minutes with yourself this week to start the plan."
    assert parts[1] == f"Mindset: {plan.mindset}"
    assert parts[2].splitlines() == [
        "Went well: Grace Hopper",
        "Overdue: Linus (due 2026-10-01)",
        "Stalled target: Women in Tech London (no first meeting yet)",
        "Give/ask: 2 give, 1 ask: 67% give (rule of thumb: about 90% give)",
    ]
    assert parts[3].startswith("Focus connections:\n- Grace Hopper: nurture")
    questions = parts[4].splitlines()
    assert questions[0] == "Questions:"
    assert [q.split(":")[0] for q in questions[1:]] == ["- Keep", "- Change", "- Add"]
    assert "with Grace Hopper" in questions[1] and "for Linus, Women in Tech London" in questions[2]


def test_review_text_is_byte_stable_and_a_new_entry_changes_it_without_moving_the_block() -> None:
    plan = london_plan(GRACE, WITL)
    log = [met("Grace Hopper", date(2026, 11, 16))]
    first = reviews(plan, log, NOW)
    # A day later, with what was placed kept: the same words, the same places.
    later = reviews(plan, log, NOW + timedelta(days=1, hours=1), list(first.values()))
    regular = list(first)
    assert regular and all(later[k].description == first[k].description for k in regular)
    assert all(later[k].start == first[k].start for k in regular)
    # An ask logged: every review's text changes, but no block moves.
    asked = reviews(plan, [*log, met("Grace Hopper", date(2026, 11, 23), "ask")], NOW, list(first.values()))
    for key in first:
        assert asked[key].description != first[key].description
        assert "1 give, 1 ask: 50% give" in asked[key].description
        assert asked[key].start == first[key].start

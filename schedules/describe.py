"""Titles and descriptions of circleback's events: who and what, and the context needed to act.

Relative phrases ("3 weeks ago") are measured from the event's own date, never from the planning run, so
a description only changes when something it reports changes (calendar clients see a new SEQUENCE for
every change).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date

from schedules.audit import GIVE_RULE_OF_THUMB, Audit, Rule, audit
from schedules.cadence import Cadence
from schedules.events import Interaction
from schedules.model import Connection, Plan, Stage

STAGE_MEANING = {
    Stage.FIND: "make the connection",
    Stage.NURTURE: "keep it alive",
    Stage.ELEVATE: "deepen it: offer or ask for something bigger",
}
GIVE_FIRST = "Give first: most touchpoints help, congratulate, share or introduce."
ASK_LATER = "Help first, ask later: ask only where the relationship has been nurtured; never quid pro quo."
FIND_FIRST = "Build it before you need it: make the first contact about them, not about what you need."
REVIEW_TITLE = "Review: relationship plan"


def cadence_phrase(cadence: Cadence) -> str:
    return f"every {cadence}"


def ago(then: date, on: date) -> str:
    """How long before `on` the date `then` was, as read on the day `on` (the event's own date)."""
    days = (on - then).days
    if days < 0:
        return "later"
    if days == 0:
        return "today"
    if days == 1:
        return "yesterday"
    if days < 14:
        return f"{days} days ago"
    if days < 61:
        return f"{days // 7} weeks ago"
    if days < 365:
        return f"{days // 30} months ago"
    years = days // 365
    return "1 year ago" if years == 1 else f"{years} years ago"


def last_met_phrase(last_met: date | None, on: date) -> str:
    if last_met is None:
        return "not yet"
    return f"{last_met.isoformat()} ({ago(last_met, on)})"


def touchpoint_title(connection: Connection) -> str:
    return f"{connection.stage.value.capitalize()}: {connection.name}"


def review_title(*, kickoff: bool = False) -> str:
    return f"{REVIEW_TITLE} (kickoff)" if kickoff else REVIEW_TITLE


def why_now(connection: Connection, *, due: date, last_met: date | None, overdue: bool) -> str:
    """Why the touchpoint is in the calendar: its due date and what it counts from. Only dates, so the
    text stays the same from run to run while nothing it reports changes."""
    when = f"overdue since {due.isoformat()}" if overdue else f"due {due.isoformat()}"
    if last_met is None:
        return f"Why now: {when}, the first contact (not met yet)"
    return f"Why now: {when}, {cadence_phrase(connection.every)} since you last met on {last_met.isoformat()}"


def touchpoint_description(
    connection: Connection,
    *,
    last_met: date | None,
    on: date,
    overdue_since: date | None = None,
    due: date | None = None,
) -> str:
    """The touchpoint's body: the next wise action first, then why it is there and the context to act."""
    stage = connection.stage
    lines = [f"Next wise action: {connection.next_action}"]
    if due is not None:
        lines.append(why_now(connection, due=due, last_met=last_met, overdue=overdue_since is not None))
    lines.append(f"Stage: {stage.value} ({STAGE_MEANING[stage]})")
    if connection.target:
        lines.append("Target: a new connection you are creating.")
    lines.append(f"Last met: {last_met_phrase(last_met, on)}")
    if connection.notes:
        lines.append(f"Notes: {connection.notes}")
    lines.append(f"Cadence: {cadence_phrase(connection.every)}")
    lines.append(GIVE_FIRST)
    if stage is Stage.ELEVATE:
        lines.append(ASK_LATER)
    elif stage is Stage.FIND:
        lines.append(FIND_FIRST)
    if overdue_since is not None:
        lines.append(f"Overdue since {overdue_since.isoformat()}")
    return "\n".join(lines)


def _names(items: Sequence[str]) -> str:
    return ", ".join(items) if items else "none"


def review_headline(result: Audit) -> list[str]:
    """The audit in four lines: what went well, what is overdue, which target is stalled, give and ask."""
    today = result.today
    overdue = [
        f"{fact.name} (due {fact.due.isoformat()})"
        for fact in result.facts
        if fact.due is not None and fact.overdue(today) and not fact.connection.target
    ]
    stalled = [
        f"{fact.name} (last met {fact.last_met.isoformat()})"
        if fact.last_met
        else f"{fact.name} (no first meeting yet)"
        for fact in result.facts
        if fact.name in result.names(Rule.STALLED)
    ]
    return [
        f"Went well: {_names(result.names(Rule.AT_CADENCE))}",
        f"Overdue: {_names(overdue)}",
        f"Stalled target: {_names(stalled)}",
        f"Give/ask: {result.balance.phrase()} (rule of thumb: about {GIVE_RULE_OF_THUMB:.0%} give)",
    ]


def review_questions(plan: Plan, result: Audit) -> list[str]:
    """Keep, change, add: the three questions of a review, pointed at the audit's facts."""
    well = result.names(Rule.AT_CADENCE)
    behind = [f.name for f in result.facts if f.overdue(result.today)]
    keep = f" with {', '.join(well)}" if well else ""
    change = f" for {', '.join(behind)}" if behind else ""
    if any(c.target for c in plan.connections):
        add = (
            "- Add: which new connection would help next? Is your target still new, or has it become regular?"
        )
    else:
        add = "- Add: No connection is a target: which new connection would help? Add one."
    return [
        f"- Keep: what worked{keep} that you will keep doing?",
        f"- Change: what will you change{change}: stage, cadence, next wise action; "
        "does each touchpoint give rather than ask?",
        add,
    ]


def review_description(
    plan: Plan,
    *,
    last_met: Mapping[str, date | None],
    today: date,
    kickoff: bool = False,
    overdue_since: date | None = None,
    due: date | None = None,
    interactions: Sequence[Interaction] = (),
    first_due: Mapping[str, date] = {},
) -> str:
    """The review's body: the mindset, the audit's headline and balance, the focus list, three questions.

    `last_met` is keyed by casefolded connection name. `today` is the review's own date: the audit is read
    as of that day, so the text depends only on the plan, the log and the block's date, and stays the
    same from run to run until one of them changes.
    """
    result = audit(plan, interactions, (), today, first_due=first_due)
    lines: list[str] = []
    if kickoff:
        lines += ["Kickoff: 30 minutes with yourself this week to start the plan.", ""]
    elif due is not None:
        lines += [f"Why now: the review {cadence_phrase(plan.review.every)}, due {due.isoformat()}", ""]
    lines += [f"Mindset: {plan.mindset}", "", *review_headline(result), "", "Focus connections:"]
    for connection in plan.connections:
        met = last_met.get(connection.name.casefold())
        target = ", target" if connection.target else ""
        lines.append(
            f"- {connection.name}: {connection.stage.value} ({STAGE_MEANING[connection.stage]}){target},"
            f" {cadence_phrase(connection.every)}; last met {met.isoformat() if met else 'not yet'};"
            f" next wise action: {connection.next_action}"
        )
    lines += ["", "Questions:", *review_questions(plan, result)]
    if overdue_since is not None:
        lines += ["", f"Overdue since {overdue_since.isoformat()}"]
    return "\n".join(lines)

"""Titles and descriptions of circleback's events: who and what, and the context needed to act.

Relative phrases ("3 weeks ago") are measured from the event's own date, never from the planning run, so
a description only changes when something it reports changes (calendar clients see a new SEQUENCE for
every change).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

from schedules.cadence import Cadence
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


def going_cold(connection: Connection, last_met: date | None, today: date) -> bool:
    """Met before, but not within one cadence of `today`."""
    return last_met is not None and connection.every.add(last_met) < today


def review_description(
    plan: Plan,
    *,
    last_met: Mapping[str, date | None],
    today: date,
    kickoff: bool = False,
    overdue_since: date | None = None,
    due: date | None = None,
) -> str:
    """The review's body: the mindset, the focus list, and the method's questions.

    `last_met` is keyed by casefolded connection name. `today` is the planning date, used only to decide
    which connections are going cold (that flips rarely, so the text stays stable from run to run).
    """
    lines: list[str] = []
    if kickoff:
        lines += ["Kickoff: 30 minutes with yourself this week to start the plan.", ""]
    elif due is not None:
        lines += [f"Why now: the review {cadence_phrase(plan.review.every)}, due {due.isoformat()}", ""]
    lines += [f"Mindset: {plan.mindset}", "", "Focus connections:"]
    for connection in plan.connections:
        met = last_met.get(connection.name.casefold())
        target = ", target" if connection.target else ""
        lines.append(
            f"- {connection.name}: {connection.stage.value} ({STAGE_MEANING[connection.stage]}){target},"
            f" {cadence_phrase(connection.every)}; last met {met.isoformat() if met else 'not yet'};"
            f" next wise action: {connection.next_action}"
        )
    cold = [c.name for c in plan.connections if going_cold(c, last_met.get(c.name.casefold()), today)]
    never = [c.name for c in plan.connections if last_met.get(c.name.casefold()) is None]
    lines += ["", "Questions:"]
    if any(c.target for c in plan.connections):
        lines.append(
            "- Is at least one connection still a new target you are creating, or has it become one?"
        )
    else:
        lines.append("- No connection is a target: which new connection would help? Add one.")
    if cold:
        lines.append(f"- Going cold: {', '.join(cold)}. What is the next wise action for each?")
    else:
        lines.append("- Is any relationship going cold? Who have you not seen in a while?")
    if never:
        lines.append(f"- Not met yet: {', '.join(never)}. What would make the first contact easy?")
    lines += [
        "- Did most touchpoints give (help, congratulate, share, introduce) rather than ask?",
        "- Adjust the plan: stages, cadences, next wise actions; swap a connection that no longer serves.",
    ]
    if overdue_since is not None:
        lines += ["", f"Overdue since {overdue_since.isoformat()}"]
    return "\n".join(lines)

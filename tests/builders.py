"""Plain values for tests: connections and plans built the way the plan parser would build them."""

from __future__ import annotations

from datetime import time

from schedules.cadence import parse_cadence, parse_duration
from schedules.model import Connection, ConnectionKind, Owner, Plan, Review, Stage, WorkingHours

MINDSET = "Relationships are the currency of leadership; I build them before I need them."
WEEKDAYS_9_TO_1730 = WorkingHours(frozenset(range(5)), time(9), time(17, 30))


def connection(
    name: str,
    *,
    group: bool = False,
    stage: str = "nurture",
    every: str = "2 weeks",
    duration: str = "30m",
    next_action: str = "Say hello",
    target: bool = False,
    email: str | None = None,
    emails: tuple[str, ...] = (),
    keywords: tuple[str, ...] = (),
    notes: str = "",
) -> Connection:
    return Connection(
        name=name,
        kind=ConnectionKind.GROUP if group else ConnectionKind.PERSON,
        stage=Stage(stage),
        every=parse_cadence(every),
        duration=parse_duration(duration),
        next_action=next_action,
        target=target,
        email=email,
        emails=emails,
        keywords=keywords,
        notes=notes,
    )


def london_plan(
    *connections: Connection,
    mindset: str = MINDSET,
    review: str = "month",
    review_duration: str = "30m",
    kickoff: bool = True,
    owner_email: str | None = "ada@example.com",
    hours: WorkingHours = WEEKDAYS_9_TO_1730,
) -> Plan:
    return Plan(
        owner=Owner("Ada Lovelace", owner_email),
        timezone="Europe/London",
        mindset=mindset,
        working_hours=hours,
        review=Review(parse_cadence(review), parse_duration(review_duration), kickoff=kickoff),
        connections=connections,
    )

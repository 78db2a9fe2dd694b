"""The busy rule: which observed events block time. Core policy, so every calendar back end agrees.

An event blocks its time unless it is cancelled, marked free (`Observation.transparent`: the back end
translates the calendar's own marks, such as TRANSP, Outlook's busy status or Google's transparency, into
it), declined by one of the owner's addresses, or one of circleback's own events (the planner keeps those in
their slots itself; counting them as busy would push each one out of its own slot on the next cycle).
Zero-length events block nothing.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from schedules.events import Interval, Observation, PartStat, is_circleback_event
from schedules.slots import Occupancy


def declined_by_owner(observation: Observation, owner_emails: Collection[str]) -> bool:
    owners = {email.strip().casefold() for email in owner_emails}
    return any(
        a.partstat is PartStat.DECLINED and a.email.casefold() in owners for a in observation.attendees
    )


def blocks(observation: Observation, owner_emails: Collection[str] = ()) -> bool:
    return not (
        observation.cancelled
        or observation.transparent
        or observation.end <= observation.start
        or is_circleback_event(observation)
        or declined_by_owner(observation, owner_emails)
    )


def busy_time(
    observations: Iterable[Observation], owner_emails: Collection[str] = (), *, also: Iterable[Interval] = ()
) -> tuple[Interval, ...]:
    """The merged busy intervals of `observations`, plus `also` (busy time a calendar reports without
    events, such as Google's free/busy answer)."""
    owners = tuple(owner_emails)
    chosen = [Interval(o.start, o.end) for o in observations if blocks(o, owners)]
    return tuple(Occupancy([*chosen, *also]))

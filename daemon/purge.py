"""Removing circleback's events from a person's calendars before their rows are purged.

`people remove EMAIL --purge` deletes everything circleback keeps about a person; the events it placed in
their calendars must go first, because the placements are the only record of which events are
circleback's. Each writable calendar gets the writer's ordinary `apply` with an empty desired set and the
stored placements: exactly the "delete what is no longer desired" path of every cycle, so the connector
touches nothing but circleback's own events (Google reaches the person's calendar as the person, through
the service account's domain-wide delegation, as their cycles do).

A calendar that cannot be reached, or that refuses a deletion, is reported by name with the reason and
the purge stops before any row is deleted: a retry finds what is left. What was deleted is recorded in
the placements (as a cycle would), so neither the retry nor a cycle that runs in between mistakes
circleback's own deletions for the person's.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from connectors.base import ConnectorError, EventResult, Outcome
from daemon.app import build_calendars
from daemon.config import Settings
from daemon.org_person import person_settings
from daemon.org_secret import person_marker_secret
from daemon.people import People
from daemon.store import Store


@dataclass(frozen=True)
class Unreached:
    """A calendar whose events could not all be removed, and why."""

    calendar: str
    reason: str


@dataclass(frozen=True)
class RemoteRemoval:
    removed: dict[str, int]  # calendar -> events deleted there
    unreached: list[Unreached]

    @property
    def complete(self) -> bool:
        return not self.unreached


def remove_remote_events(settings: Settings, email: str) -> RemoteRemoval:
    """Delete circleback's events of `email` from each of their writable calendars (the organisation's
    calendars as this person). Nothing is deleted from the database except the placements of events
    that are gone now."""
    with Store(settings.database_url, owner=email, migrate=False) as store:
        people = People(store.engine)
        person = people.get(email)
        _text, plan = people.latest_plan(email)
        own = person_settings(settings, person)
        engine = store.engine
        # The person's own key-marker secret, as their cycles use it: never the state directory's file.
        secret = functools.cache(lambda: person_marker_secret(engine, email))
        removed: dict[str, int] = {}
        unreached: list[Unreached] = []
        results: dict[str, tuple[EventResult, ...]] = {}
        states: dict[str, dict[str, str]] = {}
        try:
            writers = build_calendars(own, plan, owner=person.email, marker_secret=secret).writers
        except ConnectorError as exc:  # unreadable credentials: nothing can be reached
            return RemoteRemoval({}, [Unreached(exc.calendar, exc.reason)])
        for writer in writers:
            placements = store.placements(writer.name)
            if not placements:
                removed[writer.name] = 0
                continue
            try:
                applied = writer.apply([], placements=placements, state=store.calendar_state(writer.name))
            except ConnectorError as exc:
                unreached.append(Unreached(writer.name, exc.reason))
                continue
            done = [r for r in applied.results if r.outcome is Outcome.DONE]
            results[writer.name] = tuple(done)
            if applied.state is not None:
                states[writer.name] = dict(applied.state)
            removed[writer.name] = len(done)
            if applied.failed:
                first = applied.failed[0]
                more = f" (and {len(applied.failed) - 1} more)" if len(applied.failed) > 1 else ""
                unreached.append(
                    Unreached(writer.name, f"could not delete {first.key}: {first.reason}{more}")
                )
        if unreached and results:
            # Only the placements of deleted events go (and the calendar learns they were circleback's
            # deletions); everything else stays for the retry.
            store.save_cycle(
                revisions=[],
                removed=(),
                statuses={},
                interactions=[],
                calendar_states=states,
                event_results=results,
            )
        return RemoteRemoval(removed, unreached)

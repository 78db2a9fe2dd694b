"""A calendar held in memory: the reference back end, both Reader and Writer.

It is what every other back end is measured against (`tests/test_connector_contract.py` runs the same
contract over it and the real ones), and it is usable on its own for demos and for driving whole cycles in
tests without files or servers. It behaves the way a real calendar does where that matters to circleback:

- Events are kept by UID. A person's own events (no `circleback_key`) are never changed by `apply`.
- `apply` makes circleback's events (those carrying a key) equal to the desired set: missing ones are
  created under the occurrence's UID, changed ones are updated in place (a moved touchpoint keeps its UID
  and its attendees, and its SEQUENCE moves forward, never back), and ones no longer desired are deleted
  outright: a deleted event disappears, it does not linger as cancelled.
- `read` follows the ICS reader's busy rule: cancelled and transparent events are observed but do not
  block, and an event one of the owner's addresses declined neither blocks nor is observed. circleback's
  own events (by key or UID) are observed but never block either: the planner keeps them in their slots
  itself, and counting them as busy would push each one out of its own slot on the next cycle.

Everything happens under one lock, so a read never sees half of an apply.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any

from connectors.base import (
    EMPTY_PLACEMENTS,
    EMPTY_STATE,
    Applied,
    CalendarState,
    Capability,
    ConnectorError,
    EventResult,
    Outcome,
    Placement,
)
from schedules.events import (
    Attendee,
    Interval,
    Observation,
    Snapshot,
    require_utc,
)
from schedules.occurrence import Revision

__all__ = ["MemoryCalendar", "MemoryEvent", "shared_calendar"]


@dataclass(frozen=True)
class MemoryEvent:
    """One stored event. Times are UTC; an all-day event spans whole local days given as instants."""

    uid: str
    start: datetime
    end: datetime
    summary: str = ""
    description: str = ""
    attendees: tuple[Attendee, ...] = ()
    organizer: str | None = None
    cancelled: bool = False
    transparent: bool = False
    all_day: bool = False
    circleback_key: str | None = None
    sequence: int = 0

    def __post_init__(self) -> None:
        if not self.uid.strip():
            raise ValueError("an event needs a non-empty UID")
        object.__setattr__(self, "start", require_utc(self.start, f"event {self.uid!r} start"))
        object.__setattr__(self, "end", require_utc(self.end, f"event {self.uid!r} end"))
        if self.end < self.start:
            raise ValueError(f"event {self.uid!r} ends ({self.end}) before it starts ({self.start})")
        if self.sequence < 0:
            raise ValueError(f"event {self.uid!r} has a negative SEQUENCE {self.sequence}")

    def overlaps(self, window: Interval) -> bool:
        # An instant (zero-length) event belongs to the window it falls in, as in the ICS reader.
        if self.start == self.end:
            return window.start <= self.start < window.end
        return self.start < window.end and window.start < self.end


# The fields `apply` owns on circleback's events; attendees and the organizer are the person's to add.
_OWNED = ("start", "end", "summary", "description", "cancelled", "transparent", "all_day")


class MemoryCalendar:
    """Implements both `connectors.base.Reader` and `connectors.base.Writer` over events kept in memory."""

    capabilities = frozenset({Capability.READ, Capability.WRITE})

    def __init__(self, name: str = "memory", *, owner_emails: Collection[str] = ()) -> None:
        self.name = name
        # Occurrence keys whose next write fails, with the reason and whether a retry may help: a real
        # calendar refuses single events (quota, a conflict, a validation error) while taking the rest.
        self.failing: dict[str, tuple[str, bool]] = {}
        self.owner_emails = frozenset(email.strip().casefold() for email in owner_emails)
        self._events: dict[str, MemoryEvent] = {}
        self._lock = threading.Lock()
        self._next_uid = 0

    def __repr__(self) -> str:
        return f"MemoryCalendar({self.name!r}, {len(self._events)} events)"

    @property
    def events(self) -> Mapping[str, MemoryEvent]:
        """Every stored event by UID, as of now (a copy: later changes do not show through)."""
        with self._lock:
            return MappingProxyType(dict(self._events))

    # --- what a person does in their calendar ------------------------------------------------------

    def add_event(
        self,
        start: datetime,
        end: datetime,
        summary: str = "",
        *,
        uid: str | None = None,
        description: str = "",
        attendees: Sequence[Attendee] = (),
        organizer: str | None = None,
        cancelled: bool = False,
        transparent: bool = False,
        all_day: bool = False,
        circleback_key: str | None = None,
    ) -> MemoryEvent:
        """Put an event in, as a person (or another program) would; returns it with its UID.

        `circleback_key` is for seeding a calendar with circleback's events as an earlier run left them;
        a person's own events have none. Raises ValueError for a UID or key already in the calendar.
        """
        with self._lock:
            if uid is None:
                uid = self._fresh_uid()
            if uid in self._events:
                raise ValueError(f"{self.name}: an event with UID {uid!r} already exists")
            if circleback_key is not None and self._owned().get(circleback_key) is not None:
                raise ValueError(f"{self.name}: an event for occurrence {circleback_key!r} already exists")
            event = MemoryEvent(
                uid=uid,
                start=start,
                end=end,
                summary=summary,
                description=description,
                attendees=tuple(attendees),
                organizer=organizer,
                cancelled=cancelled,
                transparent=transparent,
                all_day=all_day,
                circleback_key=circleback_key,
            )
            self._events[uid] = event
            return event

    def edit_event(self, uid: str, /, **changes: Any) -> MemoryEvent:
        """Change an event as a calendar app would (move it, cancel it, invite someone); SEQUENCE goes up.

        The UID, SEQUENCE and circleback key are the calendar's, not the editor's, and cannot be changed.
        """
        fixed = {"uid", "sequence", "circleback_key"} & changes.keys()
        if fixed:
            raise ValueError(f"{self.name}: {', '.join(sorted(fixed))} cannot be edited")
        with self._lock:
            old = self._get(uid)
            if "attendees" in changes:
                changes["attendees"] = tuple(changes["attendees"])
            new = dataclasses.replace(old, **changes, sequence=old.sequence + 1)
            self._events[uid] = new
            return new

    def delete_event(self, uid: str) -> None:
        with self._lock:
            self._get(uid)
            del self._events[uid]

    # --- Writer ------------------------------------------------------------------------------------

    def fail_writes(
        self, key: str, reason: str = "refused by the calendar", *, retryable: bool = True
    ) -> None:
        """Make every write of occurrence `key` fail until `heal` (a person's calendar refusing one event)."""
        self.failing[key] = (reason, retryable)

    def heal(self, key: str | None = None) -> None:
        if key is None:
            self.failing.clear()
        else:
            self.failing.pop(key, None)

    def apply(
        self,
        desired: Sequence[Revision],
        *,
        placements: Mapping[str, Placement] = EMPTY_PLACEMENTS,
        state: CalendarState = EMPTY_STATE,
    ) -> Applied:
        """Make circleback's events equal to `desired`; report the keys created, updated and removed.

        Events are found by their key, so `placements` only matter as the store's belief; the result
        per event says where each one is now. A key marked with `fail_writes` fails alone.

        Invalid input (a key twice, an event ending before or when it starts, a negative SEQUENCE) raises
        a non-retryable ConnectorError before anything changes. An occurrence whose UID is taken by an event
        that is not ours is left out with a warning: the other event is the person's and stays as it is.
        """
        self._check(desired)
        ordered = sorted(desired, key=lambda r: (r.occurrence.start, r.occurrence.uid))
        with self._lock:
            owned = self._owned()
            created: list[str] = []
            updated: list[str] = []
            warnings: list[str] = []
            results: list[EventResult] = []
            for revision in ordered:
                occ = revision.occurrence
                old = owned.get(occ.key)
                if occ.key in self.failing:
                    reason, retryable = self.failing[occ.key]
                    before = placements.get(occ.key)
                    action = "create" if old is None else "update"
                    results.append(EventResult(occ.key, action, Outcome.FAILED, before, reason, retryable))
                    continue
                if old is None:
                    taken = self._events.get(occ.uid)
                    if taken is not None:
                        warnings.append(
                            f"{self.name}: occurrence {occ.key!r} not placed: its UID {occ.uid!r} belongs "
                            f"to another event ({taken.summary!r})"
                        )
                        continue
                    self._events[occ.uid] = self._from_revision(revision, occ.uid, revision.sequence)
                    created.append(occ.key)
                    results.append(EventResult(occ.key, "create", placement=self._placement(occ.uid)))
                    continue
                wanted = self._from_revision(revision, old.uid, old.sequence)
                if _owned_fields(wanted) != _owned_fields(old):
                    # Calendars refuse a SEQUENCE that goes backwards and raise it themselves on a change.
                    sequence = max(revision.sequence, old.sequence + 1)
                    self._events[old.uid] = dataclasses.replace(
                        wanted, attendees=old.attendees, organizer=old.organizer, sequence=sequence
                    )
                    updated.append(occ.key)
                    results.append(EventResult(occ.key, "update", placement=self._placement(old.uid)))
                else:
                    results.append(EventResult(occ.key, "keep", placement=self._placement(old.uid)))
            keep = {r.occurrence.key for r in desired}
            removed = sorted(key for key in owned if key not in keep and key not in self.failing)
            for key in removed:
                del self._events[owned[key].uid]
                results.append(EventResult(key, "delete"))
            for key in sorted(k for k in owned if k not in keep and k in self.failing):
                reason, retryable = self.failing[key]
                results.append(
                    EventResult(key, "delete", Outcome.FAILED, placements.get(key), reason, retryable)
                )
        return Applied(
            created=tuple(created),
            updated=tuple(updated),
            removed=tuple(removed),
            warnings=tuple(warnings),
            results=tuple(sorted(results, key=lambda r: r.key)),
        )

    def _placement(self, uid: str) -> Placement:
        event = self._events[uid]
        assert event.circleback_key is not None
        return Placement(event.circleback_key, uid, etag=str(event.sequence), sequence=event.sequence)

    # --- Reader ------------------------------------------------------------------------------------

    def read(self, window: Interval, state: CalendarState = EMPTY_STATE) -> Snapshot:
        """Busy time and every event overlapping `window`, in order of start (no state: always full)."""
        with self._lock:
            seen = [e for e in self._events.values() if e.overlaps(window)]
        seen.sort(key=lambda e: (e.start, e.end, e.uid))
        # Translation only: which of these block time is the core's busy rule (schedules.busy).
        return Snapshot(observations=tuple(self._observe(e) for e in seen))

    # --- inside --------------------------------------------------------------------------------------

    def _check(self, desired: Sequence[Revision]) -> None:
        seen: set[str] = set()
        for revision in desired:
            occ = revision.occurrence
            problem = None
            if occ.key in seen:
                problem = "appears twice; a calendar holds one event per occurrence"
            elif occ.end <= occ.start:
                problem = f"ends ({occ.end}) before or when it starts ({occ.start})"
            elif revision.sequence < 0:
                problem = f"has a negative SEQUENCE {revision.sequence}"
            if problem is not None:
                raise ConnectorError(self.name, f"occurrence {occ.key!r} {problem}", retryable=False)
            seen.add(occ.key)

    def _owned(self) -> dict[str, MemoryEvent]:
        return {e.circleback_key: e for e in self._events.values() if e.circleback_key is not None}

    def _from_revision(self, revision: Revision, uid: str, sequence: int) -> MemoryEvent:
        occ = revision.occurrence
        return MemoryEvent(
            uid=uid,
            start=occ.start,
            end=occ.end,
            summary=occ.title,
            description=occ.description,
            circleback_key=occ.key,
            sequence=sequence,
        )

    def _fresh_uid(self) -> str:
        # Deterministic, so a demo or test run reads the same every time.
        while True:
            self._next_uid += 1
            uid = f"event-{self._next_uid}@{self.name}.invalid"
            if uid not in self._events:
                return uid

    def _get(self, uid: str) -> MemoryEvent:
        try:
            return self._events[uid]
        except KeyError:
            raise KeyError(f"{self.name}: no event with UID {uid!r}") from None

    def _observe(self, event: MemoryEvent) -> Observation:
        return Observation(
            source=self.name,
            uid=event.uid,
            start=event.start,
            end=event.end,
            summary=event.summary,
            attendees=event.attendees,
            organizer=event.organizer,
            cancelled=event.cancelled,
            transparent=event.transparent,
            all_day=event.all_day,
            circleback_key=event.circleback_key,
        )


def _owned_fields(event: MemoryEvent) -> tuple[object, ...]:
    return tuple(getattr(event, name) for name in _OWNED)


_SHARED: dict[str, MemoryCalendar] = {}
_SHARED_LOCK = threading.Lock()


def shared_calendar(name: str = "memory") -> MemoryCalendar:
    """The one calendar of this name in this process, so a config that names a memory calendar both as a
    source and as a target reads back what it wrote (what the registry hands out)."""
    with _SHARED_LOCK:
        calendar = _SHARED.get(name)
        if calendar is None:
            calendar = _SHARED[name] = MemoryCalendar(name)
        return calendar

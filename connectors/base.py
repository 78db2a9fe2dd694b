"""The one interface every calendar back end implements.

A connector translates between a calendar and the core's plain values; it never decides what to plan.
Retries, conditional requests and rate limits live behind this interface.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Protocol, runtime_checkable

from schedules.events import Interval, Snapshot
from schedules.occurrence import Revision


class ConnectorError(Exception):
    """A back end could not do its job; the message names the calendar and the reason."""

    def __init__(self, calendar: str, reason: str, *, retryable: bool = True) -> None:
        super().__init__(f"{calendar}: {reason}")
        self.calendar = calendar
        self.reason = reason
        self.retryable = retryable


class Capability(StrEnum):
    """What a back end can do; the contract suite runs the tests each capability calls for."""

    READ = "read"  # busy time and observed events
    WRITE = "write"  # holds circleback's events
    INCREMENTAL = "incremental"  # a read with saved state returns only what changed (sync tokens)


# A calendar's persisted key-value state (sync tokens, validators, cursors). The store keeps it per owner
# and calendar and hands it back on the next call; a connector never stores it anywhere else.
CalendarState = Mapping[str, str]
EMPTY_STATE: CalendarState = MappingProxyType({})


@dataclass(frozen=True)
class Placement:
    """What ONE writable calendar holds for ONE occurrence (vdirsyncer's status entry)."""

    key: str  # the occurrence key
    remote_id: str  # the calendar's id for the event: a UID, a Google event id, a CalDAV href
    etag: str | None = None
    sequence: int = 0  # the revision SEQUENCE last written


EMPTY_PLACEMENTS: Mapping[str, Placement] = MappingProxyType({})


class Outcome(StrEnum):
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class EventResult:
    """What `apply` did for one occurrence. A failure of one event never hides as placed."""

    key: str
    action: str  # "create" | "update" | "delete" | "keep"
    outcome: Outcome = Outcome.DONE
    placement: Placement | None = None  # DONE: where it is now (None after a delete); FAILED: as before
    reason: str = ""
    retryable: bool = True


@dataclass(frozen=True)
class Applied:
    """What a write did: per-event results, the calendar's new state, and non-fatal warnings.

    `created`, `updated` and `removed` list the keys of the successful results by action.
    """

    created: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default_factory=tuple)
    results: tuple[EventResult, ...] = ()
    state: CalendarState | None = None  # None: unchanged

    @property
    def failed(self) -> tuple[EventResult, ...]:
        return tuple(r for r in self.results if r.outcome is Outcome.FAILED)


@runtime_checkable
class Reader(Protocol):
    """A calendar circleback can read: busy time and the events that happened.

    `state` is what the previous read left in `Snapshot.state` (empty the first time); a back end with the
    INCREMENTAL capability uses it to fetch only what changed."""

    name: str

    def read(self, window: Interval, state: CalendarState = EMPTY_STATE) -> Snapshot: ...


@runtime_checkable
class Writer(Protocol):
    """A calendar circleback can write its desired occurrences into.

    `apply` gets the FULL desired set each time, plus what the store believes the calendar holds
    (`placements`, by occurrence key): it creates what is missing, updates what changed, deletes what is
    no longer desired, and reports a result per event. ConnectorError means the calendar could not be
    reached at all; one event that fails is a FAILED result and the rest is still written."""

    name: str

    def apply(
        self,
        desired: Sequence[Revision],
        *,
        placements: Mapping[str, Placement] = EMPTY_PLACEMENTS,
        state: CalendarState = EMPTY_STATE,
    ) -> Applied: ...


def capabilities(backend: object) -> frozenset[Capability]:
    """A back end's declared capabilities (READ and/or WRITE from the protocols it implements otherwise)."""
    declared = getattr(backend, "capabilities", None)
    if declared is not None:
        return frozenset(declared)
    found = set()
    if isinstance(backend, Reader):
        found.add(Capability.READ)
    if isinstance(backend, Writer):
        found.add(Capability.WRITE)
    return frozenset(found)


def results_for(
    desired: Sequence[Revision],
    created: Sequence[str],
    updated: Sequence[str],
    removed: Sequence[str],
    remote_id: Callable[[Revision], str],
) -> tuple[EventResult, ...]:
    """Per-event results for an all-or-nothing back end (a file, memory) that wrote everything."""
    by_key = {r.occurrence.key: r for r in desired}
    out = [
        EventResult(
            key,
            "create" if key in created else "update" if key in updated else "keep",
            placement=Placement(key, remote_id(revision), sequence=revision.sequence),
        )
        for key, revision in by_key.items()
    ]
    out.extend(EventResult(key, "delete") for key in removed)
    return tuple(sorted(out, key=lambda r: r.key))

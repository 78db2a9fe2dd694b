"""The one interface every calendar back end implements.

A connector translates between a calendar and the core's plain values; it never decides what to plan.
Retries, conditional requests and rate limits live behind this interface.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
    """What a write did: occurrence keys created, updated and removed, plus non-fatal warnings."""

    created: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default_factory=tuple)


@runtime_checkable
class Reader(Protocol):
    """A calendar circleback can read: busy time and the events that happened."""

    name: str

    def read(self, window: Interval) -> Snapshot: ...


@runtime_checkable
class Writer(Protocol):
    """A calendar circleback can write its desired occurrences into (the full desired set each time)."""

    name: str

    def apply(self, desired: Sequence[Revision]) -> Applied: ...

"""The one interface every calendar back end implements.

A connector translates between a calendar and the core's plain values; it never decides what to plan.
Retries, conditional requests and rate limits live behind this interface.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
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

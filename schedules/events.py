"""Plain values that cross the boundary between the core and the calendar back ends."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum


def require_utc(value: datetime, what: str) -> datetime:
    """Reject naive datetimes and normalise aware ones to UTC, so comparisons never mix zones."""
    if value.tzinfo is UTC:
        return value  # the planner builds a million intervals a year of plan: keep the usual case cheap
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {value!r}")
    return value.astimezone(UTC)


@dataclass(frozen=True, order=True)
class Interval:
    """A half-open span [start, end) in UTC."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", require_utc(self.start, "Interval.start"))
        object.__setattr__(self, "end", require_utc(self.end, "Interval.end"))
        if self.end < self.start:
            raise ValueError(f"interval ends before it starts: {self.start} > {self.end}")

    @property
    def duration(self) -> timedelta:
        return self.end - self.start

    def overlaps(self, other: Interval) -> bool:
        return self.start < other.end and other.start < self.end


class PartStat(StrEnum):
    ACCEPTED = "ACCEPTED"
    DECLINED = "DECLINED"
    TENTATIVE = "TENTATIVE"
    NEEDS_ACTION = "NEEDS-ACTION"
    DELEGATED = "DELEGATED"


@dataclass(frozen=True)
class Attendee:
    email: str  # lower-cased by whoever builds it; matching is case-insensitive
    partstat: PartStat = PartStat.NEEDS_ACTION


@dataclass(frozen=True)
class Observation:
    """One event instance seen in a source calendar (recurrences already expanded).

    `uid` is the event's UID; `recurrence_id` tells instances of one series apart. `circleback_key` is set
    when the event is one of circleback's own touchpoints (recognised by its UID or by an X- property the
    feed writes), so the reconciler can match it to the planned occurrence even if it was moved.
    """

    source: str
    uid: str
    start: datetime
    end: datetime
    summary: str = ""
    attendees: tuple[Attendee, ...] = ()
    organizer: str | None = None
    cancelled: bool = False
    transparent: bool = False
    all_day: bool = False
    recurrence_id: datetime | None = None
    circleback_key: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", require_utc(self.start, "Observation.start"))
        object.__setattr__(self, "end", require_utc(self.end, "Observation.end"))
        if self.recurrence_id is not None:
            object.__setattr__(self, "recurrence_id", require_utc(self.recurrence_id, "recurrence_id"))

    @property
    def instance_id(self) -> str:
        """Identity of this one instance: the UID plus, for a recurring series, its RECURRENCE-ID."""
        if self.recurrence_id is None:
            return self.uid
        return f"{self.uid}/{self.recurrence_id.strftime('%Y%m%dT%H%M%SZ')}"


UID_SUFFIX = "@circleback.invalid"  # every UID circleback issues ends so (see occurrence_uid)


def is_circleback_uid(uid: str) -> bool:
    return uid.startswith("cb-") and uid.endswith(UID_SUFFIX)


def is_circleback_event(observation: Observation) -> bool:
    """One of circleback's own touchpoints or reviews (or a copy of one), recognised by key or UID."""
    return observation.circleback_key is not None or is_circleback_uid(observation.uid)


@dataclass(frozen=True)
class Snapshot:
    """What one read of a calendar produced: busy time, observed events, and non-fatal warnings."""

    busy: tuple[Interval, ...] = ()
    observations: tuple[Observation, ...] = ()
    warnings: tuple[str, ...] = field(default_factory=tuple)
    # Set when the calendar could not be read and an earlier copy was used instead: the data is usable,
    # but the calendar is failing and must be retried and reported.
    stale: str | None = None
    # The calendar's key-value state for the next read (a sync token, validators), opaque to the core;
    # None leaves the stored state as it is.
    state: Mapping[str, str] | None = None


class InteractionKind(StrEnum):
    GIVE = "give"
    ASK = "ask"


@dataclass(frozen=True)
class Interaction:
    """One entry of the interaction log, as the core sees it."""

    connection: str  # the connection's name, as written in the plan
    at: datetime
    kind: InteractionKind = InteractionKind.GIVE
    note: str = ""
    source: str = "manual"  # manual | calendar | touchpoint
    event_uid: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "at", require_utc(self.at, "Interaction.at"))

"""The focus plan as plain, validated values (parsing lives in `schedules.plan`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import time, timedelta
from enum import StrEnum

from schedules.cadence import Cadence

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_CONNECTIONS = 5
# The log's name for self-reviews (`circleback review done`); '@' cannot start a connection's name.
REVIEW_LOG_NAME = "@review"


class Stage(StrEnum):
    """The next wise action's kind, from the method: make, keep alive, or deepen the connection."""

    FIND = "find"
    NURTURE = "nurture"
    ELEVATE = "elevate"


class Role(StrEnum):
    """What a connection is to the person (optional in the plan); the audit looks for the missing ones."""

    MENTOR = "mentor"
    SPONSOR = "sponsor"
    PEER = "peer"
    CLIENT = "client"
    TEAM = "team"
    COMMUNITY = "community"


class ConnectionKind(StrEnum):
    PERSON = "person"
    GROUP = "group"


@dataclass(frozen=True)
class Owner:
    name: str
    email: str | None = None


@dataclass(frozen=True)
class WorkingHours:
    days: frozenset[int]  # 0 = Monday ... 6 = Sunday, as date.weekday()
    start: time
    end: time


@dataclass(frozen=True)
class Review:
    every: Cadence
    duration: timedelta
    kickoff: bool = True


@dataclass(frozen=True)
class Connection:
    name: str
    kind: ConnectionKind
    stage: Stage
    every: Cadence
    duration: timedelta
    next_action: str
    target: bool = False
    email: str | None = None  # lower-cased
    emails: tuple[str, ...] = ()  # further addresses that identify this person or group (lower-cased)
    keywords: tuple[str, ...] = ()  # title words that identify a group's events (lower-cased)
    notes: str = ""  # what they care about, what was said last time: shown in the touchpoint
    role: Role | None = None  # mentor, sponsor, peer, client, team or community, when the plan says

    @property
    def all_emails(self) -> tuple[str, ...]:
        return tuple(e for e in ((self.email,) if self.email else ()) + self.emails)


@dataclass(frozen=True)
class Plan:
    owner: Owner
    timezone: str  # IANA name, validated
    mindset: str
    working_hours: WorkingHours
    review: Review
    connections: tuple[Connection, ...] = field(default_factory=tuple)

    def connection(self, name: str) -> Connection | None:
        folded = name.casefold()
        return next((c for c in self.connections if c.name.casefold() == folded), None)

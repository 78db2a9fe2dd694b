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
class Window:
    """A wall-clock span of the day, [start, end), in the plan's zone."""

    start: time
    end: time

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


# Mid-morning and mid-afternoon: away from the first minutes of the day, lunch and the end of the day.
DEFAULT_PREFER = (Window(time(10), time(12)), Window(time(14), time(16, 30)))
DEFAULT_BUFFER = timedelta(minutes=15)
DEFAULT_MAX_PER_DAY = 1


@dataclass(frozen=True)
class Placement:
    """Where circleback puts its events.

    `prefer`: windows tried first (clipped to working hours; if none overlaps them, the whole working day
    is preferred). `buffer`: free time kept before and after every other meeting. `max_per_day`: how many
    of circleback's own events (touchpoints and reviews) share a day while the days they may go to have
    room. `holidays`: an ISO 3166 country, optionally with a subdivision ("GB", "GB-SCT", "US-CA"), whose
    public holidays get nothing; None for none.
    """

    prefer: tuple[Window, ...] = DEFAULT_PREFER
    buffer: timedelta = DEFAULT_BUFFER
    max_per_day: int = DEFAULT_MAX_PER_DAY
    holidays: str | None = None


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
    prefer: tuple[Window, ...] | None = None  # this connection's own windows, overriding the plan's
    role: Role | None = None  # mentor, sponsor, peer, client, team or community, when the plan says
    # The stable id that names this connection in occurrence keys and in the store: the plan's `id:`,
    # or the id a rename detected (schedules.renames); otherwise the case-folded name.
    id: str | None = None

    @property
    def ident(self) -> str:
        return self.id or self.name.casefold()

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
    placement: Placement = field(default_factory=Placement)

    def connection(self, name: str) -> Connection | None:
        folded = name.casefold()
        return next((c for c in self.connections if c.name.casefold() == folded), None)

"""What the planner produces: one desired calendar event, with an identity that survives moves."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from schedules.events import UID_SUFFIX, require_utc


class OccurrenceKind(StrEnum):
    TOUCHPOINT = "touchpoint"
    REVIEW = "review"


class OccurrenceStatus(StrEnum):
    PLANNED = "planned"  # computed, not yet written to any calendar
    PLACED = "placed"  # written to at least one calendar
    COMPLETED = "completed"  # seen to have happened (or logged)
    SKIPPED = "skipped"  # the person said it will not happen
    MISSED = "missed"  # its time passed with no sign it happened


# Open: still to happen or awaiting a verdict; terminal: settled, kept as history.
OPEN_STATUSES = (OccurrenceStatus.PLANNED, OccurrenceStatus.PLACED)
TERMINAL_STATUSES = (OccurrenceStatus.COMPLETED, OccurrenceStatus.MISSED, OccurrenceStatus.SKIPPED)


@dataclass(frozen=True)
class Occurrence:
    """A desired event. `key` says what it is (who, which due period), never where it landed."""

    key: str
    kind: OccurrenceKind
    connection: str | None  # None for review blocks
    due: date  # the local date it became due (identity), not the date it was placed on
    start: datetime
    end: datetime
    title: str
    description: str
    overdue: bool = False
    # Whose occurrence this is, for a UID unique across owners; "" (the personal mode's one owner) keeps
    # the UIDs earlier releases published, so subscribers see no churn.
    scope: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", require_utc(self.start, "Occurrence.start"))
        object.__setattr__(self, "end", require_utc(self.end, "Occurrence.end"))

    @property
    def uid(self) -> str:
        return occurrence_uid(self.key, self.scope)


def occurrence_uid(key: str, scope: str = "") -> str:
    """A globally unique, stable UID for an occurrence key (RFC 5545 recommends a domain-like suffix).

    `scope` (the owner) takes part in the digest so two people's "Grace Hopper" touchpoints differ; the
    empty scope hashes the key alone, as every release before owners did."""
    text = key if not scope else f"{scope}\0{key}"
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]
    return f"cb-{digest}{UID_SUFFIX}"


@dataclass(frozen=True)
class Revision:
    """An occurrence as published: calendar clients need SEQUENCE, DTSTAMP and LAST-MODIFIED to be stable
    while nothing changes and to move forward when something does."""

    occurrence: Occurrence
    sequence: int
    created: datetime
    last_modified: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "created", require_utc(self.created, "Revision.created"))
        object.__setattr__(self, "last_modified", require_utc(self.last_modified, "Revision.last_modified"))


def _content(occ: Occurrence) -> tuple[object, ...]:
    return (occ.start, occ.end, occ.title, occ.description)


def revise(previous: dict[str, Revision], desired: list[Occurrence], now: datetime) -> list[Revision]:
    """Carry revision metadata forward: unchanged occurrences keep theirs, changed ones get SEQUENCE + 1."""
    now = require_utc(now, "now")
    out: list[Revision] = []
    for occ in desired:
        old = previous.get(occ.key)
        if old is None:
            out.append(Revision(occ, 0, now, now))
        elif _content(old.occurrence) == _content(occ):
            out.append(Revision(occ, old.sequence, old.created, old.last_modified))
        else:
            out.append(Revision(occ, old.sequence + 1, old.created, max(now, old.last_modified)))
    return out

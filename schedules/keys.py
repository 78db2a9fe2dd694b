"""An occurrence's key: what it is (whose touchpoint or which review, which due period, which attempt).

One format and one parser. Keys are stored, published (X-CIRCLEBACK-KEY) and hashed into UIDs, so the
text form never changes for an existing key:

    touchpoint:<connection id>:<period>[#<attempt>]     touchpoint:grace hopper:2026-W48
    review:<period>[#<attempt>]                         review:2026-12
    review:kickoff[#<attempt>]

`period` is a cadence period label (ISO week `2026-W48` or month `2026-12`); `attempt` counts the fresh
identities a period needs after its first occurrence was settled (missed, completed). A connection id may
hold any character, colons and '#' included: the period, which has a fixed shape, anchors the parse.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from schedules.occurrence import OccurrenceKind

KICKOFF = "kickoff"
_PERIOD = r"\d{4}-(?:W\d{2}|\d{2})"
_TOUCHPOINT = re.compile(rf"touchpoint:(?P<chain>.+):(?P<period>{_PERIOD})(?:#(?P<attempt>\d+))?", re.DOTALL)
_REVIEW = re.compile(rf"review:(?P<period>{_PERIOD}|{KICKOFF})(?:#(?P<attempt>\d+))?")


class NotAKey(ValueError):
    """A text that is not an occurrence key."""


@dataclass(frozen=True, order=True)
class OccurrenceKey:
    kind: OccurrenceKind
    period: str  # a period label, or "kickoff"
    connection: str | None = None  # the connection's id, for touchpoints
    attempt: int = 1

    def __post_init__(self) -> None:
        if self.attempt < 1:
            raise ValueError(f"an attempt counts from 1, got {self.attempt}")
        if (self.kind is OccurrenceKind.TOUCHPOINT) != (self.connection is not None):
            raise ValueError("a touchpoint key names its connection, and only a touchpoint key does")
        if not self.connection and self.kind is OccurrenceKind.TOUCHPOINT:
            raise ValueError("a touchpoint key needs a non-empty connection id")

    @classmethod
    def touchpoint(cls, connection: str, period: str) -> OccurrenceKey:
        return cls(OccurrenceKind.TOUCHPOINT, period, connection)

    @classmethod
    def review(cls, period: str) -> OccurrenceKey:
        return cls(OccurrenceKind.REVIEW, period)

    @classmethod
    def kickoff(cls) -> OccurrenceKey:
        return cls(OccurrenceKind.REVIEW, KICKOFF)

    @classmethod
    def parse(cls, text: str) -> OccurrenceKey:
        found = _TOUCHPOINT.fullmatch(text)
        if found is not None:
            key = cls.touchpoint(found["chain"], found["period"])
        elif (found := _REVIEW.fullmatch(text)) is not None:
            key = cls.review(found["period"])
        else:
            raise NotAKey(f"{text!r} is not an occurrence key")
        return replace(key, attempt=int(found["attempt"])) if found["attempt"] else key

    @classmethod
    def try_parse(cls, text: str) -> OccurrenceKey | None:
        try:
            return cls.parse(text)
        except NotAKey:
            return None

    @property
    def base(self) -> OccurrenceKey:
        """The first attempt's key: what the planner asks for, before a settled period needed a new one."""
        return replace(self, attempt=1)

    def __str__(self) -> str:
        suffix = f"#{self.attempt}" if self.attempt > 1 else ""
        if self.kind is OccurrenceKind.TOUCHPOINT:
            return f"touchpoint:{self.connection}:{self.period}{suffix}"
        return f"review:{self.period}{suffix}"


def base_key(text: str) -> str:
    """The first attempt's key text; a text that is no key is its own base."""
    key = OccurrenceKey.try_parse(text)
    return text if key is None else str(key.base)

"""Occurrences, revisions and whole cycles for the store's tests (one way to build them, not three)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from daemon.store import Store
from schedules.occurrence import Occurrence, OccurrenceKind, Revision

NOW = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)


def touchpoint(
    name: str, start: datetime, *, period: str = "2025-03", title: str = "", **kw: Any
) -> Occurrence:
    """A half-hour touchpoint with `name`, due the day it starts."""
    return Occurrence(
        key=f"touchpoint:{name.casefold()}:{period}",
        kind=OccurrenceKind.TOUCHPOINT,
        connection=name,
        due=kw.pop("due", start.date()),
        start=start,
        end=start + timedelta(minutes=30),
        title=title or f"Nurture: {name}",
        description=kw.pop("description", "Send her the compiler article"),
        **kw,
    )


def review(start: datetime, period: str = "2025-03") -> Occurrence:
    return Occurrence(
        key=f"review:{period}",
        kind=OccurrenceKind.REVIEW,
        connection=None,
        due=start.date(),
        start=start,
        end=start + timedelta(minutes=30),
        title="Review: relationship plan",
        description="Relationships are the currency of leadership.",
    )


def rev(occ: Occurrence, sequence: int = 0, at: datetime = NOW) -> Revision:
    return Revision(occ, sequence, at, at)


def save(store: Store, *revisions: Revision, **kw: Any) -> Any:
    """One cycle's `save_cycle` with nothing but `revisions` unless told otherwise."""
    return store.save_cycle(
        revisions=list(revisions),
        removed=kw.pop("removed", ()),
        statuses=kw.pop("statuses", {}),
        interactions=kw.pop("interactions", []),
        **kw,
    )

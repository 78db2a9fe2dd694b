"""Read ICS bytes the way a cycle does, in one call, for tests that look at what a calendar yields.

Built from the shipped pieces only: the parser (`load_calendar`, `expand`), the warnings summary an
`IcsSource` applies, and the core's busy rule (`schedules.busy`) that a cycle applies to what it read.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace

from connectors.ics_kept import summarise_warnings
from connectors.ics_parse import expand, load_calendar
from schedules.busy import busy_time
from schedules.events import Interval, Snapshot


def parse_calendar(
    data: bytes,
    source: str,
    window: Interval,
    *,
    default_tz: str | None = None,
    marker_secret: bytes | None = None,
    owner_emails: Collection[str] = (),
) -> Snapshot:
    """The event instances overlapping `window` and the busy time they make; never raises on bad content."""
    snapshot = expand(load_calendar(data, source, default_tz=default_tz, marker_secret=marker_secret), window)
    return replace(
        snapshot,
        busy=busy_time(snapshot.observations, owner_emails),
        warnings=summarise_warnings(source, snapshot.warnings),
    )

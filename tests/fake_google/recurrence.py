"""Expanding an event's `recurrence` (RRULE/RDATE/EXDATE lines) into instances, with dateutil."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from dateutil.rrule import rruleset, rrulestr

from .errors import bad_request
from .timeutil import zone

# Google does not document how far an unbounded rule is expanded when no timeMax is given; the fake
# stops at this many instances per recurring event (and says so in the notes).
MAX_INSTANCES = 2500


@dataclass(frozen=True)
class Instance:
    resource: dict[str, Any]
    start: datetime
    end: datetime


def instance_suffix(original_start: datetime, all_day: bool) -> str:
    """Google's instance id suffix: `_YYYYMMDD` for all-day, `_YYYYMMDDTHHMMSSZ` (UTC) otherwise."""
    if all_day:
        return original_start.strftime("%Y%m%d")
    return original_start.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _rules(lines: list[str], dtstart: datetime) -> rruleset:
    try:
        parsed = rrulestr("\n".join(lines), dtstart=dtstart, forceset=True)
    except (ValueError, TypeError) as exc:
        raise bad_request(f"Invalid recurrence rule: {exc}", location="recurrence") from None
    assert isinstance(parsed, rruleset)
    return parsed


def _occurrence_starts(
    master: dict[str, Any], calendar_zone: ZoneInfo
) -> tuple[Iterator[datetime], bool, ZoneInfo]:
    start = master["start"]
    lines = [str(line) for line in master.get("recurrence") or []]
    if start.get("date"):
        dtstart = datetime.combine(date.fromisoformat(start["date"]), time(0))
        return iter(_rules(lines, dtstart)), True, calendar_zone
    local_zone = zone(start.get("timeZone"), "start.timeZone") or calendar_zone
    moment = datetime.fromisoformat(start["dateTime"])
    moment = moment.replace(tzinfo=local_zone) if moment.tzinfo is None else moment.astimezone(local_zone)
    # Expanding in the event's own zone keeps a 10:00 meeting at 10:00 across a DST change.
    return iter(_rules(lines, moment)), False, local_zone


def expand(
    master: dict[str, Any],
    calendar_zone: ZoneInfo,
    window_start: datetime | None,
    window_end: datetime | None,
    master_start: datetime,
    master_end: datetime,
) -> list[Instance]:
    """The instances of `master` overlapping [window_start, window_end) (either bound optional)."""
    starts, all_day, local_zone = _occurrence_starts(master, calendar_zone)
    duration = master_end - master_start
    out: list[Instance] = []
    for count, occurrence in enumerate(starts):
        if count >= MAX_INSTANCES:
            break
        begin = (
            occurrence.replace(tzinfo=calendar_zone).astimezone(UTC)
            if all_day
            else occurrence.astimezone(UTC)
        )
        if window_end is not None and begin >= window_end:
            break
        finish = begin + duration if not all_day else _all_day_end(occurrence, duration, calendar_zone)
        if window_start is not None and finish <= window_start and duration > timedelta(0):
            continue
        out.append(
            Instance(_instance_resource(master, occurrence, all_day, local_zone, duration), begin, finish)
        )
    return out


def _all_day_end(occurrence: datetime, duration: timedelta, calendar_zone: ZoneInfo) -> datetime:
    return (occurrence + duration).replace(tzinfo=calendar_zone).astimezone(UTC)


def _instance_resource(
    master: dict[str, Any], occurrence: datetime, all_day: bool, local_zone: ZoneInfo, duration: timedelta
) -> dict[str, Any]:
    resource = copy.deepcopy(master)
    resource.pop("recurrence", None)
    resource["recurringEventId"] = master["id"]
    resource["id"] = f"{master['id']}_{instance_suffix(occurrence, all_day)}"
    if all_day:
        day = occurrence.date()
        resource["originalStartTime"] = {"date": day.isoformat()}
        resource["start"] = {"date": day.isoformat()}
        resource["end"] = {"date": (occurrence + duration).date().isoformat()}
        return resource
    tz_name = master["start"].get("timeZone") or local_zone.key
    resource["originalStartTime"] = {"dateTime": occurrence.isoformat(), "timeZone": tz_name}
    resource["start"] = {"dateTime": occurrence.isoformat(), "timeZone": tz_name}
    end_zone = master["end"].get("timeZone") or tz_name
    resource["end"] = {"dateTime": (occurrence + duration).isoformat(), "timeZone": end_zone}
    return resource

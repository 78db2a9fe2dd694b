"""RFC 3339 parsing and formatting, and the start/end of Google event times."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import bad_request


def rfc3339(moment: datetime) -> str:
    """Google's `updated`/`created` style: UTC with milliseconds and a Z."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def rfc3339_seconds(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(value: str, field: str) -> datetime:
    """A timestamp with a mandatory offset (events.list timeMin/timeMax, freebusy)."""
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise bad_request(f"Invalid value for {field}: {value}", location=field) from None
    if parsed.tzinfo is None:
        raise bad_request(f"Invalid value for {field}: {value} (an offset is mandatory)", location=field)
    return parsed.astimezone(UTC)


def zone(name: str | None, field: str) -> ZoneInfo | None:
    if name is None:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise bad_request(f"Invalid time zone definition for {field}: {name}", location=field) from None


def event_time(value: Any, field: str, calendar_zone: ZoneInfo) -> tuple[datetime, bool]:
    """(the moment in UTC, whether it is an all-day date) of an event's `start` or `end`.

    An all-day date is midnight in the calendar's time zone, which is what timeMin/timeMax and
    free/busy compare it with.
    """
    if not isinstance(value, dict):
        raise bad_request(f"Missing {field} time.", reason="required", location=field)
    if value.get("date"):
        try:
            day = date.fromisoformat(str(value["date"]))
        except ValueError:
            raise bad_request(f"Invalid value for {field}.date", location=field) from None
        return datetime.combine(day, time(0), calendar_zone).astimezone(UTC), True
    if value.get("dateTime"):
        try:
            moment = datetime.fromisoformat(str(value["dateTime"]))
        except ValueError:
            raise bad_request(f"Invalid value for {field}.dateTime", location=field) from None
        if moment.tzinfo is None:
            tz = zone(value.get("timeZone"), f"{field}.timeZone")
            if tz is None:
                raise bad_request(
                    "Missing time zone definition for start time.", reason="required", location=field
                )
            moment = moment.replace(tzinfo=tz)
        else:
            zone(value.get("timeZone"), f"{field}.timeZone")
        return moment.astimezone(UTC), False
    raise bad_request(f"Missing {field} time.", reason="required", location=field)

"""Cadences ("2 weeks", "month", "quarter") and durations ("1h30m"), with calendar arithmetic.

Cadence arithmetic is done on local calendar dates, never on UTC instants: "every month" from 31 January
lands on the last day of February, and "every week" keeps the same wall-clock weekday across DST changes.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

Unit = Literal["week", "month"]

_CADENCE_RE = re.compile(
    r"^\s*(?:(?P<count>\d+)\s*)?(?P<unit>day|days|week|weeks|fortnight|month|months|quarter|quarters|year|years)\s*$",
    re.IGNORECASE,
)
_DURATION_RE = re.compile(r"^\s*(?:(?P<h>\d+)\s*h)?\s*(?:(?P<m>\d+)\s*m(?:in)?)?\s*$", re.IGNORECASE)


# The longest rhythm a focus connection can have: beyond a year it is no longer a focus. The bound also keeps
# every date the planner computes far inside what `datetime` can represent.
MAX_WEEKS = 52
MAX_MONTHS = 12
MAX_DURATION = timedelta(hours=8)


_PER_UNIT: dict[str, tuple[int, str]] = {
    "week": (1, "week"),
    "fortnight": (2, "week"),
    "month": (1, "month"),
    "quarter": (3, "month"),
    "year": (12, "month"),
}


class CadenceError(ValueError):
    """A cadence or duration string that cannot be understood."""


@dataclass(frozen=True)
class Cadence:
    """Every `count` weeks or every `count` months (a quarter is three months, a year twelve)."""

    count: int
    unit: Unit

    def __post_init__(self) -> None:
        if self.count < 1:
            raise CadenceError(f"a cadence must be at least 1 {self.unit}, got {self.count}")

    def add(self, start: date, times: int = 1) -> date:
        """The date `times` cadences after `start` (month ends clamp, as people expect)."""
        if self.unit == "week":
            return start + timedelta(weeks=self.count * times)
        return add_months(start, self.count * times)

    def approx_days(self) -> float:
        return self.count * (7.0 if self.unit == "week" else 30.44)

    def period_label(self, day: date) -> str:
        """A label for the cadence period that contains `day`; stable identity for an occurrence."""
        if self.unit == "week":
            year, week, _ = day.isocalendar()
            return f"{year}-W{week:02d}"
        return f"{day.year}-{day.month:02d}"

    def __str__(self) -> str:
        if self.unit == "month" and self.count == 3:
            return "quarter"
        if self.count == 1:
            return self.unit
        return f"{self.count} {self.unit}s"


def add_months(start: date, months: int) -> date:
    index = start.month - 1 + months
    year, month = start.year + index // 12, index % 12 + 1
    last = calendar.monthrange(year, month)[1]
    return date(year, month, min(start.day, last))


def parse_cadence(text: str) -> Cadence:
    match = _CADENCE_RE.match(str(text))
    if not match:
        raise CadenceError(
            f"cannot read cadence {text!r}: use 'week', 'N weeks', 'month', 'N months' or 'quarter'"
        )
    count = _whole(match.group("count") or "1")
    unit = match.group("unit").lower().rstrip("s")
    if unit == "day":
        raise CadenceError(f"cadence {text!r} is too short: the shortest cadence is a week")
    factor, base = _PER_UNIT[unit]
    # Python ints never overflow, so the bound is checked before any date arithmetic could.
    if count * factor > (MAX_WEEKS if base == "week" else MAX_MONTHS):
        raise CadenceError(
            f"cadence {text!r} is too long: at most a year ({MAX_WEEKS} weeks or {MAX_MONTHS} months)"
        )
    return Cadence(count * factor, "week" if base == "week" else "month")


def parse_duration(text: str) -> timedelta:
    raw = str(text)
    match = _DURATION_RE.match(raw)
    if not match or not (match.group("h") or match.group("m")):
        raise CadenceError(f"cannot read duration {raw!r}: use forms like '30m', '1h' or '1h30m'")
    # Compared as whole minutes first: timedelta itself overflows on a few billion hours.
    minutes = _whole(match.group("h") or "0") * 60 + _whole(match.group("m") or "0")
    if minutes <= 0:
        raise CadenceError(f"duration {raw!r} must be longer than zero")
    if minutes > MAX_DURATION.total_seconds() // 60:
        raise CadenceError(f"duration {raw!r} is longer than a working day (8h at most)")
    return timedelta(minutes=minutes)


def _whole(digits: str) -> int:
    """The number written, capped: a count this long is out of bounds, and int() refuses 4300 digits."""
    return int(digits) if len(digits) <= 12 else 10**12


def format_duration(value: timedelta) -> str:
    minutes = int(value.total_seconds() // 60)
    hours, minutes = divmod(minutes, 60)
    return (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes or not hours else "")

"""Text and JSON shapes the CLI prints. Contact notes appear only where the person asked for the log."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from connectors import registry
from connectors.fetch import redact
from daemon.config import CALENDARS, SCHEMA, CalendarConfig, Option, Settings
from daemon.sources import Source
from schedules.events import Interaction
from schedules.model import REVIEW_LOG_NAME, Plan
from schedules.occurrence import Occurrence, OccurrenceKind


def _local(value: datetime, zone: ZoneInfo) -> datetime:
    return value.astimezone(zone)


def occurrence_json(occ: Occurrence, zone: ZoneInfo) -> dict[str, Any]:
    return {
        "key": occ.key,
        "uid": occ.uid,
        "kind": occ.kind.value,
        "connection": occ.connection,
        "title": occ.title,
        "start": _local(occ.start, zone).isoformat(),
        "end": _local(occ.end, zone).isoformat(),
        "due": occ.due.isoformat(),
        "overdue": occ.overdue,
    }


def agenda_text(items: Sequence[Occurrence], zone: ZoneInfo, first: date, days: int) -> str:
    last = first + timedelta(days=days - 1)
    lines = [f"Agenda {first:%a %d %b %Y} – {last:%a %d %b %Y} ({zone.key})"]
    if not items:
        lines.append("  nothing planned in these days")
    current: date | None = None
    for occ in items:
        start, end = _local(occ.start, zone), _local(occ.end, zone)
        if start.date() != current:
            current = start.date()
            lines.append(f"{start:%a %d %b}")
        flag = "  (overdue)" if occ.overdue else ""
        lines.append(f"  {start:%H:%M}–{end:%H:%M}  {occ.title}{flag}")
    return "\n".join(lines)


def interaction_line(entry: Interaction, zone: ZoneInfo) -> str:
    note = f" — {entry.note}" if entry.note else ""
    when = _local(entry.at, zone)
    who = "self-review" if entry.connection == REVIEW_LOG_NAME else entry.connection
    return f"{when:%Y-%m-%d %H:%M}  {who}  {entry.kind.value}  [{entry.source}]{note}"


def stored_interaction_json(row: Any, zone: ZoneInfo) -> dict[str, Any]:
    entry: Interaction = row.interaction
    return {
        "id": row.id,
        "connection": entry.connection,
        "at": _local(entry.at, zone).isoformat(),
        "kind": entry.kind.value,
        "note": entry.note,
        "source": entry.source,
        "event_uid": entry.event_uid,
        "undone": row.undone,
    }


def status_rows(
    plan: Plan, interactions: Iterable[Interaction], upcoming: Sequence[Occurrence], now: datetime
) -> list[dict[str, Any]]:
    zone = ZoneInfo(plan.timezone)
    last: dict[str, datetime] = {}
    for entry in interactions:
        key = entry.connection.casefold()
        if key not in last or entry.at > last[key]:
            last[key] = entry.at
    rows = []
    for conn in plan.connections:
        mine = [o for o in upcoming if o.connection and o.connection.casefold() == conn.name.casefold()]
        nxt = min(mine, key=lambda o: o.start) if mine else None
        met = last.get(conn.name.casefold())
        rows.append(
            {
                "name": conn.name,
                "stage": conn.stage.value,
                "target": conn.target,
                "every": str(conn.every),
                "last_interaction": _local(met, zone).isoformat() if met else None,
                "next_due": nxt.due.isoformat() if nxt else None,
                "next_at": _local(nxt.start, zone).isoformat() if nxt else None,
                "overdue": bool(nxt and nxt.overdue),
                "next_action": conn.next_action,
            }
        )
    return rows


def review_status(
    plan: Plan, reviews_done: Sequence[datetime], upcoming: Sequence[Occurrence]
) -> dict[str, Any]:
    """The self-review rhythm: when the last one was done and when the next is placed."""
    zone = ZoneInfo(plan.timezone)
    reviews = [o for o in upcoming if o.kind is OccurrenceKind.REVIEW]
    nxt = min(reviews, key=lambda o: o.start) if reviews else None
    last = max(reviews_done, default=None)
    return {
        "every": str(plan.review.every),
        "last": _local(last, zone).isoformat() if last else None,
        "next_at": _local(nxt.start, zone).isoformat() if nxt else None,
        "next_due": nxt.due.isoformat() if nxt else None,
        "overdue": bool(nxt and nxt.overdue),
    }


def status_text(
    rows: Sequence[dict[str, Any]], sources: Sequence[Any], review: dict[str, Any] | None = None
) -> str:
    lines = []
    for row in rows:
        last = row["last_interaction"][:10] if row["last_interaction"] else "never"
        nxt = row["next_at"][:16].replace("T", " ") if row["next_at"] else "not placed (no free slot)"
        flag = "  OVERDUE" if row["overdue"] else ""
        target = " (target)" if row["target"] else ""
        lines.append(f"{row['name']}{target}: {row['stage']}, every {row['every']}")
        lines.append(f"    last: {last}   next: {nxt} (due {row['next_due'] or '-'}){flag}")
    if review is not None:
        last = review["last"][:10] if review["last"] else "never"
        nxt = review["next_at"][:16].replace("T", " ") if review["next_at"] else "not placed (no free slot)"
        flag = "  OVERDUE" if review["overdue"] else ""
        lines.append(f"Self-review: every {review['every']}")
        lines.append(f"    last: {last}   next: {nxt} (due {review['next_due'] or '-'}){flag}")
    for state in sources:
        lines.append(f"calendar {source_json(state)['name']}: {source_json(state)['health']}")
    return "\n".join(lines)


def source_names(settings: Settings) -> list[str]:
    """The calendars circleback reads, by name: `[ics] sources` and readable `[calendars.NAME]` tables."""
    return [c.name for c in settings.calendars if registry.backend(c.type).reads]


def source_json(state: Any) -> dict[str, Any]:
    failures = getattr(state, "failures", 0) or 0
    error = getattr(state, "last_error", None)
    ok_at = getattr(state, "ok_at", None)
    return {
        "name": state.name,
        "health": "ok" if not failures else f"failing ({failures}x): {error}",
        "last_ok": ok_at.isoformat() if ok_at else None,
        "failures": failures,
        "last_error": error,
    }


def span_text(value: timedelta) -> str:
    """A span in the config file's own notation ('13 weeks', '1h', '90s')."""
    seconds = int(value.total_seconds())
    if seconds and seconds % 604800 == 0:
        weeks = seconds // 604800
        return f"{weeks} week{'s' if weeks != 1 else ''}"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


SECRET = "<secret>"


def _config_value(value: object) -> str:
    if isinstance(value, timedelta):
        return f'"{span_text(value)}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(f'"{v}"' for v in value) + "]"
    if isinstance(value, int):
        return str(value)
    return _toml_string(str(value))


def _hide_password(url: str) -> str:
    """A database URL with its password hidden (the host and database still help to read it). Only a URL
    with a user part can hold one; the SQLite default is shown without loading the database layer, so
    `circleback config` starts as fast as `--help`."""
    if "@" not in url:
        return url
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def sources_toml(sources: Sequence[Source]) -> str:
    """`[ics] sources` as TOML, every calendar with the name it goes by and its address redacted."""
    shown = (
        f"{{ name = {_toml_string(s.name)}, location = {_toml_string(redact(s.location))} }}" for s in sources
    )
    return "[" + ", ".join(shown) + "]"


def _toml_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def _setting_text(option: Option, value: object) -> str:
    if option.secret:
        return SECRET
    if option.kind == "sources":
        return sources_toml(value)  # type: ignore[arg-type]
    if option.name == "database_url":
        return _config_value(_hide_password(str(value)))
    return _config_value(value)


def _calendar_items(calendar: CalendarConfig) -> list[tuple[str, str]]:
    backend = registry.backend(calendar.type)
    prefix = f"{CALENDARS}.{calendar.name}"
    items = [(f"{prefix}.type", _toml_string(calendar.type))]
    for option in backend.options:
        if option.name not in calendar.options:
            continue
        value = calendar.options[option.name]
        if option.secret:
            text = SECRET
        elif option.kind == "location":
            text = _toml_string(redact(str(value)))
        else:
            text = _config_value(value)
        items.append((f"{prefix}.{option.name}", text))
    return items


def settings_items(settings: Settings) -> list[tuple[str, str]]:
    """Settings in TOML notation, keyed as in the file (`feed.path` is `path` under `[feed]`); secret
    settings as `<secret>`, and `[calendars.NAME]` tables after them."""
    items = [(option.key, _setting_text(option, getattr(settings, option.name))) for option in SCHEMA]
    for calendar in settings.calendars:
        if calendar.implied:
            continue  # shown above, as the settings they come from
        items.extend(_calendar_items(calendar))
    return items


_DRY_RUN_VERBS = {"logged": "would log", "completed": "would complete", "missed": "would miss"}


def as_dry_run(line: str) -> str:
    """A reconcile explanation line in the conditional: a dry run writes nothing."""
    verb, _, rest = line.partition(" ")
    shown = _DRY_RUN_VERBS.get(verb)
    return line if shown is None else f"{shown:<14}  {rest.lstrip()}"


def cycle_summary(report: Any, plan: Plan, *, dry_run: bool) -> str:
    zone = ZoneInfo(plan.timezone)
    upcoming = report.upcoming
    head = "would publish" if dry_run else "published"
    lines = [f"{head} {len(report.published)} event(s); {len(upcoming)} upcoming"]
    if report.new_entries:
        lines.append(f"{'would log' if dry_run else 'logged'} {report.new_entries} interaction(s)")
    settled = Counter(
        change.status.value for change in (report.outcomes.statuses.values() if report.outcomes else ())
    )
    done = [f"{settled[s]} {s}" for s in ("completed", "skipped", "missed") if settled[s]]
    if done:
        lines.append(("would settle " if dry_run else "settled ") + ", ".join(done))
    if report.moved_by_you:
        lines.append(f"{report.moved_by_you} event(s) you moved stay where you put them")
    for calendar, used in sorted(report.api_requests.items()):
        lines.append(f"{calendar}: {used} API request(s)")
    if report.removed:
        verb = "would remove" if dry_run else "removed"
        lines.append(f"{verb} {len(report.removed)} event(s) that left the plan")
    for occ in upcoming[:5]:
        lines.append(f"  {_local(occ.start, zone):%a %d %b %H:%M}  {occ.title}")
    return "\n".join(lines)

"""The calendars and events of the fake, and the Calendar v3 operations on them (no HTTP here).

Every change goes through `Store._commit`, which stamps the event with the next value of one global
change counter: that counter is what etags, `updated`, sync tokens and page snapshots are made of.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from . import errors
from .errors import ApiError, bad_request
from .recurrence import Instance, expand
from .timeutil import event_time, parse_rfc3339, rfc3339, rfc3339_seconds

EVENT_ID = re.compile(r"^[a-v0-9]{5,1024}$")
STATUSES = ("confirmed", "tentative", "cancelled")
RESPONSES = ("needsAction", "declined", "tentative", "accepted")
CREATABLE_TYPES = ("default", "outOfOffice", "focusTime", "workingLocation")
DEFAULT_PAGE = 250
MAX_PAGE = 2500
# With no timeMax, instances of an unbounded rule are produced up to this far past "now".
EXPANSION_HORIZON = timedelta(days=730)
# freebusy.query: longer ranges answer 400 timeRangeTooLong (see the notes for the source).
FREEBUSY_MAX_RANGE = timedelta(days=90)
FREEBUSY_MAX_CALENDARS = 50
SYNC_INCOMPATIBLE = (
    "iCalUID",
    "orderBy",
    "privateExtendedProperty",
    "q",
    "sharedExtendedProperty",
    "timeMin",
    "timeMax",
    "updatedMin",
)
# Fields the client cannot set; update keeps them from the stored event.
READ_ONLY = ("kind", "id", "created", "creator", "organizer", "iCalUID", "htmlLink", "recurringEventId")
SIGNIFICANT = ("start", "end", "recurrence", "location", "summary")

Query = dict[str, list[str]]
Json = dict[str, Any]


@dataclass
class StoredEvent:
    resource: Json
    change: int


@dataclass
class Calendar:
    id: str
    owner: str
    time_zone: str = "UTC"
    summary: str = ""
    readers: set[str] = field(default_factory=set)
    events: dict[str, StoredEvent] = field(default_factory=dict)
    epoch: int = 0

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


def _b64(payload: Json) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")


def _unb64(token: str) -> Json | None:
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, TypeError):
        return None
    return decoded if isinstance(decoded, dict) else None


def _flag(query: Query, name: str) -> bool | None:
    values = query.get(name)
    if not values:
        return None
    value = values[-1].lower()
    if value not in ("true", "false"):
        raise bad_request(f"Invalid boolean value for {name}: {values[-1]}", location=name)
    return value == "true"


def _one(query: Query, name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def _property_filters(query: Query, name: str) -> list[tuple[str, str]]:
    pairs = []
    for constraint in query.get(name, []):
        key, sep, value = constraint.partition("=")
        if not sep or not key:
            raise bad_request(f"Invalid value for {name}: {constraint}", location=name)
        pairs.append((key, value))
    return pairs


def _deep_merge(target: Json, patch: Json) -> None:
    """Patch semantics: objects merge field by field, arrays and scalars replace, null clears."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


class Store:
    """All calendars of all users; callers hold the server's lock around every method."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self.clock = clock
        self.calendars: dict[str, Calendar] = {}
        self.counter = 0

    # --- calendars -------------------------------------------------------------------------------
    def add_calendar(self, calendar_id: str, owner: str, time_zone: str = "UTC") -> Calendar:
        ZoneInfo(time_zone)
        calendar = Calendar(calendar_id, owner.lower(), time_zone, summary=calendar_id)
        self.calendars[calendar_id] = calendar
        return calendar

    def calendar_for(self, calendar_id: str, user: str) -> Calendar:
        """The calendar `user` asked for; 404 if it is unknown or not shared with them."""
        wanted = user if calendar_id == "primary" else calendar_id
        calendar = self.calendars.get(wanted)
        if calendar is None or (user != calendar.owner and user not in calendar.readers):
            raise errors.not_found()
        return calendar

    # --- writes ----------------------------------------------------------------------------------
    def _commit(self, calendar: Calendar, resource: Json, *, created: bool = False) -> Json:
        self.counter += 1
        now = self.clock()
        resource["etag"] = f'"{3_000_000_000_000_000 + self.counter}"'
        resource["updated"] = rfc3339(now)
        if created:
            resource["created"] = rfc3339(now)
        calendar.events[resource["id"]] = StoredEvent(resource, self.counter)
        return copy.deepcopy(resource)

    def insert(self, calendar: Calendar, body: Json) -> Json:
        event_id = body.get("id")
        if event_id is None:
            event_id = uuid.uuid4().hex
        elif not isinstance(event_id, str) or not EVENT_ID.match(event_id):
            raise bad_request("Invalid resource id value.", location="id")
        if event_id in calendar.events:
            raise errors.duplicate()
        owner = {"email": calendar.owner, "self": True}
        resource: Json = {
            "kind": "calendar#event",
            "id": event_id,
            "status": "confirmed",
            "htmlLink": f"https://www.google.com/calendar/event?eid={event_id}",
            "creator": dict(owner),
            "organizer": dict(owner),
            "iCalUID": f"{event_id}@google.com",
            "sequence": 0,
            "reminders": {"useDefault": True},
            "eventType": "default",
        }
        writable = {k: copy.deepcopy(v) for k, v in body.items() if k not in READ_ONLY}
        resource.update(writable)
        self._validate(calendar, resource, previous=None)
        return self._commit(calendar, resource, created=True)

    def resolve(self, calendar: Calendar, event_id: str) -> Json:
        """The stored event, or a not yet materialised instance of a recurring one (404 otherwise)."""
        stored = calendar.events.get(event_id)
        if stored is not None:
            return copy.deepcopy(stored.resource)
        master_id, sep, _suffix = event_id.rpartition("_")
        master = calendar.events.get(master_id) if sep else None
        if master is None or not master.resource.get("recurrence"):
            raise errors.not_found()
        for instance in self._instances_of(calendar, master.resource, None, None):
            if instance.resource["id"] == event_id:
                return instance.resource
        raise errors.not_found()

    def get(self, calendar: Calendar, event_id: str) -> Json:
        return self.resolve(calendar, event_id)

    def update(self, calendar: Calendar, event_id: str, body: Json, if_match: str | None) -> Json:
        current = self.resolve(calendar, event_id)
        self._check_precondition(current, if_match)
        resource = {
            k: v for k, v in current.items() if k in READ_ONLY or k in ("created", "originalStartTime")
        }
        resource.update({k: copy.deepcopy(v) for k, v in body.items() if k not in READ_ONLY})
        resource.setdefault("status", "confirmed")
        resource.setdefault("eventType", current.get("eventType", "default"))
        resource.setdefault("reminders", {"useDefault": True})
        return self._save_change(calendar, current, resource)

    def patch(self, calendar: Calendar, event_id: str, body: Json, if_match: str | None) -> Json:
        current = self.resolve(calendar, event_id)
        self._check_precondition(current, if_match)
        resource = copy.deepcopy(current)
        _deep_merge(resource, {k: v for k, v in body.items() if k not in READ_ONLY})
        return self._save_change(calendar, current, resource)

    def delete(self, calendar: Calendar, event_id: str, if_match: str | None) -> None:
        current = self.resolve(calendar, event_id)
        self._check_precondition(current, if_match)
        if current.get("status") == "cancelled":
            raise errors.deleted()
        current["status"] = "cancelled"
        self._commit(calendar, current)

    def _save_change(self, calendar: Calendar, current: Json, resource: Json) -> Json:
        if resource.get("eventType", "default") != current.get("eventType", "default"):
            raise bad_request("The event type cannot be changed.", location="eventType")
        self._validate(calendar, resource, previous=current)
        sequence = int(current.get("sequence", 0))
        if any(resource.get(k) != current.get(k) for k in SIGNIFICANT):
            sequence += 1
        resource["sequence"] = max(sequence, int(resource.get("sequence", 0)))
        return self._commit(calendar, resource, created="created" not in resource)

    @staticmethod
    def _check_precondition(current: Json, if_match: str | None) -> None:
        if if_match is not None and if_match != "*" and if_match != current.get("etag"):
            raise errors.condition_not_met()

    def _validate(self, calendar: Calendar, resource: Json, previous: Json | None) -> None:
        start, start_all_day = event_time(resource.get("start"), "start", calendar.zone)
        end, end_all_day = event_time(resource.get("end"), "end", calendar.zone)
        if start_all_day != end_all_day:
            raise bad_request("Start and end times must either both be date or both be dateTime.")
        if end < start:
            raise errors.time_range_empty("end")
        if resource.get("status") not in STATUSES:
            raise bad_request(f"Invalid value for status: {resource.get('status')}", location="status")
        if resource.get("transparency", "opaque") not in ("opaque", "transparent"):
            raise bad_request("Invalid value for transparency.", location="transparency")
        if previous is None and resource.get("eventType", "default") not in CREATABLE_TYPES:
            raise bad_request(f"Invalid event type: {resource.get('eventType')}", location="eventType")
        self._validate_attendees(resource)
        self._validate_extended(resource)
        if resource.get("recurrence"):
            if not isinstance(resource["recurrence"], list):
                raise bad_request("Invalid recurrence.", location="recurrence")
            expand(resource, calendar.zone, None, start + timedelta(days=1), start, end)

    @staticmethod
    def _validate_attendees(resource: Json) -> None:
        attendees = resource.get("attendees")
        if attendees is None:
            return
        if not isinstance(attendees, list):
            raise bad_request("Invalid attendees.", location="attendees")
        organizer = str(resource.get("organizer", {}).get("email", "")).lower()
        for attendee in attendees:
            if not isinstance(attendee, dict) or not attendee.get("email"):
                raise bad_request("Missing attendee email.", reason="required", location="attendees.email")
            attendee.setdefault("responseStatus", "needsAction")
            if attendee["responseStatus"] not in RESPONSES:
                raise bad_request("Invalid attendee response status.", location="attendees.responseStatus")
            if str(attendee["email"]).lower() == organizer:
                attendee["self"] = True
                attendee["organizer"] = True

    @staticmethod
    def _validate_extended(resource: Json) -> None:
        extended = resource.get("extendedProperties")
        if extended is None:
            return
        for scope in ("private", "shared"):
            values = extended.get(scope, {})
            if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
                raise bad_request(f"Invalid extendedProperties.{scope}.", location="extendedProperties")

    # --- reads -----------------------------------------------------------------------------------
    def span(self, calendar: Calendar, resource: Json) -> tuple[datetime, datetime]:
        start, _ = event_time(resource["start"], "start", calendar.zone)
        end, _ = event_time(resource["end"], "end", calendar.zone)
        return start, end

    def _instances_of(
        self, calendar: Calendar, master: Json, window_start: datetime | None, window_end: datetime | None
    ) -> list[Instance]:
        """Generated instances, minus those stored as exceptions (which are listed on their own)."""
        start, end = self.span(calendar, master)
        if window_end is None:
            window_end = max(self.clock(), start) + EXPANSION_HORIZON
        generated = expand(master, calendar.zone, window_start, window_end, start, end)
        return [i for i in generated if i.resource["id"] not in calendar.events]

    def _single_events(
        self, calendar: Calendar, stored: Iterable[StoredEvent], lo: datetime | None, hi: datetime | None
    ) -> list[tuple[Json, int]]:
        out: list[tuple[Json, int]] = []
        for item in stored:
            if item.resource.get("recurrence"):
                for instance in self._instances_of(calendar, item.resource, lo, hi):
                    resource = instance.resource
                    if item.resource.get("status") == "cancelled":
                        resource["status"] = "cancelled"
                    out.append((resource, item.change))
            else:
                out.append((copy.deepcopy(item.resource), item.change))
        return out

    def _overlaps(self, calendar: Calendar, resource: Json, lo: datetime | None, hi: datetime | None) -> bool:
        if resource.get("recurrence"):
            return bool(self._instances_of(calendar, resource, lo, hi)[:1])
        start, end = self.span(calendar, resource)
        if lo is not None and not (end > lo or (end == start and start >= lo)):
            return False
        return hi is None or start < hi

    def list_events(self, calendar: Calendar, query: Query) -> Json:
        single = bool(_flag(query, "singleEvents"))
        show_deleted = _flag(query, "showDeleted")
        sync_token = _one(query, "syncToken")
        order_by = _one(query, "orderBy")
        max_results = self._max_results(query)
        if order_by not in (None, "startTime", "updated"):
            raise bad_request(f"Invalid value for orderBy: {order_by}", location="orderBy")
        if order_by == "startTime" and not single:
            raise bad_request(
                "The requested ordering is not available for the particular query.", location="orderBy"
            )
        page = self._page_state(query, _one(query, "pageToken"))
        if sync_token is not None:
            for name in SYNC_INCOMPATIBLE:
                if name in query:
                    raise bad_request(f"Sync token cannot be used with the {name} parameter.", location=name)
            if show_deleted is False:
                raise bad_request("showDeleted cannot be false with a sync token.", location="showDeleted")
            since = self._sync_since(calendar, sync_token)
            changed = [s for s in calendar.events.values() if s.change > since]
            items = [r for r, change in self._expand(calendar, changed, single, None, None)]
        else:
            items = self._full_items(calendar, query, single, bool(show_deleted))
        if order_by == "startTime":
            items.sort(key=lambda r: self.span(calendar, r)[0])
        elif order_by == "updated":
            items.sort(key=lambda r: str(r.get("updated", "")))
        snapshot = page["n"] if page else self.counter
        offset = page["o"] if page else 0
        chunk = items[offset : offset + max_results]
        body: Json = {
            "kind": "calendar#events",
            "etag": f'"p{snapshot}"',
            "summary": calendar.summary,
            "updated": rfc3339(self.clock()),
            "timeZone": calendar.time_zone,
            "accessRole": "owner",
            "defaultReminders": [],
            "items": chunk,
        }
        if offset + max_results < len(items):
            body["nextPageToken"] = _b64({"o": offset + max_results, "n": snapshot, "q": _fingerprint(query)})
        else:
            body["nextSyncToken"] = _b64({"c": calendar.id, "n": snapshot, "e": calendar.epoch})
        return body

    def _expand(
        self,
        calendar: Calendar,
        stored: Iterable[StoredEvent],
        single: bool,
        lo: datetime | None,
        hi: datetime | None,
    ) -> list[tuple[Json, int]]:
        if single:
            return self._single_events(calendar, stored, lo, hi)
        return [(copy.deepcopy(s.resource), s.change) for s in stored]

    def _full_items(self, calendar: Calendar, query: Query, single: bool, show_deleted: bool) -> list[Json]:
        lo = parse_rfc3339(v, "timeMin") if (v := _one(query, "timeMin")) else None
        hi = parse_rfc3339(v, "timeMax") if (v := _one(query, "timeMax")) else None
        if lo is not None and hi is not None and hi <= lo:
            raise errors.time_range_empty()
        updated_min = parse_rfc3339(v, "updatedMin") if (v := _one(query, "updatedMin")) else None
        private = _property_filters(query, "privateExtendedProperty")
        shared = _property_filters(query, "sharedExtendedProperty")
        types = query.get("eventTypes")
        text = (_one(query, "q") or "").lower()
        ical_uid = _one(query, "iCalUID")
        out = []
        for resource, _change in self._expand(calendar, calendar.events.values(), single, lo, hi):
            cancelled = resource.get("status") == "cancelled"
            if cancelled and not (show_deleted or updated_min is not None):
                continue
            if updated_min is not None and str(resource.get("updated", "")) < rfc3339(updated_min):
                continue
            if not self._overlaps(calendar, resource, lo, hi):
                continue
            extended = resource.get("extendedProperties", {})
            if any(extended.get("private", {}).get(k) != v for k, v in private):
                continue
            if any(extended.get("shared", {}).get(k) != v for k, v in shared):
                continue
            if types and resource.get("eventType", "default") not in types:
                continue
            if ical_uid is not None and resource.get("iCalUID") != ical_uid:
                continue
            haystack = " ".join(str(resource.get(k, "")) for k in ("summary", "description", "location"))
            if text and text not in haystack.lower():
                continue
            out.append(resource)
        return out

    @staticmethod
    def _max_results(query: Query) -> int:
        raw = _one(query, "maxResults")
        if raw is None:
            return DEFAULT_PAGE
        try:
            value = int(raw)
        except ValueError:
            raise bad_request(f"Invalid value for maxResults: {raw}", location="maxResults") from None
        if value < 1:
            raise bad_request(f"Invalid value for maxResults: {raw}", location="maxResults")
        return min(value, MAX_PAGE)

    @staticmethod
    def _page_state(query: Query, token: str | None) -> Json | None:
        if token is None:
            return None
        state = _unb64(token)
        if state is None or state.get("q") != _fingerprint(query):
            raise bad_request("Invalid page token value.", location="pageToken")
        return state

    def _sync_since(self, calendar: Calendar, token: str) -> int:
        state = _unb64(token)
        if state is None or state.get("c") != calendar.id or not isinstance(state.get("n"), int):
            raise bad_request("Invalid sync token value.", location="syncToken")
        if state.get("e") != calendar.epoch:
            raise errors.full_sync_required()
        return int(state["n"])

    def instances(self, calendar: Calendar, event_id: str, query: Query) -> Json:
        stored = calendar.events.get(event_id)
        if stored is None:
            raise errors.not_found()
        if stored.resource.get("status") == "cancelled" and not _flag(query, "showDeleted"):
            raise errors.deleted()
        lo = parse_rfc3339(v, "timeMin") if (v := _one(query, "timeMin")) else None
        hi = parse_rfc3339(v, "timeMax") if (v := _one(query, "timeMax")) else None
        if lo is not None and hi is not None and hi <= lo:
            raise errors.time_range_empty()
        resources: list[Json] = [i.resource for i in self._instances_of(calendar, stored.resource, lo, hi)]
        for other in calendar.events.values():
            if (
                other.resource.get("recurringEventId") == event_id
                and self._overlaps(calendar, other.resource, lo, hi)
                and (other.resource.get("status") != "cancelled" or _flag(query, "showDeleted"))
            ):
                resources.append(copy.deepcopy(other.resource))
        resources.sort(key=lambda r: self.span(calendar, r)[0])
        page = self._page_state(query, _one(query, "pageToken"))
        offset = page["o"] if page else 0
        size = self._max_results(query)
        body: Json = {
            "kind": "calendar#events",
            "summary": calendar.summary,
            "timeZone": calendar.time_zone,
            "accessRole": "owner",
            "items": resources[offset : offset + size],
        }
        if offset + size < len(resources):
            body["nextPageToken"] = _b64({"o": offset + size, "n": self.counter, "q": _fingerprint(query)})
        return body

    # --- free/busy -------------------------------------------------------------------------------
    def busy(self, calendar: Calendar, lo: datetime, hi: datetime) -> list[tuple[datetime, datetime]]:
        intervals = []
        for resource, _ in self._single_events(calendar, calendar.events.values(), lo, hi):
            if not self.blocks_time(calendar, resource):
                continue
            start, end = self.span(calendar, resource)
            if end > lo and start < hi and end > start:
                intervals.append((max(start, lo), min(end, hi)))
        intervals.sort()
        merged: list[tuple[datetime, datetime]] = []
        for start, end in intervals:
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        return merged

    @staticmethod
    def blocks_time(calendar: Calendar, resource: Json) -> bool:
        if resource.get("status") == "cancelled" or resource.get("transparency") == "transparent":
            return False
        for attendee in resource.get("attendees", []):
            is_owner = str(attendee.get("email", "")).lower() == calendar.owner
            if is_owner and attendee.get("responseStatus") == "declined":
                return False
        return True

    def freebusy(self, body: Json, user: str) -> Json:
        lo = parse_rfc3339(str(body.get("timeMin", "")), "timeMin")
        hi = parse_rfc3339(str(body.get("timeMax", "")), "timeMax")
        if hi <= lo:
            raise errors.time_range_empty()
        if hi - lo > FREEBUSY_MAX_RANGE:
            raise ApiError(
                400,
                "timeRangeTooLong",
                "The requested time range is too long.",
                domain="calendar",
                location="timeMax",
            )
        items = body.get("items") or []
        if len(items) > FREEBUSY_MAX_CALENDARS:
            raise bad_request("Too many calendars requested.", reason="tooManyCalendarsRequested")
        calendars: Json = {}
        for item in items:
            calendar_id = str(item.get("id", ""))
            wanted = user if calendar_id == "primary" else calendar_id
            calendar = self.calendars.get(wanted)
            if calendar is None:
                calendars[calendar_id] = {"errors": [{"domain": "global", "reason": "notFound"}], "busy": []}
                continue
            calendars[calendar_id] = {
                "busy": [
                    {"start": rfc3339_seconds(s), "end": rfc3339_seconds(e)}
                    for s, e in self.busy(calendar, lo, hi)
                ]
            }
        return {
            "kind": "calendar#freeBusy",
            "timeMin": rfc3339(lo),
            "timeMax": rfc3339(hi),
            "calendars": calendars,
        }


def _fingerprint(query: Query) -> str:
    """Identifies a list query apart from its page token, so a page token cannot be reused elsewhere."""
    relevant = sorted((k, v) for k, vs in query.items() if k not in ("pageToken", "alt") for v in vs)
    return hashlib.sha256(json.dumps(relevant).encode()).hexdigest()[:16]

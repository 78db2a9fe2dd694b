"""Google Calendar (API v3): circleback's events written into one calendar, the person's edits read back.

Translation only, no planning. What it does and why:

- Identity: each occurrence gets a deterministic event id (base32hex of owner + occurrence key) and carries
  `extendedProperties.private["circleback-key"]`, so a retry or a crash never duplicates: an insert that
  answers 409 means the event is already there (a deleted one keeps its id too), and it is updated instead.
- Writes: only what `placements` (the store's record of what this calendar holds) says is missing or at an
  older revision is written; unchanged events cost no request. Writes go in batch requests of at most 1000
  calls, to a batch URI built from `api_endpoint` (the library's own ignores it). Rate limits (403
  rateLimitExceeded/userRateLimitExceeded, 429) and 5xx are retried with exponential backoff and jitter,
  each call inside a batch on its own; 403 quotaExceeded and other 4xx are FAILED results, not retried.
  Only placements (events circleback made) are ever changed or deleted. Occurrences starting beyond the
  rolling horizon are not written yet (no result: they stay planned and are written once inside it).
- Reads: `events.list` per calendar with the saved `nextSyncToken` (every page); a 410 drops the token and
  does one full read. The events seen are kept, compactly, in the calendar state the store persists, so a
  cycle in which nothing changed costs one list request per calendar and still returns the whole window.
  Busy time is computed from those events with the core's rule (cancelled, transparent, declined by the
  owner, and circleback's own events are free); a busy calendar whose events cannot be listed (only its
  free/busy is shared) is read with `freebusy.query` instead, chunked to 90 days and 50 calendars a call.
- Observations: circleback's own events carry their key (a moved one at its new time; one the person
  deleted or declined as cancelled); other events carry attendees with their response as PARTSTAT.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httplib2
from google.auth.credentials import Credentials as BaseCredentials
from google.auth.exceptions import RefreshError, TransportError
from google.oauth2 import credentials as user_credentials
from google.oauth2 import service_account
from google_auth_httplib2 import AuthorizedHttp
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from googleapiclient.http import BatchHttpRequest, HttpRequest

from connectors.atomic import write_atomic
from connectors.base import (
    EMPTY_PLACEMENTS,
    EMPTY_STATE,
    Applied,
    CalendarState,
    Capability,
    ConnectorError,
    EventResult,
    Outcome,
    Placement,
)
from connectors.google_options import GoogleOptions
from schedules.events import Attendee, Interval, Observation, PartStat, Snapshot, is_circleback_event
from schedules.occurrence import Revision, occurrence_uid
from schedules.slots import Occupancy

__all__ = [
    "KEY_PROPERTY",
    "OWNER_PROPERTY",
    "SCOPES",
    "GoogleCalendar",
    "event_id",
    "load_credentials",
    "make_google_calendar",
    "save_token",
]

log = logging.getLogger(__name__)

SCOPES = ["https://www.googleapis.com/auth/calendar"]
KEY_PROPERTY = "circleback-key"
OWNER_PROPERTY = "circleback-owner"
REAUTH = "re-run `circleback auth google`"
MAX_BATCH = 1000  # Google's limit of calls in one batch request
MAX_FREEBUSY_SPAN = timedelta(days=90)  # longer: 400 timeRangeTooLong
MAX_FREEBUSY_CALENDARS = 50
RATE_LIMITS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
PARTSTAT = {
    "accepted": PartStat.ACCEPTED,
    "declined": PartStat.DECLINED,
    "tentative": PartStat.TENTATIVE,
    "needsAction": PartStat.NEEDS_ACTION,
}


def event_id(owner: str, key: str) -> str:
    """The event id circleback gives occurrence `key` of `owner`: base32hex (a-v, 0-9), 52 characters."""
    digest = hashlib.sha256(f"{owner}\x00{key}".encode()).digest()
    return base64.b32hexencode(digest).decode("ascii").rstrip("=").lower()


# --- credentials ---------------------------------------------------------------------------------------


def load_credentials(options: GoogleOptions, calendar: str = "google") -> BaseCredentials:
    """Credentials from the service account (with `subject`) or the authorized-user token file."""
    try:
        if options.service_account_file is not None:
            return _service_account(options.service_account_file, options.subject, options.token_uri)
        path = options.token_path
        creds = user_credentials.Credentials.from_authorized_user_file(  # type: ignore[no-untyped-call]
            str(path), SCOPES
        )
        # The file's own token_uri is ignored on purpose: the config decides where refreshes go.
        return cast(BaseCredentials, creds.with_token_uri(options.token_uri))
    except FileNotFoundError as exc:
        raise ConnectorError(
            calendar, f"no Google credentials at {exc.filename}: {REAUTH}", retryable=False
        ) from None
    except (ValueError, KeyError, OSError) as exc:
        where = options.service_account_file or options.token_path
        raise ConnectorError(
            calendar, f"unreadable Google credentials in {where} ({exc}): {REAUTH}", retryable=False
        ) from None


def _service_account(path: Path, subject: str | None, token_uri: str) -> BaseCredentials:
    """The service account of a key file acting as `subject`: one object per version of the file and
    subject, kept for the life of the process, so its access token (an hour) serves every cycle of that
    person instead of a token request and an RSA signature per cycle, and the key (~60 ms of CPU to
    parse) is parsed once. Keyed by the file's identity, size and mtime: a rotated key is read again.

    A person's cycles never run two at once (the queue's lock), so one object is not refreshed by two
    threads together; a token Google stops honouring answers 401, and the client refreshes then."""
    stat = path.stat()
    return _acting_as(str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns, subject or "", token_uri)


@functools.lru_cache(maxsize=16384)  # an organisation's people; ~1.3 kB each with a token
def _acting_as(
    path: str, inode: int, size: int, mtime_ns: int, subject: str, token_uri: str
) -> BaseCredentials:
    account = _parsed_service_account(path, inode, size, mtime_ns)
    if subject:
        account = account.with_subject(subject)  # type: ignore[no-untyped-call]
    return cast(BaseCredentials, account.with_token_uri(token_uri))


@functools.lru_cache(maxsize=8)
def _parsed_service_account(path: str, inode: int, size: int, mtime_ns: int) -> service_account.Credentials:
    del inode, size, mtime_ns  # the cache key: which version of the file this is
    return service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call,no-any-return]
        path, scopes=SCOPES
    )


def save_token(path: Path, creds: user_credentials.Credentials) -> None:
    """Store an authorized-user token: atomically, mode 0600 (it is a long-lived secret)."""
    text: str = creds.to_json()  # type: ignore[no-untyped-call]
    write_atomic(path, text.encode("utf-8"), mode=0o600)


# --- the calendar ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Call:
    """One write: what it is for, and how to make its request (again, for a retry)."""

    key: str
    action: str  # create | update | delete | revive (an insert that found the id taken)
    make: Callable[[], HttpRequest]
    sequence: int = 0


@dataclass(frozen=True)
class _Answer:
    body: Any
    error: HttpError | None


class GoogleCalendar:
    """Reader and Writer over one Google calendar (plus the busy calendars it reads)."""

    capabilities = frozenset({Capability.READ, Capability.WRITE, Capability.INCREMENTAL})

    def __init__(
        self,
        name: str,
        options: GoogleOptions,
        *,
        credentials: BaseCredentials,
        plan_timezone: str,
        owner_emails: Collection[str] = (),
        owner: str = "default",
        token_file: Path | None = None,
        contact_emails: Mapping[str, str] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        max_attempts: int = 6,
        timeout: float = 60.0,
        page_size: int = 2500,  # Google's maximum: fewest list requests
    ) -> None:
        # HTTP requests sent (a batch counts once), for `sync`'s summary and the benchmarks.
        self.api_requests = 0
        self.name = name
        self.options = options
        self.owner = owner
        self.plan_timezone = plan_timezone
        self.owner_emails = frozenset(e.strip().casefold() for e in owner_emails)
        self.contact_emails = {k: v for k, v in (contact_emails or {}).items() if v}
        self._credentials = credentials
        self._token_file = token_file  # where refreshed user tokens are written back
        self._saved_token = getattr(credentials, "token", None)
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._max_attempts = max(1, max_attempts)
        self._timeout = timeout
        self._page_size = page_size
        self._service: Any = None

    def __repr__(self) -> str:
        return f"GoogleCalendar({self.name!r}, {self.options.calendar_id!r})"

    # --- plumbing ----------------------------------------------------------------------------------

    @property
    def service(self) -> Any:
        if self._service is None:
            http = AuthorizedHttp(self._credentials, http=httplib2.Http(timeout=self._timeout))
            self._service = build(
                "calendar",
                "v3",
                http=http,
                static_discovery=True,
                cache_discovery=False,
                client_options={"api_endpoint": self.options.service_endpoint},
            )
        return self._service

    @contextmanager
    def _reaching(self) -> Iterator[None]:
        """Whole-call failures as ConnectorError; a refreshed user token is written back either way."""
        try:
            yield
        except RefreshError as exc:
            raise ConnectorError(
                self.name, f"Google refused the grant ({_refresh_reason(exc)}): {REAUTH}", retryable=False
            ) from None
        except HttpError as exc:
            status = exc.resp.status
            retryable = _retryable(exc) or status in (401, 408)
            raise ConnectorError(
                self.name, f"Google answered {status} {_reason(exc)}: {_message(exc)}", retryable=retryable
            ) from None
        except (OSError, httplib2.HttpLib2Error, TransportError) as exc:
            raise ConnectorError(self.name, f"cannot reach Google: {exc}") from None
        finally:
            self._persist_token()

    def _persist_token(self) -> None:
        creds = self._credentials
        token = getattr(creds, "token", None)
        if (
            self._token_file is None
            or token == self._saved_token
            or not isinstance(creds, user_credentials.Credentials)
        ):
            return
        try:
            save_token(self._token_file, creds)
            self._saved_token = token
        except OSError as exc:  # the old token still refreshes; say so, do not fail the cycle
            log.warning("%s: cannot write the refreshed token to %s: %s", self.name, self._token_file, exc)

    def _backoff(self, attempt: int) -> None:
        base = min(32.0, 0.5 * 2**attempt)
        self._sleep(base + self._rng.uniform(0, base))

    def _execute(self, make: Callable[[], HttpRequest]) -> Any:
        """One request, retried on rate limits, 5xx and dropped connections."""
        for attempt in range(self._max_attempts):
            last = attempt == self._max_attempts - 1
            try:
                self.api_requests += 1
                return make().execute()
            except HttpError as exc:
                if last or not _retryable(exc):
                    raise
            except (OSError, httplib2.HttpLib2Error):
                if last:
                    raise
            self._backoff(attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _run_batches(self, calls: Sequence[_Call]) -> dict[int, _Answer]:
        """Every call, in batches of at most 1000; retryable failures go again, alone, after a pause."""
        answers: dict[int, _Answer] = {}
        pending = list(range(len(calls)))
        for attempt in range(self._max_attempts):
            for start in range(0, len(pending), MAX_BATCH):
                self._one_batch(calls, pending[start : start + MAX_BATCH], answers)
            pending = [i for i in pending if _should_retry(answers[i])]
            if not pending or attempt == self._max_attempts - 1:
                break
            self._backoff(attempt)
        return answers

    def _one_batch(self, calls: Sequence[_Call], indexes: Sequence[int], answers: dict[int, _Answer]) -> None:
        def done(request_id: str, response: Any, exception: HttpError | None) -> None:
            answers[int(request_id)] = _Answer(response, exception)

        batch = BatchHttpRequest(callback=done, batch_uri=self.options.batch_uri)
        for index in indexes:
            batch.add(calls[index].make(), request_id=str(index))
        try:
            self.api_requests += 1
            batch.execute()
        except HttpError as exc:  # the envelope itself: every call in it gets the same answer
            for index in indexes:
                answers[index] = _Answer(None, exc)
        except (OSError, httplib2.HttpLib2Error) as exc:
            dropped = _dropped(exc)
            for index in indexes:
                answers.setdefault(index, _Answer(None, dropped))

    # --- Writer ------------------------------------------------------------------------------------

    def apply(
        self,
        desired: Sequence[Revision],
        *,
        placements: Mapping[str, Placement] = EMPTY_PLACEMENTS,
        state: CalendarState = EMPTY_STATE,
    ) -> Applied:
        self._check(desired)
        limit = self._clock() + self.options.horizon
        wanted = {r.occurrence.key: r for r in desired}
        calls: list[_Call] = []
        results: list[EventResult] = []
        seen = json.loads(state.get(f"events:{self.options.calendar_id}", "{}"))
        for key, revision in sorted(wanted.items()):
            placed = placements.get(key)
            if placed is None:
                if revision.occurrence.start < limit:
                    calls.append(self._insert(revision))
            elif placed.sequence == revision.sequence:
                results.append(EventResult(key, "keep", placement=placed))
            elif _holds(seen.get(placed.remote_id), revision):
                # The calendar already shows this revision (the person moved it there): nothing to write.
                kept = Placement(key, placed.remote_id, placed.etag, revision.sequence)
                results.append(EventResult(key, "keep", placement=kept))
            else:
                last_read = seen.get(placed.remote_id) or {}
                calls.append(self._patch(revision, placed.remote_id, "update", if_match=last_read.get("g")))
        for key, placed in sorted(placements.items()):
            if key not in wanted:
                calls.append(self._delete(key, placed.remote_id))
        with self._reaching():
            results.extend(self._write(calls, wanted, placements))
        return _applied(results, self._forget_deleted(state, results, placements))

    def _forget_deleted(
        self, state: CalendarState, results: Sequence[EventResult], placements: Mapping[str, Placement]
    ) -> dict[str, str] | None:
        """The state with the ids circleback itself deleted: in Google they linger as cancelled, and a
        read must not report them as the person's deletions."""
        name = f"deleted:{self.options.calendar_id}"
        deleted = set(json.loads(state.get(name, "[]")))
        before = set(deleted)
        for result in results:
            if result.outcome is not Outcome.DONE:
                continue
            if result.action == "delete" and result.key in placements:
                deleted.add(placements[result.key].remote_id)
            elif result.placement is not None:
                deleted.discard(result.placement.remote_id)
        if deleted == before:
            return None
        return {**state, name: json.dumps(sorted(deleted), separators=(",", ":"))}

    def _write(
        self, calls: Sequence[_Call], wanted: Mapping[str, Revision], placements: Mapping[str, Placement]
    ) -> list[EventResult]:
        if not calls:
            return []
        answers = self._run_batches(calls)
        results: list[EventResult] = []
        taken: list[_Call] = []
        for index, call in enumerate(calls):
            answer = answers[index]
            if call.action == "create" and answer.error is not None and answer.error.resp.status == 409:
                # Already there (a retry after a crash, or deleted and keeping its id): update it instead.
                revision = wanted[call.key]
                taken.append(self._patch(revision, event_id(self.owner, call.key), "revive"))
                continue
            results.append(self._result(call, answer, placements.get(call.key)))
        if taken:
            revived = self._run_batches(taken)
            for index, call in enumerate(taken):
                result = self._result(call, revived[index], placements.get(call.key))
                results.append(_as_create(result))
        return results

    def _result(self, call: _Call, answer: _Answer, before: Placement | None) -> EventResult:
        action = "update" if call.action == "revive" else call.action
        error = answer.error
        if call.action == "delete":
            if error is None or error.resp.status in (404, 410):  # gone already is what we wanted
                return EventResult(call.key, "delete")
        elif error is None and isinstance(answer.body, dict):
            body = answer.body
            placement = Placement(call.key, str(body["id"]), _etag(body), call.sequence)
            return EventResult(call.key, action, placement=placement)
        if error is None:
            return EventResult(call.key, action, Outcome.FAILED, before, "Google answered nothing usable")
        if error.resp.status == 412:
            # If-Match failed: the person changed the event since this cycle read it. Not retried now (the
            # same etag fails again); the next cycle reads their change first.
            reason = "changed in Google after this cycle read it; the next cycle reads it and decides again"
            return EventResult(call.key, action, Outcome.FAILED, before, reason, retryable=True)
        reason = f"Google answered {error.resp.status} {_reason(error)}: {_message(error)}"
        retryable = _retryable(error) or _reason(error) == "quotaExceeded"
        return EventResult(call.key, action, Outcome.FAILED, before, reason, retryable)

    def _body(self, revision: Revision) -> dict[str, Any]:
        occ = revision.occurrence
        zone = _zone(self.plan_timezone)
        body: dict[str, Any] = {
            "summary": occ.title,
            "description": occ.description,
            "start": {"dateTime": occ.start.astimezone(zone).isoformat(), "timeZone": self.plan_timezone},
            "end": {"dateTime": occ.end.astimezone(zone).isoformat(), "timeZone": self.plan_timezone},
            "extendedProperties": {"private": {KEY_PROPERTY: occ.key, OWNER_PROPERTY: self.owner}},
        }
        email = self.contact_emails.get(occ.connection or "") if self.options.invite else None
        if email:
            body["attendees"] = [{"email": email}]
        return body

    def _insert(self, revision: Revision) -> _Call:
        key = revision.occurrence.key
        body = {"id": event_id(self.owner, key), **self._body(revision)}
        events = self.service.events()
        calendar = self.options.calendar_id
        send = "all" if "attendees" in body else "none"
        return _Call(
            key,
            "create",
            lambda: events.insert(calendarId=calendar, body=body, sendUpdates=send),
            revision.sequence,
        )

    def _patch(
        self, revision: Revision, remote_id: str, action: str, *, if_match: str | None = None
    ) -> _Call:
        """An update of one of circleback's events. With the etag of the event as this cycle read it, Google
        refuses the write (412) when the person changed the event after that read: the next cycle reads
        their change and decides again, instead of this write undoing it."""
        body = self._body(revision)
        if action == "revive":
            body["status"] = "confirmed"
        events = self.service.events()
        calendar = self.options.calendar_id
        send = "all" if "attendees" in body else "none"

        def make() -> HttpRequest:
            request = events.patch(calendarId=calendar, eventId=remote_id, body=body, sendUpdates=send)
            if if_match:
                request.headers["If-Match"] = if_match
            return request

        return _Call(revision.occurrence.key, action, make, revision.sequence)

    def _delete(self, key: str, remote_id: str) -> _Call:
        events = self.service.events()
        calendar = self.options.calendar_id
        return _Call(key, "delete", lambda: events.delete(calendarId=calendar, eventId=remote_id))

    def _check(self, desired: Sequence[Revision]) -> None:
        seen: set[str] = set()
        for revision in desired:
            occ = revision.occurrence
            problem = None
            if occ.key in seen:
                problem = "appears twice; a calendar holds one event per occurrence"
            elif occ.end <= occ.start:
                problem = f"ends ({occ.end}) before or when it starts ({occ.start})"
            if problem is not None:
                raise ConnectorError(self.name, f"occurrence {occ.key!r} {problem}", retryable=False)
            seen.add(occ.key)

    # --- Reader ------------------------------------------------------------------------------------

    def read(self, window: Interval, state: CalendarState = EMPTY_STATE) -> Snapshot:
        new_state = dict(state)
        records: list[dict[str, Any]] = []
        free_busy_only: list[str] = []
        with self._reaching():
            for calendar in self._calendars():
                if new_state.get(f"freebusy:{calendar}"):
                    free_busy_only.append(calendar)
                    continue
                try:
                    cache = self._sync(calendar, window, new_state)
                except HttpError as exc:
                    if calendar == self.options.calendar_id or exc.resp.status not in (403, 404):
                        raise
                    # Only its free/busy is shared with us: ask for that, now and from now on.
                    new_state[f"freebusy:{calendar}"] = "1"
                    free_busy_only.append(calendar)
                    continue
                ours_deleted = set(json.loads(new_state.get(f"deleted:{calendar}", "[]")))
                records.extend(r for r in cache.values() if not (r.get("c") and r["id"] in ours_deleted))
                if ours_deleted:
                    kept = sorted(ours_deleted & cache.keys())
                    new_state[f"deleted:{calendar}"] = json.dumps(kept, separators=(",", ":"))
            busy_elsewhere = self._free_busy(free_busy_only, window) if free_busy_only else []
        observations = sorted(
            (obs for obs in (self._observe(r) for r in records) if obs is not None and _inside(obs, window)),
            key=lambda o: (o.start, o.end, o.uid, o.recurrence_id or o.start),
        )
        busy = Occupancy(
            [
                *(
                    Interval(max(o.start, window.start), min(o.end, window.end))
                    for o in observations
                    if o.start < o.end and not (o.cancelled or o.transparent or is_circleback_event(o))
                ),
                *busy_elsewhere,
            ]
        )
        return Snapshot(busy=tuple(busy), observations=tuple(observations), state=new_state)

    def _calendars(self) -> list[str]:
        return list(dict.fromkeys([self.options.calendar_id, *self.options.busy_calendars]))

    def _sync(self, calendar: str, window: Interval, state: dict[str, str]) -> dict[str, dict[str, Any]]:
        """Bring the cached events of `calendar` up to date: incremental with a token, else one full read."""
        token = state.get(f"sync:{calendar}")
        cache: dict[str, dict[str, Any]] = json.loads(state.get(f"events:{calendar}", "{}"))
        zone = state.get(f"tz:{calendar}", self.plan_timezone)
        pages: tuple[list[dict[str, Any]], str | None, str] | None = None
        if token:
            try:
                pages = self._list(calendar, {"syncToken": token})
            except HttpError as exc:
                if exc.resp.status != 410:
                    raise
                log.info("%s: sync token for %s expired; reading it in full", self.name, calendar)
        if pages is None:
            cache = {}
            query = {"timeMin": _rfc3339(window.start), "showDeleted": True}
            pages = self._list(calendar, query)
        items, next_token, zone = pages[0], pages[1], pages[2] or zone
        for item in items:
            record = _record(item, zone, cache.get(str(item.get("id"))))
            if record is None:
                cache.pop(str(item.get("id")), None)
            else:
                cache[record["id"]] = record
        horizon_start = _rfc3339(window.start)
        cache = {k: r for k, r in cache.items() if r["e"] >= horizon_start or r["e"] == r["s"]}
        if next_token:
            state[f"sync:{calendar}"] = next_token
        state[f"events:{calendar}"] = json.dumps(cache, separators=(",", ":"), sort_keys=True)
        state[f"tz:{calendar}"] = zone
        return cache

    def _list(self, calendar: str, query: Mapping[str, Any]) -> tuple[list[dict[str, Any]], str | None, str]:
        items: list[dict[str, Any]] = []
        page_token: str | None = None
        zone = ""
        events = self.service.events()
        while True:
            params = {"calendarId": calendar, "singleEvents": True, "maxResults": self._page_size, **query}
            if page_token:
                params["pageToken"] = page_token
            page = self._execute(partial(events.list, **params))
            items.extend(page.get("items", []))
            zone = page.get("timeZone") or zone
            page_token = page.get("nextPageToken")
            if not page_token:
                return items, page.get("nextSyncToken"), zone

    def _free_busy(self, calendars: Sequence[str], window: Interval) -> list[Interval]:
        busy: list[Interval] = []
        start = window.start
        freebusy = self.service.freebusy()
        while start < window.end:
            end = min(window.end, start + MAX_FREEBUSY_SPAN)
            for first in range(0, len(calendars), MAX_FREEBUSY_CALENDARS):
                chunk = calendars[first : first + MAX_FREEBUSY_CALENDARS]
                body = {
                    "timeMin": _rfc3339(start),
                    "timeMax": _rfc3339(end),
                    "items": [{"id": c} for c in chunk],
                }
                answer = self._execute(partial(freebusy.query, body=body))
                for calendar, entry in (answer.get("calendars") or {}).items():
                    if entry.get("errors"):
                        log.warning("%s: free/busy of %s: %s", self.name, calendar, entry["errors"])
                    for span in entry.get("busy", []):
                        interval = Interval(_parse_instant(span["start"]), _parse_instant(span["end"]))
                        if interval.start < interval.end:
                            busy.append(interval)
            start = end
        return busy

    def _observe(self, record: Mapping[str, Any]) -> Observation | None:
        attendees = tuple(Attendee(str(a[0]).casefold(), PartStat(a[1])) for a in record.get("a", ()))
        declined_by_owner = any(
            a[1] == PartStat.DECLINED.value and (a[2] or str(a[0]).casefold() in self.owner_emails)
            for a in record.get("a", ())
        )
        key = record.get("k") if record.get("ko") == self.owner else None
        if declined_by_owner and key is None:
            return None  # the person said no: neither busy nor a meeting that happened
        start, end = _parse_instant(record["s"]), _parse_instant(record["e"])
        recurrence = record.get("r")
        return Observation(
            source=self.name,
            uid=occurrence_uid(key) if key else str(record.get("u") or record["id"]),
            start=start,
            end=end,
            summary=str(record.get("t", "")),
            attendees=attendees,
            organizer=record.get("o"),
            # One of ours the person declined did not happen, like one they deleted.
            cancelled=bool(record.get("c")) or declined_by_owner,
            transparent=bool(record.get("tr")),
            all_day=bool(record.get("ad")),
            recurrence_id=_parse_instant(recurrence) if recurrence else None,
            circleback_key=key,
        )


# --- helpers -------------------------------------------------------------------------------------------


def _record(item: Mapping[str, Any], zone: str, cached: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The part of an event resource reads need, compact for the calendar state; None: forget it."""
    identifier = item.get("id")
    cancelled = item.get("status") == "cancelled"
    if not isinstance(identifier, str):
        return None
    if "start" not in item or "end" not in item:
        # A deleted event may come back as little more than its id: keep what was known, cancelled.
        if cancelled and cached is not None:
            return {**cached, "c": True}
        return None
    start, all_day = _when(item["start"], zone)
    end, _ = _when(item["end"], zone)
    private = (item.get("extendedProperties") or {}).get("private") or {}
    original = item.get("originalStartTime")
    record: dict[str, Any] = {
        "id": identifier,
        "s": _rfc3339(start),
        "e": _rfc3339(max(start, end)),
        "t": str(item.get("summary", "")),
        "u": item.get("iCalUID"),
        "o": ((item.get("organizer") or {}).get("email") or None),
        "a": [
            [
                str(a.get("email", "")),
                PARTSTAT.get(str(a.get("responseStatus")), PartStat.NEEDS_ACTION).value,
                bool(a.get("self")),
            ]
            for a in item.get("attendees", ())
            if a.get("email")
        ],
    }
    if cancelled:
        record["c"] = True
    if item.get("transparency") == "transparent":
        record["tr"] = True
    if all_day:
        record["ad"] = True
    if KEY_PROPERTY in private:
        if item.get("etag"):
            record["g"] = str(item["etag"])  # circleback's own events only: an update sends it as If-Match
        record["k"] = str(private[KEY_PROPERTY])
        record["ko"] = str(private.get(OWNER_PROPERTY, "default"))
        record["d"] = _digest(str(item.get("description", "")))
    if original:
        record["r"] = _rfc3339(_when(original, zone)[0])
    return record


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _holds(record: Mapping[str, Any] | None, revision: Revision) -> bool:
    """Whether an event as last read already shows `revision` (times, title, description)."""
    if record is None or record.get("c"):
        return False
    occ = revision.occurrence
    return (record["s"], record["e"], record.get("t"), record.get("d")) == (
        _rfc3339(occ.start),
        _rfc3339(occ.end),
        occ.title,
        _digest(occ.description),
    )


def _when(value: Mapping[str, Any], zone: str) -> tuple[datetime, bool]:
    if value.get("dateTime"):
        moment = datetime.fromisoformat(str(value["dateTime"]).replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=_zone(str(value.get("timeZone") or zone)))
        return moment.astimezone(UTC), False
    day = date.fromisoformat(str(value["date"]))
    return datetime.combine(day, datetime.min.time(), tzinfo=_zone(zone)).astimezone(UTC), True


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _parse_instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _inside(obs: Observation, window: Interval) -> bool:
    if obs.start == obs.end:
        return window.start <= obs.start < window.end
    return obs.start < window.end and window.start < obs.end


def _etag(body: Mapping[str, Any]) -> str | None:
    etag = body.get("etag")
    return str(etag) if etag is not None else None


def _reason(error: HttpError) -> str:
    details = getattr(error, "error_details", None)
    if isinstance(details, list) and details and isinstance(details[0], dict):
        return str(details[0].get("reason", ""))
    try:
        payload = json.loads(error.content)
        return str(payload["error"]["errors"][0]["reason"])
    except (ValueError, KeyError, IndexError, TypeError):
        return ""


def _message(error: HttpError) -> str:
    try:
        return str(json.loads(error.content)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return str(getattr(error, "reason", "") or "no message")


def _retryable(error: HttpError) -> bool:
    status = error.resp.status
    return status == 429 or status >= 500 or (status == 403 and _reason(error) in RATE_LIMITS)


def _should_retry(answer: _Answer) -> bool:
    return answer.error is not None and _retryable(answer.error)


def _dropped(exc: BaseException) -> HttpError:
    """A dropped batch connection, as a retryable 503 for every call in it."""
    content = json.dumps(
        {"error": {"code": 503, "message": f"connection lost: {exc}", "errors": [{"reason": "dropped"}]}}
    ).encode()
    return HttpError(httplib2.Response({"status": 503}), content)


def _refresh_reason(exc: RefreshError) -> str:
    text = str(exc)
    return "invalid_grant" if "invalid_grant" in text else text.split(":")[0] or "refresh failed"


def _as_create(result: EventResult) -> EventResult:
    """An insert that found its id taken and updated it instead is still, to the caller, a create."""
    return EventResult(
        result.key, "create", result.outcome, result.placement, result.reason, result.retryable
    )


def _applied(results: Sequence[EventResult], state: Mapping[str, str] | None) -> Applied:
    ordered = tuple(sorted(results, key=lambda r: r.key))

    def done(action: str) -> tuple[str, ...]:
        return tuple(r.key for r in ordered if r.action == action and r.outcome is Outcome.DONE)

    return Applied(
        created=done("create"),
        updated=done("update"),
        removed=done("delete"),
        results=ordered,
        state=state,
    )


def make_google_calendar(
    options: GoogleOptions,
    *,
    name: str,
    plan_timezone: str,
    owner_emails: Collection[str],
    marker_secret: Callable[[], bytes] | None = None,
    credentials: BaseCredentials | None = None,
    owner: str = "default",
    contact_emails: Mapping[str, str] | None = None,
) -> GoogleCalendar:
    """The connector the daemon builds from a `[google]` table. `marker_secret` is accepted for symmetry
    with the ICS back ends; Google events are recognised by their private extended property instead."""
    del marker_secret
    token_file = None
    if credentials is None:
        credentials = load_credentials(options, name)
        if options.service_account_file is None:
            token_file = options.token_path
    return GoogleCalendar(
        name,
        options,
        credentials=credentials,
        plan_timezone=plan_timezone,
        owner_emails=owner_emails,
        owner=owner,
        token_file=token_file,
        contact_emails=contact_emails,
    )

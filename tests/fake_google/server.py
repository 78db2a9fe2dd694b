"""A stateful fake of the Google Calendar API v3 and Google's OAuth token endpoint, over plain HTTP.

Routes (all relative to `FakeGoogle.url`, e.g. http://127.0.0.1:PORT/):
- `calendar/v3/...`: the API; point the client at it with
  `client_options={"api_endpoint": fake.api_endpoint}` (api_endpoint replaces rootUrl + servicePath);
- `batch/calendar/v3`: batch requests; `BatchHttpRequest(batch_uri=fake.batch_uri)`;
- `token`: the OAuth 2.0 token endpoint (`token_uri=fake.token_uri`).
"""

from __future__ import annotations

import base64
import copy
import email
import email.message
import email.policy
import json
import re
import secrets
import socket
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from . import errors
from .errors import ApiError, bad_request
from .faults import Call, Fault, Faults
from .state import Calendar, Json, Store

CALENDAR_SCOPE = "https://www.googleapis.com/auth/calendar"
ACCESS_TOKEN_LIFETIME = timedelta(seconds=3599)
MAX_BATCH_CALLS = 1000
API_PREFIX = "/calendar/v3/"
BATCH_PATH = "/batch/calendar/v3"
TOKEN_PATH = "/token"
STATS_PATH = "/_fake/stats"  # not Google's: what a test in another process reads (not logged itself)
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"

_EVENTS = re.compile(r"^calendars/([^/]+)/events$")
_EVENT = re.compile(r"^calendars/([^/]+)/events/([^/]+)$")
_INSTANCES = re.compile(r"^calendars/([^/]+)/events/([^/]+)/instances$")


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
        merged = {"Content-Type": "application/json; charset=UTF-8", **(headers or {})}
        return cls(status, json.dumps(payload).encode(), merged)

    @classmethod
    def error(cls, error: ApiError) -> Response:
        return cls.json(error.code, error.body())


@dataclass
class _Grant:
    email: str
    revoked: bool = False


class FakeGoogle:
    """The fake server and its state. Use as a context manager, or call start()/stop()."""

    def __init__(
        self, clock: Callable[[], datetime] | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self.faults = Faults()
        self.log: list[Call] = []
        self._lock = threading.RLock()
        self._store = Store(lambda: self.clock())
        self._grants: dict[str, _Grant] = {}
        self._access: dict[str, tuple[str, datetime]] = {}
        self._service_accounts: set[str] = set()
        self._undelegated: set[str] = set()
        # Seconds added to EVERY HTTP request (a batch counts once), as a far-away server would: set it
        # before or while serving. Requests wait in parallel (one thread each), like Google's.
        self.latency = 0.0
        self._server = ThreadingHTTPServer((host, port), _Handler)
        self._server.daemon_threads = True
        self._server.fake = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/"

    @property
    def api_endpoint(self) -> str:
        return self.url + API_PREFIX.lstrip("/")

    @property
    def batch_uri(self) -> str:
        return self.url + BATCH_PATH.lstrip("/")

    @property
    def token_uri(self) -> str:
        return self.url + TOKEN_PATH.lstrip("/")

    def start(self) -> FakeGoogle:
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-google", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def __enter__(self) -> FakeGoogle:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- users, calendars, grants (test set-up) ----------------------------------------------------
    def add_user(self, email_address: str, time_zone: str = "UTC") -> str:
        """A user with a primary calendar (id = their email); returns a refresh token for them."""
        user = email_address.lower()
        with self._lock:
            self._store.add_calendar(user, user, time_zone)
            return self.grant(user)

    def add_calendar(
        self, calendar_id: str, owner: str, time_zone: str = "UTC", readers: tuple[str, ...] = ()
    ) -> None:
        with self._lock:
            calendar = self._store.add_calendar(calendar_id, owner, time_zone)
            calendar.readers.update(r.lower() for r in readers)

    def grant(self, email_address: str) -> str:
        """A new refresh token for a user (as after `auth google`)."""
        token = "1//fake-refresh-" + secrets.token_urlsafe(16)
        with self._lock:
            self._grants[token] = _Grant(email_address.lower())
        return token

    def revoke(self, refresh_token: str | None = None, *, user: str | None = None) -> None:
        """Revoke one grant, or all grants of a user: refreshing then answers `invalid_grant`."""
        with self._lock:
            for token, grant in self._grants.items():
                if token == refresh_token or (user is not None and grant.email == user.lower()):
                    grant.revoked = True
            for access, (owner, _) in list(self._access.items()):
                if user is not None and owner == user.lower():
                    del self._access[access]

    def access_token(self, email_address: str) -> str:
        """A valid access token for a user, without going through the token endpoint."""
        token = "ya29.fake-" + secrets.token_urlsafe(24)
        with self._lock:
            self._access[token] = (email_address.lower(), self.clock() + ACCESS_TOKEN_LIFETIME)
        return token

    def expire_access_tokens(self) -> None:
        """Every access token issued so far is now unknown: the API answers 401 until a refresh."""
        with self._lock:
            self._access.clear()

    def add_service_account(self, client_email: str) -> None:
        """A service account with domain-wide delegation: it may act as any user (`sub`)."""
        with self._lock:
            self._service_accounts.add(client_email.lower())

    def revoke_delegation(self, subject: str) -> None:
        """The Workspace admin no longer lets service accounts act as `subject`: their token requests
        answer `unauthorized_client` (as Google does when domain-wide delegation is withdrawn), and the
        access tokens issued to them stop working (401, so a client asks for a new one)."""
        with self._lock:
            self._undelegated.add(subject.lower())
            for access, (owner, _) in list(self._access.items()):
                if owner == subject.lower():
                    del self._access[access]

    def restore_delegation(self, subject: str) -> None:
        with self._lock:
            self._undelegated.discard(subject.lower())

    def invalidate_sync_tokens(self, calendar_id: str | None = None) -> None:
        """Sync tokens issued so far (for one calendar or all) answer 410 fullSyncRequired."""
        with self._lock:
            for calendar in self._store.calendars.values():
                if calendar_id is None or calendar.id == calendar_id:
                    calendar.epoch += 1

    def reset(self) -> None:
        """Forget everything: users, calendars, events, grants, faults and the log."""
        with self._lock:
            self._store = Store(lambda: self.clock())
            self._grants.clear()
            self._access.clear()
            self._service_accounts.clear()
            self._undelegated.clear()
            self.faults.clear()
            self.log.clear()

    # --- what tests inspect ----------------------------------------------------------------------
    def events(self, calendar_id: str, *, include_cancelled: bool = True) -> list[Json]:
        """Every stored event of a calendar (masters and exceptions, not expanded instances)."""
        with self._lock:
            calendar = self._store.calendars[calendar_id]
            return [
                copy.deepcopy(s.resource)
                for s in calendar.events.values()
                if include_cancelled or s.resource.get("status") != "cancelled"
            ]

    def event(self, calendar_id: str, event_id: str) -> Json:
        with self._lock:
            return self._store.resolve(self._store.calendars[calendar_id], event_id)

    def round_trips(self, *kinds: str) -> list[Call]:
        """HTTP requests received (kinds "api", "batch", "token", "other"; all of them by default)."""
        wanted = set(kinds or ("api", "batch", "token", "other"))
        with self._lock:
            return [c for c in self.log if c.kind in wanted]

    def api_calls(self) -> list[Call]:
        """Calendar API calls, each call inside a batch counted on its own."""
        with self._lock:
            return [c for c in self.log if c.kind in ("api", "inner")]

    def clear_log(self) -> None:
        with self._lock:
            self.log.clear()

    # --- the person, acting in the Calendar UI ------------------------------------------------------
    def person_inserts(self, calendar_id: str, body: Json) -> Json:
        """An event arrives as the person's calendar app or an invitation puts it there: its `iCalUID`
        and `organizer`, read-only through the API, are kept when given (as an import or an invitation
        from someone else would have them)."""
        with self._lock:
            calendar = self._store.calendars[calendar_id]
            resource = self._store.insert(calendar, copy.deepcopy(body))
            kept: Json = {k: copy.deepcopy(body[k]) for k in ("iCalUID", "organizer") if k in body}
            if kept:
                calendar.events[resource["id"]].resource.update(kept)
                resource.update(kept)
            return resource

    def _person_patch(self, calendar_id: str, event_id: str, patch: Json) -> Json:
        with self._lock:
            return self._store.patch(self._store.calendars[calendar_id], event_id, patch, None)

    def person_moves(self, calendar_id: str, event_id: str, start: datetime, end: datetime) -> Json:
        """Drag the event to [start, end), keeping its time zone."""
        current = self.event(calendar_id, event_id)
        tz_name = current["start"].get("timeZone") or self._store.calendars[calendar_id].time_zone
        return self._person_patch(
            calendar_id,
            event_id,
            {
                "start": {"dateTime": _local_iso(start, tz_name), "timeZone": tz_name, "date": None},
                "end": {"dateTime": _local_iso(end, tz_name), "timeZone": tz_name, "date": None},
            },
        )

    def person_shortens(self, calendar_id: str, event_id: str, end: datetime) -> Json:
        current = self.event(calendar_id, event_id)
        tz_name = current["end"].get("timeZone") or self._store.calendars[calendar_id].time_zone
        patch = {"end": {"dateTime": _local_iso(end, tz_name), "timeZone": tz_name}}
        return self._person_patch(calendar_id, event_id, patch)

    def person_deletes(self, calendar_id: str, event_id: str) -> None:
        with self._lock:
            self._store.delete(self._store.calendars[calendar_id], event_id, None)

    def person_marks_free(self, calendar_id: str, event_id: str) -> Json:
        return self._person_patch(calendar_id, event_id, {"transparency": "transparent"})

    def person_declines(self, calendar_id: str, event_id: str) -> Json:
        """The calendar's owner declines (their own attendee entry, added if missing)."""
        owner = self._store.calendars[calendar_id].owner
        return self.attendee_responds(calendar_id, event_id, owner, "declined")

    def attendee_responds(self, calendar_id: str, event_id: str, attendee: str, response: str) -> Json:
        """An attendee (a contact, or the owner) answers the invitation: accepted/declined/tentative."""
        current = self.event(calendar_id, event_id)
        attendees = current.get("attendees", [])
        for entry in attendees:
            if str(entry.get("email", "")).lower() == attendee.lower():
                entry["responseStatus"] = response
                break
        else:
            attendees.append({"email": attendee, "responseStatus": response})
        return self._person_patch(calendar_id, event_id, {"attendees": attendees})

    # --- request handling ------------------------------------------------------------------------
    def _record(self, call: Call) -> int:
        with self._lock:
            self.log.append(call)
            return len(self.log) - 1

    def handle_http(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response | Fault:
        """One HTTP request; a `Fault` with action "drop" means: close the connection, answer nothing."""
        parts = urllib.parse.urlsplit(target)
        query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
        path = parts.path
        if path == STATS_PATH and method == "GET":
            return self._stats()
        kind = "token" if path == TOKEN_PATH else "batch" if path == BATCH_PATH else "api"
        if kind == "api" and not path.startswith(API_PREFIX):
            kind = "other"
        call = Call(kind, method, path, query)
        index = self._record(call)
        if self.latency > 0:
            time.sleep(self.latency)
        fault = self.faults.decide(call)
        if fault is not None:
            call.fault = f"{fault.action}:{fault.kind}" if fault.kind else fault.action
            if fault.action == "drop":
                return fault
            if fault.action == "slow":
                time.sleep(fault.delay)
            if fault.action == "error":
                response = Response.error(errors.fault_error(fault.kind))
                call.status = response.status
                return response
        if kind == "token":
            response = self._token(body, headers)
        elif kind == "batch":
            response = self._batch(index, headers, body)
        elif kind == "other":
            response = Response.error(errors.not_found())
        else:
            response = self._api_call(call, headers, body)
        call.status = response.status
        return response

    def _stats(self) -> Response:
        """Requests received so far by kind ("api", "batch", "token", "other"; "inner" = calls in
        batches): for a benchmark that runs the fake in a process of its own."""
        counts: dict[str, int] = {}
        with self._lock:
            for call in self.log:
                counts[call.kind] = counts.get(call.kind, 0) + 1
        return Response.json(200, counts)

    def _api_call(self, call: Call, headers: dict[str, str], body: bytes) -> Response:
        try:
            call.user = self._authenticate(headers)
            with self._lock:
                return self._route(call, headers, body)
        except ApiError as error:
            return Response.error(error)

    def _authenticate(self, headers: dict[str, str]) -> str:
        value = headers.get("authorization", "")
        if not value:
            raise errors.login_required()
        scheme, _, token = value.partition(" ")
        with self._lock:
            entry = self._access.get(token) if scheme.lower() == "bearer" else None
            if entry is None or entry[1] <= self.clock():
                raise errors.invalid_credentials()
            return entry[0]

    def _route(self, call: Call, headers: dict[str, str], raw: bytes) -> Response:
        assert call.user is not None
        relative = call.path[len(API_PREFIX) :]
        body = _json_body(raw) if call.method in ("POST", "PUT", "PATCH") else {}
        call.body = body or None
        if relative == "freeBusy" and call.method == "POST":
            return Response.json(200, self._store.freebusy(body, call.user))
        if match := _EVENTS.match(relative):
            calendar = self._calendar(match.group(1), call.user)
            if call.method == "GET":
                return Response.json(200, self._store.list_events(calendar, call.query))
            if call.method == "POST":
                return _event_response(self._store.insert(calendar, body))
        if match := _INSTANCES.match(relative):
            calendar = self._calendar(match.group(1), call.user)
            if call.method == "GET":
                event_id = urllib.parse.unquote(match.group(2))
                return Response.json(200, self._store.instances(calendar, event_id, call.query))
        if match := _EVENT.match(relative):
            return self._one_event(call, headers, body, match)
        raise errors.not_found()

    def _one_event(self, call: Call, headers: dict[str, str], body: Json, match: re.Match[str]) -> Response:
        assert call.user is not None
        calendar = self._calendar(match.group(1), call.user)
        event_id = urllib.parse.unquote(match.group(2))
        if_match = headers.get("if-match")
        if call.method == "GET":
            event = self._store.get(calendar, event_id)
            if headers.get("if-none-match") == event.get("etag"):
                return Response(304, b"", {"ETag": str(event.get("etag"))})
            return _event_response(event)
        if call.method == "PUT":
            return _event_response(self._store.update(calendar, event_id, body, if_match))
        if call.method == "PATCH":
            return _event_response(self._store.patch(calendar, event_id, body, if_match))
        if call.method == "DELETE":
            self._store.delete(calendar, event_id, if_match)
            return Response(204)
        raise errors.not_found()

    def _calendar(self, raw_id: str, user: str) -> Calendar:
        return self._store.calendar_for(urllib.parse.unquote(raw_id), user)

    # --- batch -----------------------------------------------------------------------------------
    def _batch(self, index: int, headers: dict[str, str], body: bytes) -> Response:
        content_type = headers.get("content-type", "")
        if not content_type.lower().startswith("multipart/mixed"):
            return Response.error(bad_request("Batch requests must be multipart/mixed."))
        message = email.message_from_bytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body, policy=email.policy.HTTP
        )
        parts = message.get_payload() if message.is_multipart() else None
        if not isinstance(parts, list):
            return Response.error(bad_request("Batch request has no parts."))
        if len(parts) > MAX_BATCH_CALLS:
            return Response.error(
                bad_request(f"A batch request may contain at most {MAX_BATCH_CALLS} calls.")
            )
        boundary = "batch_" + uuid.uuid4().hex
        chunks = []
        for part in parts:
            assert isinstance(part, email.message.Message)
            content_id = str(part.get("Content-ID", "")).strip()
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            inner = self._inner_call(index, payload, headers)
            chunks.append(_batch_part(boundary, content_id, inner))
        out = "".join(chunks) + f"--{boundary}--\r\n"
        return Response(200, out.encode(), {"Content-Type": f"multipart/mixed; boundary={boundary}"})

    def _inner_call(self, batch_index: int, payload: bytes, outer: dict[str, str]) -> Response:
        method, target, headers, body = _parse_http_request(payload)
        parts = urllib.parse.urlsplit(target)
        call = Call("inner", method, parts.path, urllib.parse.parse_qs(parts.query, keep_blank_values=True))
        call.batch = batch_index
        self._record(call)
        headers.setdefault("authorization", outer.get("authorization", ""))
        fault = self.faults.decide(call)
        if fault is not None and fault.action == "slow":
            time.sleep(fault.delay)
        if fault is not None and fault.action == "error":
            call.fault = f"error:{fault.kind}"
            response = Response.error(errors.fault_error(fault.kind))
        elif not parts.path.startswith(API_PREFIX):
            response = Response.error(errors.not_found())
        else:
            response = self._api_call(call, headers, body)
        call.status = response.status
        return response

    # --- OAuth token endpoint ----------------------------------------------------------------------
    def _token(self, body: bytes, headers: dict[str, str]) -> Response:
        if "json" in headers.get("content-type", ""):
            form = {k: str(v) for k, v in json.loads(body or b"{}").items()}
        else:
            form = {k: v[-1] for k, v in urllib.parse.parse_qs(body.decode()).items()}
        grant_type = form.get("grant_type")
        if grant_type == "refresh_token":
            return self._refresh(form)
        if grant_type == JWT_BEARER:
            return self._jwt_bearer(form)
        return _oauth_error("unsupported_grant_type", f"Invalid grant_type: {grant_type}")

    def _refresh(self, form: dict[str, str]) -> Response:
        if not form.get("client_id"):
            return _oauth_error("invalid_request", "Could not determine client ID from request.")
        with self._lock:
            grant = self._grants.get(form.get("refresh_token", ""))
            if grant is None:
                return _oauth_error("invalid_grant", "Bad Request")
            if grant.revoked:
                return _oauth_error("invalid_grant", "Token has been expired or revoked.")
            user = grant.email
        return self._issue(user, form.get("scope") or CALENDAR_SCOPE)

    def _jwt_bearer(self, form: dict[str, str]) -> Response:
        claims = _jwt_claims(form.get("assertion", ""))
        if claims is None:
            return _oauth_error("invalid_grant", "Invalid JWT.")
        issuer = str(claims.get("iss", "")).lower()
        subject = str(claims.get("sub") or issuer).lower()
        with self._lock:
            if issuer not in self._service_accounts:
                return _oauth_error("invalid_grant", "Invalid JWT Signature.")
            if subject != issuer and subject not in self._store.calendars:
                return _oauth_error("invalid_grant", "Invalid email or User ID")
            if subject in self._undelegated:
                return _oauth_error(
                    "unauthorized_client",
                    "Client is unauthorized to retrieve access tokens using this method, or client not "
                    "authorized for any of the scopes requested.",
                )
        return self._issue(subject, str(claims.get("scope") or CALENDAR_SCOPE))

    def _issue(self, user: str, scope: str) -> Response:
        token = self.access_token(user)
        lifetime = int(ACCESS_TOKEN_LIFETIME.total_seconds())
        return Response.json(
            200, {"access_token": token, "expires_in": lifetime, "scope": scope, "token_type": "Bearer"}
        )


def _local_iso(moment: datetime, tz_name: str) -> str:
    from zoneinfo import ZoneInfo

    return moment.astimezone(ZoneInfo(tz_name)).isoformat()


def _json_body(raw: bytes) -> Json:
    if not raw.strip():
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        raise ApiError(400, "parseError", "Parse Error") from None
    if not isinstance(parsed, dict):
        raise ApiError(400, "parseError", "Parse Error")
    return parsed


def _event_response(event: Json) -> Response:
    return Response.json(200, event, {"ETag": str(event.get("etag", ""))})


def _oauth_error(code: str, description: str) -> Response:
    status = 401 if code == "invalid_client" else 400
    return Response.json(status, {"error": code, "error_description": description})


def _jwt_claims(assertion: str) -> dict[str, Any] | None:
    """The JWT's payload. The fake trusts the signature: it has no way to check the key anyway."""
    pieces = assertion.split(".")
    if len(pieces) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(pieces[1] + "=" * (-len(pieces[1]) % 4)))
    except ValueError:
        return None
    return claims if isinstance(claims, dict) else None


def _parse_http_request(payload: bytes) -> tuple[str, str, dict[str, str], bytes]:
    """An `application/http` batch part: request line, headers, blank line, body."""
    text = payload.replace(b"\r\n", b"\n")
    head, _, body = text.partition(b"\n\n")
    lines = head.decode("utf-8", "replace").split("\n")
    method, target = ([*lines[0].split(" "), "", ""])[:2]
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return method.upper(), target, headers, body


def _batch_part(boundary: str, content_id: str, response: Response) -> str:
    inner_id = content_id[1:-1] if content_id.startswith("<") and content_id.endswith(">") else content_id
    reason = HTTPStatus(response.status).phrase
    header_lines = "".join(f"{name}: {value}\r\n" for name, value in response.headers.items())
    text = response.body.decode()
    return (
        f"--{boundary}\r\n"
        "Content-Type: application/http\r\n"
        f"Content-ID: <response-{inner_id}>\r\n"
        "\r\n"
        f"HTTP/1.1 {response.status} {reason}\r\n"
        f"{header_lines}"
        f"Content-Length: {len(response.body)}\r\n"
        "\r\n"
        f"{text}\r\n"
    )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeGoogle/1"
    timeout = 30
    # Without it, headers and body leave in two segments and delayed ACKs cost ~40 ms per request.
    disable_nagle_algorithm = True

    def _handle(self) -> None:
        fake: FakeGoogle = self.server.fake  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        result = fake.handle_http(self.command, self.path, headers, body)
        if isinstance(result, Fault):
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        try:
            self.send_response(result.status)
            for name, value in result.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(result.body)))
            self.end_headers()
            if result.body:
                self.wfile.write(result.body)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up waiting (a slow-answer fault): nobody is left to answer.
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the request log on the fake is what tests read."""


def running(clock: Callable[[], datetime] | None = None) -> Iterator[FakeGoogle]:
    """A started fake for a pytest fixture: `yield from running()`."""
    with FakeGoogle(clock) as fake:
        yield fake

"""The HTTP side of the service: the feed at its secret URL, /healthz and /readyz, on Starlette + uvicorn.

The app only reads: the feed bytes come from a FeedCache the scheduler fills, the heartbeat from a
HealthState the scheduler beats, and readiness from a callable the service supplies. Nothing here
renders, queries a calendar back end, or learns the token other than through the `token` callable.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, ClassVar

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from daemon.feed_cache import FeedCache, FeedSnapshot
from daemon.secret_token import TokenFileError, read_token
from schedules.events import require_utc

log = logging.getLogger(__name__)
access_log = logging.getLogger("circleback.access")

FEED_MEDIA_TYPE = "text/calendar; charset=utf-8"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
RETRY_AFTER_SECONDS = 30
FEED_PREFIX = "/feed/"
FEED_SUFFIX = ".ics"
REDACTED_FEED_PATH = "/feed/<redacted>.ics"

Readiness = Callable[[], tuple[bool, dict[str, object]]]


# --------------------------------------------------------------------------------------------- token


class TokenFile:
    """The current feed token, re-read when the file changes so `circleback feed rotate` takes effect
    without a restart. Calling it costs one stat(); a file that turns unreadable keeps the last good
    token in force (and says so once in the log) rather than taking the feed down."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self._token = read_token(self.path)
        self._warned = False

    def _stat(self) -> tuple[int, int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        # The inode catches an atomic replace even within one mtime tick.
        return (st.st_mtime_ns, st.st_ino, st.st_size, st.st_ctime_ns)

    def __call__(self) -> str:
        stamp = self._stat()
        if stamp == self._stamp:
            return self._token
        with self._lock:
            if stamp != self._stamp:
                try:
                    self._token = read_token(self.path)
                    self._warned = False
                    log.info("feed token file %s changed; the new token is in force", self.path)
                except (OSError, TokenFileError) as exc:
                    if not self._warned:
                        log.warning("feed token file unusable, keeping the previous token: %s", exc)
                        self._warned = True
                self._stamp = stamp
            return self._token


# -------------------------------------------------------------------------------------------- health


def _utcnow() -> datetime:
    return datetime.now(UTC)


class HealthState:
    """What /healthz and /readyz report. The scheduler calls `beat(now)` from its jobs; `readiness` is
    the service's own check (database, migrations, per-calendar status) and must not call Google."""

    def __init__(
        self,
        *,
        max_age: timedelta,
        readiness: Readiness,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        if max_age <= timedelta(0):
            raise ValueError("HealthState max_age must be positive")
        self.max_age = max_age
        self.readiness = readiness
        self._clock = clock
        self._last: datetime | None = None

    def beat(self, now: datetime) -> None:
        self._last = require_utc(now, "HealthState.beat now")

    @property
    def last_heartbeat(self) -> datetime | None:
        return self._last

    def liveness(self) -> tuple[bool, dict[str, object]]:
        last = self._last
        if last is None:
            return False, {"status": "starting", "last_heartbeat": None, "age_seconds": None}
        age = max(0.0, (self._clock() - last).total_seconds())
        ok = age <= self.max_age.total_seconds()
        return ok, {
            "status": "ok" if ok else "stale",
            "last_heartbeat": last.isoformat(),
            "age_seconds": round(age, 3),
        }


# ----------------------------------------------------------------------------------- conditional GET

_ETAG_MEMBER = re.compile(r'\s*(?:W/)?(?:"([^"]*)"|([^\s,"]+))\s*(?:,|$)')


def etag_list_matches(header: str, etag: str) -> bool:
    """If-None-Match semantics (RFC 9110 13.1.2): '*' or any member equal under weak comparison, i.e.
    the opaque tags are compared with any W/ prefix ignored. Unquoted members from sloppy clients are
    accepted; they cannot match anything else by accident because our tags are hex digests."""
    if header.strip() == "*":
        return True
    ours = etag.removeprefix("W/").strip('"')
    for m in _ETAG_MEMBER.finditer(header):
        value = m.group(1) if m.group(1) is not None else m.group(2)
        if value == ours:
            return True
    return False


def _parse_http_date(value: str) -> datetime | None:
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)  # "-0000" parses naive; HTTP dates are GMT anyway
    return parsed.astimezone(UTC)


def not_modified(if_none_match: str | None, if_modified_since: str | None, snap: FeedSnapshot) -> bool:
    """RFC 9110 13.2.2: If-None-Match decides when present; If-Modified-Since only in its absence."""
    if if_none_match is not None:
        return etag_list_matches(if_none_match, snap.etag)
    if if_modified_since is None or if_modified_since.count(",") > 1:
        return False  # absent, or a list rather than one HTTP-date: ignored (RFC 9110 13.1.3)
    since = _parse_http_date(if_modified_since)
    return since is not None and snap.last_modified <= since


def _conditional_headers(raw: list[tuple[bytes, bytes]]) -> tuple[str | None, str | None]:
    inm: str | None = None
    ims: str | None = None
    for name, value in raw:
        if name == b"if-none-match":
            # Repeated list-valued fields combine into one list (RFC 9110 5.3).
            text = value.decode("latin-1")
            inm = text if inm is None else f"{inm}, {text}"
        elif name == b"if-modified-since":
            ims = value.decode("latin-1")
    return inm, ims


# ----------------------------------------------------------------------------------------------- app


def _json(payload: dict[str, object], status: int) -> Response:
    body = json.dumps(payload, default=str, separators=(",", ":")) + "\n"
    return Response(
        body, status_code=status, media_type="application/json", headers={"Cache-Control": "no-store"}
    )


def _not_found() -> Response:
    # Byte-for-byte Starlette's own 404, so a wrong token looks exactly like a path that does not exist.
    return PlainTextResponse("Not Found", status_code=404)


class FeedEndpoint:
    """GET/HEAD /feed/{token}.ics as a plain ASGI app, for requests whose path starts with /feed/.

    This is the one hot path (every subscribed calendar app polls it), so it skips Starlette's router
    and Request/Response objects: the headers for the current snapshot are built once per feed change
    and a request costs a token comparison, a header scan and two sends. Anything under /feed/ that is
    not a well-formed feed URL gets the same 404 as a wrong token."""

    def __init__(self, cache: FeedCache, token: Callable[[], str]) -> None:
        self.cache = cache
        self.token = token
        self.cache_control = f"private, max-age={cache.max_age}".encode("ascii")
        self._prepared: tuple[FeedSnapshot, list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]] | None = (
            None
        )

    def _headers_for(self, snap: FeedSnapshot) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
        prepared = self._prepared
        if prepared is None or prepared[0] is not snap:
            etag = snap.etag.encode("ascii")
            full = [
                (b"content-type", FEED_MEDIA_TYPE.encode("ascii")),
                (b"content-length", str(len(snap.body)).encode("ascii")),
                (b"etag", etag),
                (b"last-modified", snap.last_modified_http.encode("ascii")),
                (b"cache-control", self.cache_control),
                (b"content-disposition", b'inline; filename="circleback.ics"'),
                (b"x-content-type-options", b"nosniff"),
            ]
            # 304 carries the validators and caching fields a 200 would have (RFC 9110 15.4.5), no body.
            prepared = (snap, full, [(b"etag", etag), (b"cache-control", self.cache_control)])
            self._prepared = prepared
        return prepared[1], prepared[2]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        given = path[len(FEED_PREFIX) : -len(FEED_SUFFIX)]
        if not path.endswith(FEED_SUFFIX) or not given or "/" in given:
            await _not_found()(scope, receive, send)
            return
        if scope["method"] not in ("GET", "HEAD"):
            await PlainTextResponse("Method Not Allowed", 405, headers={"Allow": "GET, HEAD"})(
                scope, receive, send
            )
            return
        if not hmac.compare_digest(given.encode("utf-8", "replace"), self.token().encode("utf-8")):
            await _not_found()(scope, receive, send)
            return
        snap = self.cache.snapshot()
        if snap is None:
            await PlainTextResponse(
                "The feed has not been rendered yet; try again shortly.\n",
                status_code=503,
                headers={"Retry-After": str(RETRY_AFTER_SECONDS), "Cache-Control": "no-store"},
            )(scope, receive, send)
            return
        full, unchanged = self._headers_for(snap)
        if not_modified(*_conditional_headers(scope["headers"]), snap):
            await send({"type": "http.response.start", "status": 304, "headers": unchanged})
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.start", "status": 200, "headers": full})
        body = b"" if scope["method"] == "HEAD" else snap.body
        await send({"type": "http.response.body", "body": body})


def build_app(*, cache: FeedCache, token: Callable[[], str], health: HealthState) -> Starlette:
    async def healthz(request: Request) -> Response:
        ok, payload = health.liveness()
        return _json(payload, 200 if ok else 503)

    async def readyz(request: Request) -> Response:
        try:
            ok, details = await run_in_threadpool(health.readiness)
        except Exception as exc:
            # The exception text may carry connection strings; log it here, answer with its type only.
            log.warning("readiness check failed", exc_info=True)
            return _json({"status": "unavailable", "details": {"error": type(exc).__name__}}, 503)
        return _json({"status": "ok" if ok else "unavailable", "details": details}, 200 if ok else 503)

    routes = [
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/readyz", readyz, methods=["GET", "HEAD"]),
    ]
    feed = FeedEndpoint(cache, token)
    # The feed is dispatched ahead of the router (see FeedEndpoint); the access log wraps both.
    return Starlette(routes=routes, middleware=[Middleware(AccessLog), Middleware(FeedDispatch, feed=feed)])


class FeedDispatch:
    """Sends /feed/... to the feed endpoint and everything else on to the router."""

    def __init__(self, app: ASGIApp, feed: FeedEndpoint) -> None:
        self.app = app
        self.feed = feed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(FEED_PREFIX):
            await self.feed(scope, receive, send)
        else:
            await self.app(scope, receive, send)


# ---------------------------------------------------------------------------------------- access log


# Paths that carry nothing secret and are logged as they are; everything else is logged as a category,
# never verbatim: a feed URL typed with a different case, an extra slash, a dot segment or a stray
# suffix would otherwise print the token, and any other path may be a pasted secret too.
LOGGABLE_PATHS = frozenset({"/", "/healthz", "/readyz", "/favicon.ico", "/robots.txt"})
OTHER_PATH = "<other path>"
_FEED_LIKE = re.compile(r"^/+feed(?:/|$)", re.IGNORECASE)


def redact_path(path: str) -> str:
    if path in LOGGABLE_PATHS:
        return path
    if _FEED_LIKE.match(path):
        return REDACTED_FEED_PATH
    return OTHER_PATH


class AccessLog:
    """One log line per request, with the path reduced to what `redact_path` lets through and the query
    string dropped (uvicorn's own access log is switched off because it would print both)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the client gets if the app raises before starting a response
        started = time.perf_counter()

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            level = logging.WARNING if status >= 500 else logging.INFO
            if access_log.isEnabledFor(level):
                client = scope.get("client")
                access_log.log(
                    level,
                    '%s "%s %s HTTP/%s" %d %.1fms',
                    client[0] if client else "-",
                    scope["method"],
                    redact_path(scope["path"]),
                    scope.get("http_version", "1.1"),
                    status,
                    (time.perf_counter() - started) * 1000,
                )


# -------------------------------------------------------------------------------------------- server


class EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handling: the service owns SIGTERM/SIGINT and stops the server by
    setting `should_exit`. uvicorn 0.54 already skips `capture_signals` off the main thread, but on the
    main thread it would replace the service's handlers and re-raise the signal on exit; overriding it
    makes the server safe to run from either."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass(frozen=True)
class HttpLimits:
    """What one client may hold of the server. Calendar apps send one small GET and read the answer, so
    these are far above what they need and far below what exhausts the process's descriptors."""

    # Seconds an idle keep-alive connection stays open after a response (uvicorn's timeout_keep_alive).
    keep_alive: int = 5
    # Seconds from the moment the server waits for a request (connection accepted, or previous response
    # sent) until the whole request head must have arrived; a slow or silent client is then closed.
    header_timeout: float = 10.0
    # Bytes of request line plus headers; more is answered 431 and closed. 16 KiB, like h11 and Node.
    max_header_bytes: int = 16 * 1024
    # Open connections at most, lowered to fit the descriptor limit (see connection_cap). When a new
    # connection would exceed it, the connection that has waited longest without sending a request is
    # closed, so a flood of idle sockets cannot lock out /healthz or a calendar app.
    max_connections: int = 256


# Descriptors kept for everything that is not an HTTP client: the database, calendar fetches, logs.
FD_RESERVE = 64
MIN_CONNECTIONS = 8
EVICTION_WARN_EVERY = 60.0


def connection_cap(wanted: int) -> int:
    """`wanted`, lowered so that the connections plus FD_RESERVE fit under RLIMIT_NOFILE."""
    try:
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return wanted
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(MIN_CONNECTIONS, min(wanted, soft - FD_RESERVE))


def _plain_response(status: str, body: str) -> bytes:
    data = body.encode("ascii")
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(data)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + data


class _GuardedProtocol:
    """Mixed in before uvicorn's HTTP protocol class (see `guarded_protocol`): a deadline and a size limit
    for the request head, and the connection cap. uvicorn by itself arms its keep-alive timer only after
    a response, and cancels it at the first byte of the next request, so a client that connects and says
    nothing, or sends a header a byte at a time, holds its connection (and a descriptor) for ever; and
    httptools accepts a header of any size."""

    limits: ClassVar[HttpLimits]
    cap: ClassVar[int]
    # Connections waiting for a request head, oldest first (a dict is an ordered set); one per server.
    waiting: ClassVar[dict[_GuardedProtocol, None]]
    evicted: ClassVar[int] = 0
    warned_at: ClassVar[float] = -EVICTION_WARN_EVERY

    # Provided by uvicorn's protocol class.
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    connections: set[Any]
    cycle: Any
    client: tuple[str, int] | None

    _head_timer: asyncio.TimerHandle | None = None
    _head_bytes = 0
    _refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._await_head()
        self._keep_under_cap()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self in self.waiting:
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_header_bytes:
                self._refuse("431 Request Header Fields Too Large", "request header too large")
                return
        before = self.cycle
        super().data_received(data)  # type: ignore[misc]
        if self.cycle is not before:
            self._head_arrived()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
            self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_arrived()
        super().connection_lost(exc)  # type: ignore[misc]

    def _await_head(self) -> None:
        self._head_arrived()
        self._head_bytes = 0
        self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_timed_out)
        self.waiting[self] = None

    def _head_arrived(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self.waiting.pop(self, None)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._head_bytes:
            self._refuse("408 Request Timeout", "request header not received in time")
        else:
            self._close(abort=True)  # nothing said: nothing to answer, the descriptor is freed at once

    def _refuse(self, status: str, reason: str) -> None:
        self._refused = True
        client = self.client[0] if self.client else "-"
        access_log.info('%s "- - -" %s (%s)', client, status.split()[0], reason)
        if not self.transport.is_closing():
            self.transport.write(_plain_response(status, reason + "\n"))
        self._close()

    def _close(self, *, abort: bool = False) -> None:
        self._head_arrived()
        if abort:
            self.transport.abort()  # does not wait for a client that reads nothing to take what is queued
        elif not self.transport.is_closing():
            self.transport.close()

    def _keep_under_cap(self) -> None:
        open_now = sum(1 for c in self.connections if not c.transport.is_closing())
        if open_now <= self.cap:
            return
        oldest = next((c for c in self.waiting if c is not self), None)
        (oldest if oldest is not None else self)._close(abort=True)
        self._note_eviction(open_now, idle=oldest is not None)

    @classmethod
    def _note_eviction(cls, open_now: int, *, idle: bool) -> None:
        # A flood evicts a connection per new one: say so once a minute, with the count, not every time.
        cls.evicted += 1
        now = time.monotonic()
        if now - cls.warned_at < EVICTION_WARN_EVERY:
            return
        log.warning(
            "%d connections open (limit %d): closing the %s (%d closed since the last message)",
            open_now,
            cls.cap,
            "one idle longest" if idle else "new one, none is idle",
            cls.evicted,
        )
        cls.warned_at, cls.evicted = now, 0


def guarded_protocol(base: type[asyncio.Protocol], limits: HttpLimits) -> type[asyncio.Protocol]:
    """uvicorn's protocol class `base` with _GuardedProtocol's limits; one class per server, so the
    list of waiting connections is the server's own."""
    return type(
        f"Guarded{base.__name__}",
        (_GuardedProtocol, base),
        {"limits": limits, "cap": connection_cap(limits.max_connections), "waiting": {}},
    )


def _protocol_base(http: str) -> type[asyncio.Protocol]:
    if http == "h11":
        from uvicorn.protocols.http.h11_impl import H11Protocol

        return H11Protocol
    if http in ("auto", "httptools"):
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        return HttpToolsProtocol
    raise ValueError(f"unknown HTTP implementation {http!r} (auto, httptools or h11)")


def serve(
    app: ASGIApp,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    http: str = "auto",
    loop: str = "auto",
    limits: HttpLimits | None = None,
) -> uvicorn.Server:
    """A uvicorn server for `app`, to be run with `start_in_thread` (or `server.run()`)."""
    limits = limits or HttpLimits()
    protocol = guarded_protocol(_protocol_base(http), limits)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol,
        loop=loop,
        ws="none",  # nothing here speaks WebSocket; an upgrade request is answered as plain HTTP
        log_config=None,  # the service configures logging; uvicorn must not replace it
        access_log=False,  # AccessLog logs instead, with the token redacted
        lifespan="off",
        server_header=False,
        timeout_graceful_shutdown=3,  # SIGTERM must finish within a few seconds
        timeout_keep_alive=limits.keep_alive,
        # The cap above closes idle connections first; uvicorn's own limit (it answers 503 once this
        # many connections or requests are in flight) is a backstop for requests whose client has left.
        limit_concurrency=connection_cap(limits.max_connections) + 1,
        h11_max_incomplete_event_size=limits.max_header_bytes,
    )
    return EmbeddedServer(config)


@dataclass(frozen=True)
class RunningServer:
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def port(self) -> int:
        return bound_port(self.server)

    def stop(self, timeout: float = 5.0) -> None:
        stop_server(self.server, self.thread, timeout)


def start_in_thread(server: uvicorn.Server, *, timeout: float = 10.0) -> RunningServer:
    """Run `server` in a daemon thread and return once it is listening (or raise if it cannot)."""

    def run() -> None:
        # uvicorn reports a failed bind with sys.exit(); keep that inside this thread, the caller hears
        # about it below.
        with contextlib.suppress(SystemExit):
            server.run()

    thread = threading.Thread(target=run, name="circleback-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive():
            cfg = server.config
            raise RuntimeError(
                f"the HTTP server could not listen on {cfg.host}:{cfg.port} (see the log above)"
            )
        if time.monotonic() > deadline:
            server.should_exit = True
            raise TimeoutError(f"the HTTP server did not start within {timeout:g}s")
        time.sleep(0.01)
    return RunningServer(server, thread)


def bound_port(server: uvicorn.Server) -> int:
    """The port actually bound (useful with port 0)."""
    for srv in getattr(server, "servers", []):
        for sock in srv.sockets or ():
            return int(sock.getsockname()[1])
    raise RuntimeError("the HTTP server is not listening")


def stop_server(server: uvicorn.Server, thread: threading.Thread, timeout: float = 5.0) -> None:
    server.should_exit = True
    thread.join(timeout)
    if thread.is_alive():
        server.force_exit = True  # abandon connections still open after the grace period
        thread.join(2.0)

"""Fetching sources: a real HTTP server on 127.0.0.1 (conditional GET, 304, slow, 500, HTML), files, cache."""

from __future__ import annotations

import json
import socket
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from connectors.base import ConnectorError, Reader
from connectors.fetch import Fetcher, http_url, redact
from connectors.ics_source import IcsSource, content_key
from schedules.busy import busy_time
from schedules.events import Interval, PartStat

SECRET = "s3cr3t-t0k3n"
CALENDAR_PATH = f"/calendar/ical/ada%40example.com/private-{SECRET}/basic.ics"
WINDOW = Interval(datetime(2025, 1, 6, tzinfo=UTC), datetime(2025, 2, 10, tzinfo=UTC))
LAST_MODIFIED = "Wed, 01 Jan 2025 10:00:00 GMT"


def ics(*summaries: str, stamp: str = "20250101T000000Z") -> bytes:
    events = "".join(
        f"BEGIN:VEVENT\r\nUID:e{i}@example.com\r\nDTSTAMP:{stamp}\r\nDTSTART:2025010{i + 7}T100000Z\r\n"
        f"DTEND:2025010{i + 7}T110000Z\r\nSUMMARY:{summary}\r\nEND:VEVENT\r\n"
        for i, summary in enumerate(summaries)
    )
    return f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\n{events}END:VCALENDAR\r\n".encode()


@dataclass
class State:
    body: bytes = field(default_factory=lambda: ics("Standup", "Coffee with Grace"))
    etag: str | None = '"v1"'
    last_modified: str | None = LAST_MODIFIED
    calendar_status: int = 200
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    state: State

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that gave up (the timeout tests) breaks the pipe; that is expected, not a failure."""


class Handler(BaseHTTPRequestHandler):
    server: Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        state = self.server.state
        state.requests.append((self.path, dict(self.headers)))
        route = self.path.split("?", 1)[0]
        if route == "/slow":
            time.sleep(1.0)
            self._send(200, state.body)
        elif route == "/drip":
            self._drip(state.body)
        elif route == "/broken":
            self._send(500, b"oops")
        elif route == "/gone":
            self._send(404, b"not here")
        elif route == "/login":
            page = b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>Sign in</body></html>\n"
            self._send(200, page, content_type="text/html; charset=utf-8")
        elif route == "/big":
            self._send(200, state.body + b"X-PADDING:" + b"x" * 5000 + b"\r\n")
        elif route in (CALENDAR_PATH, "/lastmod.ics"):
            self._calendar(state, etag=state.etag if route == CALENDAR_PATH else None)
        else:
            self._send(404, b"no route")

    def _calendar(self, state: State, etag: str | None) -> None:
        if state.calendar_status != 200:
            self._send(state.calendar_status, b"failure")
            return
        if etag and self.headers.get("If-None-Match") == etag:
            self._send(304, b"")
            return
        if not etag and state.last_modified and self.headers.get("If-Modified-Since") == state.last_modified:
            self._send(304, b"")
            return
        headers = {"Last-Modified": state.last_modified or ""}
        if etag:
            headers["ETag"] = etag
        self._send(200, state.body, headers=headers)

    def _send(
        self,
        status: int,
        body: bytes,
        *,
        content_type: str = "text/calendar; charset=utf-8",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            if value:
                self.send_header(name, value)
        if status != 304:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if status != 304:
            self.wfile.write(body)

    def _drip(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/calendar")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        step = len(body) // 6 + 1
        for start in range(0, len(body), step):
            self.wfile.write(body[start : start + step])
            self.wfile.flush()
            time.sleep(0.1)


@pytest.fixture
def server() -> Iterator[Server]:
    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.state = State()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def url(server: Server, path: str = CALENDAR_PATH) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


def shown(server: Server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/…"


def fetch_error(fetcher: Fetcher, location: str) -> ConnectorError:
    with pytest.raises(ConnectorError) as caught:
        fetcher.fetch("work", location)
    assert caught.value.calendar == "work"
    assert SECRET not in str(caught.value)
    return caught.value


# --- Fetcher over HTTP ---------------------------------------------------------------


def test_conditional_get_answers_304_with_the_cached_copy(server: Server, tmp_path: Path) -> None:
    fetcher = Fetcher(tmp_path / "cache", timeout=5)
    first = fetcher.fetch("work", url(server))
    assert (first.from_cache, first.not_modified, first.etag) == (False, False, '"v1"')
    assert first.last_modified == LAST_MODIFIED
    assert "If-None-Match" not in server.state.requests[0][1]

    second = fetcher.fetch("work", url(server))
    headers = server.state.requests[1][1]
    assert headers["If-None-Match"] == '"v1"'
    assert headers["If-Modified-Since"] == LAST_MODIFIED
    assert (second.from_cache, second.not_modified) == (True, True)
    assert second.data == first.data == server.state.body


def test_if_modified_since_alone_is_enough(server: Server, tmp_path: Path) -> None:
    fetcher = Fetcher(tmp_path / "cache", timeout=5)
    fetcher.fetch("work", url(server, "/lastmod.ics"))
    second = fetcher.fetch("work", url(server, "/lastmod.ics"))
    assert "If-None-Match" not in server.state.requests[1][1]
    assert server.state.requests[1][1]["If-Modified-Since"] == LAST_MODIFIED
    assert second.not_modified and second.data == server.state.body


def test_new_content_replaces_the_copy(server: Server, tmp_path: Path) -> None:
    fetcher = Fetcher(tmp_path / "cache", timeout=5)
    fetcher.fetch("work", url(server))
    server.state.body, server.state.etag = ics("Standup", "Board meeting"), '"v2"'
    changed = fetcher.fetch("work", url(server))
    assert (changed.from_cache, changed.not_modified, changed.etag) == (False, False, '"v2"')
    cached = fetcher.cached("work", url(server))
    assert cached is not None and cached.data == server.state.body and cached.etag == '"v2"'


def test_timeout(server: Server, tmp_path: Path) -> None:
    fetcher = Fetcher(tmp_path / "cache", timeout=0.3)
    started = time.monotonic()
    error = fetch_error(fetcher, url(server, "/slow"))
    assert error.reason == f"timed out after 0.3 s fetching {shown(server)}"
    assert time.monotonic() - started < 0.9


def test_a_server_dripping_bytes_is_held_to_the_whole_timeout(server: Server, tmp_path: Path) -> None:
    error = fetch_error(Fetcher(tmp_path / "cache", timeout=0.25), url(server, "/drip"))
    assert error.reason == f"timed out after 0.25 s fetching {shown(server)}"


def test_server_error(server: Server, tmp_path: Path) -> None:
    error = fetch_error(Fetcher(tmp_path / "cache", timeout=5), url(server, "/broken"))
    assert error.reason == f"HTTP 500 Internal Server Error from {shown(server)}"
    assert error.retryable


def test_not_found_is_not_worth_retrying(server: Server, tmp_path: Path) -> None:
    error = fetch_error(Fetcher(tmp_path / "cache", timeout=5), url(server, "/gone"))
    assert error.reason == f"HTTP 404 Not Found from {shown(server)}"
    assert not error.retryable


def test_an_html_page_is_not_a_calendar(server: Server, tmp_path: Path) -> None:
    error = fetch_error(Fetcher(tmp_path / "cache", timeout=5), url(server, "/login?token=" + SECRET))
    assert error.reason == f"{shown(server)} returned HTML, not a calendar"
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())


def test_a_response_larger_than_the_limit_is_refused(server: Server, tmp_path: Path) -> None:
    error = fetch_error(Fetcher(tmp_path / "cache", timeout=5, max_bytes=2000), url(server, "/big"))
    assert error.reason == f"{shown(server)} sent more than 2000 bytes"


def test_connection_refused(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error = fetch_error(
        Fetcher(tmp_path / "cache", timeout=5), f"http://127.0.0.1:{port}/private-{SECRET}.ics"
    )
    assert error.reason.startswith(f"cannot connect to http://127.0.0.1:{port}/…: ")


@pytest.mark.parametrize(
    "location", ["http://", "webcal:///path", "https://:99999/x", "http://127.0.0.1:1/a\x00b"]
)
def test_invalid_addresses(location: str, tmp_path: Path) -> None:
    error = fetch_error(Fetcher(tmp_path / "cache", timeout=5), location)
    assert error.reason.endswith(" is not a valid address")
    assert not error.retryable


def test_cached_copies_are_private(server: Server, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    Fetcher(cache, timeout=5).fetch("work", url(server))
    files = sorted(cache.iterdir())
    assert [f.suffix for f in files] == [".ics", ".json"]
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    meta = json.loads(files[1].read_text())
    assert meta["location"] == shown(server) and meta["etag"] == '"v1"'
    assert SECRET not in files[1].read_text()
    assert not any(f.name.startswith(".") for f in files)  # no temporary file left behind


# --- locations -----------------------------------------------------------------------


def test_webcal_means_https() -> None:
    assert (
        http_url("webcal://p01-caldav.icloud.com/published/2/abc")
        == "https://p01-caldav.icloud.com/published/2/abc"
    )
    assert http_url("WEBCALS://example.com/x.ics?t=1") == "https://example.com/x.ics?t=1"
    assert http_url("http://127.0.0.1:8080/x.ics") == "http://127.0.0.1:8080/x.ics"
    assert http_url("/home/ada/work.ics") is None
    assert http_url("file:///home/ada/work.ics") is None


def test_redact_hides_everything_after_the_host() -> None:
    google = f"https://calendar.google.com/calendar/ical/ada%40example.com/private-{SECRET}/basic.ics"
    assert redact(google) == "https://calendar.google.com/…"
    assert redact(f"webcal://user:{SECRET}@cal.example.com:8443/") == "webcal://cal.example.com:8443"
    assert (
        redact(f"https://outlook.office365.com/owa/calendar?key={SECRET}")
        == "https://outlook.office365.com/…"
    )
    assert redact("/home/ada/calendar.ics") == "/home/ada/calendar.ics"
    assert redact("file:///home/ada/my%20calendar.ics") == "/home/ada/my calendar.ics"


def test_local_paths_and_file_urls(tmp_path: Path) -> None:
    path = tmp_path / "my calendar.ics"
    path.write_bytes(ics("Standup"))
    fetcher = Fetcher(tmp_path / "cache", timeout=5)
    assert fetcher.fetch("mine", str(path)).data == ics("Standup")
    again = fetcher.fetch("mine", path.as_uri())
    assert (again.from_cache, again.data) == (False, ics("Standup"))
    assert fetcher.fetch("mine", str(path)).not_modified  # same bytes as the last good copy

    error = fetch_error(fetcher, str(tmp_path / "missing.ics"))
    assert error.reason == f"{tmp_path / 'missing.ics'}: no such file"
    (tmp_path / "page.ics").write_text("<html><body>Sign in</body></html>")
    assert fetch_error(fetcher, str(tmp_path / "page.ics")).reason.endswith("is an HTML page, not a calendar")
    assert fetch_error(fetcher, "ftp://example.com/x.ics").reason == "unsupported address scheme 'ftp'"


# --- IcsSource -----------------------------------------------------------------------


def test_an_unchanged_source_is_not_parsed_again(server: Server, tmp_path: Path) -> None:
    source = IcsSource("work", url(server), cache_dir=tmp_path / "cache", timeout=5)
    assert isinstance(source, Reader)
    first = source.read(WINDOW)
    assert [o.summary for o in first.observations] == ["Standup", "Coffee with Grace"]
    second = source.read(WINDOW)
    assert server.state.requests[-1][1]["If-None-Match"] == '"v1"'  # answered 304
    assert (second.observations, second.warnings) == (first.observations, first.warnings)
    assert second.state is None and source.parses == 1  # nothing new to keep

    # Google rewrites DTSTAMP on every export; nothing a read depends on changed.
    server.state.body, server.state.etag = (
        ics("Standup", "Coffee with Grace", stamp="20250301T000000Z"),
        '"v2"',
    )
    third = source.read(WINDOW)
    assert (third.observations, third.warnings) == (first.observations, first.warnings)
    assert source.parses == 1
    # The same kept read, under the new bytes' exact hash, so that next time they are not hashed again.
    assert third.state is not None and first.state is not None
    assert {name for name in third.state if third.state[name] != first.state[name]} == {"ics.sha256"}

    server.state.body, server.state.etag = ics("Standup", "Board meeting"), '"v3"'
    assert [o.summary for o in source.read(WINDOW).observations] == ["Standup", "Board meeting"]
    assert source.parses == 2


def test_a_failing_source_falls_back_to_the_last_good_copy(server: Server, tmp_path: Path) -> None:
    source = IcsSource("work", url(server), cache_dir=tmp_path / "cache", timeout=5)
    good = source.read(WINDOW)
    server.state.calendar_status = 500
    # A new process, as after a restart: only the cache directory remembers the good copy.
    restarted = IcsSource("work", url(server), cache_dir=tmp_path / "cache", timeout=5)
    fallback = restarted.read(WINDOW)
    assert fallback.observations == good.observations and fallback.busy == good.busy
    (warning,) = fallback.warnings
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert warning.startswith(
        f"work: HTTP 500 Internal Server Error from {shown(server)}; "
        f"using the last good copy fetched {today} "
    )
    assert SECRET not in warning and SECRET not in repr(restarted)
    # Usable data, but the calendar is failing: the daemon backs off and reports it.
    assert good.stale is None
    assert fallback.stale == f"HTTP 500 Internal Server Error from {shown(server)}"


def test_no_good_copy_at_all_is_an_error(server: Server, tmp_path: Path) -> None:
    server.state.calendar_status = 503
    source = IcsSource("work", url(server), cache_dir=tmp_path / "cache", timeout=5)
    with pytest.raises(ConnectorError) as caught:
        source.read(WINDOW)
    assert (
        caught.value.reason
        == f"HTTP 503 Service Unavailable from {shown(server)}; no earlier copy to fall back on"
    )
    assert caught.value.retryable


def test_a_deleted_local_file_falls_back_too(tmp_path: Path) -> None:
    path = tmp_path / "work.ics"
    path.write_bytes(ics("Standup"))
    source = IcsSource("work", str(path), cache_dir=tmp_path / "cache")
    assert len(source.read(WINDOW).observations) == 1
    path.unlink()
    snapshot = source.read(WINDOW)
    assert len(snapshot.observations) == 1
    assert snapshot.warnings[0].startswith(f"work: {path}: no such file; using the last good copy fetched ")


def test_source_options_reach_the_parser(tmp_path: Path) -> None:
    path = tmp_path / "work.ics"
    body = ics("Standup").replace(b"DTSTART:20250107T100000Z", b"DTSTART:20250107T100000")
    body = body.replace(
        b"DTEND:20250107T110000Z", b"DTEND:20250107T110000\r\nATTENDEE;PARTSTAT=DECLINED:mailto:a@x.org"
    )
    path.write_bytes(body)
    berlin = IcsSource("work", str(path), cache_dir=tmp_path / "c1", default_tz="Europe/Berlin")
    assert berlin.read(WINDOW).observations[0].start == datetime(2025, 1, 7, 9, tzinfo=UTC)
    # The reader translates: the owner's answer is observed; the core's busy rule then frees the time.
    (seen,) = IcsSource("work", str(path), cache_dir=tmp_path / "c2").read(WINDOW).observations
    assert seen.attendees[0].partstat is PartStat.DECLINED
    assert busy_time([seen], ["A@X.org"]) == () and busy_time([seen]) != ()
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        IcsSource("work", str(path), cache_dir=tmp_path, default_tz="Mars/Olympus")


def test_content_key_ignores_only_dtstamp() -> None:
    assert content_key(ics("A", stamp="20250101T000000Z")) == content_key(ics("A", stamp="20260101T000000Z"))
    assert content_key(ics("A")) != content_key(ics("B"))

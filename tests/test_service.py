"""`circleback run` as a real subprocess: feed over HTTP, plan reload, faults, signals, crash recovery."""

from __future__ import annotations

import http.server
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from daemon.store import Store

ADA = Path(__file__).parent / "fixtures" / "plans" / "ada.yaml"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Running:
    def __init__(self, proc: subprocess.Popen[str], port: int, state: Path, log: Path) -> None:
        self.proc, self.port, self.state, self.log = proc, port, state, log

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def feed_url(self) -> str:
        token = (self.state / "feed-token").read_text().strip()
        return f"{self.base}/feed/{token}.ics"

    def output(self) -> str:
        return self.log.read_text()

    def wait_for(self, predicate: Callable[[], bool], what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"service exited ({self.proc.returncode}) waiting for {what}:\n{self.output()}"
                )
            try:
                if predicate():
                    return
            except (httpx.HTTPError, OSError):
                pass
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}:\n{self.output()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    shutil.copy(ADA, tmp_path / "plan.yaml")
    return tmp_path


@pytest.fixture
def start(workdir: Path) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def _start(db_url: str | None = None, *, extra: str = "", port: int | None = None) -> Running:
        port = port or free_port()
        state = workdir / "state"
        config = workdir / "config.toml"
        url = db_url or f"sqlite:///{workdir / 'cb.db'}"
        config.write_text(
            f'plan = "plan.yaml"\nstate_dir = "{state}"\nlog_format = "text"\n'
            f'database_url = "{url}"\n'
            f'[http]\nport = {port}\n[schedule]\nsync_every = "1m"\njitter = "0s"\n{extra}'
        )
        log = workdir / f"service-{len(started)}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CIRCLEBACK_", "NOTIFY_SOCKET"))}
        handle = log.open("w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "daemon.cli", "run", "--config", str(config)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=workdir,
        )
        running = Running(proc, port, state, log)
        started.append(running)
        return running

    yield _start
    for running in started:
        if running.proc.poll() is None:
            running.proc.kill()
            running.proc.wait()


def feed_ready(service: Running) -> bool:
    return httpx.get(service.feed_url(), timeout=2).status_code == 200


def test_serves_feed_reloads_plan_survives_bad_edit_and_stops_on_sigterm(
    start: Callable[..., Running], workdir: Path
) -> None:
    service = start()
    service.wait_for(lambda: (service.state / "feed-token").exists() and feed_ready(service), "the feed")
    first = httpx.get(service.feed_url(), timeout=5)
    assert first.headers["content-type"] == "text/calendar; charset=utf-8"
    assert b"Nurture: Grace Hopper" in first.content
    again = httpx.get(service.feed_url(), headers={"If-None-Match": first.headers["etag"]}, timeout=5)
    assert again.status_code == 304 and again.content == b""
    assert httpx.get(f"{service.base}/feed/wrong-token.ics", timeout=5).status_code == 404
    assert httpx.get(f"{service.base}/healthz", timeout=5).status_code == 200
    ready = httpx.get(f"{service.base}/readyz", timeout=5)
    assert ready.status_code == 200, ready.text

    plan = workdir / "plan.yaml"
    plan.write_text(plan.read_text().replace("Grace Hopper", "Grace Brewster Hopper"))
    service.wait_for(
        lambda: b"Grace Brewster Hopper" in httpx.get(service.feed_url(), timeout=5).content,
        "the edited plan to reach the feed",
    )

    plan.write_text(plan.read_text().replace("stage: nurture", "stage: nurish"))
    service.wait_for(lambda: "plan edit rejected" in service.output(), "the invalid edit to be reported")
    assert "connections[0].stage" in service.output()
    still = httpx.get(service.feed_url(), timeout=5)
    assert still.status_code == 200 and b"Grace Brewster Hopper" in still.content
    assert service.stop() == 0
    assert service.feed_url().split("/feed/")[1].removesuffix(".ics") not in service.output()


def test_second_service_on_same_sqlite_file_is_refused(start: Callable[..., Running]) -> None:
    first = start()
    first.wait_for(lambda: feed_ready(first), "the first service")
    second = start()
    assert second.proc.wait(timeout=30) == 1
    assert "already using" in second.output()
    assert first.proc.poll() is None
    assert first.stop() == 0


@pytest.mark.postgres
def test_runs_on_postgresql(start: Callable[..., Running], postgres_url: str) -> None:
    service = start(postgres_url)
    service.wait_for(lambda: feed_ready(service), "the feed on PostgreSQL")
    assert service.stop() == 0
    with Store(postgres_url) as store:
        assert store.at_head()
        assert store.occurrences(), "the cycle persisted its occurrences in PostgreSQL"


class SlowCalendar:
    """A source calendar over HTTP on 127.0.0.1 that can be told to answer slowly, to hold a cycle open."""

    BODY = (
        b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:standup@test\r\n"
        b"DTSTAMP:20261101T000000Z\r\nDTSTART:20261124T090000Z\r\nDTEND:20261124T093000Z\r\n"
        b"SUMMARY:Standup\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )

    def __init__(self) -> None:
        self.delay = 0.0
        self.requests = threading.Event()
        calendar = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                calendar.requests.set()
                time.sleep(calendar.delay)
                self.send_response(200)
                self.send_header("Content-Type", "text/calendar")
                self.send_header("Content-Length", str(len(calendar.BODY)))
                self.end_headers()
                self.wfile.write(calendar.BODY)

            def log_message(self, format: str, *args: object) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # the tests kill clients mid-request on purpose; a traceback here is noise

        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/private/cal.ics"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def slow_calendar() -> Iterator[SlowCalendar]:
    calendar = SlowCalendar()
    yield calendar
    calendar.close()


def feed_events(service: Running) -> dict[str, str]:
    """UID -> DTSTART of the events in the served feed."""
    events: dict[str, str] = {}
    uid = ""
    for line in httpx.get(service.feed_url(), timeout=5).text.splitlines():
        if line.startswith("UID:"):
            uid = line[4:]
        elif line.startswith("DTSTART") and uid:
            events[uid] = line.split(":", 1)[1]
    return events


def start_with_a_cycle_held_open(
    start: Callable[..., Running], calendar: SlowCalendar, *args: Any, **kwargs: Any
) -> Running:
    """Start a service whose first cycle blocks in fetching a slow source calendar."""
    calendar.delay = 8.0
    calendar.requests.clear()
    service = start(*args, **kwargs)
    assert calendar.requests.wait(20), f"the first cycle did not start:\n{service.output()}"
    time.sleep(0.3)
    return service


def test_kill_9_mid_cycle_then_restart_has_no_duplicates_and_keeps_the_log(
    start: Callable[..., Running], workdir: Path, slow_calendar: SlowCalendar
) -> None:
    db_url = f"sqlite:///{workdir / 'cb.db'}"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "daemon.cli",
            "log",
            "add",
            "Grace Hopper",
            "--on",
            "2026-11-20",
            "--plan",
            str(workdir / "plan.yaml"),
            "--db",
            db_url,
        ],
        check=True,
        capture_output=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("CIRCLEBACK")},
    )
    extra = f'[ics]\nsources = ["{slow_calendar.url}"]\n'
    service = start(db_url, extra=extra)
    service.wait_for(lambda: feed_ready(service), "the first cycle")
    before = feed_events(service)
    assert before, "the first cycle published events"
    assert service.stop() == 0
    interrupted = start_with_a_cycle_held_open(start, slow_calendar, db_url, extra=extra, port=free_port())
    interrupted.proc.send_signal(signal.SIGKILL)  # in the middle of a cycle
    interrupted.proc.wait(timeout=10)

    slow_calendar.delay = 0.0
    restarted = start(db_url, extra=extra, port=free_port())
    restarted.wait_for(lambda: feed_ready(restarted), "the restarted service")
    restarted.wait_for(lambda: "cycle done" in restarted.output(), "a full cycle after the restart")
    after = feed_events(restarted)
    assert after == before, "same plan, same log, same calendars: the same events at the same times"
    assert restarted.stop() == 0
    with Store(db_url) as store:
        assert [entry.interaction.connection for entry in store.interactions()] == ["Grace Hopper"]
        keys = [row.key for row in store.occurrences()]
        assert len(keys) == len(set(keys))


def test_sigterm_waits_for_the_job_in_flight_and_a_second_signal_exits_at_once(
    start: Callable[..., Running], workdir: Path, slow_calendar: SlowCalendar
) -> None:
    service = start_with_a_cycle_held_open(
        start, slow_calendar, extra=f'[ics]\nsources = ["{slow_calendar.url}"]\n'
    )
    service.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert service.proc.poll() is None, "the first signal lets the job in flight finish"
    began = time.monotonic()
    service.proc.send_signal(signal.SIGTERM)
    assert service.proc.wait(timeout=5) == 128 + signal.SIGTERM
    assert time.monotonic() - began < 2
    assert "private" not in service.output(), "the source's secret path is not logged"


def test_a_failing_calendar_is_retried_and_reported_while_the_others_go_on(
    start: Callable[..., Running], workdir: Path, slow_calendar: SlowCalendar
) -> None:
    class Failing(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    broken = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    threading.Thread(target=broken.serve_forever, daemon=True).start()
    try:
        bad_url = f"http://127.0.0.1:{broken.server_address[1]}/secret-path/cal.ics"
        service = start(extra=f'[ics]\nsources = ["{slow_calendar.url}", "{bad_url}"]\n')
        service.wait_for(lambda: feed_ready(service), "the feed")

        def calendars() -> dict[str, Any]:
            details: dict[str, Any] = httpx.get(f"{service.base}/readyz", timeout=5).json()
            found: dict[str, Any] = details.get("details", details)["calendars"]
            return found

        service.wait_for(lambda: len(calendars()) == 2, "both calendars in /readyz")
        health = calendars()
        bad = next(v for k, v in health.items() if k.startswith("127.0.0.1") and not v["ok"])
        good = next(v for v in health.values() if v["ok"])
        assert bad["failures"] >= 1 and "HTTP 500" in bad["last_error"]
        assert bad["next_attempt"] is not None, "it is retried on a backoff schedule"
        assert good["last_ok"] is not None, "the healthy calendar goes on"
        # Never read on first setup: its busy time is unknown, so nothing new is placed (issue 7) until
        # it can be read, while the healthy calendar goes on being read.
        assert b"BEGIN:VEVENT" not in httpx.get(service.feed_url(), timeout=5).content
        assert service.stop() == 0
        assert "secret-path" not in service.output()
    finally:
        broken.shutdown()
        broken.server_close()

"""`circleback run` as a real subprocess: feed over HTTP, plan reload, faults, signals, crash recovery."""

from __future__ import annotations

import contextlib
import errno
import http.server
import os
import resource
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

from daemon.service import PlanWatch
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

    def _start(
        db_url: str | None = None, *, extra: str = "", port: int | None = None, nofile: int | None = None
    ) -> Running:
        port = port or free_port()
        state = workdir / "state"
        config = workdir / f"config-{len(started)}.toml"  # services started together read their own
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
            preexec_fn=None if nofile is None else lambda: limit_descriptors(nofile),
        )
        running = Running(proc, port, state, log)
        started.append(running)
        return running

    yield _start
    for running in started:
        if running.proc.poll() is None:
            running.proc.kill()
            running.proc.wait()


def limit_descriptors(count: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (count, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))


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


def test_second_service_on_same_sqlite_file_is_refused(start: Callable[..., Running], workdir: Path) -> None:
    database = workdir / "cb.db"
    first = start(f"sqlite:///{database}")
    first.wait_for(lambda: feed_ready(first), "the first service")
    (workdir / "elsewhere").mkdir()
    symlink, hard_link = workdir / "elsewhere" / "symlink.db", workdir / "elsewhere" / "hard-link.db"
    symlink.symlink_to(database)
    hard_link.hardlink_to(database)
    # The services run in workdir, so the relative spelling names the same file too.
    for other in (database, symlink, hard_link, Path("elsewhere/../cb.db")):
        second = start(f"sqlite:///{other}", port=free_port())
        assert second.proc.wait(timeout=30) == 1, (other, second.output())
        assert "already using" in second.output(), other
        assert f"pid {first.proc.pid}" in second.output(), other
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
        self.released = threading.Event()  # set: answer now, whatever the delay
        calendar = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                calendar.requests.set()
                calendar.released.wait(calendar.delay)
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
    calendar.released.clear()
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
        missing = workdir / "private-folder" / "gone.ics"
        sources = f'["{slow_calendar.url}", "{bad_url}", "{missing}"]'
        service = start(extra=f"[ics]\nsources = {sources}\n")
        service.wait_for(lambda: feed_ready(service), "the feed")

        def calendars() -> dict[str, Any]:
            details: dict[str, Any] = httpx.get(f"{service.base}/readyz", timeout=5).json()
            found: dict[str, Any] = details.get("details", details)["calendars"]
            return found

        service.wait_for(lambda: len(calendars()) == 3, "all three calendars in /readyz")
        health = calendars()
        bad = next(v for k, v in health.items() if k.startswith("127.0.0.1") and not v["ok"])
        good = next(v for v in health.values() if v["ok"])
        assert bad["failures"] >= 1 and bad["state"] == "failing"
        assert health["gone.ics"]["state"] == "failing", "a local calendar is named, not located"
        ready_text = httpx.get(f"{service.base}/readyz", timeout=5).text
        for detail in ("HTTP 500", "secret-path", "private-folder", str(workdir), "No such file"):
            assert detail not in ready_text, f"/readyz is unauthenticated: {detail!r} must not show"
        assert "HTTP 500" in service.output(), "the reason is in the log instead"
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


# A block every morning that the owner declined: free time for ada@example.com, busy for anyone else.
DECLINED_MORNINGS = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:mornings@test\r\n"
    "DTSTAMP:20261101T000000Z\r\nDTSTART:20261101T090000\r\nDTEND:20261101T120000\r\n"
    "RRULE:FREQ=DAILY\r\nSUMMARY:Morning block\r\nORGANIZER:mailto:boss@example.com\r\n"
    "ATTENDEE;PARTSTAT=DECLINED:mailto:ada@example.com\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)


def upcoming_local_starts(service: Running) -> list[str]:
    """Local DTSTARTs (YYYYMMDDTHHMMSS) of the feed's events from tomorrow on."""
    tomorrow = time.strftime("%Y%m%d", time.gmtime(time.time() + 86400))
    return sorted(start for start in feed_events(service).values() if start[:8] >= tomorrow)


def in_the_mornings(starts: list[str]) -> list[str]:
    return [start for start in starts if "09" <= start[9:11] < "12"]


def test_a_plan_edit_of_the_owner_address_reaches_the_running_readers(
    start: Callable[..., Running], workdir: Path
) -> None:
    source = workdir / "mornings.ics"
    source.write_text(DECLINED_MORNINGS, newline="")
    service = start(extra=f'[ics]\nsources = ["{source}"]\n')
    service.wait_for(lambda: feed_ready(service), "the feed")
    before = upcoming_local_starts(service)
    assert in_the_mornings(before), f"declined by the owner, the mornings are free: {before}"

    plan = workdir / "plan.yaml"
    plan.write_text(plan.read_text().replace("ada@example.com", "ada.lovelace@example.com"))
    service.wait_for(lambda: "plan reloaded" in service.output(), "the plan edit")
    service.wait_for(
        lambda: not in_the_mornings(upcoming_local_starts(service)),
        "the touchpoints to leave the mornings that are now busy",
    )
    assert upcoming_local_starts(service), "the touchpoints moved, they did not vanish"
    assert service.stop() == 0


def test_readyz_is_not_ready_while_the_first_cycle_has_not_rendered_the_feed(
    start: Callable[..., Running], slow_calendar: SlowCalendar
) -> None:
    service = start_with_a_cycle_held_open(
        start, slow_calendar, extra=f'[ics]\nsources = ["{slow_calendar.url}"]\n'
    )
    service.wait_for(lambda: (service.state / "feed-token").exists(), "the HTTP server")
    assert httpx.get(service.feed_url(), timeout=5).status_code == 503
    ready = httpx.get(f"{service.base}/readyz", timeout=5)
    assert ready.status_code == 503, ready.text
    details = ready.json()["details"]
    assert details["feed"] == "not rendered yet: waiting for the first cycle"
    assert details["cycle"].startswith("running for ")
    assert httpx.get(f"{service.base}/healthz", timeout=5).status_code == 200, "alive, just not ready"
    slow_calendar.released.set()  # seen not ready; no need to sit out the rest of the delay
    service.wait_for(lambda: feed_ready(service), "the first cycle to finish", timeout=30)
    ready = httpx.get(f"{service.base}/readyz", timeout=5)
    assert ready.status_code == 200 and ready.json()["details"]["feed"] == "ok", ready.text
    assert service.stop() == 0


@contextlib.contextmanager
def no_descriptors_left() -> Iterator[None]:
    """Every file descriptor of this process in use, as under a flood of idle connections."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, len(os.listdir("/proc/self/fd")) + 64), hard))
    taken: list[int] = []
    try:
        while True:
            try:
                taken.append(os.open(os.devnull, os.O_RDONLY))
            except OSError as exc:
                assert exc.errno == errno.EMFILE
                break
        yield
    finally:
        for fd in taken:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_plan_watch_tries_a_failed_read_again_but_an_invalid_edit_only_after_the_next_edit(
    tmp_path: Path,
) -> None:
    plan = tmp_path / "plan.yaml"
    shutil.copy(ADA, plan)
    watch = PlanWatch.load(plan)
    plan.write_text(plan.read_text().replace("Grace Hopper", "Grace Brewster Hopper"))
    with no_descriptors_left():
        assert watch.poll() is False
    assert watch.last_error is not None and "Too many open files" in watch.last_error
    assert watch.plan.connections[0].name == "Grace Hopper", "the last good plan stays in force"
    assert watch.poll() is True, "the same edit is read once the file can be opened again"
    assert watch.plan.connections[0].name == "Grace Brewster Hopper"
    assert watch.last_error is None
    assert watch.generation == 1

    plan.write_text(plan.read_text().replace("stage: nurture", "stage: nurish"))
    assert watch.poll() is False
    assert watch.last_error is not None and "connections[0].stage" in watch.last_error
    assert watch.poll() is False and watch.generation == 1
    plan.write_text(plan.read_text().replace("stage: nurish", "stage: elevate"))
    assert watch.poll() is True and watch.last_error is None and watch.generation == 2


@pytest.mark.postgres
def test_two_services_on_one_postgresql_start_together_without_a_failed_cycle(
    start: Callable[..., Running], postgres_url: str
) -> None:
    services = [start(postgres_url), start(postgres_url, port=free_port())]
    for service in services:
        service.wait_for(lambda service=service: feed_ready(service), "both feeds")  # type: ignore[misc]
    for service in services:
        assert "cycle failed" not in service.output() and "Traceback" not in service.output()
        assert service.stop() == 0
    with Store(postgres_url) as store:
        names = [c.name for c in store.connections()]
        assert names == ["Grace Hopper", "Women in Tech London"]
        keys = [row.key for row in store.occurrences()]
        assert keys and len(keys) == len(set(keys))


def test_idle_connections_beyond_the_descriptor_limit_leave_the_service_answering(
    start: Callable[..., Running], workdir: Path
) -> None:
    service = start(nofile=256)  # the limit of the trial that ran out of descriptors
    service.wait_for(lambda: feed_ready(service), "the feed")
    idle: list[socket.socket] = []
    try:
        for _ in range(300):
            idle.append(socket.create_connection(("127.0.0.1", service.port), timeout=5))
        time.sleep(0.5)
        service.wait_for(
            lambda: httpx.get(f"{service.base}/healthz", timeout=2).status_code == 200,
            "/healthz while 300 idle connections are open",
            timeout=10,
        )
        assert feed_ready(service)
        plan = workdir / "plan.yaml"
        plan.write_text(plan.read_text().replace("Grace Hopper", "Grace Brewster Hopper"))
        service.wait_for(
            lambda: b"Grace Brewster Hopper" in httpx.get(service.feed_url(), timeout=2).content,
            "a plan edit to reach the feed meanwhile",
        )
    finally:
        for sock in idle:
            sock.close()
    assert "plan edit rejected" not in service.output()
    assert "closing the one idle longest" in service.output()
    assert service.stop() == 0


@pytest.mark.postgres
def test_readyz_gives_no_database_error_text(
    start: Callable[..., Running], workdir: Path, postgres_url: str
) -> None:
    service = start(postgres_url)
    service.wait_for(lambda: feed_ready(service), "the feed on PostgreSQL")
    with Store(postgres_url) as store, store.engine.begin() as conn:
        schema = conn.exec_driver_sql("SELECT current_schema()").scalar_one()
        conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')  # the database loses its tables
    plan = workdir / "plan.yaml"
    plan.write_text(plan.read_text().replace("Grace Hopper", "Grace Brewster Hopper"))  # a cycle now
    service.wait_for(lambda: "cycle failed" in service.output(), "the cycle to fail")
    ready = httpx.get(f"{service.base}/readyz", timeout=5)
    for secret in (schema, "127.0.0.1", "5432", "does not exist", "postgres"):
        assert secret not in ready.text, f"/readyz is unauthenticated: {secret!r} must not show"
    assert ready.status_code == 503
    details = ready.json()["details"]
    assert details["database"] == "migrations not at head"
    assert details["cycle"] == "last one failed; retrying"
    assert service.stop() == 0


# Floating times (no zone): the plan's time zone says when they are.
FLOATING_MORNINGS = DECLINED_MORNINGS.replace(
    "ATTENDEE;PARTSTAT=DECLINED:mailto:ada@example.com\r\n", ""
).replace("UID:mornings@test", "UID:floating-mornings@test")


def test_a_plan_edit_of_the_time_zone_reaches_the_running_readers(
    start: Callable[..., Running], workdir: Path
) -> None:
    source = workdir / "mornings.ics"
    source.write_text(FLOATING_MORNINGS, newline="")
    service = start(extra=f'[ics]\nsources = ["{source}"]\n')
    service.wait_for(lambda: feed_ready(service), "the feed")
    assert not in_the_mornings(upcoming_local_starts(service)), "09:00-12:00 London is busy"

    plan = workdir / "plan.yaml"
    plan.write_text(plan.read_text().replace("Europe/London", "America/New_York"))
    service.wait_for(lambda: "plan reloaded" in service.output(), "the plan edit")
    service.wait_for(
        lambda: "TZID=America/New_York" in httpx.get(service.feed_url(), timeout=5).text, "new zone"
    )
    starts = upcoming_local_starts(service)  # that cycle read the calendar with the new zone
    assert starts and not in_the_mornings(starts), f"09:00-12:00 New York is busy now: {starts}"
    assert service.stop() == 0

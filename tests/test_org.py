"""Organisation mode on this machine's PostgreSQL with real procrastinate worker processes."""

from __future__ import annotations

import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from cli_runner import xdg_env

from daemon.org import conninfo, cron_for
from daemon.org_metrics import render_metrics
from daemon.people import People
from daemon.store import SourceState, Store

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
ADA = REPO / "tests" / "fixtures" / "plans" / "ada.yaml"
WORKER = REPO / "tests" / "org_worker.py"


class Calendar:
    """An ICS source on 127.0.0.1 with one meeting with Grace (a focus contact of the plan) yesterday;
    `delay` holds every request open that long."""

    def __init__(self) -> None:
        self.delay = 0.0
        self.requests = 0
        yesterday = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y%m%d")
        body = (
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//org//EN\r\nBEGIN:VEVENT\r\n"
            f"UID:coffee-with-grace@test\r\nDTSTAMP:{yesterday}T080000Z\r\n"
            f"DTSTART:{yesterday}T100000Z\r\nDTEND:{yesterday}T103000Z\r\nSUMMARY:Coffee\r\n"
            "ORGANIZER:mailto:ada@example.com\r\nATTENDEE;PARTSTAT=ACCEPTED:mailto:grace@example.com\r\n"
            "END:VEVENT\r\nEND:VCALENDAR\r\n"
        ).encode()
        calendar = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                calendar.requests += 1
                time.sleep(calendar.delay)
                self.send_response(200)
                self.send_header("Content-Type", "text/calendar")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # workers are killed mid-request on purpose

        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/team.ics"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def calendar() -> Iterator[Calendar]:
    served = Calendar()
    yield served
    served.close()


class Workers:
    def __init__(self, home: Path, config: Path) -> None:
        self.home, self.config = home, config
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}

    def start(self, name: str, period: float) -> subprocess.Popen[bytes]:
        log = (self.home / f"{name}.log").open("wb")
        self.ports[name] = free_port()
        env = {**xdg_env(self.home), "PYTHONPATH": str(REPO), "CIRCLEBACK_HTTP_PORT": str(self.ports[name])}
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), str(self.config), str(period), name],
            env=env,
            cwd=self.home,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs[name] = proc
        return proc

    def output(self) -> str:
        return "\n".join(f"--- {n}\n{(self.home / f'{n}.log').read_text()}" for n in self.procs)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def workers(tmp_path: Path, postgres_url: str, calendar: Calendar) -> Iterator[Workers]:
    for sub in ("config", "data", "state"):
        (tmp_path / sub).mkdir()
    config = tmp_path / "org.toml"
    config.write_text(
        f'database_url = "{postgres_url}"\n[schedule]\njitter = "0s"\n[ics]\nsources = ["{calendar.url}"]\n',
        encoding="utf-8",
    )
    running = Workers(tmp_path, config)
    yield running
    running.stop_all()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def add_people(url: str, emails: list[str]) -> dict[str, str]:
    """Adds the people; their feed tokens by email."""
    plan = ADA.read_text(encoding="utf-8")
    tokens: dict[str, str] = {}
    with Store(url) as store:
        people = People(store.engine)
        for email in emails:
            _person, tokens[email] = people.add(
                email, name=email, plan_text=plan, google_subject=None, now=datetime.now(UTC)
            )
    return tokens


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(conninfo(url)) as conn:
        return list(conn.execute(sql).fetchall())


def cycle_jobs(url: str) -> list[tuple[str, int, str]]:
    return [
        (str(owner), int(period), str(status))
        for owner, period, status in query(
            url,
            "SELECT args->>'owner', (args->>'period')::bigint, status::text FROM procrastinate_jobs "
            "WHERE task_name = 'circleback.cycle' ORDER BY id",
        )
    ]


def wait_for(predicate: Callable[[], bool], what: str, workers: Workers, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if all(proc.poll() is not None for proc in workers.procs.values()):
            break
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}\n{workers.output()}")


def calendar_log(url: str, email: str) -> list[str]:
    with Store(url, owner=email) as store:
        return [i.interaction.connection for i in store.interactions() if i.interaction.source == "calendar"]


def uids(url: str, email: str) -> tuple[set[str], set[str]]:
    with Store(url, owner=email) as store:
        stored = store.occurrences()
        return {o.key for o in stored}, {o.occurrence.uid for o in stored}


def check_feeds_are_served_alike_by_every_replica(workers: Workers, tokens: dict[str, str], url: str) -> None:
    bases = [f"http://127.0.0.1:{port}" for port in workers.ports.values()]
    for email, token in tokens.items():
        answers = [httpx.get(f"{base}/feed/{token}.ics", timeout=10) for base in bases]
        assert {a.status_code for a in answers} == {200}, workers.output()
        assert len({(a.content, a.headers["etag"], a.headers["last-modified"]) for a in answers}) == 1
        body = answers[0].text
        own = uids(url, email)[1]
        assert own and all(uid in body for uid in own)
        for other in tokens:
            if other != email:
                assert not any(uid in body for uid in uids(url, other)[1])
        # A validator from one replica is good at another.
        again = httpx.get(
            f"{bases[-1]}/feed/{token}.ics", headers={"If-None-Match": answers[0].headers["etag"]}, timeout=10
        )
        assert again.status_code == 304
    wrong = httpx.get(f"{bases[0]}/feed/{'x' * 43}.ics", timeout=10)
    nowhere = httpx.get(f"{bases[0]}/no/such/path", timeout=10)
    assert (wrong.status_code, wrong.content) == (404, nowhere.content)


def metric(text: str, sample: str) -> float:
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split(" ", 1)[1])
    raise AssertionError(f"no sample {sample} in\n{text}")


def check_metrics(workers: Workers, url: str, people: int) -> None:
    port = next(iter(workers.ports.values()))
    # Counted before the scrape: cycles keep finishing meanwhile, so the metric lies between this count
    # and the one after it.
    succeeded = sum(s == "succeeded" for _, _, s in cycle_jobs(url))
    answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    body = answer.text
    assert metric(body, "circleback_people") == people
    assert succeeded <= metric(body, 'circleback_cycles_total{status="succeeded"}')
    assert metric(body, 'circleback_cycles_total{status="succeeded"}') <= sum(
        s == "succeeded" for _, _, s in cycle_jobs(url)
    )
    assert metric(body, "circleback_cycle_duration_seconds_count") >= succeeded
    assert metric(body, "circleback_cycle_duration_seconds_sum") > 0
    assert "# TYPE circleback_queue_depth gauge" in body


def test_cron_for_periods() -> None:
    assert cron_for(timedelta(seconds=3)) == "* * * * * */3"
    assert cron_for(timedelta(minutes=15)) == "*/15 * * * *"
    assert cron_for(timedelta(hours=2)) == "0 */2 * * *"
    with pytest.raises(ValueError, match="positive"):
        cron_for(timedelta(0))


def test_every_persons_cycle_runs_once_per_period_whichever_worker(
    postgres_url: str, workers: Workers
) -> None:
    emails = [f"person{i}@example.org" for i in range(6)]
    tokens = add_people(postgres_url, emails)
    for n in range(3):
        workers.start(f"worker{n}", period=3)

    def finished_periods() -> set[int]:
        done: dict[int, set[str]] = {}
        for owner, period, status in cycle_jobs(postgres_url):
            if status == "succeeded":
                done.setdefault(period, set()).add(owner)
        return {p for p, owners in done.items() if owners == set(emails)}

    wait_for(lambda: len(finished_periods()) >= 3, "three periods of cycles", workers)
    check_feeds_are_served_alike_by_every_replica(workers, tokens, postgres_url)
    check_metrics(workers, postgres_url, len(emails))
    workers.stop_all()
    assert all(p.returncode == 0 for p in workers.procs.values()), workers.output()

    jobs = cycle_jobs(postgres_url)
    per_period = Counter((owner, period) for owner, period, _ in jobs)
    assert per_period and set(per_period.values()) == {1}, per_period
    # A person whose cycle from an earlier period is still waiting gets no second one (the queueing lock):
    # on a loaded machine a period may miss someone, never hold anyone twice or anyone unknown.
    for period in {period for _, period, _ in jobs}:
        assert {o for o, p, _ in jobs if p == period} <= set(emails)
    assert len(finished_periods()) >= 3
    # procrastinate deferred each period's tick once, whatever the number of workers.
    ticks = query(
        postgres_url, "SELECT args->>'timestamp' FROM procrastinate_jobs WHERE task_name = 'circleback.tick'"
    )
    assert len(ticks) == len(set(ticks)) and len(ticks) >= 3
    # Several workers shared the work (each logs the cycles it ran).
    ran = [name for name in workers.procs if "cycle of person" in (workers.home / f"{name}.log").read_text()]
    assert len(ran) >= 2, workers.output()

    # Same plan, same connection names: each person has their own copy and nothing is shared.
    keys = {email: uids(postgres_url, email) for email in emails}
    first_keys = keys[emails[0]][0]
    assert first_keys
    for email in emails:
        assert keys[email][0] == first_keys
        for other in emails:
            if other != email:
                assert not keys[email][1] & keys[other][1]
        assert calendar_log(postgres_url, email) == ["Grace Hopper"]
    with Store(postgres_url) as store:
        health = People(store.engine).health(emails[0])
        assert health.last_cycle == "succeeded" and health.last_cycle_at is not None


def test_kill_9_mid_cycle_the_people_are_picked_up_without_duplicates_or_lost_entries(
    postgres_url: str, workers: Workers, calendar: Calendar
) -> None:
    emails = ["ada@example.org", "bo@example.org"]
    add_people(postgres_url, emails)
    calendar.delay = 30.0  # every cycle of the first worker blocks in reading the calendar
    victim = workers.start("victim", period=2)
    wait_for(
        lambda: sum(s == "doing" for _, _, s in cycle_jobs(postgres_url)) == len(emails),
        "both cycles to be in flight on the first worker",
        workers,
    )
    workers.start("survivor", period=2)
    time.sleep(3)  # the survivor is up and ticking; its jobs for the same people wait for the locks
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=10)
    calendar.delay = 0.0

    def picked_up() -> bool:
        jobs = cycle_jobs(postgres_url)
        doing = [j for j in jobs if j[2] == "doing"]
        succeeded = {o for o, _, s in jobs if s == "succeeded"}
        return succeeded == set(emails) and not doing

    wait_for(picked_up, "the survivor to run both people's cycles", workers)
    workers.stop_all()

    jobs = cycle_jobs(postgres_url)
    assert Counter((o, p) for o, p, _ in jobs).most_common(1)[0][1] == 1
    assert "its worker stopped" in (workers.home / "survivor.log").read_text(), workers.output()
    for email in emails:
        assert calendar_log(postgres_url, email) == ["Grace Hopper"]
    assert uids(postgres_url, emails[0])[0] == uids(postgres_url, emails[1])[0]


def test_metrics_count_failing_calendars_by_name_without_naming_people(postgres_url: str) -> None:
    emails = ["ada@example.org", "bo@example.org", "cy@example.org"]
    add_people(postgres_url, emails)
    for email, failures in zip(emails, (2, 1, 0), strict=True):
        with Store(postgres_url, owner=email) as store:
            store.save_source_state(SourceState(name="team", last_error="timed out", failures=failures))
    with Store(postgres_url) as store:
        body = render_metrics(store.engine)
    assert metric(body, "circleback_people") == 3
    assert metric(body, 'circleback_calendar_failing_people{calendar="team",direction="read"}') == 2
    assert metric(body, 'circleback_cycles_total{status="succeeded"}') == 0
    assert "example.org" not in body

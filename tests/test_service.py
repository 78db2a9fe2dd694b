"""`circleback run` as a real subprocess: feed over HTTP, plan reload, faults, signals, crash recovery."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

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


def test_kill_9_mid_run_then_restart_has_no_duplicates_and_keeps_the_log(
    start: Callable[..., Running], workdir: Path
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
    service = start(db_url)
    service.wait_for(lambda: feed_ready(service), "the first run")
    service.proc.send_signal(signal.SIGKILL)
    service.proc.wait(timeout=10)
    port = free_port()
    restarted = start(db_url, port=port)
    restarted.wait_for(lambda: feed_ready(restarted), "the restarted service")
    body = httpx.get(restarted.feed_url(), timeout=5).text
    uids = [line for line in body.splitlines() if line.startswith("UID:")]
    assert len(uids) == len(set(uids)), "no duplicate events after kill -9"
    assert restarted.stop() == 0
    with Store(db_url) as store:
        log = store.interactions()
        assert [entry.interaction.connection for entry in log] == ["Grace Hopper"]
        keys = [row.key for row in store.occurrences()]
        assert len(keys) == len(set(keys))


def test_second_signal_exits_at_once(start: Callable[..., Running]) -> None:
    service = start()
    service.wait_for(lambda: feed_ready(service), "the service")
    service.proc.send_signal(signal.SIGINT)
    service.proc.send_signal(signal.SIGINT)
    code = service.proc.wait(timeout=10)
    assert code in (0, 128 + signal.SIGINT)

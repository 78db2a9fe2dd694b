"""`/readyz` and each person's own status in organisation mode, from a real worker's real cycles.

`/readyz` is for anyone who can reach a replica: counts, never addresses. A person's calendars and cycles
are shown at their secret feed address only (`/feed/TOKEN/status`), and to the administrator
(`people show`).
"""

from __future__ import annotations

import http.server
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cli_runner import run_in_process, xdg_env
from sqlalchemy import create_engine, text
from starlette.exceptions import StarletteDeprecationWarning

from daemon.org_status import readiness
from daemon.org_web import build_org_app
from daemon.people import People
from daemon.store import Store

with warnings.catch_warnings():
    # As in test_web.py: Starlette would rather drive its TestClient with httpx2; httpx still works.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

pytestmark = pytest.mark.postgres

REPO = Path(__file__).resolve().parents[1]
ADA_PLAN = REPO / "tests" / "fixtures" / "plans" / "ada.yaml"
WORKER = REPO / "tests" / "org_worker.py"
TEAM = (
    b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:x@test\r\n"
    b"DTSTAMP:20261101T000000Z\r\nDTSTART:20261124T100000Z\r\nDTEND:20261124T110000Z\r\nSUMMARY:Busy\r\n"
    b"END:VEVENT\r\nEND:VCALENDAR\r\n"
)


@pytest.fixture
def team() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/calendar")
            self.send_header("Content-Length", str(len(TEAM)))
            self.end_headers()
            self.wfile.write(TEAM)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/team.ics"
    finally:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def cycles_of(url: str, email: str) -> set[str]:
    with Store(url) as store, store.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT status::text FROM procrastinate_jobs "
                "WHERE task_name = 'circleback.cycle' AND lock = :k"
            ),
            {"k": email},
        )
        return {str(status) for (status,) in rows}


@pytest.mark.slow
def test_readyz_counts_people_and_each_person_sees_only_their_own_status(
    tmp_path: Path, postgres_url: str, team: str
) -> None:
    plan = ADA_PLAN.read_text(encoding="utf-8")
    now = datetime.now(UTC)
    with Store(postgres_url) as store:
        people = People(store.engine)
        # Ada's own calendar is on loopback: refused (the organisation does not allow private sources).
        _ada, ada_token = people.add(
            "ada@example.org", name="Ada", plan_text=plan, google_subject=None, now=now,
            sources=["http://127.0.0.1:9/ada-private/cal.ics"],
        )  # fmt: skip
        _bo, bo_token = people.add("bo@example.org", name="Bo", plan_text=plan, google_subject=None, now=now)
        # Bo's plan in force is broken (as if stored by an older version): every cycle of his fails.
        with store.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO plan_version (owner_id, text, checksum, created_at) "
                    "SELECT id, 'connections: [', 'x', now() FROM owner WHERE key = 'bo@example.org'"
                )
            )
    for sub in ("config", "data", "state"):
        (tmp_path / sub).mkdir()
    config = tmp_path / "org.toml"
    config.write_text(
        f'database_url = "{postgres_url}"\n[schedule]\njitter = "0s"\n[ics]\nsources = ["{team}"]\n',
        encoding="utf-8",
    )
    port = free_port()
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, str(WORKER), str(config), "2", "w1"],
        env={**xdg_env(tmp_path), "PYTHONPATH": str(REPO), "CIRCLEBACK_HTTP_PORT": str(port)},
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not (
            "succeeded" in cycles_of(postgres_url, "ada@example.org")
            and "failed" in cycles_of(postgres_url, "bo@example.org")
        ):
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            time.sleep(0.3)
        ready = httpx.get(f"{base}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        body = ready.json()
        assert body["status"] == "ready" and body["database"] == "ok" and body["workers"] == 1
        assert body["people"] == {"total": 2, "ok": 1, "failing": 1, "late": 0, "new": 0}
        assert "example.org" not in ready.text and "127.0.0.1" not in ready.text

        ada = httpx.get(f"{base}/feed/{ada_token}/status", timeout=10)
        assert ada.status_code == 200 and ada.headers["cache-control"] == "no-store"
        status = ada.json()
        assert status["state"] == "ok" and status["last_cycle"] == "succeeded"
        calendars = {c["name"]: c for c in status["calendars"]}
        team_name = team.removeprefix("http://").rsplit("/", 1)[0] + "/team.ics"
        assert calendars[team_name]["read"] == "ok" and calendars[team_name]["error"] is None
        own = calendars["127.0.0.1:9/cal.ics"]
        assert own["read"] == "failing" and "refused" in own["error"] and "ada-private" not in ada.text

        bo = httpx.get(f"{base}/feed/{bo_token}/status", timeout=10)
        assert bo.status_code == 200 and bo.json()["state"] == "failing"
        assert "127.0.0.1:9" not in bo.text and "ada" not in bo.text

        wrong = httpx.get(f"{base}/feed/{'x' * 43}/status", timeout=10)
        nowhere = httpx.get(f"{base}/no/such/path", timeout=10)
        assert (wrong.status_code, wrong.content) == (404, nowhere.content)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)

    shown = run_in_process(tmp_path, "people", "show", "ada@example.org", "--db", postgres_url)
    assert f"calendar {team_name}: read ok" in shown.stdout, shown.stdout
    assert "calendar 127.0.0.1:9/cal.ics: failing to read:" in shown.stdout and "refused" in shown.stdout
    assert "ada-private" not in shown.stdout

    # No worker left: not ready, and says why (without anybody's address).
    with (
        Store(postgres_url) as store,
        TestClient(build_org_app(store.engine, period=timedelta(seconds=2))) as c,
    ):
        stopped = c.get("/readyz")
    assert stopped.status_code == 503
    assert stopped.json()["reasons"] == ["no worker has sent a heartbeat lately"]


def test_not_ready_when_the_database_does_not_answer_or_nobodys_cycles_run(postgres_url: str) -> None:
    gone = create_engine("postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=2")
    with TestClient(build_org_app(gone)) as client:
        answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json() == {
        "status": "not ready",
        "database": "unreachable",
        "workers": 0,
        "people": {},
        "reasons": ["the database does not answer"],
    }
    with Store(postgres_url) as store:
        plan = ADA_PLAN.read_text(encoding="utf-8")
        long_ago = datetime.now(UTC) - timedelta(days=2)
        People(store.engine).add(
            "cy@example.org", name="Cy", plan_text=plan, google_subject=None, now=long_ago
        )
        ready = readiness(store.engine, timedelta(minutes=15))
    assert not ready.ready and ready.people == {"total": 1, "ok": 0, "failing": 0, "late": 1, "new": 0}
    assert "no person's cycle succeeded in the last 3 periods" in ready.reasons
    assert json.dumps(ready.as_json()).count("cy@") == 0

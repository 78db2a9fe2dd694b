"""Benchmark: organisation-mode cycles per minute with 1 and with 3 worker processes.

Run on demand: `.venv/bin/python tests/bench/bench_org.py [PEOPLE] [DELAY_MS]` (PostgreSQL on
127.0.0.1:5432, trust authentication). In a fresh schema it adds PEOPLE people (the five-connection plan of
tests/fixtures/plans/ada.yaml), an ICS source on 127.0.0.1 that answers after DELAY_MS (a stand-in for a
calendar API's latency), defers one cycle job per person and times real worker processes
(tests/org_worker.py, the code `circleback run --org` runs) until every job has succeeded. It reports
cycles per minute, the ratio, the database connections the workers held and each worker's peak RSS.
"""

from __future__ import annotations

import http.server
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from daemon.org import CYCLE_TASK, conninfo  # noqa: E402
from daemon.people import People  # noqa: E402
from daemon.store import Store  # noqa: E402

ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
BODY = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//bench//EN\r\nEND:VCALENDAR\r\n"


def slow_source(delay: float) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            time.sleep(delay)
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def defer_all(url: str, emails: list[str], period: int) -> None:
    with psycopg.connect(conninfo(url), autocommit=True) as conn:
        for email in emails:
            conn.execute(
                "SELECT procrastinate_defer_jobs_v1(ARRAY[ROW('cycles', %s, 0, %s, %s, %s::jsonb, NULL)"
                "::procrastinate_job_to_defer_v1])",
                (CYCLE_TASK, email, email, f'{{"owner": "{email}", "period": {period}}}'),
            )


def succeeded(url: str, period: int) -> int:
    with psycopg.connect(conninfo(url)) as conn:
        row = conn.execute(
            "SELECT count(*) FROM procrastinate_jobs WHERE task_name = %s AND status = 'succeeded' "
            "AND (args->>'period')::bigint = %s",
            (CYCLE_TASK, period),
        ).fetchone()
        return int(row[0]) if row else 0


def connections(schema: str) -> int:
    """Client connections to the server's `postgres` database: approximate when other clients use it."""
    with psycopg.connect(ADMIN) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND query NOT LIKE "
            "'%pg_stat_activity%' AND application_name = '' AND datname = 'postgres'"
        ).fetchone()
        del schema
        return int(row[0]) if row else 0


def run(url: str, config: Path, home: Path, emails: list[str], workers: int, period: int) -> dict[str, float]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_STATE_HOME": str(home / "state"),
        "XDG_DATA_HOME": str(home / "data"),
        "CIRCLEBACK_HTTP_ENABLED": "false",
    }
    before = connections("")
    procs = [
        subprocess.Popen(
            [sys.executable, str(REPO / "tests" / "org_worker.py"), str(config), "3600", f"bench{n}"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for n in range(workers)
    ]
    time.sleep(4)  # interpreter start, imports, migrations check
    defer_all(url, emails, period)
    start = time.monotonic()
    peak_connections = 0
    while succeeded(url, period) < len(emails):
        peak_connections = max(peak_connections, connections("") - before)
        time.sleep(0.2)
    elapsed = time.monotonic() - start
    rss = []
    for proc in procs:
        status = Path(f"/proc/{proc.pid}/status").read_text()
        rss.append(next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM")))
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        proc.wait(timeout=60)
    return {
        "seconds": elapsed,
        "per_minute": len(emails) / elapsed * 60,
        "connections": peak_connections,
        "peak_rss_mb": max(rss) / 1024,
    }


def main() -> None:
    people = int(sys.argv[1]) if len(sys.argv) > 1 else 60
    delay = (int(sys.argv[2]) if len(sys.argv) > 2 else 50) / 1000
    schema = f"circleback_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/postgres?options=-csearch_path%3D{schema}"
    server = slow_source(delay)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp)
            for sub in ("config", "state", "data"):
                (home / sub).mkdir()
            config = home / "org.toml"
            source = f"http://127.0.0.1:{server.server_address[1]}/cal.ics"
            config.write_text(f'database_url = "{url}"\n[ics]\nsources = ["{source}"]\n', encoding="utf-8")
            plan = (REPO / "tests" / "fixtures" / "plans" / "ada.yaml").read_text(encoding="utf-8")
            emails = [f"person{i:04d}@example.org" for i in range(people)]
            with Store(url) as store:
                registry = People(store.engine)
                for email in emails:
                    registry.add(
                        email, name=email, plan_text=plan, google_subject=None, now=datetime.now(UTC)
                    )
            one = run(url, config, home, emails, 1, 1)
            three = run(url, config, home, emails, 3, 2)
            print(f"{people} people, source latency {delay * 1000:.0f} ms, 4 jobs at once per worker")
            for label, result in (("1 worker ", one), ("3 workers", three)):
                print(
                    f"{label}: {result['seconds']:.1f} s, {result['per_minute']:.0f} cycles/min, "
                    f"peak {result['connections']:.0f} extra DB connections, "
                    f"peak RSS {result['peak_rss_mb']:.0f} MB"
                )
            print(f"ratio 3/1: {three['per_minute'] / one['per_minute']:.2f}x")
    finally:
        server.shutdown()
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


if __name__ == "__main__":
    main()

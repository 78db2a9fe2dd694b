"""Benchmark: organisation-mode cycles per minute, 1 worker process against 3, on the fake Google.

Run on demand (PostgreSQL on 127.0.0.1:5432, trust authentication):

    .venv/bin/python tests/bench/bench_org.py [--people 300] [--latency-ms 50] [--rounds 2]

What it does, in a fresh schema:
- starts the fake Google Calendar (tests/fake_google) as a process of its own, with LATENCY added to
  every HTTP request, one calendar per person and a service account with domain-wide delegation;
- adds PEOPLE people, each with the five-connection plan of tests/fixtures/plans/ada.yaml, and a config
  that reaches each person's primary calendar as that person (organisation mode's Google);
- first cycles: 3 workers place everyone's events (timed once: a person's first cycle happens once);
- then ROUNDS rounds of quiet cycles (nothing changed: the steady state), 1 worker and 3 workers
  interleaved, alternating which goes first, so the machine's other load falls on both alike.

Each round starts real worker processes (tests/org_worker.py: the code `circleback run --org` runs, with a
daily period so no tick of their own fires), waits until they are registered, runs one warm-up period
(workers run for weeks: they have met everyone before, their compiled statements and each person's
access token are there), then the measured one: the real tick (the function the periodic task runs:
retry stalled jobs, defer everyone's job with its locks) and every cycle job of it. Figures per round:
- cycles per minute: jobs / (last job's end - tick's start), from procrastinate's own event times;
- the tick: how long deferring everyone's job took;
- database connections: the peak number each worker held (pg_stat_activity, by application_name);
- peak RSS (VmHWM) of each worker; CPU seconds of the workers, the fake and the machine's idle share, to
  tell waiting from computing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from fake_google.keys import write_service_account  # noqa: E402

from daemon.config import load_settings  # noqa: E402
from daemon.org import CONCURRENCY, CYCLE_TASK, TICK_TASK, conninfo, make_app, prepare  # noqa: E402
from daemon.people import People  # noqa: E402
from daemon.store import Store  # noqa: E402

ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
ACCOUNT = "circleback-bench@project.iam.gserviceaccount.com"
PLAN = REPO / "tests" / "fixtures" / "plans" / "ada.yaml"
DAY = 86400  # the workers' own period: their periodic tick never fires during a run
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def runqueue_wait(pid: int) -> float:
    """Seconds the threads of a process have spent runnable but waiting for a CPU (schedstat's second
    field), summed over its threads now alive: how much a busy machine held it back."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue  # the thread ended meanwhile
    return total / 1e9


def machine_cpu() -> tuple[float, float]:
    """(idle, total) jiffies of the whole machine since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return float(values[3] + values[4]), float(sum(values[:8]))


def postgres_cpu() -> float:
    """CPU seconds of every PostgreSQL process on this machine (the server is shared: approximate)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() == "postgres":
                total += cpu_seconds(int(entry.name))
        except OSError:
            continue  # it ended meanwhile
    return total


def peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM")) / 1024


class FakeServer:
    """The fake Google in a process of its own, so its work is not counted in ours (nor ours in its)."""

    def __init__(self, users: list[str], latency_ms: float, workdir: Path) -> None:
        listing = workdir / "users.txt"
        listing.write_text("\n".join(users) + "\n", encoding="utf-8")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(REPO / "tests" / "fake_google"),
                "--latency-ms",
                str(latency_ms),
                "--service-account",
                ACCOUNT,
                "--users-file",
                str(listing),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http"):
            raise SystemExit(f"the fake Google did not start: {self.url!r}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def write_config(home: Path, name: str, url: str, fake: str, account: Path) -> Path:
    """A worker's config; its database URL names the worker (application_name) for pg_stat_activity."""
    config = home / f"{name}.toml"
    config.write_text(
        f'database_url = "{url}&application_name={name}"\nstate_dir = "{home / "state"}"\n'
        f'[google]\ncalendar_id = "primary"\nbusy_calendars = ["primary"]\n'
        f'service_account_file = "{account}"\napi_endpoint = "{fake}"\ntoken_uri = "{fake}token"\n',
        encoding="utf-8",
    )
    return config


@dataclass
class Round:
    workers: int
    jobs: int = 0
    seconds: float = 0.0
    tick_seconds: float = 0.0
    connections: dict[str, int] = field(default_factory=dict)
    rss_mb: list[float] = field(default_factory=list)
    worker_cpu: float = 0.0
    fake_cpu: float = 0.0
    postgres_cpu: float = 0.0
    runqueue: float = 0.0  # seconds the workers' threads waited for a CPU
    idle_share: float = 0.0
    active: float = 0.0  # statements running at once in the database, on average
    lock_waits: float = 0.0  # of those, waiting for a lock, on average
    requests: dict[str, int] = field(default_factory=dict)

    @property
    def per_minute(self) -> float:
        return self.jobs / self.seconds * 60


class Bench:
    def __init__(
        self,
        url: str,
        home: Path,
        fake: FakeServer,
        account: Path,
        emails: list[str],
        concurrency: int | None,
    ) -> None:
        self.url = url
        self.home = home
        self.fake = fake
        self.account = account
        self.emails = emails
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CIRCLEBACK_")},
            "PYTHONPATH": str(REPO),
            "XDG_CONFIG_HOME": str(home / "config"),
            "XDG_STATE_HOME": str(home / "state"),
            "XDG_DATA_HOME": str(home / "data"),
            "CIRCLEBACK_HTTP_ENABLED": "false",
            "CIRCLEBACK_LOG_LEVEL": "WARNING",
        }
        if concurrency is not None:
            self.env["CIRCLEBACK_BENCH_CONCURRENCY"] = str(concurrency)
        self.tick_config = write_config(home, "cbbench-tick", url, fake.url, account)
        self.period = 0

    def _sql(self, query: str, *params: object) -> list[tuple[object, ...]]:
        with psycopg.connect(conninfo(self.url), autocommit=True) as conn:
            return list(conn.execute(query, params).fetchall())

    def _tick(self, period: int) -> float:
        """The real tick once (what the periodic task runs): seconds it took."""
        settings = load_settings(self.tick_config, environ={})
        app = make_app(settings, timedelta(seconds=DAY))

        async def run() -> float:
            async with app.open_async():
                start = time.perf_counter()
                await app.tasks[TICK_TASK].func(timestamp=period)
                return time.perf_counter() - start

        return asyncio.run(run())

    def tick_alone(self) -> tuple[int, float]:
        """The tick with no worker running: what deferring everyone's job costs by itself."""
        self.period += 1
        return self.period, self._tick(self.period)

    def _wait(self, period: int) -> int:
        """Until every cycle job of `period` has succeeded; how many there are."""
        while True:
            (done, failed), *_ = self._sql(
                "SELECT count(*) FILTER (WHERE status = 'succeeded'), "
                "count(*) FILTER (WHERE status IN ('failed', 'aborted')) "
                "FROM procrastinate_jobs WHERE task_name = %s AND (args->>'period')::bigint = %s",
                CYCLE_TASK,
                period,
            )
            if failed:
                raise SystemExit(f"{failed} cycle job(s) failed; see {self.home}/cbbench-w*.log")
            if done == len(self.emails):
                return int(done)
            time.sleep(0.2)

    def run(self, workers: int, deferred: int | None = None) -> Round:
        """One round: `workers` processes run a warm-up period, then the measured one (a new tick's
        jobs); or, with `deferred`, the jobs of a tick already run (first cycles: no warm-up, timed from
        the first job's start)."""
        period = deferred or 0
        result = Round(workers)
        names = [f"cbbench-w{n}" for n in range(workers)]
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    str(REPO / "tests" / "org_worker.py"),
                    str(write_config(self.home, name, self.url, self.fake.url, self.account)),
                    str(DAY),
                    name,
                ],
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=(self.home / f"{name}.log").open("a"),
            )
            for name in names
        ]
        try:
            deadline = time.monotonic() + 60
            while self._sql("SELECT count(*) FROM procrastinate_workers")[0][0] != workers:
                if time.monotonic() > deadline:
                    raise SystemExit(f"workers did not start; see {self.home}/cbbench-w*.log")
                time.sleep(0.1)
            if deferred is None:
                # A period to warm up first: workers run for weeks, so they have met everyone before
                # (their engine's compiled statements, each person's access token). The figures are of
                # the period after it.
                self.period += 1
                self._tick(self.period)
                self._wait(self.period)
                self.period += 1
                period = self.period
            requests_before = self._fake_requests()
            cpu_before = [cpu_seconds(p.pid) for p in procs]
            queued_before = sum(runqueue_wait(p.pid) for p in procs)
            fake_before = cpu_seconds(self.fake.proc.pid)
            postgres_before = postgres_cpu()
            idle_before, total_before = machine_cpu()
            peaks = dict.fromkeys(names, 0)
            stop = threading.Event()
            waits: list[tuple[int, int]] = []
            sampler = threading.Thread(
                target=self._sample_connections, args=(peaks, waits, stop), daemon=True
            )
            sampler.start()
            result.tick_seconds = self._tick(period) if deferred is None else 0.0
            done = self._wait(period)
            stop.set()
            sampler.join()
            idle_after, total_after = machine_cpu()
            result.idle_share = (idle_after - idle_before) / max(1.0, total_after - total_before)
            result.worker_cpu = sum(cpu_seconds(p.pid) for p in procs) - sum(cpu_before)
            result.runqueue = sum(runqueue_wait(p.pid) for p in procs) - queued_before
            result.fake_cpu = cpu_seconds(self.fake.proc.pid) - fake_before
            result.postgres_cpu = postgres_cpu() - postgres_before
            result.rss_mb = [peak_rss_mb(p.pid) for p in procs]
            result.connections = peaks
            result.active = statistics.fmean(a for a, _ in waits) if waits else 0.0
            result.lock_waits = statistics.fmean(w for _, w in waits) if waits else 0.0
            after = self._fake_requests()
            result.requests = {k: after[k] - requests_before.get(k, 0) for k in after}
            (first, last), *_ = self._sql(
                "SELECT min(e.at) FILTER (WHERE e.type = %s), max(e.at) FILTER (WHERE e.type = "
                "'succeeded') FROM procrastinate_events e JOIN procrastinate_jobs j ON j.id = e.job_id "
                "WHERE j.task_name = %s AND (j.args->>'period')::bigint = %s",
                "deferred" if deferred is None else "started",
                CYCLE_TASK,
                period,
            )
            assert isinstance(first, datetime) and isinstance(last, datetime)
            # From just before the first defer (the tick's start) to the last job's end.
            result.seconds = (last - first).total_seconds()
            result.jobs = done
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=60)
        return result

    def _sample_connections(
        self, peaks: dict[str, int], waits: list[tuple[int, int]], stop: threading.Event
    ) -> None:
        """Every 0.1 s: each worker's connections, and how many of them are running a statement and how
        many of those wait for a lock (a serialising lock shows up here)."""
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            while not stop.is_set():
                rows = conn.execute(
                    "SELECT application_name, count(*), count(*) FILTER (WHERE state = 'active'), "
                    "count(*) FILTER (WHERE wait_event_type = 'Lock') FROM pg_stat_activity "
                    "WHERE application_name = ANY(%s) GROUP BY application_name",
                    (list(peaks),),
                ).fetchall()
                for name, count, _active, _locked in rows:
                    peaks[name] = max(peaks[name], int(count))
                waits.append((sum(int(r[2]) for r in rows), sum(int(r[3]) for r in rows)))
                time.sleep(0.1)

    def _fake_requests(self) -> dict[str, int]:
        """Requests the fake has received so far, by kind (see FakeGoogle._stats)."""
        with urllib.request.urlopen(self.fake.url + "_fake/stats", timeout=30) as answer:
            counts: dict[str, int] = json.load(answer)
        return counts


def report(label: str, result: Round) -> None:
    conns = " ".join(str(result.connections[n]) for n in sorted(result.connections))
    rss = " ".join(f"{r:.0f}" for r in result.rss_mb)
    print(
        f"{label:<22} {result.workers} worker(s): {result.jobs} cycles in {result.seconds:6.1f} s = "
        f"{result.per_minute:6.0f}/min | tick {result.tick_seconds:.2f} s | connections per worker {conns} "
        f"| peak RSS MB {rss} | worker CPU {result.worker_cpu / result.jobs * 1000:.0f} ms/cycle, "
        f"fake CPU {result.fake_cpu / result.jobs * 1000:.0f} ms/cycle, PostgreSQL CPU "
        f"{result.postgres_cpu / result.jobs * 1000:.0f} ms/cycle, workers waiting for a CPU "
        f"{result.runqueue / result.jobs * 1000:.0f} ms/cycle, machine idle "
        f"{result.idle_share:.0%} | DB statements running {result.active:.1f}, waiting on a lock "
        f"{result.lock_waits:.1f} (mean) | requests per cycle: "
        + ", ".join(f"{k} {v / result.jobs:.1f}" for k, v in sorted(result.requests.items()) if v),
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--people", type=int, default=300)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--concurrency",
        type=int,
        help="jobs at once per worker (default: the shipped daemon.org.CONCURRENCY)",
    )
    args = parser.parse_args()
    schema = f"circleback_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/postgres?options=-csearch_path%3D{schema}"
    emails = [f"person{i:04d}@example.org" for i in range(args.people)]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp)
            for sub in ("config", "state", "data"):
                (home / sub).mkdir()
            fake = FakeServer(emails, args.latency_ms, home)
            try:
                account = write_service_account(home / "account.json", ACCOUNT)
                plan = PLAN.read_text(encoding="utf-8")
                with Store(url) as store:
                    people = People(store.engine)
                    for email in emails:
                        people.add(
                            email, name=email, plan_text=plan, google_subject=None, now=datetime.now(UTC)
                        )
                prepare(
                    load_settings(write_config(home, "cbbench-setup", url, fake.url, account), environ={})
                )
                bench = Bench(url, home, fake, account, emails, args.concurrency)
                print(
                    f"{args.people} people x 5 connections, fake Google +{args.latency_ms:.0f} ms on every "
                    f"request, {args.concurrency or CONCURRENCY} jobs at once per worker, "
                    f"{os.cpu_count()} CPUs "
                    "(shared with other work: rounds interleaved)",
                    flush=True,
                )
                period, alone = bench.tick_alone()
                print(
                    f"tick alone (no worker running): {alone:.2f} s to defer {args.people} jobs "
                    f"= {alone / args.people * 1000:.1f} ms each",
                    flush=True,
                )
                report("first cycles", bench.run(3, deferred=period))
                quiet: dict[int, list[Round]] = {1: [], 3: []}
                for n in range(args.rounds):
                    for workers in (1, 3) if n % 2 == 0 else (3, 1):
                        result = bench.run(workers)
                        quiet[workers].append(result)
                        report(f"quiet round {n + 1}", result)
                one = statistics.median(r.per_minute for r in quiet[1])
                three = statistics.median(r.per_minute for r in quiet[3])
                print(f"quiet cycles per minute (median): 1 worker {one:.0f}, 3 workers {three:.0f}")
                print(f"ratio 3/1: {three / one:.2f}x")
            finally:
                fake.stop()
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


if __name__ == "__main__":
    main()

"""Benchmark: start-up, first read of a big export, the service's memory after it, `agenda` on it.

Run on demand (minutes; the reference runs are the slow part):
`.venv/bin/python tests/bench/bench_speed.py [--events 50000] [--years 10] [--runs 5] [--no-reference]`.

Every figure is measured in a child process (wall time, CPU time and peak RSS from wait4), side by side
with its reference in the same run:
- `circleback --help` and `plan check` against `python -c pass`;
- the first read of a ten-year export for the service's window (LOOKBACK before now to the default horizon
  after it) against the code of commit ef983db (`git archive`, run with PYTHONPATH) and against plain
  icalendar + recurring-ical-events;
- `circleback run` (the shipped service, its HTTP side on a free port) resident memory once its first cycle
  is done, with that export as its source and with none;
- `circleback agenda` with that export as its source (a first run: it previews a dry-run cycle).
The export is generated as tests/bench/bench_reconcile_read.py does, ending a few months after today.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bench_reconcile_read
import httpx

ROOT = Path(__file__).resolve().parents[2]
PLAN = ROOT / "tests" / "fixtures" / "plans" / "ada.yaml"
REFERENCE_COMMIT = "ef983db"
LOOKBACK = timedelta(days=92)  # daemon.cycle.LOOKBACK
HORIZON = timedelta(weeks=14)  # the default horizon

READ = """
import sys, time
from datetime import datetime, timedelta
from pathlib import Path
from schedules.events import Interval
from connectors.ics_source import IcsSource
import connectors
assert connectors.__file__.startswith(sys.argv[3]), connectors.__file__
now = datetime.fromisoformat(sys.argv[2])
window = Interval(now - timedelta(days=92), now + timedelta(weeks=14))
source = IcsSource("bench", sys.argv[1], cache_dir=Path(sys.argv[1]).parent / ("cache-" + str(time.time())))
wall, cpu = time.perf_counter(), time.process_time()
snapshot = source.read(window)
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
print(f"{len(snapshot.observations)} instances; the read() call alone: {wall:.3f} s wall, {cpu:.3f} s CPU")
"""

PLAIN = """
import sys
from datetime import datetime, timedelta
import icalendar, recurring_ical_events
now = datetime.fromisoformat(sys.argv[2])
calendar = icalendar.Calendar.from_ical(open(sys.argv[1], "rb").read())
window = (now - timedelta(days=92), now + timedelta(weeks=14))
print(f"{len(list(recurring_ical_events.of(calendar).between(*window)))} instances")
"""


@dataclass(frozen=True)
class Run:
    wall: float
    cpu: float
    peak_mib: float
    out: str


def measure(args: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> Run:
    proc = subprocess.run(args, env=env, cwd=cwd, capture_output=True, check=False)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(args)}: exit {proc.returncode}\n{proc.stderr.decode()[-2000:]}")
    *out, usage = proc.stdout.decode().strip().splitlines()
    wall, cpu, peak = (float(x) for x in usage.split())
    return Run(wall, cpu, peak, " ".join(out).strip())


REPORTER = """
import resource, subprocess, sys, time
started = time.perf_counter()
proc = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE)
wall = time.perf_counter() - started
sys.stdout.write(proc.stdout.decode().strip() + "\\n")
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{wall:.4f} {usage.ru_utime + usage.ru_stime:.4f} {usage.ru_maxrss / 1024:.1f}")
sys.exit(proc.returncode)
"""


def timed(args: Sequence[str], **kwargs: object) -> Run:
    """Run `args` under a reporter process that prints the child's wall time, CPU time and peak RSS (the
    reporter's own start-up is not counted)."""
    return measure([sys.executable, "-c", REPORTER, *args], **kwargs)  # type: ignore[arg-type]


def env_for(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIRCLEBACK_")}
    env.update(
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_DATA_HOME=str(home / "data"),
        XDG_STATE_HOME=str(home / "state"),
        **extra,
    )
    return env


def median_runs(commands: dict[str, list[str]], runs: int, env: dict[str, str]) -> dict[str, list[Run]]:
    """Interleaved: each round runs every command once, so a busy moment on the machine hits all alike."""
    results: dict[str, list[Run]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, args in commands.items():
            results[name].append(timed(args, env=env))
    return results


def row(name: str, runs: Sequence[Run], note: str = "") -> str:
    wall = statistics.median(r.wall for r in runs)
    cpu = statistics.median(r.cpu for r in runs)
    peak = max(r.peak_mib for r in runs)
    return f"| {name} | {wall:.3f} s | {cpu:.3f} s | {peak:.0f} MiB | {note} |"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def service_rss(home: Path, sources: Sequence[str], timeout: float = 900) -> tuple[float, float]:
    """Seconds to the first finished cycle and VmRSS (MiB) a few seconds after it, of `circleback run`."""
    for sub in ("config", "data", "state"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = env_for(home, CIRCLEBACK_HTTP_PORT=str(port))
    args = [
        sys.executable,
        "-m",
        "daemon.cli",
        "run",
        "--plan",
        str(PLAN),
        "--db",
        f"sqlite:///{home}/run.db",
    ]
    for source in sources:
        args += ["--source", source]
    started = time.perf_counter()
    proc = subprocess.Popen(args, env=env, cwd=home, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"circleback run exited with {proc.returncode}")
            if time.perf_counter() - started > timeout:
                raise SystemExit("circleback run: no finished cycle in time")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        ready = time.perf_counter() - started
        time.sleep(5)  # idle: the cycle's garbage collected, nothing running
        status = Path(f"/proc/{proc.pid}/status").read_text()
        rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
        return ready, rss / 1024
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--years", type=int, default=10)
    parser.add_argument("--runs", type=int, default=5, help="runs of each start-up command (medians)")
    parser.add_argument("--no-reference", action="store_true", help="skip the slow reference reads")
    args = parser.parse_args(argv)

    now = datetime.now(UTC).replace(microsecond=0)
    with tempfile.TemporaryDirectory() as work_dir:
        work = Path(work_dir)
        for sub in ("config", "data", "state"):
            (work / sub).mkdir()
        export = work / "export.ics"
        # Ten years ending a few months from now, so the service's window holds a realistic share.
        start = (now - timedelta(days=args.years * 365) + timedelta(days=120)).replace(tzinfo=UTC)
        bench_reconcile_read.START = start - timedelta(days=start.weekday())
        bench_reconcile_read.generate_calendar(export, args.events, args.years)
        size = export.stat().st_size / 2**20
        print(f"export: {args.events:,} events over {args.years} years, {size:.1f} MiB; now = {now:%Y-%m-%d}")
        env = env_for(work)
        lines = ["| figure | wall | CPU | peak RSS | note |", "|---|---|---|---|---|"]

        python = sys.executable
        startup = median_runs(
            {
                "python -c pass": [python, "-c", "pass"],
                "circleback --help": [python, "-m", "daemon.cli", "--help"],
                "circleback plan check": [python, "-m", "daemon.cli", "plan", "check", str(PLAN)],
            },
            args.runs,
            env,
        )
        for name, runs in startup.items():
            lines.append(row(name, runs, f"median of {args.runs}, interleaved"))

        read_args = [str(export), now.isoformat()]
        current = timed([python, "-c", READ, *read_args, str(ROOT)], env=env, cwd=ROOT)
        lines.append(row("first read, this branch (whole process)", [current], current.out))
        if not args.no_reference:
            old = work / "reference"
            old.mkdir()
            archive = subprocess.run(
                ["git", "archive", REFERENCE_COMMIT, "daemon", "schedules", "connectors"],
                cwd=ROOT,
                check=True,
                capture_output=True,
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
            old_env = {**env, "PYTHONPATH": str(old)}
            reference = timed([python, "-c", READ, *read_args, str(old)], env=old_env, cwd=old)
            lines.append(row(f"first read, {REFERENCE_COMMIT} (whole process)", [reference], reference.out))
            plain = timed([python, "-c", PLAIN, *read_args], env=env, cwd=work)
            lines.append(row("first read, icalendar + recurring-ical-events", [plain], plain.out))
            for what, mine, theirs in (
                ("wall", current.wall, reference.wall),
                ("CPU", current.cpu, reference.cpu),
            ):
                lines.append(
                    f"| first read {what}: {REFERENCE_COMMIT} / this branch | {theirs / mine:.1f}x | | | |"
                )
            shutil.rmtree(old)

        ready, rss = service_rss(work / "service-export", [str(export)])
        idle_ready, idle_rss = service_rss(work / "service-none", [])
        lines.append(
            f"| circleback run, export as source | {ready:.1f} s to ready | | {rss:.0f} MiB idle | VmRSS |"
        )
        lines.append(
            f"| circleback run, no source | {idle_ready:.1f} s to ready | | {idle_rss:.0f} MiB idle | VmRSS |"
        )

        agenda_home = work / "agenda"
        for sub in ("config", "data", "state"):
            (agenda_home / sub).mkdir(parents=True)
        agenda = timed(
            [python, "-m", "daemon.cli", "agenda", "--plan", str(PLAN), "--source", str(export)],
            env=env_for(agenda_home),
            cwd=agenda_home,
        )
        lines.append(row("circleback agenda, export as source", [agenda], "first run (preview cycle)"))
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

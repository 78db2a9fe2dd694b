"""Benchmark: start-up, warm commands on unchanged calendars, first read of a big export, service memory.

Run on demand (minutes; the reference runs are the slow part):
`.venv/bin/python tests/bench/bench_speed.py [--events 50000] [--years 10] [--runs 5] [--no-reference]
[--only startup,warm,commands,read,service]`.

Every figure is measured in a child process (wall time, CPU time and peak RSS from wait4), side by side
with its reference in the same run, the two interleaved run by run so that a busy machine slows both:
- `circleback --help` and `plan check` against `python -c pass`;
- warm: `circleback sync` with 5 connections and 3 ICS sources of 2,000 events each, nothing changed since
  the last sync, against the code of commit ef983db (`git archive`, run with PYTHONPATH; each with its own
  database, synced once before the timed runs);
- commands: `circleback status` and `circleback agenda` with the ten-year export as the source, after a
  sync, against ef983db the same way;
- read: the first read of the ten-year export for the service's window (LOOKBACK before now to the default
  horizon after it) against ef983db and against plain icalendar + recurring-ical-events;
- service: `circleback run` (the shipped service, its HTTP side on a free port) resident memory once its
  first cycle is done, with that export as its source and with none.
The calendars are generated as tests/bench/bench_reconcile_read.py does, ending a few months after today.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bench_reconcile_read
import httpx

ROOT = Path(__file__).resolve().parents[2]
PLAN = ROOT / "tests" / "fixtures" / "plans" / "ada.yaml"
REFERENCE_COMMIT = "ef983db"
SECTIONS = ("startup", "warm", "commands", "read", "service")
# Runs circleback's CLI from the tree given first, and refuses to run another one (an installed copy).
CLI = """
import sys
tree = sys.argv.pop(1)
import daemon
assert daemon.__file__.startswith(tree), daemon.__file__
from daemon.cli import main
sys.exit(main(sys.argv[1:]))
"""
FIVE = """owner: {name: Bench Owner, email: owner@example.com}
timezone: Europe/London
mindset: Relationships first.
working_hours: {days: [mon, tue, wed, thu, fri], start: "09:00", end: "17:30"}
review: {every: month, duration: 30m}
connections:
"""
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


def generate(path: Path, events: int, years: int, now: datetime, seed: int = 1) -> None:
    """An export of `events` over `years`, ending a few months after `now`."""
    start = now - timedelta(days=years * 365) + timedelta(days=120)
    bench_reconcile_read.START = start - timedelta(days=start.weekday())
    bench_reconcile_read.generate_calendar(path, events, years, seed=seed)


@dataclass(frozen=True)
class Tree:
    """A circleback to run: its source tree, and the environment that makes Python import it."""

    name: str
    root: Path
    env: dict[str, str]

    def cli(self, home: Path, *args: str) -> list[str]:
        return [sys.executable, "-c", CLI, str(self.root), *args, "--db", f"sqlite:///{home}/circleback.db"]


def reference_tree(work: Path, env: dict[str, str]) -> Tree:
    old = work / "reference"
    old.mkdir(exist_ok=True)
    archive = subprocess.run(
        ["git", "archive", REFERENCE_COMMIT, "daemon", "schedules", "connectors"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
    return Tree(REFERENCE_COMMIT, old, {**env, "PYTHONPATH": str(old)})


def home_for(work: Path, name: str) -> Path:
    home = work / name
    for sub in ("config", "data", "state"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    return home


def side_by_side(
    trees: Sequence[Tree],
    work: Path,
    label: str,
    setup: Sequence[str],
    timed_args: Mapping[str, Sequence[str]],
    runs: int,
) -> list[str]:
    """Per tree: its own home and database, `setup` run once (untimed), then each of `timed_args` run
    `runs` times, every tree and command once per round."""
    homes = {tree.name: home_for(work, f"{label}-{tree.name}") for tree in trees}
    for tree in trees:
        home = homes[tree.name]
        done = subprocess.run(
            tree.cli(home, *setup), env=env_for(home, **_extra(tree)), cwd=home, capture_output=True
        )
        if done.returncode not in (0, 1):
            raise SystemExit(
                f"{tree.name}: {' '.join(setup)}: exit {done.returncode}\n{done.stderr.decode()[-2000:]}"
            )
    results: dict[tuple[str, str], list[Run]] = {}
    for _ in range(runs):
        for name, args in timed_args.items():
            for tree in trees:
                home = homes[tree.name]
                run = timed(tree.cli(home, *args), env=env_for(home, **_extra(tree)), cwd=home)
                results.setdefault((name, tree.name), []).append(run)
    lines = []
    for name in timed_args:
        for tree in trees:
            lines.append(
                row(f"{name}, {tree.name}", results[(name, tree.name)], f"median of {runs}, interleaved")
            )
        if len(trees) == 2:
            mine, theirs = (statistics.median(r.wall for r in results[(name, t.name)]) for t in trees)
            lines.append(f"| {name}: {trees[1].name} / {trees[0].name} | {theirs / mine:.1f}x | | | |")
    return lines


def _extra(tree: Tree) -> dict[str, str]:
    return {"PYTHONPATH": tree.env["PYTHONPATH"]} if "PYTHONPATH" in tree.env else {}


def warm_sync(trees: Sequence[Tree], work: Path, now: datetime, runs: int) -> list[str]:
    """`circleback sync`, 5 connections, 3 sources of 2,000 events, nothing changed since the last sync."""
    sources = []
    for index in range(3):
        path = work / f"source-{index}.ics"
        generate(path, 2_000, 2, now, seed=index + 1)
        sources += ["--source", str(path)]
    plan = work / "five.yaml"
    people = [
        f"  - {{name: Person {i}, email: person{i}@example.com, stage: nurture, every: 2 weeks, "
        f"duration: 30m, next_action: Call{', target: true' if i == 0 else ''}}}"
        for i in range(5)
    ]
    plan.write_text(FIVE + "\n".join(people) + "\n")
    sync = ["sync", "--plan", str(plan), *sources]
    return side_by_side(trees, work, "warm", sync, {"warm circleback sync (3 x 2,000 events)": sync}, runs)


def commands(trees: Sequence[Tree], work: Path, export: Path, runs: int) -> list[str]:
    """`status` and `agenda` on the unchanged ten-year export, after a sync."""
    given = ["--plan", str(PLAN), "--source", str(export)]
    timed_args = {
        "circleback status (export)": ["status", *given],
        "circleback agenda (export)": ["agenda", *given],
    }
    return side_by_side(trees, work, "commands", ["sync", *given], timed_args, runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--years", type=int, default=10)
    parser.add_argument("--runs", type=int, default=5, help="runs of each timed command (medians)")
    parser.add_argument("--no-reference", action="store_true", help="skip the reference runs")
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"sections to run, of {','.join(SECTIONS)}"
    )
    args = parser.parse_args(argv)
    sections = set(args.only.split(","))
    if sections - set(SECTIONS):
        parser.error(f"--only: unknown section(s) {sorted(sections - set(SECTIONS))}")

    now = datetime.now(UTC).replace(microsecond=0)
    with tempfile.TemporaryDirectory() as work_dir:
        work = Path(work_dir)
        for sub in ("config", "data", "state"):
            (work / sub).mkdir()
        env = env_for(work)
        trees = [Tree("this branch", ROOT, env)]
        if not args.no_reference:
            trees.append(reference_tree(work, env))
        export = work / "export.ics"
        # Ten years ending a few months from now, so the service's window holds a realistic share.
        generate(export, args.events, args.years, now)
        size = export.stat().st_size / 2**20
        print(f"export: {args.events:,} events over {args.years} years, {size:.1f} MiB; now = {now:%Y-%m-%d}")
        print(f"load average at the start: {load()} ({os.cpu_count()} CPUs)")
        lines = ["| figure | wall | CPU | peak RSS | note |", "|---|---|---|---|---|"]
        python = sys.executable

        if "startup" in sections:
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
        if "warm" in sections:
            lines += warm_sync(trees, work, now, args.runs)
        if "commands" in sections:
            lines += commands(trees, work, export, args.runs)
        if "read" in sections:
            lines += first_read(trees, work, export, now)
        if "service" in sections:
            ready, rss = service_rss(work / "service-export", [str(export)])
            idle_ready, idle_rss = service_rss(work / "service-none", [])
            for name, seconds, mib in (("export as source", ready, rss), ("no source", idle_ready, idle_rss)):
                lines.append(
                    f"| circleback run, {name} | {seconds:.1f} s to ready | | {mib:.0f} MiB idle | VmRSS |"
                )
        print(f"load average at the end: {load()}")
        print("\n".join(lines))
    return 0


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def first_read(trees: Sequence[Tree], work: Path, export: Path, now: datetime) -> list[str]:
    """The first read of the export for the service's window, by each tree, and by the plain libraries."""
    read_args = [str(export), now.isoformat()]
    lines = []
    walls: dict[str, Run] = {}
    for tree in trees:
        run = timed([sys.executable, "-c", READ, *read_args, str(tree.root)], env=tree.env, cwd=tree.root)
        walls[tree.name] = run
        lines.append(row(f"first read, {tree.name} (whole process)", [run], run.out))
    if len(trees) == 2:
        plain = timed([sys.executable, "-c", PLAIN, *read_args], env=trees[0].env, cwd=work)
        lines.append(row("first read, icalendar + recurring-ical-events", [plain], plain.out))
        mine, theirs = walls[trees[0].name], walls[trees[1].name]
        for what, a, b in (("wall", mine.wall, theirs.wall), ("CPU", mine.cpu, theirs.cpu)):
            lines.append(f"| first read {what}: {trees[1].name} / {trees[0].name} | {b / a:.1f}x | | | |")
    return lines


if __name__ == "__main__":
    sys.exit(main())

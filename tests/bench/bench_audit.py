"""Benchmark: `circleback audit` on an organisation's worth of log, and the HTML report for one person's year.

Run on demand: `.venv/bin/python tests/bench/bench_audit.py`. It builds, in a temporary XDG home:
1. a SQLite store holding 100,000 interactions across 1,000 connections (five of them in the plan), and
   times the real command (`python -m daemon.cli audit`, a subprocess) with its peak memory (ru_maxrss);
2. a five-connection plan with a year of log and placed touchpoints, and times
   `circleback audit --html FILE --png FILE` the same way.
The pure `schedules.audit.audit` on the 100,000 entries is timed in-process too, to show where time goes.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from daemon.store import Store
from schedules.audit import audit
from schedules.events import Interaction, InteractionKind
from schedules.plan import parse_plan

NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
NAMES = ["Grace Hopper", "Linus Torvalds", "Barbara Liskov", "Margaret Hamilton", "Women in Tech London"]
PLAN = """\
owner: {name: Ada Lovelace, email: ada@example.com}
timezone: Europe/London
mindset: Relationships are the currency of leadership.
working_hours: {days: [mon, tue, wed, thu, fri], start: "09:00", end: "17:30"}
review: {every: month}
connections:
  - {name: Grace Hopper, email: grace@navy.example, role: mentor, stage: nurture, every: 2 weeks,
     next_action: a}
  - {name: Linus Torvalds, role: peer, stage: elevate, every: month, next_action: b}
  - {name: Barbara Liskov, role: sponsor, stage: nurture, every: month, next_action: c}
  - {name: Margaret Hamilton, role: client, stage: nurture, every: 3 weeks, next_action: d}
  - {name: Women in Tech London, kind: group, target: true, stage: find, every: month, next_action: e}
"""


def home_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIRCLEBACK_")}
    env.update(
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_DATA_HOME=str(home / "data"),
        XDG_STATE_HOME=str(home / "state"),
    )
    return env


def measured(home: Path, *args: str) -> tuple[float, int, str]:
    """Seconds, peak resident memory (MiB) and stdout of one real `circleback` run (its own rusage)."""
    command = [
        sys.executable,
        "-m",
        "daemon.cli",
        *args,
        "--plan",
        str(home / "plan.yaml"),
        "--now",
        NOW.isoformat(),
    ]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(command, env=home_env(home), cwd=home, stdout=out, stderr=err)
        _pid, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"{args} failed ({proc.returncode}): {err.read().decode()}")
        return elapsed, usage.ru_maxrss // 1024, out.read().decode()


def make_home(root: Path, name: str) -> Path:
    home = root / name
    for sub in ("config", "data", "state"):
        (home / sub).mkdir(parents=True)
    (home / "plan.yaml").write_text(PLAN)
    return home


def store_url(home: Path) -> str:
    path = home / "data" / "circleback" / "circleback.db"
    return f"sqlite:///{path}"


def big_log(count: int, people: int, seed: int) -> list[Interaction]:
    rng = random.Random(seed)
    names = NAMES + [f"Person {n:04d}" for n in range(people - len(NAMES))]
    return [
        Interaction(
            rng.choice(names),
            NOW - timedelta(minutes=rng.randrange(3 * 365 * 24 * 60)),
            InteractionKind.ASK if rng.random() < 0.12 else InteractionKind.GIVE,
            note="",
        )
        for _ in range(count)
    ]


def year_log(seed: int) -> list[Interaction]:
    rng = random.Random(seed)
    out = []
    for name, every in zip(NAMES, (14, 30, 30, 21, 30), strict=True):
        day = NOW - timedelta(days=365)
        while day < NOW - timedelta(days=3):
            out.append(
                Interaction(name, day, InteractionKind.ASK if rng.random() < 0.15 else InteractionKind.GIVE)
            )
            day += timedelta(days=every + rng.randrange(-3, 10))
    return out


def fill(home: Path, log: list[Interaction]) -> None:
    with Store(store_url(home), clock=lambda: NOW) as store:
        store.save_cycle(revisions=(), removed=(), statuses={}, interactions=[(i, None) for i in log])


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        org = make_home(root, "org")
        # The store's path is the XDG default; a first read-only command must find the migrated file.
        (org / "data" / "circleback").mkdir(parents=True)
        log = big_log(100_000, 1_000, seed=1)
        t0 = time.perf_counter()
        fill(org, log)
        print(
            f"setup: stored 100,000 interactions across 1,000 connections in {time.perf_counter() - t0:.1f} s"
        )
        plan = parse_plan(PLAN, "plan.yaml")
        t0 = time.perf_counter()
        result = audit(plan, log, [], NOW.date())
        pure = time.perf_counter() - t0
        print(f"schedules.audit.audit (pure, in-process) on 100,000 entries: {pure * 1000:.0f} ms")
        print(f"  balance {result.balance.phrase()}, {len(result.findings)} findings")
        for args in (("audit",), ("audit", "--json")):
            times, peaks = [], []
            for _ in range(3):
                elapsed, peak, _out = measured(org, *args)
                times.append(elapsed)
                peaks.append(peak)
            print(
                f"circleback {' '.join(args)} (100,000 entries): best {min(times):.2f} s, "
                f"peak {max(peaks)} MiB"
            )

        person = make_home(root, "person")
        measured(person, "sync")
        fill(person, year_log(seed=2))
        measured(person, "sync")
        html, png = person / "audit.html", person / "audit.png"
        times, peaks = [], []
        for _ in range(3):
            elapsed, peak, _out = measured(person, "audit", "--html", str(html), "--png", str(png))
            times.append(elapsed)
            peaks.append(peak)
        print(
            f"circleback audit --html --png (5 connections, a year of log): best {min(times):.2f} s, "
            f"peak {max(peaks)} MiB; HTML {html.stat().st_size // 1024} KiB, "
            f"PNG {png.stat().st_size // 1024} KiB"
        )
        baseline = [measured(person, "plan", "check")[0] for _ in range(3)]
        print(f"for scale: circleback plan check (start-up and plan only): best {min(baseline):.2f} s")


if __name__ == "__main__":
    main()

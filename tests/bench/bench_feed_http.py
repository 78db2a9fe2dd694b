"""Feed serving throughput of `circleback run` as shipped, side by side with nginx and Radicale in one run.

Run on demand:  .venv/bin/python tests/bench/bench_feed_http.py [--duration 10] [--rounds 3] [--access-log]

What is measured:
- circleback: the installed command, `circleback run --config FILE` (this environment's console script, a
  process of its own), with a config file and a plan written here: five weekly connections (a plan holds
  at most five, a week is the shortest cadence) and a monthly review, published over a 52-week horizon
  (the longest the config allows), so the feed is the largest a real plan makes. Its own first cycle
  writes the feed; its own web server serves it at the address `circleback feed url` prints. This file
  imports nothing of circleback's: what runs is what a person runs. The shipped configuration is printed
  as the command itself reports it (`circleback config`) and as the running process has it loaded (the
  uvicorn protocol and event loop libraries mapped into it): uvicorn with httptools and uvloop, the
  access log off (the default; --access-log adds a second circleback with it on, to show its cost).
- nginx (Debian's, one worker, access log off, sendfile): the same feed bytes as a static file; one
  worker because circleback is one process.
- Radicale 3 (a dev dependency): the same events as a CalDAV collection, a GET of the collection.

Pinning: every server is started under `taskset -c S` and wrk under `taskset -c W`, S and W two different
CPUs of this process's affinity (S the first, W the rest), so the load generator never competes with the
server for its core. The affinity of every server thread and of wrk is read back from /proc and printed.
With a single CPU nothing is pinned, and the output says so.

wrk (keep-alive, fixed connections) runs full GETs and conditional GETs (If-None-Match with the server's
ETag, where it answers 304), in --rounds rounds that visit every server in turn, so a noisy machine skews
them all alike; ratios to nginx are taken within a round. Then circleback idles for --idle-seconds: RSS
and CPU over that window. The load average before and after is printed: on a shared machine, say so with
the figures.

Needs `wrk`, `taskset` and Debian's `nginx` on PATH (apt-get install -y wrk nginx-light util-linux) and
Radicale in the venv (`pip install -e '.[dev]'`); a missing nginx or Radicale is reported and skipped,
circleback is always measured. Everything listens on 127.0.0.1 on free ports, lives in a temp directory
and is stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import httpx

CLK_TCK = os.sysconf("SC_CLK_TCK")
COMMAND = Path(sys.executable).parent / "circleback"

# Five connections, weekly: the most a plan holds at the shortest cadence.
PLAN = """\
owner: {name: Bench Person, email: bench@example.org}
timezone: Europe/Berlin
mindset: Relationships are the currency of leadership; I build them before I need them.
working_hours: {days: [mon, tue, wed, thu, fri], start: "09:00", end: "17:30"}
review: {every: month, duration: 30m, kickoff: true}
connections:
  - {name: Grace Hopper, email: grace@example.org, role: mentor, stage: nurture, every: week, duration: 30m,
     next_action: Send her the compiler article she asked about and ask how the conference talk went}
  - {name: Alan Turing, email: alan@example.org, role: peer, stage: elevate, every: week, duration: 45m,
     next_action: Ask for a review of the hiring plan before the reorg is announced}
  - {name: Katherine Johnson, email: katherine@example.org, role: sponsor, stage: nurture, every: week,
     duration: 30m, next_action: Share the quarter's results and thank her for the introduction}
  - {name: Barbara Liskov, email: barbara@example.org, role: client, stage: nurture, every: week,
     duration: 1h, next_action: Bring the roadmap draft and listen for what is missing}
  - {name: Women in Tech London, kind: group, target: true, stage: find, every: week, duration: 1h,
     next_action: Attend the next meetup and meet two organisers}
"""


@dataclass(frozen=True)
class Pin:
    """Which CPU the servers get and which ones wrk gets; empty when nothing is pinned."""

    server_cpus: tuple[int, ...] = ()
    wrk_cpus: tuple[int, ...] = ()

    @classmethod
    def choose(cls, disabled: bool) -> Pin:
        cpus = sorted(os.sched_getaffinity(0))
        if disabled or len(cpus) < 2:
            return cls()
        if shutil.which("taskset") is None:
            raise SystemExit("taskset is not installed (apt-get install -y util-linux), or pass --no-pin")
        return cls((cpus[0],), tuple(cpus[1:]))

    def server(self, command: list[str]) -> list[str]:
        return self._under(self.server_cpus, command)

    def wrk(self, command: list[str]) -> list[str]:
        return self._under(self.wrk_cpus, command)

    @staticmethod
    def _under(cpus: tuple[int, ...], command: list[str]) -> list[str]:
        return ["taskset", "-c", ",".join(map(str, cpus)), *command] if cpus else command

    def describe(self) -> str:
        if not self.server_cpus:
            return "not pinned (one CPU, or --no-pin): servers and wrk share the CPUs"
        return f"servers pinned to CPU {cpus_text(self.server_cpus)}, wrk to CPU {cpus_text(self.wrk_cpus)}"


def cpus_text(cpus: Sequence[int]) -> str:
    return ",".join(map(str, cpus))


def allowed_cpus(pid: int) -> set[str]:
    """The CPU lists of every thread of `pid` (Cpus_allowed_list), as the kernel has them."""
    lists: set[str] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            status = (task / "status").read_text()
            lists.add(re.search(r"Cpus_allowed_list:\s*(\S+)", status).group(1))  # type: ignore[union-attr]
    return lists


def tree_pids(pid: int) -> list[int]:
    """`pid` and its descendants (nginx master and workers; taskset has exec'd into the server)."""
    pids = [pid]
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                pids += tree_pids(int(child))
    return pids


def affinity_of(pid: int) -> str:
    return " ".join(sorted({cpus for p in tree_pids(pid) for cpus in allowed_cpus(p)}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes] | None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout:g}s")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@dataclass
class ProcSample:
    rss_kib: int
    cpu_ticks: int


def sample(pid: int) -> ProcSample:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return ProcSample(rss, int(fields[11]) + int(fields[12]))  # utime + stime


def tree_rss_kib(pid: int) -> int:
    total = 0
    for p in tree_pids(pid):
        with contextlib.suppress(OSError):
            total += sample(p).rss_kib
    return total


@dataclass
class WrkResult:
    rps: float
    non_ok: int
    errors: str
    latency_p99: str
    affinity: str


def run_wrk(url: str, args: argparse.Namespace, pin: Pin, headers: Sequence[str] = ()) -> WrkResult:
    cmd = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s", "--latency"]
    for h in headers:
        cmd += ["-H", h]
    proc = subprocess.Popen(pin.wrk([*cmd, url]), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(min(1.0, args.duration / 4))
    affinity = affinity_of(proc.pid)  # read while it runs: the CPUs wrk was really allowed
    out, err = proc.communicate(timeout=args.duration + 60)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk exited {proc.returncode}: {err.strip()}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non_ok = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    p99 = re.search(r"\s99%\s+(\S+)", out)
    return WrkResult(
        rps,
        int(non_ok.group(1)) if non_ok else 0,
        errors.group(0) if errors else "",
        p99.group(1) if p99 else "?",
        affinity,
    )


def check_server(name: str, url: str, body: bytes | None) -> str | None:
    """One full GET and one conditional GET, to be sure wrk measures what we think. Returns the ETag."""
    r = httpx.get(url, timeout=30)
    if r.status_code != 200:
        raise RuntimeError(f"{name}: GET {url} gave {r.status_code}")
    if body is not None and r.content != body:
        print(f"  {name}: note: body differs from circleback's ({len(r.content)} vs {len(body)} bytes)")
    etag = r.headers.get("etag")
    cond = httpx.get(url, headers={"If-None-Match": etag}, timeout=30).status_code if etag else None
    print(
        f"  {name}: 200 {len(r.content)} bytes, content-type {r.headers.get('content-type')!r}, "
        f"ETag {etag}, conditional GET -> {cond}"
    )
    return etag if cond == 304 else None


# -------------------------------------------------------------------------------- circleback, as shipped


@dataclass
class Circleback:
    name: str
    proc: subprocess.Popen[bytes]
    url: str
    config: Path
    env: dict[str, str]


def circleback_env(home: Path, extra: dict[str, str]) -> dict[str, str]:
    """A private XDG home, no CIRCLEBACK_ setting from the caller's environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIRCLEBACK_")}
    for sub in ("config", "data", "state"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    env.update(
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_DATA_HOME=str(home / "data"),
        XDG_STATE_HOME=str(home / "state"),
    )
    return env | extra


def start_circleback(tmp: Path, name: str, horizon: str, pin: Pin, extra: dict[str, str]) -> Circleback:
    """`circleback run --config FILE` in a home of its own; returns once /readyz says the feed is served."""
    home = tmp / name.replace(" ", "-")
    env = circleback_env(home, extra)
    (home / "plan.yaml").write_text(PLAN, encoding="utf-8")
    port = free_port()
    config = home / "config.toml"
    config.write_text(
        f'plan = "{home / "plan.yaml"}"\nhorizon = "{horizon}"\n[http]\nport = {port}\n', encoding="utf-8"
    )
    log = open(home / "service.log", "wb")  # noqa: SIM115 - open for the life of the process
    proc = subprocess.Popen(
        pin.server([str(COMMAND), "run", "--config", str(config)]),
        env=env,
        cwd=home,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{name}: circleback run exited {proc.returncode}: {(home / 'service.log').read_text()}"
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                break
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name}: not ready after 120 s: {(home / 'service.log').read_text()}")
        time.sleep(0.2)
    url = subprocess.run(
        [str(COMMAND), "feed", "url", "--config", str(config)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()[0]
    return Circleback(name, proc, url, config, env)


def shipped_configuration(cb: Circleback) -> list[str]:
    """What the command says it runs with (`circleback config`), and what the running process has loaded."""
    shown = subprocess.run(
        [str(COMMAND), "config", "--config", str(cb.config)],
        env=cb.env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    wanted = ("http.access_log", "http.host", "horizon", "log_format", "log_level")
    lines = [f"  config: {' '.join(line.split())}" for line in shown.splitlines() if line.startswith(wanted)]
    maps = Path(f"/proc/{cb.proc.pid}/maps").read_text()
    loaded = [lib for lib in ("httptools", "uvloop") if re.search(rf"/site-packages/{lib}/\S*\.so", maps)]
    lines.append(
        f"  process: uvicorn {version('uvicorn')}; loaded: "
        + (
            ", ".join(f"{lib} {version(lib)}" for lib in loaded)
            or "neither httptools nor uvloop (pure Python)"
        )
    )
    return lines


# ------------------------------------------------------------------------------------------- servers


def start_nginx(
    tmp: Path, feed: bytes, url_path: str, workers: str, pin: Pin
) -> tuple[subprocess.Popen[bytes], int]:
    prefix = tmp / "nginx"
    www = prefix / "www"
    target = www / url_path.lstrip("/")
    target.parent.mkdir(parents=True)
    target.write_bytes(feed)
    for d in ("logs", "tmp"):
        (prefix / d).mkdir()
    port = free_port()
    user = "user root;\n" if os.geteuid() == 0 else ""  # the temp dir is 0700: workers must be us
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""{user}worker_processes {workers};
daemon off;
master_process on;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    types {{ text/calendar ics; }}
    charset utf-8;
    charset_types text/calendar;
    server {{
        listen 127.0.0.1:{port};
        root {www};
        add_header Cache-Control "private, max-age=3600";
    }}
}}
"""
    )
    proc = subprocess.Popen(
        pin.server(["nginx", "-p", str(prefix), "-c", str(conf)]),
        stdout=subprocess.DEVNULL,
        stderr=open(prefix / "logs" / "stderr.log", "wb"),  # noqa: SIM115
        start_new_session=True,
    )
    wait_for_port(port, proc)
    return proc, port


def radicale_items(feed: bytes) -> dict[str, bytes]:
    """One calendar object resource per event, each with the VTIMEZONEs it needs, as CalDAV stores them."""
    from icalendar import Calendar

    cal = Calendar.from_ical(feed)
    zones = [c for c in cal.subcomponents if c.name == "VTIMEZONE"]
    items: dict[str, bytes] = {}
    for event in (c for c in cal.subcomponents if c.name == "VEVENT"):
        one = Calendar()
        one.add("PRODID", "-//circleback//bench//EN")
        one.add("VERSION", "2.0")
        for z in zones:
            one.add_component(z)
        one.add_component(event)
        uid = str(event["UID"])
        items[re.sub(r"[^A-Za-z0-9._-]", "_", uid) + ".ics"] = one.to_ical()
    return items


def start_radicale(tmp: Path, feed: bytes, pin: Pin) -> tuple[subprocess.Popen[bytes], int, str]:
    base = tmp / "radicale"
    collection = base / "collections" / "collection-root" / "bench" / "calendar"
    collection.mkdir(parents=True)
    (collection / ".Radicale.props").write_text(json.dumps({"tag": "VCALENDAR", "D:displayname": "bench"}))
    for name, data in radicale_items(feed).items():
        (collection / name).write_bytes(data)
    port = free_port()
    conf = base / "config"
    conf.write_text(
        f"""[server]
hosts = 127.0.0.1:{port}
[auth]
type = none
[rights]
type = authenticated
[storage]
filesystem_folder = {base / "collections"}
[web]
type = none
[logging]
level = warning
"""
    )
    proc = subprocess.Popen(
        pin.server([sys.executable, "-m", "radicale", "--config", str(conf)]),
        stdout=subprocess.DEVNULL,
        stderr=open(base / "radicale.log", "wb"),  # noqa: SIM115
        start_new_session=True,
    )
    wait_for_port(port, proc, timeout=60)
    return proc, port, "/bench/calendar/"


# ---------------------------------------------------------------------------------------------- main


@dataclass
class Target:
    name: str
    url: str
    etag: str | None  # None: the server does not answer If-None-Match with 304
    proc: subprocess.Popen[bytes]
    full: list[WrkResult] = field(default_factory=list)
    cond: list[WrkResult] = field(default_factory=list)
    rss_before_kib: int = 0
    rss_after_kib: int = 0


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    p.add_argument(
        "--rounds", type=int, default=3, help="rounds over all servers; medians reported (default 3)"
    )
    p.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    p.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    p.add_argument(
        "--idle-seconds", type=int, default=30, help="circleback's idle RSS/CPU window (default 30)"
    )
    p.add_argument(
        "--horizon", default="52 weeks", help="circleback's horizon (default 52 weeks, the longest)"
    )
    p.add_argument(
        "--nginx-workers", default="1", help="nginx worker_processes (default 1; 'auto' = per core)"
    )
    p.add_argument("--access-log", action="store_true", help="also run a circleback with http.access_log on")
    p.add_argument("--no-pin", action="store_true", help="do not pin servers and wrk to separate CPUs")
    p.add_argument("--skip-radicale", action="store_true")
    p.add_argument("--skip-nginx", action="store_true")
    args = p.parse_args(argv)

    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
        return 2
    if not COMMAND.is_file():
        print(
            f"{COMMAND} is missing: install circleback into this environment (pip install -e .)",
            file=sys.stderr,
        )
        return 2
    pin = Pin.choose(args.no_pin)
    print(
        f"feed HTTP benchmark: wrk -t{args.threads} -c{args.connections} -d{args.duration}s "
        f"x {args.rounds} rounds; {len(os.sched_getaffinity(0))} CPUs, {pin.describe()}; "
        f"load average before: {load_average()}"
    )
    targets: list[Target] = []
    circlebacks: list[Circleback] = []
    idle = ""
    with tempfile.TemporaryDirectory(prefix="cb-bench-") as tmpdir, contextlib.ExitStack() as stack:
        tmp = Path(tmpdir)
        variants: list[tuple[str, dict[str, str]]] = [("circleback", {})]
        if args.access_log:
            variants.append(("circleback access-log", {"CIRCLEBACK_HTTP_ACCESS_LOG": "true"}))
        feed = b""
        for name, extra in variants:
            cb = start_circleback(tmp, name, args.horizon, pin, extra)
            stack.callback(stop_process, cb.proc)
            circlebacks.append(cb)
            feed = httpx.get(cb.url, timeout=30).content
            events = feed.count(b"BEGIN:VEVENT")
            print(f"{name}: `{COMMAND} run`, pid {cb.proc.pid}, feed {len(feed)} bytes, {events} events")
            for line in shipped_configuration(cb):
                print(line)
            targets.append(Target(name, cb.url, check_server(name, cb.url, None), cb.proc))

        if not args.skip_nginx and shutil.which("nginx"):
            proc, port = start_nginx(tmp, feed, "/feed/static.ics", args.nginx_workers, pin)
            stack.callback(stop_process, proc)
            url = f"http://127.0.0.1:{port}/feed/static.ics"
            name = f"nginx {nginx_version()} ({args.nginx_workers} worker)"
            targets.append(Target(name, url, check_server("nginx", url, feed), proc))
        elif not args.skip_nginx:
            print("nginx not installed (apt-get install -y nginx-light): skipped")

        if not args.skip_radicale:
            try:
                import radicale
            except ImportError:
                print("Radicale not installed (pip install -e '.[dev]'): skipped")
            else:
                proc, port, path = start_radicale(tmp, feed, pin)
                stack.callback(stop_process, proc)
                url = f"http://127.0.0.1:{port}{path}"
                name = f"radicale {radicale.VERSION}"
                targets.append(Target(name, url, check_server("radicale", url, None), proc))

        print("CPUs each server may run on (every thread, read from /proc):")
        for t in targets:
            print(f"  {t.name}: {affinity_of(t.proc.pid)}")
            t.rss_before_kib = tree_rss_kib(t.proc.pid)
        for r in range(1, args.rounds + 1):
            for t in targets:
                print(f"round {r}/{args.rounds}: {t.name} ...", flush=True)
                t.full.append(run_wrk(t.url, args, pin))
                if t.etag:
                    t.cond.append(run_wrk(t.url, args, pin, [f"If-None-Match: {t.etag}"]))
        print(f"wrk ran on CPU {' '.join(sorted({w.affinity for t in targets for w in t.full + t.cond}))}")
        for t in targets:
            t.rss_after_kib = tree_rss_kib(t.proc.pid)

        for t in targets:
            if t.name not in {cb.name for cb in circlebacks}:
                stop_process(t.proc)  # nothing else running while circleback idles
        if args.idle_seconds > 0:
            idle = measure_idle([t for t in targets if t.proc.poll() is None], args.idle_seconds)

    print_table(targets, idle)
    print(f"\nload average after: {load_average()} (1, 5, 15 min; a shared machine shows here)")
    return 0


def nginx_version() -> str:
    out = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr
    m = re.search(r"nginx/(\S+)", out)
    return m.group(1) if m else "?"


def measure_idle(targets: list[Target], seconds: int) -> str:
    """RSS and CPU of every circleback process over the same idle window."""
    print(f"idle for {seconds}s ...", flush=True)
    time.sleep(2)  # let the keep-alive connections from wrk time out
    before = {t.name: sample(t.proc.pid) for t in targets}
    start = time.monotonic()
    time.sleep(seconds)
    after = {t.name: sample(t.proc.pid) for t in targets}
    elapsed = time.monotonic() - start
    lines = []
    for t in targets:
        cpu_s = (after[t.name].cpu_ticks - before[t.name].cpu_ticks) / CLK_TCK
        lines.append(
            f"{t.name:32} RSS {after[t.name].rss_kib / 1024:.1f} MiB; CPU {cpu_s:.2f} s over {elapsed:.0f} s "
            f"= {100 * cpu_s / elapsed:.2f}% of one core"
        )
    return "\n".join(lines)


def pct(ratio: float) -> str:
    return f"{100 * ratio:5.1f}%" if ratio < 0.1 else f"{100 * ratio:5.0f}%"


def fmt(results: list[WrkResult]) -> str:
    if not results:
        return f"{'n/a':>8}"
    rps = median([r.rps for r in results])
    spread = f"[{min(r.rps for r in results):.0f}-{max(r.rps for r in results):.0f}]"
    bad = sum(r.non_ok for r in results)
    counts: dict[str, int] = {}
    for r in results:  # "Socket errors: connect 0, read 0, write 0, timeout 5", summed over the rounds
        for kind, n in re.findall(r"(\w+) (\d+)", r.errors):
            counts[kind] = counts.get(kind, 0) + int(n)
    errs = ", ".join(f"{n} {kind} errors" for kind, n in counts.items() if n)
    p99 = sorted(results, key=lambda r: r.rps)[len(results) // 2].latency_p99
    return (
        f"{rps:8.0f} {spread:>15} p99 {p99:>8}"
        + (f" {bad} non-2xx/3xx" if bad else "")
        + (f" {errs}" if errs else "")
    )


def print_table(targets: list[Target], idle: str) -> None:
    print("\n== requests/s, median of rounds [min-max] ==")
    for t in targets:
        print(f"{t.name:32} full {fmt(t.full)}")
        print(f"{'':32} 304  {fmt(t.cond)}")
        print(
            f"{'':32} RSS {t.rss_before_kib / 1024:.1f} MiB before load, "
            f"{t.rss_after_kib / 1024:.1f} MiB after"
        )
    nginx = next((t for t in targets if t.name.startswith("nginx")), None)
    if nginx is not None:
        print("\n== as a share of nginx (median of per-round ratios) ==")
        for t in targets:
            if t is nginx:
                continue
            full = median([a.rps / b.rps for a, b in zip(t.full, nginx.full, strict=False)])
            cond = median([a.rps / b.rps for a, b in zip(t.cond, nginx.cond, strict=False)])
            cond_text = pct(cond) if t.cond and nginx.cond else "  n/a (no 304 support)"
            print(f"{t.name:32} full {pct(full)}   304 {cond_text}")
    if idle:
        print("\n== idle ==")
        print(idle)


if __name__ == "__main__":
    sys.exit(main())

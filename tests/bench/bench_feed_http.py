"""Feed serving throughput: circleback (Starlette on uvicorn) against Radicale 3 and nginx, same 500 events.

Run on demand:  .venv/bin/python tests/bench/bench_feed_http.py [--duration 10] [--idle-seconds 60]

Needs `wrk` and Debian's `nginx` on PATH (apt-get install -y nginx wrk) and Radicale 3 in the venv
(.venv/bin/pip install radicale); a missing one is reported and skipped, circleback is always measured.
Everything listens on 127.0.0.1 on free ports, lives in a temp directory and is stopped at the end.

What is measured, each with wrk (keep-alive, fixed connections), in --rounds rounds that visit every
server in turn (so a noisy machine skews them all alike; ratios are taken within a round):
- full body: GET of the 500-event feed;
- 304: the same GET with If-None-Match set to the server's ETag (Radicale answers 200: no 304 run);
- idle: RSS and CPU of the first circleback server process over --idle-seconds with no requests.
The circleback server process is this file re-run with --serve-child: the service's FeedCache, TokenFile,
HealthState, build_app and serve(), logging as the service does under systemd (JSON, INFO) into /dev/null.
nginx serves the bytes as a static file with one worker by default (`--nginx-workers`): circleback is one
process, so that is the like-for-like "practical limit". With 2+ CPUs the servers are pinned to one CPU
and wrk to the others (--no-pin to turn that off).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from schedules.cadence import parse_cadence  # noqa: E402
from schedules.model import Owner, Plan, Review, WorkingHours  # noqa: E402
from schedules.occurrence import Occurrence, OccurrenceKind, Revision  # noqa: E402

EVENTS = 500
ZONE = "Europe/Berlin"
FEED_NAME = "circleback"
REFRESH = timedelta(hours=1)
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------------------------ the feed


def bench_plan() -> Plan:
    return Plan(
        owner=Owner("Bench Person", "bench@example.org"),
        timezone=ZONE,
        mindset="Relationships are the currency of leadership.",
        working_hours=WorkingHours(frozenset(range(5)), dtime(9), dtime(17)),
        review=Review(every=parse_cadence("month"), duration=timedelta(minutes=30)),
    )


def bench_revisions(count: int = EVENTS) -> list[Revision]:
    """`count` published occurrences over a year of working days, deterministic so every process
    renders the same bytes."""
    stamp = datetime(2025, 1, 2, 8, 0, tzinfo=UTC)
    day0 = date(2025, 1, 6)
    out: list[Revision] = []
    for i in range(count):
        day = day0 + timedelta(days=(i // 4) * 7 // 5 + (i // 4))
        while day.weekday() >= 5:
            day += timedelta(days=1)
        start = datetime.combine(day, dtime(8 + (i % 4) * 2), tzinfo=UTC)
        review = i % 10 == 9
        name = f"Person {i % 40:02d}"
        occ = Occurrence(
            key=f"review:bench-{i}" if review else f"touchpoint:{name.casefold()}:bench-{i}",
            kind=OccurrenceKind.REVIEW if review else OccurrenceKind.TOUCHPOINT,
            connection=None if review else name,
            due=day,
            start=start,
            end=start + timedelta(minutes=30 if review else 45),
            title="Review your focus plan" if review else f"Touchpoint: {name} (nurture)",
            description=(
                "Relationships are the currency of leadership.\nHow did the last month go?"
                if review
                else f"Next wise action: share the article on hiring with {name}.\n"
                "Last time: they mentioned the reorg and a conference talk in May."
            ),
        )
        out.append(Revision(occ, i % 3, stamp, stamp + timedelta(hours=i % 50)))
    return out


def render_bench_feed() -> bytes:
    from connectors.ics_feed import render_feed

    return render_feed(bench_revisions(), plan=bench_plan(), name=FEED_NAME, refresh=REFRESH)


# -------------------------------------------------------------------------- circleback server (child)


def serve_child(args: argparse.Namespace) -> int:
    """The circleback HTTP side as the service runs it: cache filled once, uvicorn in a thread, main
    thread waiting for SIGTERM."""
    from daemon.feed_cache import FeedCache
    from daemon.secret_token import load_or_create_token
    from daemon.web import HealthState, TokenFile, build_app, serve, start_in_thread

    # Log as the service does under systemd (JSON at INFO), into /dev/null: the formatting and the write
    # are part of the cost of a request. "quiet" raises the access logger to WARNING to show that cost.
    sink = open(os.devnull, "w")  # noqa: SIM115
    try:
        from daemon.logs import setup_logging
    except ImportError:  # TODO(lead): daemon.logs not there yet when this was written
        logging.basicConfig(level=logging.INFO, stream=sink)
    else:
        setup_logging("json", "info", stream=sink)
    if args.access_log == "quiet":
        logging.getLogger("circleback.access").setLevel(logging.WARNING)

    token_file = Path(args.token_file)
    load_or_create_token(token_file)
    cache = FeedCache(refresh=REFRESH)
    data = render_bench_feed()
    cache.update(data, datetime.now(UTC))
    health = HealthState(max_age=timedelta(minutes=5), readiness=lambda: (True, {}))
    health.beat(datetime.now(UTC))
    app = build_app(cache=cache, token=TokenFile(token_file), health=health)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    running = start_in_thread(serve(app, "127.0.0.1", 0, http=args.http, loop=args.loop))
    snap = cache.snapshot()
    assert snap is not None
    Path(args.feed_out).write_bytes(data)
    server = running.server
    print(
        json.dumps(
            {
                "port": running.port,
                "etag": snap.etag,
                "bytes": len(data),
                "protocol": getattr(server.config.http_protocol_class, "__name__", "?"),
            }
        ),
        flush=True,
    )
    while not stop.wait(0.5):
        health.beat(datetime.now(UTC))
    running.stop()
    return 0


# ------------------------------------------------------------------------------------------- helpers


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
    """RSS of a process and its children (nginx master + workers)."""
    total = sample(pid).rss_kib
    with contextlib.suppress(OSError):
        for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            with contextlib.suppress(OSError):
                total += sample(int(c)).rss_kib
    return total


@dataclass
class WrkResult:
    rps: float
    non_ok: int
    errors: str
    latency_p50: str
    latency_p99: str


def run_wrk(
    url: str, args: argparse.Namespace, headers: Sequence[str] = (), *, wrk_cpus: set[int] | None = None
) -> WrkResult:
    cmd = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s", "--latency"]
    for h in headers:
        cmd += ["-H", h]
    out = subprocess.run(
        [*cmd, url], capture_output=True, text=True, timeout=args.duration + 60, check=True
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non_ok = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    p50 = re.search(r"\s50%\s+(\S+)", out)
    p99 = re.search(r"\s99%\s+(\S+)", out)
    return WrkResult(
        rps,
        int(non_ok.group(1)) if non_ok else 0,
        errors.group(0) if errors else "",
        p50.group(1) if p50 else "?",
        p99.group(1) if p99 else "?",
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


# ------------------------------------------------------------------------------------------- servers


def start_nginx(
    tmp: Path, feed: bytes, url_path: str, workers: str, cpus: set[int] | None
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
        ["nginx", "-p", str(prefix), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=open(prefix / "logs" / "stderr.log", "wb"),  # noqa: SIM115
        start_new_session=True,
        preexec_fn=pin(cpus),
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


def start_radicale(tmp: Path, feed: bytes, cpus: set[int] | None) -> tuple[subprocess.Popen[bytes], int, str]:
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
        [sys.executable, "-m", "radicale", "--config", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=open(base / "radicale.log", "wb"),  # noqa: SIM115
        start_new_session=True,
        preexec_fn=pin(cpus),
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


def start_circleback(
    tmp: Path, variant: str, cpus: set[int] | None
) -> tuple[subprocess.Popen[bytes], dict[str, object], Path]:
    http, loop, *rest = variant.split("+")
    feed_out = tmp / f"feed-{variant}.ics"
    token_file = tmp / "state" / "feed-token"
    cmd = [sys.executable, __file__, "--serve-child", "--token-file", str(token_file)]
    cmd += ["--feed-out", str(feed_out), "--http", http, "--loop", loop]
    cmd += ["--access-log", "quiet" if "quiet" in rest else "info"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, start_new_session=True, preexec_fn=pin(cpus))
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        stop_process(proc)
        raise RuntimeError("circleback server child did not start")
    info: dict[str, object] = json.loads(line)
    info["feed"] = feed_out
    return proc, info, token_file


def pin(cpus: set[int] | None) -> Callable[[], None] | None:
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def available_variants() -> list[str]:
    """uvicorn's pure-Python stack, and the C one (httptools + uvloop) with and without the access log."""
    variants = ["h11+asyncio"]
    try:
        import httptools  # noqa: F401
        import uvloop  # noqa: F401
    except ImportError:
        pass
    else:
        variants += ["httptools+uvloop", "httptools+uvloop+quiet"]
    return variants


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    p.add_argument(
        "--rounds", type=int, default=3, help="rounds over all servers; medians reported (default 3)"
    )
    p.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    p.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    p.add_argument("--idle-seconds", type=int, default=60, help="idle RSS/CPU window (default 60)")
    p.add_argument(
        "--nginx-workers", default="1", help="nginx worker_processes (default 1; 'auto' = per core)"
    )
    p.add_argument(
        "--variants", default="", help="uvicorn http+loop pairs, e.g. 'h11+asyncio,httptools+uvloop'"
    )
    p.add_argument("--no-pin", action="store_true", help="do not pin servers and wrk to separate CPUs")
    p.add_argument("--skip-radicale", action="store_true")
    p.add_argument("--skip-nginx", action="store_true")
    # internal: the circleback server process
    p.add_argument("--serve-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--token-file", help=argparse.SUPPRESS)
    p.add_argument("--feed-out", help=argparse.SUPPRESS)
    p.add_argument("--http", default="auto", help=argparse.SUPPRESS)
    p.add_argument("--loop", default="auto", help=argparse.SUPPRESS)
    p.add_argument("--access-log", default="info", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve_child:
        return serve_child(args)

    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
        return 2
    variants = args.variants.split(",") if args.variants else available_variants()
    # Servers share CPU 0 (one at a time is under load) and wrk gets the rest, so the load generator
    # never steals the server's core and every server is measured on one core, like circleback's one process.
    ncpu = len(os.sched_getaffinity(0))
    server_cpus = {min(os.sched_getaffinity(0))} if ncpu >= 2 and not args.no_pin else None
    wrk_cpus = set(os.sched_getaffinity(0)) - server_cpus if server_cpus else None
    print(
        f"circleback feed HTTP benchmark: {EVENTS} events; wrk -t{args.threads} -c{args.connections} "
        f"-d{args.duration}s x {args.rounds} rounds; {ncpu} CPUs"
        + (
            f", servers pinned to CPU {sorted(server_cpus)}, wrk to {sorted(wrk_cpus or [])}"
            if server_cpus
            else ""
        )
    )
    targets: list[Target] = []
    idle = ""
    with tempfile.TemporaryDirectory(prefix="cb-bench-") as tmpdir, contextlib.ExitStack() as stack:
        tmp = Path(tmpdir)
        feed = b""
        for variant in variants:
            proc, info, token_file = start_circleback(tmp, variant, server_cpus)
            stack.callback(stop_process, proc)
            name = f"circleback {variant.replace('+quiet', ' no-access-log')}"
            feed = Path(str(info["feed"])).read_bytes()
            token = token_file.read_text().strip()
            url = f"http://127.0.0.1:{info['port']}/feed/{token}.ics"
            print(f"{name}: pid {proc.pid}, feed {info['bytes']} bytes, protocol {info['protocol']}")
            targets.append(Target(name, url, check_server(name, url, None), proc))

        if not args.skip_nginx and shutil.which("nginx"):
            proc, port = start_nginx(tmp, feed, "/feed/static.ics", args.nginx_workers, server_cpus)
            stack.callback(stop_process, proc)
            url = f"http://127.0.0.1:{port}/feed/static.ics"
            name = f"nginx {nginx_version()} ({args.nginx_workers} worker)"
            targets.append(Target(name, url, check_server("nginx", url, feed), proc))
        elif not args.skip_nginx:
            print("nginx not installed (apt-get install -y nginx): skipped")

        if not args.skip_radicale:
            try:
                import radicale
            except ImportError:
                print("Radicale not installed (.venv/bin/pip install radicale): skipped")
            else:
                proc, port, path = start_radicale(tmp, feed, server_cpus)
                stack.callback(stop_process, proc)
                url = f"http://127.0.0.1:{port}{path}"
                name = f"radicale {radicale.VERSION}"
                targets.append(Target(name, url, check_server("radicale", url, None), proc))

        for t in targets:
            t.rss_before_kib = tree_rss_kib(t.proc.pid)
        for r in range(1, args.rounds + 1):
            for t in targets:
                print(f"round {r}/{args.rounds}: {t.name} ...", flush=True)
                t.full.append(run_wrk(t.url, args, wrk_cpus=wrk_cpus))
                if t.etag:
                    t.cond.append(run_wrk(t.url, args, [f"If-None-Match: {t.etag}"], wrk_cpus=wrk_cpus))
        for t in targets:
            t.rss_after_kib = tree_rss_kib(t.proc.pid)

        circleback = [t for t in targets if t.name.startswith("circleback")]
        for t in targets:
            if t not in circleback:
                stop_process(t.proc)  # nothing else running while circleback idles
        if args.idle_seconds > 0:
            idle = measure_idle(circleback, args.idle_seconds)

    print_table(targets, idle)
    return 0


def nginx_version() -> str:
    out = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr
    m = re.search(r"nginx/(\S+)", out)
    return m.group(1) if m else "?"


def measure_idle(targets: list[Target], seconds: int) -> str:
    """RSS and CPU of every circleback server process over the same idle window."""
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
            f"{t.name:44} RSS {after[t.name].rss_kib / 1024:.1f} MiB; CPU {cpu_s:.2f} s over {elapsed:.0f} s "
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
    errs = " ".join(sorted({r.errors for r in results if r.errors}))
    p99 = results[len(results) // 2].latency_p99
    return (
        f"{rps:8.0f} {spread:>15} p99 {p99:>8}"
        + (f" {bad} non-2xx/3xx" if bad else "")
        + (f" {errs}" if errs else "")
    )


def print_table(targets: list[Target], idle: str) -> None:
    print("\n== requests/s, median of rounds [min-max] ==")
    for t in targets:
        print(f"{t.name:44} full {fmt(t.full)}")
        print(f"{'':44} 304  {fmt(t.cond)}")
        print(
            f"{'':44} RSS {t.rss_before_kib / 1024:.1f} MiB before load, "
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
            print(f"{t.name:44} full {pct(full)}   304 {cond_text}")
    if idle:
        print("\n== idle ==")
        print(idle)


if __name__ == "__main__":
    sys.exit(main())

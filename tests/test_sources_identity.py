"""Each calendar is its own: one cached copy per location, names a person recognises, regular files only.

Real parts throughout: a local HTTP server, real files in real folders, a FIFO, /dev/zero, the real CLI
(in-process; as a subprocess under a timeout and a memory limit where a regression could read forever, so
it fails instead of hanging the suite).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from builders import london_plan
from cli_runner import Result, private_home, run_in_process, xdg_env
from icalendar import Calendar

from connectors.base import ConnectorError
from connectors.fetch import Fetcher
from daemon.app import build_calendars
from daemon.config import ConfigError, load_settings
from schedules.busy import busy_time
from schedules.events import Interval, Snapshot

FIXTURES = Path(__file__).parent / "fixtures"
ADA = FIXTURES / "plans" / "ada.yaml"
NOW = "2026-11-23T09:30:00+00:00"  # a Monday
WINDOW = Interval(datetime(2026, 11, 23, tzinfo=UTC), datetime(2026, 12, 7, tzinfo=UTC))
# One date for every calendar on the server, as when both were last edited in the same minute.
LAST_MODIFIED = "Mon, 16 Nov 2026 08:00:00 GMT"


def ics(*spans: tuple[str, str], summary: str = "Busy") -> bytes:
    """A calendar with one opaque event per (start, end), given as UTC `YYYYMMDDTHHMMSS`."""
    events = "".join(
        f"BEGIN:VEVENT\r\nUID:{summary}-{i}@test\r\nDTSTAMP:20261101T000000Z\r\nDTSTART:{start}Z\r\n"
        f"DTEND:{end}Z\r\nSUMMARY:{summary}\r\nEND:VEVENT\r\n"
        for i, (start, end) in enumerate(spans)
    )
    return f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n{events}END:VCALENDAR\r\n".encode()


WORK = ics(("20261124T100000", "20261124T110000"), summary="Board meeting")
PERSONAL = ics(("20261125T140000", "20261125T150000"), summary="Dentist")


def busy(data: bytes) -> set[Interval]:
    """The busy intervals a calendar's bytes describe, read with the real parser."""
    calendar = Calendar.from_ical(data)
    return {Interval(e.decoded("DTSTART"), e.decoded("DTEND")) for e in calendar.walk("VEVENT")}


# --- a calendar server that, like many, answers 304 by date -------------------------------------


class Server(ThreadingHTTPServer):
    daemon_threads = True
    calendars: dict[str, bytes]
    always_304: set[str]
    requests: list[tuple[str, dict[str, str]]]


class Handler(BaseHTTPRequestHandler):
    server: Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.requests.append((self.path, dict(self.headers)))
        if self.path in self.server.always_304:
            self._send(304, b"")
            return
        body = self.server.calendars.get(self.path)
        if body is None:
            self._send(404, b"no such calendar")
        elif self.headers.get("If-Modified-Since") == LAST_MODIFIED:
            self._send(304, b"")
        else:
            self._send(200, body)

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/calendar")
        self.send_header("Last-Modified", LAST_MODIFIED)
        if status != 304:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if status != 304:
            self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[Server]:
    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.calendars = {"/work.ics": WORK, "/personal.ics": PERSONAL}
    httpd.requests = []
    httpd.always_304 = {"/always-304.ics"}
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def url(server: Server, path: str) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


def two_files(root: Path) -> tuple[Path, Path]:
    work, personal = root / "work" / "basic.ics", root / "personal" / "basic.ics"
    for path, data in ((work, WORK), (personal, PERSONAL)):
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
    return work, personal


# --- one cached copy per location ---------------------------------------------------------------


def test_two_calendars_on_one_host_are_each_read_from_their_own_address(
    server: Server, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    sources = f'["{url(server, "/work.ics")}", "{url(server, "/personal.ics")}"]'
    config.write_text(f'state_dir = "{tmp_path / "state"}"\n[ics]\nsources = {sources}\n')
    work, personal = build_calendars(load_settings(config, environ={}), london_plan()).readers
    for _ in range(2):  # the second round is answered 304, each from its own copy
        assert blocked(work.read(WINDOW)) == busy(WORK)
        assert blocked(personal.read(WINDOW)) == busy(PERSONAL)
    first_personal = next(h for p, h in server.requests if p == "/personal.ics")
    assert "If-Modified-Since" not in first_personal, "never fetched: nothing to be conditional about"
    assert len(list((tmp_path / "state" / "sources").glob("*.ics"))) == 2


def test_two_files_with_one_name_in_different_folders(tmp_path: Path) -> None:
    work_file, personal_file = two_files(tmp_path)
    config = tmp_path / "config.toml"
    config.write_text(
        f'state_dir = "{tmp_path / "state"}"\n[ics]\nsources = ["{work_file}", "{personal_file}"]\n'
    )
    settings = load_settings(config, environ={})
    work, personal = build_calendars(settings, london_plan()).readers
    assert (work.name, personal.name) == ("work/basic.ics", "personal/basic.ics")
    assert blocked(work.read(WINDOW)) == busy(WORK)
    assert blocked(personal.read(WINDOW)) == busy(PERSONAL)
    work_file.unlink()
    fallback = work.read(WINDOW)
    assert fallback.stale and "no such file" in fallback.stale
    assert blocked(fallback) == busy(WORK), "the last good copy is the work calendar's own"


def test_a_location_never_fetched_has_no_last_good_copy(server: Server, tmp_path: Path) -> None:
    fetcher = Fetcher(tmp_path / "cache", timeout=5)
    # Names with dots, as people and the default names have them ("basic.ics", "example.com").
    fetcher.fetch("cal.work", url(server, "/work.ics"))
    assert fetcher.cached("cal.work", url(server, "/work.ics")) is not None
    assert fetcher.cached("cal.work", url(server, "/personal.ics")) is None
    assert fetcher.cached("cal.personal", url(server, "/personal.ics")) is None


def test_a_304_to_a_request_without_validators_is_refused(server: Server, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    fetcher = Fetcher(cache, timeout=5)
    with pytest.raises(ConnectorError) as never:
        fetcher.fetch("odd", url(server, "/always-304.ics"))
    assert "304" in never.value.reason
    # A copy whose metadata was lost (a crash between the two writes): a 304 to a request that carried
    # no validators says nothing about it, so it is no answer at all.
    location = url(server, "/work.ics")
    fetcher.fetch("work", location)
    (meta,) = cache.glob("*.json")
    meta.write_text("{}")
    server.always_304.add("/work.ics")
    with pytest.raises(ConnectorError) as unconditional:
        fetcher.fetch("work", location)
    assert "304" in unconditional.value.reason


# --- through the CLI ----------------------------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path) -> Path:
    shutil.copy(ADA, private_home(tmp_path) / "plan.yaml")
    return tmp_path


def as_json(proc: Result) -> Any:
    return json.loads(proc.stdout)


def stamp(iso: str) -> str:
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y%m%dT%H%M%S")


def first_two_slots(home: Path) -> tuple[tuple[str, str], tuple[str, str]]:
    """Where the first two touchpoints land in a free calendar: the slots to make busy."""
    free = as_json(run_in_process(home, "agenda", "--json", "--plan", "plan.yaml", "--now", NOW, check=True))
    first, second = free[0], free[1]
    return (stamp(first["start"]), stamp(first["end"])), (stamp(second["start"]), stamp(second["end"]))


def feed_events(home: Path, *sources: str) -> list[Interval]:
    out = home / "feed.ics"
    args = [arg for source in sources for arg in ("--source", source)]
    run_in_process(
        home, "feed", "export", "-o", str(out), "--plan", "plan.yaml", "--now", NOW, *args, check=True
    )
    calendar = Calendar.from_ical(out.read_bytes())
    return [Interval(e.decoded("DTSTART"), e.decoded("DTEND")) for e in calendar.walk("VEVENT")]


def assert_free_of(events: list[Interval], *calendars: bytes) -> None:
    taken = [b for data in calendars for b in busy(data)]
    assert events
    for event in events:
        for meeting in taken:
            assert event.end <= meeting.start or event.start >= meeting.end, f"{event} overlaps {meeting}"


def test_cli_two_calendars_on_one_host(server: Server, home: Path) -> None:
    slot_a, slot_b = first_two_slots(home)
    server.calendars = {
        "/work.ics": ics(slot_a, summary="Board"),
        "/personal.ics": ics(slot_b, summary="Dentist"),
    }
    sources = (url(server, "/work.ics"), url(server, "/personal.ics"))
    args = [arg for source in sources for arg in ("--source", source)]
    for _ in range(2):  # the second sync is answered 304 for both
        run_in_process(home, "sync", "--plan", "plan.yaml", "--now", NOW, *args, check=True)
    assert_free_of(feed_events(home, *sources), *server.calendars.values())
    status = as_json(
        run_in_process(home, "status", "--json", "--plan", "plan.yaml", "--now", NOW, *args, check=True)
    )
    port = server.server_address[1]
    assert [(c["name"], c["health"]) for c in status["calendars"]] == [
        (f"127.0.0.1:{port}/work.ics", "ok"),
        (f"127.0.0.1:{port}/personal.ics", "ok"),
    ]


def test_cli_two_files_with_one_name(home: Path) -> None:
    slot_a, slot_b = first_two_slots(home)
    work, personal = home / "work" / "basic.ics", home / "personal" / "basic.ics"
    for path, data in ((work, ics(slot_a, summary="Board")), (personal, ics(slot_b, summary="Dentist"))):
        path.parent.mkdir()
        path.write_bytes(data)
    args = ["--source", str(work), "--source", str(personal)]
    run_in_process(home, "sync", "--plan", "plan.yaml", "--now", NOW, *args, check=True)
    assert_free_of(feed_events(home, str(work), str(personal)), work.read_bytes(), personal.read_bytes())
    text = run_in_process(home, "status", "--plan", "plan.yaml", "--now", NOW, *args, check=True).stdout
    assert "calendar work/basic.ics: ok" in text and "calendar personal/basic.ics: ok" in text


def test_cli_a_named_calendar_is_shown_by_its_name(home: Path) -> None:
    missing = home / "gone" / "basic.ics"
    secret = "private-5f3c9e0a1b2c4d6e8f0a"
    config = home / "config.toml"
    config.write_text(
        'plan = "plan.yaml"\n[ics]\n'
        f'sources = [{{ name = "Work", location = "{missing}" }}, '
        f'{{ name = "Holidays", location = "https://calendar.example.com/{secret}/basic.ics" }}]\n'
    )
    failed = run_in_process(home, "sync", "--config", str(config), "--now", NOW)
    assert failed.returncode == 1
    assert "error: Work: " in failed.stderr and "no such file" in failed.stderr
    # Neither calendar was ever read, so status exits 1 and names them.
    shown_status = run_in_process(home, "status", "--json", "--config", str(config), "--now", NOW)
    assert shown_status.returncode == 1 and "calendar Work has no data yet" in shown_status.stderr
    status = as_json(shown_status)
    assert [c["name"] for c in status["calendars"]] == ["Work", "Holidays"]
    shown = run_in_process(home, "config", "--config", str(config), check=True).stdout
    assert 'name = "Work"' in shown and 'name = "Holidays"' in shown
    assert "https://calendar.example.com/…" in shown
    assert secret not in shown + failed.stderr + failed.stdout


# --- names ---------------------------------------------------------------------------------------


def settings_with(tmp_path: Path, sources: str) -> Any:
    config = tmp_path / "config.toml"
    config.write_text(f"[ics]\nsources = {sources}\n")
    return load_settings(config, environ={})


def names(tmp_path: Path, sources: str) -> list[str]:
    return [s.name for s in settings_with(tmp_path, sources).sources]


def test_default_names_are_readable_and_never_show_a_secret(tmp_path: Path) -> None:
    google = (
        "https://calendar.google.com/calendar/ical/ada%40example.com/private-0a1b2c3d4e5f6a7b8c9d/basic.ics"
    )
    icloud = "webcal://p42-caldav.icloud.com/published/2/MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkw"
    icloud_2 = "webcal://p42-caldav.icloud.com/published/2/OTg3NjU0MzIxMDk4NzY1NDMyMTA5ODc2NTQzMjEw"
    given = f'["~/cal/work.ics", "{google}", "{icloud}", "{icloud_2}"]'
    found = names(tmp_path, given)
    assert found[:2] == ["work.ics", "calendar.google.com/basic.ics"]
    assert found[2].startswith("p42-caldav.icloud.com #") and found[3].startswith("p42-caldav.icloud.com #")
    assert found[2] != found[3]
    assert names(tmp_path, given) == found, "stable from one run to the next"
    for name in found:
        assert "0a1b2c3d4e5f" not in name and "MTIzNDU2" not in name and "OTg3NjU0" not in name


def test_a_single_string_and_a_table_without_a_name_get_default_names(tmp_path: Path) -> None:
    assert names(tmp_path, '"/cal/work.ics"') == ["work.ics"]
    assert names(tmp_path, '[{ location = "https://user:pw@example.com:8443/x/Team.ics" }]') == [
        "example.com:8443/Team.ics"
    ]
    # An address that cannot be parsed still gets a name; reading it reports the bad address.
    settings = settings_with(tmp_path, '["http://[::1/cal.ics"]')
    assert [s.name for s in settings.sources] == ["(an address that cannot be parsed)"]
    (reader,) = build_calendars(settings, london_plan()).readers
    with pytest.raises(ConnectorError) as caught:
        reader.read(WINDOW)
    assert "is not a valid address" in caught.value.reason


def test_a_default_name_gives_way_to_a_chosen_one(tmp_path: Path) -> None:
    found = names(tmp_path, '["/a/x/basic.ics", { name = "basic.ics", location = "/b/y.ics" }]')
    assert found == ["x/basic.ics", "basic.ics"]
    assert names(tmp_path, '["/a/x/basic.ics", "/a/y/basic.ics", "/b/y/basic.ics"]') == [
        "x/basic.ics",
        "a/y/basic.ics",
        "b/y/basic.ics",
    ]


@pytest.mark.parametrize(
    ("sources", "message"),
    [
        ('[{ name = "Work", location = "a.ics" }, { name = "work", location = "b.ics" }]', "'work'"),
        ('[{ name = "Work" }]', "location"),
        ('[{ location = "a.ics", colour = "red" }]', "colour"),
        ('[{ name = "", location = "a.ics" }]', "name"),
        ("[3]", "3"),
        ('["/a/b.ics", "/a/b.ics"]', "twice"),
    ],
)
def test_bad_source_entries_are_config_errors(tmp_path: Path, sources: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_with(tmp_path, sources)
    assert "ics.sources" in str(caught.value) and str(tmp_path / "config.toml") in str(caught.value)
    assert message in str(caught.value)


# --- local files: regular files only, read with a cap ------------------------------------------


def limited() -> None:
    """Run in the child: a regression that reads /dev/zero hits this instead of the machine's memory."""
    resource.setrlimit(resource.RLIMIT_AS, (2 * 1024**3, 2 * 1024**3))


def run_limited(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [sys.executable, "-m", "daemon.cli", *args],
            env=xdg_env(home),
            cwd=home,
            capture_output=True,
            text=True,
            timeout=60,
            preexec_fn=limited,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{args} still running after 60 s")


@pytest.fixture
def fifo(home: Path) -> Path:
    path = home / "pipe.ics"
    os.mkfifo(path)
    return path


def test_a_device_or_fifo_is_not_a_calendar(home: Path, fifo: Path) -> None:
    for source, kind in (("/dev/zero", "a character device"), (str(fifo), "a FIFO")):
        proc = run_limited(home, "sync", "--plan", "plan.yaml", "--now", NOW, "--source", source)
        assert proc.returncode == 1, proc.stderr
        assert f"{source}: is {kind}, not a regular file" in proc.stderr
        assert "Traceback" not in proc.stderr


def test_a_plan_that_is_a_device_or_fifo_or_too_large(home: Path, fifo: Path) -> None:
    big = home / "big.yaml"
    big.write_text((FIXTURES / "plans" / "ada.yaml").read_text() + "# " + "x" * (1024 * 1024) + "\n")
    for plan, message in (
        ("/dev/zero", "/dev/zero: is a character device, not a regular file"),
        (str(fifo), f"{fifo}: is a FIFO, not a regular file"),
        (str(big), f"{big}: is larger than 1 MiB"),
    ):
        proc = run_limited(home, "plan", "check", plan)
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr and "Traceback" not in proc.stderr


def test_the_size_cap_holds_while_reading(tmp_path: Path) -> None:
    fetcher = Fetcher(tmp_path / "cache", timeout=5, max_bytes=100)
    # A /proc file is regular with st_size 0, whatever it holds: only counting while reading sees its size.
    maps = Path("/proc/self/maps")
    assert maps.stat().st_size == 0
    with pytest.raises(ConnectorError) as caught:
        fetcher.fetch("maps", str(maps))
    assert caught.value.reason == f"{maps}: is larger than 100 bytes"


def test_a_socket_or_directory_is_not_a_calendar(tmp_path: Path) -> None:
    fetcher = Fetcher(tmp_path / "cache", timeout=5)
    short = Path(tempfile.mkdtemp(dir="/tmp"))  # a socket's path must be short
    try:
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(short / "s.ics"))
        with listener, pytest.raises(ConnectorError) as caught:
            fetcher.fetch("sock", str(short / "s.ics"))
        assert caught.value.reason == f"{short / 's.ics'}: is a socket, not a regular file"
        assert not caught.value.retryable
    finally:
        shutil.rmtree(short)
    with pytest.raises(ConnectorError) as folder:
        fetcher.fetch("folder", str(tmp_path))
    assert folder.value.reason == f"{tmp_path}: is a directory, not a regular file"


# --- the state directory ------------------------------------------------------------------------


@pytest.fixture
def usual_umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_the_state_directory_is_private_when_sources_are_read(home: Path, usual_umask: None) -> None:
    work = home / "work.ics"
    work.write_bytes(WORK)
    run_in_process(home, "sync", "--plan", "plan.yaml", "--now", NOW, "--source", str(work), check=True)
    state = home / "state" / "circleback"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "sources").stat().st_mode) == 0o700


def test_the_starter_config_example_is_a_valid_setting(tmp_path: Path) -> None:
    template = Path(__file__).parent.parent / "daemon" / "templates" / "config.toml"
    (example,) = [line for line in template.read_text().splitlines() if line.startswith("# sources = [")]
    config = tmp_path / "config.toml"
    config.write_text(f"[ics]\n{example.removeprefix('# ')}\n")
    sources = load_settings(config, environ={}).sources
    assert [s.name for s in sources] == ["team.ics", "Work"]


def blocked(snapshot: Snapshot) -> set[Interval]:
    """What a read blocks under the core's busy rule, as the cycle applies it to what the reader saw."""
    return set(busy_time(snapshot.observations, ("ada@example.com",), also=snapshot.busy))

"""People's own calendars in organisation mode: given with `people add --source` / `people set-sources`,
kept in the database, read only in that person's cycle, through the address guard."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cli_runner import Result, run_in_process

from daemon.config import load_settings
from daemon.org import cycle_person
from daemon.people import People
from daemon.store import Store

ADA_PLAN = Path(__file__).parent / "fixtures" / "plans" / "ada.yaml"
NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
SECRET = "private-8f3c9a7d2b1e4f60"
BUSY = (
    b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:busy-1@test\r\n"
    b"DTSTAMP:20261101T000000Z\r\nDTSTART:20261124T100000Z\r\nDTEND:20261124T110000Z\r\n"
    b"SUMMARY:Board meeting\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    for sub in ("config", "data", "state"):
        (tmp_path / sub).mkdir()
    return tmp_path


def cli(home: Path, db: str, *args: str) -> Result:
    return run_in_process(home, *args, "--db", db, "--now", NOW.isoformat())


def test_sources_are_given_kept_shown_without_their_secret_and_replaced(home: Path, db_url: str) -> None:
    address = f"https://calendar.example.com/ical/{SECRET}/basic.ics"
    added = cli(
        home, db_url, "people", "add", "ada@example.org", "--name", "Ada", "--plan", str(ADA_PLAN),
        "--source", address, "--source", "webcal://cal.example.net/team",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert SECRET not in added.stdout and "calendar.example.com/basic.ics" in added.stdout
    with Store(db_url) as store:
        own = People(store.engine).sources("ada@example.org")
    assert [(s.name, s.location) for s in own] == [
        ("calendar.example.com/basic.ics", address),
        ("cal.example.net", "webcal://cal.example.net/team"),
    ]
    shown = cli(home, db_url, "people", "show", "ada@example.org")
    assert "own calendar calendar.example.com/basic.ics: https://calendar.example.com/…" in shown.stdout
    assert SECRET not in shown.stdout

    replaced = cli(home, db_url, "people", "set-sources", "ada@example.org", "https://other.example/c.ics")
    assert replaced.returncode == 0, replaced.stderr
    with Store(db_url) as store:
        assert [s.location for s in People(store.engine).sources("ada@example.org")] == [
            "https://other.example/c.ics"
        ]
    cleared = cli(home, db_url, "people", "set-sources", "ada@example.org")
    assert cleared.returncode == 0 and "no own calendars" in cleared.stdout
    with Store(db_url) as store:
        assert People(store.engine).sources("ada@example.org") == []


@pytest.mark.parametrize(
    "bad", ["file:///etc/passwd", "/etc/passwd", "~/work.ics", "ftp://example.com/c.ics", "https://"]
)
def test_files_and_other_schemes_are_refused_with_exit_2_and_nothing_written(
    home: Path, db_url: str, bad: str
) -> None:
    refused = cli(
        home, db_url, "people", "add", "bo@example.org", "--name", "Bo", "--plan", str(ADA_PLAN),
        "--source", "https://fine.example/c.ics", "--source", bad,
    )  # fmt: skip
    assert refused.returncode == 2, refused.stderr
    assert "source 2" in refused.stderr and "Traceback" not in refused.stderr
    with Store(db_url) as store:
        assert People(store.engine).emails() == []
    assert (
        cli(
            home, db_url, "people", "add", "bo@example.org", "--name", "Bo", "--plan", str(ADA_PLAN)
        ).returncode
        == 0
    )
    again = cli(home, db_url, "people", "set-sources", "bo@example.org", "https://fine.example/c.ics", bad)
    assert again.returncode == 2 and "source 2" in again.stderr
    with Store(db_url) as store:
        assert People(store.engine).sources("bo@example.org") == []


class _Calendars(BaseHTTPRequestHandler):
    served: list[str]

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.served.append(self.path)
        if self.path != "/ada/cal.ics":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/calendar")
        self.send_header("Content-Length", str(len(BUSY)))
        self.end_headers()
        self.wfile.write(BUSY)


@pytest.fixture
def calendars() -> Iterator[tuple[str, list[str]]]:
    served: list[str] = []
    handler = type("Handler", (_Calendars,), {"served": served})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", served
    finally:
        server.shutdown()
        server.server_close()


def _org(tmp_path: Path, postgres_url: str, *, allow_private: bool) -> Path:
    config = tmp_path / f"org-{allow_private}.toml"
    config.write_text(
        f'database_url = "{postgres_url}"\nstate_dir = "{tmp_path / "state"}"\n'
        f"[organisation]\nallow_private_sources = {str(allow_private).lower()}\n",
        encoding="utf-8",
    )
    return config


@pytest.mark.postgres
def test_each_persons_calendars_and_their_errors_stay_theirs(
    tmp_path: Path, postgres_url: str, calendars: tuple[str, list[str]]
) -> None:
    base, served = calendars
    plan = ADA_PLAN.read_text(encoding="utf-8")
    with Store(postgres_url) as store:
        people = People(store.engine)
        people.add("ada@example.org", name="Ada", plan_text=plan, google_subject=None, now=NOW,
                   sources=[f"{base}/ada/cal.ics"])  # fmt: skip
        people.add("bo@example.org", name="Bo", plan_text=plan, google_subject=None, now=NOW,
                   sources=[f"{base}/bo/cal.ics"])  # fmt: skip

    # Refused by default: the workers' own network is not a person's to read.
    refused = load_settings(_org(tmp_path, postgres_url, allow_private=False), environ={})
    cycle_person(refused, "ada@example.org", NOW)
    assert served == []
    with Store(postgres_url) as store:
        health = People(store.engine).health("ada@example.org")
        assert len(health.failing_sources) == 1
        assert "refused" in health.failing_sources[0][1] and "loopback" in health.failing_sources[0][1]
        assert People(store.engine).health("bo@example.org").failing_sources == []

    # Allowed by the organisation: each reads their own, and only Bo sees Bo's 404.
    allowed = load_settings(_org(tmp_path, postgres_url, allow_private=True), environ={})
    for email in ("ada@example.org", "bo@example.org"):
        cycle_person(allowed, email, NOW)
    assert sorted(served) == ["/ada/cal.ics", "/bo/cal.ics"]
    with Store(postgres_url) as store:
        ada, bo = (People(store.engine).health(e) for e in ("ada@example.org", "bo@example.org"))
    assert ada.failing_sources == []
    assert len(bo.failing_sources) == 1 and "404" in bo.failing_sources[0][1]
    with Store(postgres_url, owner="ada@example.org") as ada_store:
        states = ada_store.source_states()
        assert [(s.name, s.failures) for s in states] == [(f"{base.removeprefix('http://')}/cal.ics", 0)]
        assert states[0].ok_at is not None and all("404" not in (s.last_error or "") for s in states)
    # Each person's last good copy is in a directory of their own on this replica.
    copies = sorted(p.parent.parent.name for p in (tmp_path / "state" / "people").glob("*/sources/*.ics"))
    assert len(copies) == 1

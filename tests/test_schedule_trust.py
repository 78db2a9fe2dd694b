"""Issue 7: a schedule people can trust. The real `circleback` command (in-process), a private XDG home,
real files and a real HTTP server; `--now` moves the clock. Each test failed on the code before the fix.

- a calendar that was never read gets no schedule that ignores it, in any command;
- skipping one occurrence never moves the rhythm;
- the review rhythm survives a cadence edit, and a new day alone never rewrites the feed;
- agenda, status and the feed show one schedule; a completed touchpoint shows when it happened;
- what cannot be placed is said, by name, with exit status 1.
"""

from __future__ import annotations

import http.server
import json
import re
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cli_runner import Result, home_with_plan, run_in_process
from icalendar import Calendar

FIXTURES = Path(__file__).parent / "fixtures"
ADA = FIXTURES / "plans" / "ada.yaml"
T0 = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)  # a Monday; Europe/London is on GMT, so local == UTC
GRACE = "Grace Hopper"

Cli = Callable[..., Result]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return home_with_plan(tmp_path, ADA)


@pytest.fixture
def cb(home: Path) -> Cli:
    def _cb(*args: str, now: datetime = T0, expect: int | None = 0) -> Result:
        result = run_in_process(home, *args, now=now)
        if expect is not None:
            assert result.returncode == expect, (
                f"{args}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
            )
        return result

    return _cb


def plan_path(home: Path) -> Path:
    return home / "config" / "circleback" / "plan.yaml"


def feed_bytes(home: Path) -> bytes:
    return (home / "state" / "circleback" / "circleback.ics").read_bytes()


def feed_events(home: Path) -> dict[str, tuple[str, datetime]]:
    """Key -> (summary, start) of every event in the published feed."""
    calendar = Calendar.from_ical(feed_bytes(home))
    return {
        # The feed signs the key (`KEY sig=HMAC`); the key is what comes before the signature.
        str(e["X-CIRCLEBACK-KEY"]).split(" sig=")[0]: (
            str(e["SUMMARY"]),
            e.decoded("DTSTART").astimezone(UTC),
        )
        for e in calendar.walk("VEVENT")
    }


def agenda(cb: Cli, *args: str, now: datetime = T0, days: int = 120) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(
        cb("agenda", "--json", "--days", str(days), *args, now=now).stdout
    )
    return items


def ics(*events: str) -> str:
    body = "".join(events)
    return f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n{body}END:VCALENDAR\r\n"


def vevent(uid: str, start: datetime, end: datetime, summary: str) -> str:
    stamp = "%Y%m%dT%H%M%SZ"
    return (
        f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20261101T000000Z\r\nDTSTART:{start:{stamp}}\r\n"
        f"DTEND:{end:{stamp}}\r\nSUMMARY:{summary}\r\nEND:VEVENT\r\n"
    )


# --------------------------------------------------------------------------- calendars never read


class _NotFound(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def not_found_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/secret-path/work.ics"
    finally:
        server.shutdown()
        server.server_close()


UNREADABLE = ["missing", "html", "binary", "http-404"]


def unreadable_source(kind: str, home: Path, url: str) -> str:
    path = home / f"work-{kind}.ics"
    if kind == "html":
        path.write_text("<!DOCTYPE html><html><body>Sign in to continue</body></html>")
    elif kind == "binary":
        path.write_bytes(bytes(range(256)) * 16)
    return url if kind == "http-404" else str(path)


@pytest.mark.parametrize("kind", UNREADABLE)
def test_a_calendar_never_read_on_first_setup_gets_no_schedule(
    kind: str, cb: Cli, home: Path, not_found_url: str
) -> None:
    source = unreadable_source(kind, home, not_found_url)
    synced = cb("sync", "--source", source, expect=1)
    assert "nothing new is placed" in synced.stderr and "[ics] sources" in synced.stderr
    assert "secret-path" not in synced.stderr, "a secret address is never printed"
    assert b"BEGIN:VEVENT" not in feed_bytes(home), "nothing was published as if the calendar were empty"
    exported = cb("feed", "export", "-o", str(home / "out.ics"), "--source", source, expect=1)
    assert "nothing new is placed" in exported.stderr
    assert b"BEGIN:VEVENT" not in (home / "out.ics").read_bytes()
    assert json.loads(cb("agenda", "--json", "--source", source, expect=1).stdout) == []
    status = cb("status", "--json", "--source", source, expect=1)
    assert all(row["next_at"] is None for row in json.loads(status.stdout)["connections"])


def test_what_was_placed_stays_while_a_new_calendar_cannot_be_read(cb: Cli, home: Path) -> None:
    good = home / "personal.ics"
    good.write_text(ics())
    cb("sync", "--source", str(good))
    before = feed_events(home)
    assert before, "the first sync placed the plan"
    later = T0 + timedelta(days=2)
    failed = cb("sync", "--source", str(good), "--source", str(home / "work.ics"), now=later, expect=1)
    assert "work.ics has no data yet" in failed.stderr
    after = feed_events(home)
    assert set(after) <= set(before), "nothing new was placed"
    assert {k: v for k, v in before.items() if v[1] > later} == {
        k: v for k, v in after.items() if v[1] > later
    }


# --------------------------------------------------------------------------- skip and the rhythm


def test_skipping_a_touchpoint_then_meeting_keeps_the_two_week_rhythm(cb: Cli) -> None:
    cb("sync")
    grace = [i for i in agenda(cb) if i["connection"] == GRACE]
    second = grace[1]
    assert second["due"] == "2026-12-07"
    cb("skip", second["key"])
    later = T0 + timedelta(minutes=1)
    cb("log", "add", GRACE, "--note", "call", now=later)  # met today: the rhythm restarts from today
    cb("sync", now=later)
    nxt = min((i for i in agenda(cb, now=later) if i["connection"] == GRACE), key=lambda i: i["start"])
    assert nxt["due"] == "2026-12-07", "two weeks after the call, not four and a half"


def test_a_skip_still_holds_while_nothing_happened(cb: Cli) -> None:
    cb("sync")
    grace = [i for i in agenda(cb) if i["connection"] == GRACE]
    cb("skip", grace[1]["key"])
    cb("sync")
    dues = [i["due"] for i in agenda(cb) if i["connection"] == GRACE]
    assert grace[1]["due"] not in dues and grace[2]["due"] in dues


# --------------------------------------------------------------------------- the review rhythm


def test_changing_the_review_from_monthly_to_quarterly_keeps_the_kickoff(cb: Cli, home: Path) -> None:
    early = T0.replace(hour=7)  # before working hours: the kickoff lands later today
    cb("sync", now=early)
    kickoff = next(i for i in agenda(cb, now=early) if i["key"] == "review:kickoff")
    assert kickoff["due"] == "2026-11-23" and not kickoff["overdue"]
    text = plan_path(home).read_text().replace("every: month, duration: 30m", "every: quarter, duration: 30m")
    plan_path(home).write_text(text)
    edited = early + timedelta(minutes=30)
    cb("sync", now=edited)
    items = agenda(cb, now=edited)
    kickoff_after = next(i for i in items if i["key"] == "review:kickoff")
    assert kickoff_after == kickoff, "the kickoff is not rewritten by the edit"
    reviews = [i["due"] for i in items if i["kind"] == "review" and i["key"] != "review:kickoff"]
    assert reviews and reviews[0] == "2027-02-23", "the first quarterly review is a quarter after the kickoff"
    status = json.loads(cb("status", "--json", now=edited).stdout)
    assert status["review"]["every"] == "quarter" and status["review"]["last"] is None
    assert status["review"]["next_due"] == "2026-11-23" and not status["review"]["overdue"]


@pytest.mark.parametrize("weekday", range(7))
def test_two_runs_with_nothing_changed_publish_identical_feeds(weekday: int, cb: Cli, home: Path) -> None:
    day = date(2026, 11, 23) + timedelta(days=weekday)  # Monday + weekday
    evening = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=23, minutes=59, seconds=58)
    cb("feed", "export", "-o", str(home / "a.ics"), now=evening - timedelta(hours=14))
    cb("feed", "export", "-o", str(home / "b.ics"), now=evening - timedelta(hours=14, seconds=-5))
    assert (home / "a.ics").read_bytes() == (home / "b.ics").read_bytes(), "a few seconds apart"
    cb("feed", "export", "-o", str(home / "c.ics"), now=evening)
    cb("feed", "export", "-o", str(home / "d.ics"), now=evening + timedelta(seconds=5))  # past midnight
    assert (home / "c.ics").read_bytes() == (home / "d.ics").read_bytes(), "across midnight"


# --------------------------------------------------------------------------- one schedule everywhere


def test_agenda_and_status_show_what_the_feed_has(cb: Cli, home: Path) -> None:
    busy = home / "work.ics"
    busy.write_text(ics(vevent("workshop@x", T0.replace(hour=9, minute=0), T0.replace(hour=12), "Workshop")))
    early = T0.replace(hour=8, minute=30)
    cb("sync", "--source", str(busy), now=early)
    feed = feed_events(home)
    assert feed["review:kickoff"][1] >= T0.replace(hour=12), "the kickoff avoids the workshop"
    # A plain agenda (the work calendar is not in the config) shows the same schedule, not a re-plan.
    shown = {i["key"]: datetime.fromisoformat(i["start"]).astimezone(UTC) for i in agenda(cb, now=early)}
    assert shown == {key: start for key, (_title, start) in feed.items()}
    status = json.loads(cb("status", "--json", now=early).stdout)
    for row in status["connections"]:
        starts = [s for k, (title, s) in feed.items() if title.endswith(row["name"])]
        assert datetime.fromisoformat(row["next_at"]).astimezone(UTC) == min(starts)


def test_before_the_first_sync_agenda_is_a_labelled_preview(cb: Cli, home: Path) -> None:
    shown = cb("agenda")
    assert shown.stdout.startswith("preview: nothing is placed yet")
    assert "Review: relationship plan (kickoff)" in shown.stdout
    assert not (home / "data" / "circleback").exists() or not any((home / "data" / "circleback").iterdir())


def test_a_completed_touchpoint_shows_in_the_feed_when_it_happened(cb: Cli, home: Path) -> None:
    cb("sync")
    first = next(i for i in agenda(cb) if i["connection"] == GRACE)
    planned = datetime.fromisoformat(first["start"]).astimezone(UTC)
    moved = planned + timedelta(hours=3)
    # The person's calendar app copied the event (with its signed description) and they dragged it.
    feed = Calendar.from_ical(feed_bytes(home))
    (event,) = [e for e in feed.walk("VEVENT") if str(e["UID"]) == first["uid"]]
    del event["DTSTART"], event["DTEND"]
    event.add("DTSTART", moved)
    event.add("DTEND", moved + timedelta(minutes=30))
    copy = home / "mine.ics"
    copy.write_bytes(ics(event.to_ical().decode()).encode())
    after = moved + timedelta(hours=1)
    cb("sync", "--source", str(copy), now=after)
    assert feed_events(home)[first["key"]][1] == moved
    again = feed_bytes(home)
    cb("sync", "--source", str(copy), now=after + timedelta(minutes=5))
    assert feed_bytes(home) == again, "stable from one cycle to the next"


# --------------------------------------------------------------------------- nothing placed


def test_what_cannot_be_placed_is_said_by_name(cb: Cli, home: Path) -> None:
    text = plan_path(home).read_text().replace('start: "09:00", end: "17:30"', 'start: "09:00", end: "09:45"')
    plan_path(home).write_text(text)
    synced = cb("sync", expect=1)
    assert re.search(
        r"not placed: Women in Tech London: no free 60-minute slot .*in working hours from 2026-11-23",
        synced.stderr,
    ), synced.stderr
    assert "not placed: Grace Hopper" not in synced.stderr
    status = cb("status")
    assert "not placed (no free slot)" in status.stdout
    assert feed_events(home), "what fits is still placed"


def test_a_review_done_completes_the_review_block_no_calendar_showed(cb: Cli, home: Path) -> None:
    # Reviews done live apart from the interaction log now; the block must still count as done.
    from daemon.store import Store
    from schedules.occurrence import OccurrenceStatus

    early = T0.replace(hour=7)
    cb("sync", now=early)
    kickoff = next(i for i in agenda(cb, now=early) if i["key"] == "review:kickoff")
    started = datetime.fromisoformat(kickoff["start"]).astimezone(UTC)
    cb("review", "done", "--on", started.strftime("%Y-%m-%dT%H:%M"), now=started + timedelta(minutes=40))
    cb("sync", now=started + timedelta(days=2))
    with Store(f"sqlite:///{home / 'data' / 'circleback' / 'circleback.db'}") as store:
        statuses = {row.key: row.status for row in store.occurrences()}
    assert statuses["review:kickoff"] is OccurrenceStatus.COMPLETED

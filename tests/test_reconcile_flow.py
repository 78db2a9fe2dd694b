"""Issue 3 end to end: the real `circleback` command, the real cycle, a temporary XDG home, and a source
calendar rewritten between runs, with `--now` moving time forward. Nothing is mocked."""

from __future__ import annotations

import json
import re
import shutil
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cli_runner import Cli, Result, home_with_plan, in_process
from icalendar import Calendar, vText

FIXTURES = Path(__file__).parent / "fixtures"
ADA = FIXTURES / "plans" / "ada.yaml"
FLOW = FIXTURES / "flow"
MEETINGS = FLOW / "meetings.ics"  # a Google export: past and future meetings, none of them ours
QUARTER_CLOSE = FLOW / "quarter-close.ics"  # an Apple export: a recurring block with EXDATE and override
UNRELATED = FLOW / "outlook-unrelated.ics"  # an Outlook export (Windows zone names), no focus contact in it

T0 = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)  # a Monday; Europe/London is on GMT, so local == UTC
GRACE = "Grace Hopper"
GROUP = "Women in Tech London"

Run = Cli


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return home_with_plan(tmp_path, ADA)


@pytest.fixture
def run(home: Path) -> Run:
    return in_process(home, check=True)


def feed_of(home: Path) -> Path:
    return home / "state" / "circleback" / "circleback.ics"


def as_json(proc: Result) -> Any:
    return json.loads(proc.stdout)


def ics_utc(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def copied_event(home: Path, uid: str, start: datetime, end: datetime, summary: str) -> str:
    """A touchpoint as a subscriber's calendar app copies it into their own calendar: our UID, title and
    description (whose last line is the signed key), none of our X- properties, the time wherever they
    dragged it. The description comes from the feed circleback wrote, as the app's copy does."""
    (published,) = [
        event
        for event in Calendar.from_ical(feed_of(home).read_bytes()).walk("VEVENT")
        if event["UID"] == uid
    ]
    description = vText(str(published["DESCRIPTION"])).to_ical().decode()
    return (
        "BEGIN:VEVENT\r\n"
        f"UID:{uid}\r\n"
        "DTSTAMP:20261123T120000Z\r\n"
        f"DTSTART:{ics_utc(start)}\r\n"
        f"DTEND:{ics_utc(end)}\r\n"
        f"SUMMARY:{summary}\r\n"
        f"DESCRIPTION:{description}\r\n"
        "STATUS:CONFIRMED\r\n"
        "END:VEVENT\r\n"
    )


def write_source(path: Path, *events: str, base: Path = MEETINGS) -> Path:
    text = base.read_text()
    head, tail = text.rsplit("END:VCALENDAR", 1)
    path.write_text(head + "".join(events) + "END:VCALENDAR" + tail)
    return path


def logged_count(proc: Result) -> int:
    """How many entries `reconcile` says it logged (or would log); 0 when it found nothing new."""
    counts = re.findall(r"^(?:logged|would log) (\d+) interaction\(s\)$", proc.stdout, re.MULTILINE)
    if not counts:
        assert "nothing new happened" in proc.stdout, proc.stdout
        return 0
    assert len(counts) == 1, proc.stdout
    return int(counts[0])


def logged_lines(proc: Result) -> list[str]:
    return [line for line in proc.stdout.splitlines() if line.startswith("logged  ")]


def first_touchpoint(agenda: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(item for item in agenda if item["kind"] == "touchpoint" and item["connection"] == name)


def at(item: dict[str, Any], field: str) -> datetime:
    return datetime.fromisoformat(item[field])


def connection_status(status: dict[str, Any], name: str) -> dict[str, Any]:
    rows: list[dict[str, Any]] = [row for row in status["connections"] if row["name"] == name]
    assert len(rows) == 1, status
    return rows[0]


def feed_uids(home: Path) -> set[str]:
    calendar = Calendar.from_ical(feed_of(home).read_bytes())
    return {str(event["UID"]) for event in calendar.walk("VEVENT")}


# ------------------------------------------------------------------------------------------------ scenarios


def test_copied_touchpoint_and_meetings_are_logged_once_and_undo_sticks(run: Run, home: Path) -> None:
    run("sync", now=T0)
    placed = first_touchpoint(as_json(run("agenda", "--json", "--days", "7", now=T0)), GRACE)
    planned_start, planned_end = at(placed, "start"), at(placed, "end")
    assert planned_start > T0

    # She dragged it one hour later in her own calendar; the copy keeps our UID.
    moved_start, moved_end = planned_start + timedelta(hours=1), planned_end + timedelta(hours=1)
    source = write_source(
        home / "ada.ics", copied_event(home, placed["uid"], moved_start, moved_end, placed["title"])
    )
    t1 = moved_end + timedelta(minutes=30)
    assert t1 < planned_end + timedelta(hours=24)  # well inside the grace period: only the copy settles it
    feed_before = feed_of(home).read_bytes()

    dry = run("reconcile", "--dry-run", "--source", str(source), now=t1)
    moved_local = f"{moved_start:%Y-%m-%d %H:%M}"
    assert "would log 3 interaction(s)" in dry.stdout and logged_count(dry) == 3
    # A dry run speaks in the conditional: nothing was logged or completed.
    assert not re.search(r"^(?:logged|completed|missed) ", dry.stdout, re.MULTILINE), dry.stdout
    assert f"would complete  {placed['title']}  {moved_local} (seen in ada.ics calendar, moved from " in (
        dry.stdout
    )
    assert f"would log       {GRACE}  {moved_local} (touchpoint" in dry.stdout
    assert f"would log       {GRACE}  2026-11-18 12:00 (attendee of 'Lunch'" in dry.stdout
    assert f"would log       {GROUP}  2026-11-17 18:30 (title matches" in dry.stdout
    for not_met in ("Compiler chat", "Coffee with Grace", "Difference engine", "Lunch again"):
        assert not_met not in dry.stdout  # declined, cancelled, someone else, still to come
    assert as_json(run("log", "list", "--json", "--all")) == [], "a dry run logs nothing"
    assert feed_of(home).read_bytes() == feed_before, "a dry run writes no feed"

    real = run("reconcile", "--source", str(source), now=t1)
    assert logged_count(real) == 3 and len(logged_lines(real)) == 3
    assert real.stderr == ""
    log = as_json(run("log", "list", "--json"))
    got = [(e["connection"], at(e, "at"), e["source"], e["event_uid"], e["undone"]) for e in log]
    assert got == [
        (
            GROUP,
            datetime(2026, 11, 17, 18, 30, tzinfo=UTC),
            "calendar",
            "meetup-2026-11@meetup.example",
            False,
        ),
        (GRACE, datetime(2026, 11, 18, 12, 0, tzinfo=UTC), "calendar", "4f1c2a7e9b0d@google.com", False),
        (GRACE, moved_start, "touchpoint", placed["uid"], False),
    ]

    again = run("reconcile", "--source", str(source), now=t1)
    assert logged_count(again) == 0 and logged_lines(again) == []

    # The cadence restarts from the real (moved) meeting, not from the planned due date.
    status = as_json(run("status", "--json", now=t1))
    grace = connection_status(status, GRACE)
    assert at(grace, "last_interaction") == moved_start
    assert grace["next_due"] == (moved_start + timedelta(weeks=2)).date().isoformat() == "2026-12-08"
    assert grace["overdue"] is False
    group = connection_status(status, GROUP)
    assert at(group, "last_interaction") == datetime(2026, 11, 17, 18, 30, tzinfo=UTC)
    assert group["next_due"] == "2026-12-17"  # a month after the meetup

    # The meetup was someone else's group after all: undo it. Reading the calendar again must not
    # bring it back, neither into the log nor into planning.
    meetup_id = log[0]["id"]
    assert f"undone #{meetup_id}" in run("log", "undo", str(meetup_id)).stdout
    after_undo = run("reconcile", "--source", str(source), now=t1)
    assert logged_count(after_undo) == 0 and logged_lines(after_undo) == []
    everything = as_json(run("log", "list", "--json", "--all"))
    assert [(e["id"], e["undone"]) for e in everything] == [(e["id"], e["id"] == meetup_id) for e in log]
    agenda = as_json(run("agenda", "--json", "--days", "14", "--source", str(source), now=t1))
    group_next = first_touchpoint(agenda, GROUP)
    # Never met again: due at once (today), not a month after the undone meetup.
    assert group_next["due"] == t1.date().isoformat()
    assert at(group_next, "start") >= t1


def test_missed_touchpoint_is_not_logged_and_the_next_is_overdue(run: Run, home: Path) -> None:
    # A coffee two weeks ago, so Grace is due today; nothing in her calendar ever shows the touchpoint.
    run("log", "add", GRACE, "--on", "2026-11-09T11:00", "--note", "coffee", now=T0)
    source = UNRELATED
    run("sync", "--source", str(source), now=T0)
    placed = first_touchpoint(as_json(run("agenda", "--json", "--days", "7", now=T0)), GRACE)
    assert placed["due"] == "2026-11-23" and placed["overdue"] is False
    missed_at = at(placed, "end") + timedelta(hours=24)

    # Inside the grace period it is neither missed nor completed.
    early = run("reconcile", "--source", str(source), now=missed_at - timedelta(minutes=1))
    assert placed["title"] not in early.stdout
    assert logged_count(early) == 0

    t2 = missed_at + timedelta(minutes=30)
    # `status` reads no calendar, so it leaves the verdict to the next cycle rather than guess.
    unjudged = connection_status(as_json(run("status", "--json", now=t2)), GRACE)
    assert unjudged["overdue"] is False
    sync = run("sync", "--source", str(source), now=t2)
    assert "logged" not in sync.stdout
    uids_after_sync = feed_uids(home)
    assert placed["uid"] not in uids_after_sync  # a missed touchpoint leaves the feed

    agenda = run("agenda", "--days", "7", now=t2).stdout
    overdue_lines = [line for line in agenda.splitlines() if placed["title"] in line]
    assert overdue_lines and overdue_lines[0].endswith("(overdue)"), agenda
    status = connection_status(as_json(run("status", "--json", now=t2)), GRACE)
    assert status["overdue"] is True
    assert status["next_due"] == placed["due"]  # overdue since the due date it missed
    assert at(status, "next_at") >= t2

    again = run("reconcile", "--source", str(source), now=t2)
    assert logged_count(again) == 0
    assert placed["title"] not in again.stdout, "already settled: not reported missed twice"
    # The replacement keeps its identity from one cycle to the next (no delete-and-recreate in the
    # subscriber's calendar).
    assert feed_uids(home) == uids_after_sync
    log = as_json(run("log", "list", "--json"))
    assert [(e["connection"], e["source"], e["note"]) for e in log] == [(GRACE, "manual", "coffee")]


def test_a_calendar_that_never_worked_does_not_hold_back_missed_verdicts(run: Run, home: Path) -> None:
    # Otherwise one mistyped address would switch missed-touchpoint detection off for good.
    run("log", "add", GRACE, "--on", "2026-11-09", now=T0)
    run("sync", now=T0)
    placed = first_touchpoint(as_json(run("agenda", "--json", "--days", "7", now=T0)), GRACE)
    later = at(placed, "end") + timedelta(hours=30)
    broken = run("reconcile", "--source", str(home / "typo.ics"), now=later, check=False)
    assert broken.returncode == 1 and "typo.ics" in broken.stderr
    assert re.search(rf"^missed\s+{re.escape(placed['title'])}", broken.stdout, re.MULTILINE), broken.stdout
    # While the typo calendar has no data nothing new is placed; once it is fixed, the successor is.
    run("sync", now=later)
    status = connection_status(as_json(run("status", "--json", now=later)), GRACE)
    assert status["overdue"] is True, "the missed touchpoint was judged, and its successor is overdue"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port  # closed again: nothing listens there now


def test_unreadable_sources_are_reported_and_nothing_is_lost(run: Run, home: Path) -> None:
    run("log", "add", GRACE, "--on", "2026-11-09", "--note", "call", now=T0)
    missing = home / "no-such-dir" / "work.ics"
    missing.parent.mkdir()
    # The work calendar is readable at first (nothing in it yet)...
    missing.write_text("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nEND:VCALENDAR\r\n")
    run("sync", "--source", str(missing), now=T0)
    placed = first_touchpoint(as_json(run("agenda", "--json", "--days", "7", now=T0)), GRACE)
    missing.unlink()  # ...and then it is gone, together with its directory
    missing.parent.rmdir()
    # Without its cached copy either, so nothing at all can be read from it.
    shutil.rmtree(home / "state" / "circleback" / "sources")

    secret = "private-5f3c9e0a1b2c4d6e8f"
    url = f"http://127.0.0.1:{closed_port()}/calendar/ical/ada%40example.com/{secret}/basic.ics"
    # Well after the touchpoint and its grace period: were the calendars readable, this would settle it.
    t2 = at(placed, "end") + timedelta(hours=30)
    feed_of(home).unlink()
    broken = run("sync", "--source", str(missing), "--source", url, now=t2, check=False)
    assert broken.returncode == 1
    assert "error: work.ics: " in broken.stderr and "no such file" in broken.stderr
    assert "error: 127.0.0.1:" in broken.stderr and "cannot connect" in broken.stderr
    assert broken.stderr.count("no such file") == broken.stderr.count("cannot connect") == 1, broken.stderr
    assert secret not in broken.stdout + broken.stderr
    assert "ada%40example.com" not in broken.stdout + broken.stderr
    assert feed_of(home).exists(), "the feed is still written"
    assert placed["uid"] in feed_uids(home), "with the unsettled touchpoint still in it"
    log = as_json(run("log", "list", "--json"))
    assert [(e["connection"], e["note"]) for e in log] == [(GRACE, "call")]

    # The calendar that worked until recently could hold the proof that the touchpoint happened, so it was
    # not written off as missed: once the calendar is readable again, the copy in it still counts. (The
    # address that never worked holds nothing back: see test_a_calendar_that_never_worked_...)
    source = write_source(
        home / "ada.ics",
        copied_event(home, placed["uid"], at(placed, "start"), at(placed, "end"), placed["title"]),
    )
    back = run("reconcile", "--source", str(source), now=t2)
    assert f"logged     {GRACE}  {at(placed, 'start'):%Y-%m-%d %H:%M} (touchpoint" in back.stdout
    log = as_json(run("log", "list", "--json"))
    assert (GRACE, "touchpoint", placed["uid"]) in [
        (e["connection"], e["source"], e["event_uid"]) for e in log
    ]


def test_recurring_busy_time_with_exdate_and_override_moves_touchpoints(run: Run) -> None:
    # Quarter-end close blocks every working day from Mon 23 Nov to Fri 4 Dec, except Wednesday 25th
    # (EXDATE) and Thursday 26th afternoon (an override shortens that day to the morning).
    agenda = as_json(run("agenda", "--json", "--days", "21", "--source", str(QUARTER_CLOSE), now=T0))
    day = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    busy = [
        (day + timedelta(days=n), day + timedelta(days=n, hours=8, minutes=30))
        for n in (0, 1, 4, 7, 8, 9, 10, 11)  # Mon 23 .. Fri 4 Dec, without Wed 25 and Thu 26
    ]
    busy.append((datetime(2026, 11, 26, 9, 0, tzinfo=UTC), datetime(2026, 11, 26, 12, 0, tzinfo=UTC)))
    assert len(agenda) >= 4
    for item in agenda:
        start, end = at(item, "start"), at(item, "end")
        for busy_start, busy_end in busy:
            assert end <= busy_start or start >= busy_end, (item["title"], item["start"])
    first_week = [item for item in agenda if at(item, "start") < datetime(2026, 11, 30, tzinfo=UTC)]
    assert {item["kind"] for item in first_week} == {"review", "touchpoint"}
    days_used = {at(item, "start").date().isoformat() for item in first_week}
    # Both holes in the block are used: the excluded day, and the afternoon the override freed.
    assert days_used == {"2026-11-25", "2026-11-26"}
    thursday = [item for item in first_week if item["start"].startswith("2026-11-26")]
    assert all(at(item, "start").hour >= 12 for item in thursday)
    # Nothing can go where the block still stands until it ends.
    assert not [item for item in agenda if "2026-11-27" <= item["start"][:10] <= "2026-12-04"]

"""The `circleback` command on the embedded default (SQLite, ICS feed): in-process, as the suite runs
commands, plus the subprocess smoke tests where the process itself matters (exit statuses through the
installed command, a pipe closed early)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import subprocess
import tomllib
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import datetime
from pathlib import Path

import pytest
from cli_runner import Cli, in_process, installed_command, private_home, run_cli, xdg_env
from icalendar import Calendar

FIXTURES = Path(__file__).parent / "fixtures"
ADA = FIXTURES / "plans" / "ada.yaml"
NOW = "2026-11-23T09:30:00+00:00"  # a Monday

Run = Cli


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return private_home(tmp_path)


@pytest.fixture
def run(home: Path) -> Run:
    """The command in-process; a non-zero exit fails the test unless the call says check=False."""
    return in_process(home, check=True)


@pytest.fixture
def plan(home: Path) -> Path:
    target = home / "plan.yaml"
    shutil.copy(ADA, target)
    return target


def test_help_on_every_command(run: Run) -> None:
    for args in (
        [],
        ["init"],
        ["plan", "check"],
        ["agenda"],
        ["sync"],
        ["reconcile"],
        ["feed", "export"],
        ["feed", "url"],
        ["feed", "rotate"],
        ["log", "add"],
        ["log", "list"],
        ["log", "undo"],
        ["status"],
        ["run"],
        ["config"],
    ):
        proc = run(*args, "--help")
        assert proc.stdout.startswith("usage: circleback"), args


def test_init_writes_a_plan_that_checks_and_never_overwrites(run: Run, home: Path) -> None:
    proc = run("init", str(home / "cfg"))
    plan, config = home / "cfg" / "plan.yaml", home / "cfg" / "config.toml"
    assert plan.exists() and config.exists()
    assert "wrote" in proc.stdout
    assert stat.S_IMODE((home / "cfg").stat().st_mode) == 0o700
    checked = run("plan", "check", str(plan))
    assert "ok" in checked.stdout
    plan.write_text(plan.read_text().replace("Your Name", "Ada"))
    config.unlink()
    again = run("init", str(home / "cfg"))
    assert f"kept  {plan}" in again.stdout and f"wrote {config}" in again.stdout
    assert "Ada" in plan.read_text(), "an existing plan is never overwritten without --force"
    forced = run("init", str(home / "cfg"), "--force")
    assert "Your Name" in plan.read_text() and "kept" not in forced.stdout


def test_init_default_directory_is_xdg(run: Run, home: Path) -> None:
    run("init")
    assert (home / "config" / "circleback" / "plan.yaml").exists()
    # With no flags at all the XDG plan is used.
    assert "ok" in run("plan", "check").stdout


def test_broken_plan_exit_2_names_line_and_field_and_writes_nothing(run: Run, home: Path) -> None:
    bad = home / "bad.yaml"
    bad.write_text(ADA.read_text().replace("stage: find", "stage: finde"))
    feed = home / "feed.ics"
    proc = run("feed", "export", "--plan", str(bad), "-o", str(feed), check=False)
    assert proc.returncode == 2
    assert "bad.yaml:" in proc.stderr and "connections[1].stage" in proc.stderr
    assert not feed.exists()
    assert list((home / "data").iterdir()) == []  # no database created
    assert list((home / "state").iterdir()) == []


def test_missing_plan_is_bad_input(run: Run, home: Path) -> None:
    proc = run("agenda", "--plan", str(home / "nope.yaml"), check=False)
    assert proc.returncode == 2
    assert "nope.yaml: plan file not found" in proc.stderr


def test_agenda_lists_kickoff_and_touchpoints(run: Run, plan: Path) -> None:
    proc = run("agenda", "--plan", str(plan), "--now", NOW, "--days", "7")
    assert "Review: relationship plan (kickoff)" in proc.stdout
    assert "Nurture: Grace Hopper" in proc.stdout
    assert "Find: Women in Tech London" in proc.stdout
    as_json = json.loads(run("agenda", "--plan", str(plan), "--now", NOW, "--days", "7", "--json").stdout)
    titles = {item["title"] for item in as_json}
    assert {"Nurture: Grace Hopper", "Find: Women in Tech London"} <= titles
    for item in as_json:
        assert item["start"].endswith("+00:00")  # Europe/London in November is GMT, shown in plan zone
        assert "2026-11-23" <= item["start"][:10] <= "2026-11-29"


def test_global_options_accepted_before_and_after_subcommand(run: Run, plan: Path, home: Path) -> None:
    first = run("--plan", str(plan), "--now", NOW, "agenda", "--json").stdout
    second = run("agenda", "--json", "--plan", str(plan), "--now", NOW).stdout
    assert first == second


def test_feed_export_is_stable_and_parses(run: Run, plan: Path, home: Path) -> None:
    feed = home / "out" / "feed.ics"
    feed.parent.mkdir()
    run("feed", "export", "--plan", str(plan), "--now", NOW, "-o", str(feed))
    first = feed.read_bytes()
    calendar = Calendar.from_ical(first)
    events = calendar.walk("VEVENT")
    assert events, "the feed has events"
    assert all(str(e["UID"]).endswith("@circleback.invalid") for e in events)
    run("feed", "export", "--plan", str(plan), "--now", NOW, "-o", str(feed))
    assert feed.read_bytes() == first, "same plan, same log, same time: identical bytes"


def test_busy_file_moves_touchpoints(run: Run, plan: Path, home: Path) -> None:
    free = json.loads(run("agenda", "--plan", str(plan), "--now", NOW, "--json").stdout)
    first = free[0]
    busy = home / "busy.ics"
    busy.write_text(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n"
        "BEGIN:VEVENT\r\nUID:busy-1@test\r\nDTSTAMP:20261101T000000Z\r\n"
        f"DTSTART:{first['start'][:19].replace('-', '').replace(':', '')}Z\r\n"
        f"DTEND:{first['end'][:19].replace('-', '').replace(':', '')}Z\r\n"
        "SUMMARY:Board meeting\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    moved = json.loads(run("agenda", "--plan", str(plan), "--now", NOW, "--json", "--busy", str(busy)).stdout)
    assert len(moved) == len(free), "everything is still placed, elsewhere"
    busy_start, busy_end = datetime.fromisoformat(first["start"]), datetime.fromisoformat(first["end"])
    for item in moved:
        start, end = datetime.fromisoformat(item["start"]), datetime.fromisoformat(item["end"])
        assert end <= busy_start or start >= busy_end, f"{item['title']} overlaps the board meeting"
    assert {item["title"] for item in moved} == {item["title"] for item in free}


def test_log_add_list_undo_and_status(run: Run, plan: Path) -> None:
    added = run(
        "log",
        "add",
        "grace hopper",
        "--plan",
        str(plan),
        "--on",
        "2026-11-20",
        "--note",
        "coffee",
        "--now",
        NOW,
    )
    assert "logged #1" in added.stdout
    listed = json.loads(run("log", "list", "--json", "--plan", str(plan)).stdout)
    assert listed[0]["connection"] == "Grace Hopper"
    assert listed[0]["source"] == "manual" and listed[0]["note"] == "coffee"
    status = json.loads(run("status", "--json", "--plan", str(plan), "--now", NOW).stdout)
    grace = next(c for c in status["connections"] if c["name"] == "Grace Hopper")
    assert grace["last_interaction"].startswith("2026-11-20")
    assert grace["next_due"] == "2026-12-04"  # two weeks after the coffee
    assert grace["overdue"] is False
    run("log", "undo", "1", "--plan", str(plan))
    assert json.loads(run("log", "list", "--json", "--plan", str(plan)).stdout) == []
    missing = run("log", "undo", "99", "--plan", str(plan), check=False)
    assert missing.returncode == 2 and "no log entry #99" in missing.stderr


def test_log_add_unknown_name_is_bad_input(run: Run, plan: Path) -> None:
    proc = run("log", "add", "Alan Turing", "--plan", str(plan), check=False)
    assert proc.returncode == 2
    assert "'Alan Turing' is not a connection" in proc.stderr


def test_bad_config_names_file_and_key(run: Run, plan: Path, home: Path) -> None:
    config = home / "c.toml"
    config.write_text('plan = "plan.yaml"\n[http]\nprot = 1\n')
    proc = run("agenda", "--config", str(config), check=False)
    assert proc.returncode == 2
    assert "c.toml" in proc.stderr and "prot" in proc.stderr


def test_a_failing_calendar_shows_in_status_and_dry_runs_write_nothing(
    run: Run, plan: Path, home: Path
) -> None:
    missing = home / "gone.ics"
    dry = run("sync", "--dry-run", "--plan", str(plan), "--now", NOW, check=False)
    assert dry.returncode == 0
    assert list((home / "data").iterdir()) == [], "a dry run creates no database"
    failed = run("sync", "--plan", str(plan), "--now", NOW, "--source", str(missing), check=False)
    assert failed.returncode == 1
    assert "gone.ics" in failed.stderr
    # A calendar that was never read: the schedule ignores it, so status says so and exits 1.
    shown = run("status", "--json", "--plan", str(plan), "--now", NOW, "--source", str(missing), check=False)
    assert shown.returncode == 1 and "gone.ics has no data yet" in shown.stderr
    (calendar,) = json.loads(shown.stdout)["calendars"]
    assert calendar["name"] == "gone.ics" and calendar["failures"] == 1
    assert "no such file" in calendar["last_error"]
    text = run("status", "--plan", str(plan), "--now", NOW, "--source", str(missing), check=False).stdout
    assert "calendar gone.ics: failing (1x)" in text


def test_review_done_moves_the_review_rhythm_even_after_reviews_were_placed(run: Run, plan: Path) -> None:
    run("sync", "--plan", str(plan), "--now", NOW)
    placed = json.loads(run("agenda", "--plan", str(plan), "--now", NOW, "--days", "60", "--json").stdout)
    assert any(item["title"] == "Review: relationship plan (kickoff)" for item in placed)
    done = run("review", "done", "--on", "2026-11-10", "--plan", str(plan), "--now", NOW)
    assert "recorded self-review R1 on 2026-11-10" in done.stdout
    run("sync", "--plan", str(plan), "--now", NOW)
    after = json.loads(run("agenda", "--plan", str(plan), "--now", NOW, "--days", "60", "--json").stdout)
    reviews = [item for item in after if item["kind"] == "review" and item["key"] != "review:kickoff"]
    assert [r["due"] for r in reviews] == ["2026-12-10", "2027-01-10"], "a month after the review done"
    assert all(r["start"][:10] >= r["due"] for r in reviews)
    # The kickoff block already under way (it started at NOW) stays until its verdict; none is planned anew.
    kickoffs = [item for item in after if item["key"].startswith("review:kickoff")]
    assert all(item["start"] <= NOW.replace("+00:00", "Z").replace("Z", "+00:00") for item in kickoffs)
    # Reviews are not connections (issue 9): a review done is kept apart from the interaction log.
    listed = run("log", "list", "--plan", str(plan)).stdout
    assert "self-review" not in listed


def test_skip_removes_one_touchpoint_and_the_rhythm_goes_on(run: Run, plan: Path) -> None:
    run("sync", "--plan", str(plan), "--now", NOW)
    before = json.loads(run("agenda", "--plan", str(plan), "--now", NOW, "--days", "60", "--json").stdout)
    grace = [item for item in before if item["connection"] == "Grace Hopper"]
    first = grace[0]
    done = run("skip", first["uid"], "--plan", str(plan), "--now", NOW)
    assert done.stdout.startswith("skipped Nurture: Grace Hopper")
    run("sync", "--plan", str(plan), "--now", NOW)
    after = json.loads(run("agenda", "--plan", str(plan), "--now", NOW, "--days", "60", "--json").stdout)
    grace_after = [item for item in after if item["connection"] == "Grace Hopper"]
    assert first["uid"] not in {item["uid"] for item in after}
    assert not any(item["key"].startswith(first["key"]) for item in grace_after), "no replacement for it"
    assert [item["uid"] for item in grace_after] == [item["uid"] for item in grace[1:]], "the rest stay put"
    unknown = run("skip", "touchpoint:nobody:2026-W01", "--plan", str(plan), check=False)
    assert unknown.returncode == 2 and "no planned occurrence" in unknown.stderr


# ------------------------------------------------------------------ input at the edges (issue 7: 6, 16, 17)


@pytest.fixture
def inproc(home: Path) -> Cli:
    return in_process(home)


def test_version_prints_the_package_version(inproc: Cli) -> None:
    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text(encoding="utf-8"))
    status, out, _err = inproc("--version")
    assert (status, out) == (0, f"circleback {project['project']['version']}\n")


@pytest.mark.parametrize(
    "url",
    ["sqlite://relative.db", "sqlite://:memory:", "sqlite://user@host/x.db", "postgresql://h:port/x"],
)
def test_malformed_database_urls_are_bad_input_without_traceback(inproc: Cli, plan: Path, url: str) -> None:
    status, out, err = inproc("agenda", "--plan", str(plan), "--db", url, "--now", NOW)
    assert status == 2, err
    assert err.startswith("error: ") and "Traceback" not in err
    assert url in err
    assert out == ""


def test_sqlite_url_with_two_slashes_says_how_to_write_a_path(inproc: Cli, plan: Path) -> None:
    _status, _out, err = inproc("status", "--plan", str(plan), "--db", "sqlite://relative.db")
    assert "sqlite:///relative.db" in err, "the three-slash form the person probably meant"


def test_exit_statuses_through_the_installed_command(home: Path, plan: Path) -> None:
    # The suite runs commands in-process; this is the real process a person starts, so the statuses
    # reach the shell through the launcher and sys.exit: 0 done, 2 bad input, 1 a failure.
    assert run_cli(home, "plan", "check", str(plan)).stdout.startswith(f"{plan}: ok")
    bad = home / "bad.yaml"
    bad.write_text(ADA.read_text().replace("stage: find", "stage: finde"))
    broken = run_cli(home, "agenda", "--plan", str(bad), check=False)
    assert broken.returncode == 2 and "connections[1].stage" in broken.stderr and broken.stdout == ""
    gone = str(home / "gone.ics")
    failed = run_cli(home, "sync", "--plan", str(plan), "--now", NOW, "--source", gone, check=False)
    assert failed.returncode == 1 and "gone.ics" in failed.stderr and "Traceback" not in failed.stderr


def test_a_pipe_closed_early_is_not_an_error(home: Path, plan: Path) -> None:
    # `circleback feed url | head -0`: the reader is gone before circleback writes. Closing our end of a
    # real pipe before the child has even started makes that deterministic.
    proc = subprocess.Popen(
        [installed_command(), "feed", "url"],
        env=xdg_env(home),
        cwd=home,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, err
    assert err == ""


@contextmanager
def unwritable_directory(directory: Path) -> Iterator[None]:
    """Make `directory` refuse new files, really: mode 0555, or for root (whom modes do not stop) the
    immutable attribute, which the kernel enforces for root too."""
    root = os.geteuid() == 0
    if root:
        subprocess.run(["chattr", "+i", str(directory)], check=True, capture_output=True)
    else:
        directory.chmod(0o555)
    try:
        with pytest.raises(PermissionError):
            (directory / "probe").touch()  # the mechanism works here, or the test means nothing
        yield
    finally:
        if root:
            subprocess.run(["chattr", "-i", str(directory)], check=True, capture_output=True)
        else:
            directory.chmod(0o700)


def test_read_only_commands_work_when_the_database_directory_is_not_writable(
    inproc: Cli, plan: Path, home: Path
) -> None:
    db_dir = home / "db"
    db_dir.mkdir()
    common = ("--plan", str(plan), "--db", f"sqlite:///{db_dir / 'circleback.db'}", "--now", NOW)
    assert inproc("sync", *common)[0] == 0
    assert inproc("log", "add", "Grace Hopper", "--on", "2026-11-20", *common)[0] == 0
    before = {
        "agenda": inproc("agenda", "--json", *common),
        "status": inproc("status", "--json", *common),
        "log": inproc("log", "list", "--json", *common),
    }
    assert all(status == 0 for status, _out, _err in before.values())
    with unwritable_directory(db_dir):
        after = {
            "agenda": inproc("agenda", "--json", *common),
            "status": inproc("status", "--json", *common),
            "log": inproc("log", "list", "--json", *common),
        }
        assert after == before, "read-only, the same answers as before"
        for command in (("sync", "--dry-run"), ("reconcile", "--dry-run")):
            status, out, err = inproc(*command, *common)
            assert (status, err) == (0, ""), command
            assert out
        assert sorted(p.name for p in db_dir.iterdir()) == ["circleback.db"], "no -wal, no -shm"
        # Writing commands still say plainly that they cannot write.
        status, _out, err = inproc("log", "add", "Grace Hopper", *common)
        assert status == 1 and err.startswith("error: ") and "Traceback" not in err


def test_read_only_commands_read_through_a_writers_wal(inproc: Cli, plan: Path, home: Path) -> None:
    # While another process has the database open (the service), recent writes live in the -wal file;
    # a read-only reader must see them, not only what was checkpointed into the database file.
    db_dir = home / "db"
    db_dir.mkdir()
    db = db_dir / "circleback.db"
    common = ("--plan", str(plan), "--db", f"sqlite:///{db}", "--now", NOW)
    assert inproc("log", "add", "Grace Hopper", "--on", "2026-11-19", *common)[0] == 0
    with closing(sqlite3.connect(db)) as writer:
        writer.execute("SELECT count(*) FROM sqlite_master").fetchone()  # holds the WAL open
        assert inproc("log", "add", "Grace Hopper", "--on", "2026-11-20", *common)[0] == 0
        assert (db_dir / "circleback.db-wal").stat().st_size > 0
        with unwritable_directory(db_dir):
            status, out, err = inproc("log", "list", "--json", *common)
    assert (status, err) == (0, "")
    assert [entry["at"][:10] for entry in json.loads(out)] == ["2026-11-19", "2026-11-20"]


def test_plan_with_huge_numbers_and_a_legacy_zone_is_bad_input_for_check_and_sync(
    inproc: Cli, home: Path
) -> None:
    # `every: 999999999 weeks` passed `plan check`, then `sync` crashed; `duration: 99999999999h` crashed
    # both. Now both commands list the same problems, at FILE:LINE:COL, and exit 2.
    source = FIXTURES / "plans" / "broken" / "legacy-timezone-and-huge-numbers.yaml"
    bad_plan = home / source.name
    shutil.copy(source, bad_plan)
    expected = [
        f"{home}/{line}" for line in source.with_suffix(".expected").read_text(encoding="utf-8").splitlines()
    ]
    for command in (("plan", "check", str(bad_plan)), ("sync", "--plan", str(bad_plan), "--now", NOW)):
        status, out, err = inproc(*command)
        assert (status, out, err.splitlines()) == (2, "", expected), command
    assert list((home / "data").iterdir()) == [], "nothing written"


def test_plan_check_refuses_a_keyword_list_longer_than_the_cap(inproc: Cli, plan: Path) -> None:
    from schedules.plan import MAX_KEYWORDS

    words = ", ".join(f"word{n}" for n in range(MAX_KEYWORDS + 1))
    text = plan.read_text(encoding="utf-8")
    plan.write_text(text.replace("    kind: group\n", f"    kind: group\n    keywords: [{words}]\n", 1))
    status, _out, err = inproc("plan", "check", str(plan))
    assert status == 2
    assert f"connections[1].keywords: at most {MAX_KEYWORDS} keywords per connection" in err

"""`circleback audit`, `log edit`, `done` and `plan diff` through the real command, store and files."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from cli_runner import Result, in_process, private_home

FIXTURES = Path(__file__).parent / "fixtures"
NOW = "2026-11-23T09:30:00+00:00"  # a Monday; Grace's first touchpoint is Tue 24 Nov 09:00 UTC
AFTER = "2026-11-24T15:00:00+00:00"

Cb = Callable[..., Result]


@pytest.fixture
def cb(tmp_path: Path) -> Cb:
    shutil.copy(FIXTURES / "plans" / "ada.yaml", private_home(tmp_path) / "plan.yaml")
    run = in_process(tmp_path)

    def call(*args: str, now: str = NOW) -> Result:
        return run(*args, "--plan", str(tmp_path / "plan.yaml"), "--now", now)

    return call


def log_list(cb: Cb) -> list[dict[str, object]]:
    status, out, _ = cb("log", "list", "--json")
    assert status == 0
    entries: list[dict[str, object]] = json.loads(out)
    return entries


def grace_key(cb: Cb) -> str:
    status, out, _ = cb("agenda", "--json")
    assert status == 0
    return str(next(item["key"] for item in json.loads(out) if item["connection"] == "Grace Hopper"))


def test_log_edit_corrects_kind_and_note(cb: Cb) -> None:
    assert cb("log", "add", "Grace Hopper", "--on", "2026-11-10", "--kind", "ask")[0] == 0
    status, out, _ = cb("log", "edit", "1", "--kind", "give", "--note", "sent the article")
    assert status == 0 and out.startswith("edited #1: 2026-11-10 12:00  Grace Hopper  give")
    [entry] = log_list(cb)
    assert (entry["kind"], entry["note"]) == ("give", "sent the article")
    assert cb("log", "edit", "1", "--note", "")[0] == 0
    assert log_list(cb)[0]["note"] == "" and log_list(cb)[0]["kind"] == "give"


def test_log_edit_refuses_nothing_to_change_and_unknown_ids(cb: Cb) -> None:
    status, _, err = cb("log", "edit", "1")
    assert status == 2 and "--kind give|ask and/or --note" in err
    status, _, err = cb("log", "edit", "7", "--kind", "ask")
    assert status == 2 and "no log entry #7" in err
    assert "Traceback" not in err


def test_done_records_the_touchpoint_with_what_happened_once(cb: Cb) -> None:
    assert cb("sync")[0] == 0
    key = grace_key(cb)
    _, listed, _ = cb("agenda", "--json", "--days", "7")
    placed = datetime.fromisoformat(next(i["start"] for i in json.loads(listed) if i["key"] == key))
    status, out, _ = cb("done", key, "--kind", "ask", "--note", "asked for an intro", now=AFTER)
    assert status == 0 and out.startswith(f"done: Nurture: Grace Hopper on {placed:%a %d %b %H:%M}")
    [entry] = log_list(cb)
    assert (entry["connection"], entry["kind"], entry["note"], entry["source"]) == (
        "Grace Hopper",
        "ask",
        "asked for an intro",
        "touchpoint",
    )
    assert entry["at"] == placed.isoformat()
    # The next cycles count it once, and plan the next touchpoint from it.
    assert cb("sync", now=AFTER)[0] == 0 and cb("sync", now=AFTER)[0] == 0
    assert len(log_list(cb)) == 1
    status, out, _ = cb("status", "--json", now=AFTER)
    grace = next(row for row in json.loads(out)["connections"] if row["name"] == "Grace Hopper")
    assert grace["last_interaction"] == placed.isoformat()
    # Already done: `done` then corrects its entry.
    status, out, _ = cb("done", key, "--kind", "give", now=AFTER)
    assert status == 0 and "already done; edited #1" in out
    assert log_list(cb)[0]["kind"] == "give"


def test_done_refuses_unknown_keys_and_touchpoints_days_ahead(cb: Cb) -> None:
    assert cb("sync")[0] == 0
    status, _, err = cb("done", "touchpoint:nobody:2026-W01")
    assert status == 2 and "no touchpoint 'touchpoint:nobody:2026-W01'" in err
    status, out, _ = cb("agenda", "--json", "--days", "28")
    later = [i for i in json.loads(out) if i["connection"] == "Grace Hopper"][1]
    status, _, err = cb("done", str(later["uid"]))
    assert status == 2 and "record it as done once it has happened" in err
    assert log_list(cb) == []


def test_plan_diff_shows_added_moved_removed_and_writes_nothing(cb: Cb, tmp_path: Path) -> None:
    assert cb("sync")[0] == 0
    status, out, _ = cb("plan", "diff")
    assert status == 0 and "no touchpoint or review would be added, moved or removed" in out
    edited = tmp_path / "edited.yaml"
    text = (tmp_path / "plan.yaml").read_text()
    edited.write_text(text.replace("every: 2 weeks", "every: month").replace("duration: 1h", "duration: 2h"))
    db = next((tmp_path / "data").rglob("*.db"))
    before = db.read_bytes()
    status, out, _ = cb("plan", "diff", str(edited))
    assert status == 0
    # A monthly touchpoint is a new one (its key names a month, not a week); the longer meetup moves.
    # (Times depend on placement; the shape of each line does not.)
    assert re.search(
        r"^\+ added    \w{3} \d\d \w{3} 2026 \d\d:\d\d-\d\d:\d\d  Nurture: Grace Hopper$", out, re.M
    )
    assert re.search(
        r"^- removed  \w{3} \d\d \w{3} 202\d \d\d:\d\d-\d\d:\d\d  Nurture: Grace Hopper$", out, re.M
    )
    moved = re.search(
        r"^~ moved    .* (\d\d):(\d\d)-(\d\d):\d\d -> .* (\d\d):(\d\d)-(\d\d):\d\d"
        r"  Find: Women in Tech London$",
        out,
        re.M,
    )
    assert moved is not None, out
    before_h, after_h = int(moved[3]) - int(moved[1]), int(moved[6]) - int(moved[4])
    assert (before_h, after_h) == (1, 2), "the meetup grew from one hour to two"
    assert db.read_bytes() == before, "a diff writes nothing"
    # A broken edited plan is bad input, with its place.
    edited.write_text(text.replace("stage: find", "stage: finde"))
    status, _, err = cb("plan", "diff", str(edited))
    assert status == 2 and "edited.yaml:" in err and "connections[1].stage" in err


def test_audit_prints_the_swot_and_json(cb: Cb) -> None:
    assert cb("sync")[0] == 0
    assert cb("log", "add", "Grace Hopper", "--on", "2026-11-09", "--kind", "ask")[0] == 0
    assert cb("log", "add", "Grace Hopper", "--on", "2026-11-20")[0] == 0
    status, out, _ = cb("audit")
    assert status == 0
    assert out.splitlines()[0] == "Audit of your focus connections as of 2026-11-23"
    for heading in ("Strengths:", "Weaknesses:", "Opportunities:", "Threats:"):
        assert heading in out
    assert "  - Grace Hopper: met at or above the cadence (every 2 weeks)" in out
    assert "Balance, give/ask: 1 give, 1 ask: 50% give (rule of thumb: about 90% give)" in out
    status, out, _ = cb("audit", "--json")
    data = json.loads(out)
    assert data["today"] == "2026-11-23"
    assert [f["rule"] for f in data["strengths"]] == ["met at cadence"]
    assert data["balance"]["overall"] == {"give": 1, "ask": 1, "give_share": 0.5}
    assert data["balance"]["rule_of_thumb_give_share"] == 0.9
    assert [c["name"] for c in data["balance"]["connections"]] == ["Grace Hopper", "Women in Tech London"]


def test_audit_report_into_a_missing_directory_fails_cleanly(cb: Cb, tmp_path: Path) -> None:
    status, _, err = cb("audit", "--html", str(tmp_path / "nope" / "a.html"))
    assert status == 1 and err.startswith("error:") and "Traceback" not in err
    assert not (tmp_path / "nope").exists()


def test_every_new_command_has_help(cb: Cb) -> None:
    for args in (["audit"], ["log", "edit"], ["done"], ["plan", "diff"]):
        status, out, _ = cb(*args, "--help")
        assert status == 0
        assert out.startswith(f"usage: circleback {' '.join(args)}")

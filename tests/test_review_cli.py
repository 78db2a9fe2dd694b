"""`circleback review done | list | undo`: reviews are numbered apart from the log (R1, R2...), and a
review recorded by mistake can be taken back, which moves the review rhythm back with it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from cli_runner import home_with_plan, run_in_process

PLANS = Path(__file__).parent / "fixtures" / "plans"
NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def _home(tmp_path: Path) -> Path:
    return home_with_plan(tmp_path, PLANS / "ada.yaml")


def _review_dues(home: Path) -> list[str]:
    agenda = run_in_process(home, "agenda", "--days", "90", "--json", now=NOW)
    assert agenda.returncode == 0, agenda.stderr
    return [
        i["due"] for i in json.loads(agenda.stdout) if i["kind"] == "review" and "kickoff" not in i["key"]
    ]


def test_a_review_is_shown_with_its_own_numbering_and_listed(tmp_path: Path) -> None:
    home = _home(tmp_path)
    logged = run_in_process(home, "log", "add", "Grace Hopper", "--note", "coffee", now=NOW)
    assert logged.returncode == 0, logged.stderr
    done = run_in_process(home, "review", "done", "--on", "2026-11-10", "--note", "drop one", now=NOW)
    assert done.returncode == 0, done.stderr
    assert "recorded self-review R1 on 2026-11-10" in done.stdout
    assert "#" not in done.stdout, "a review id must not look like a log entry's"
    listed = run_in_process(home, "review", "list", now=NOW)
    assert listed.returncode == 0
    assert listed.stdout.startswith("R1") and "2026-11-10" in listed.stdout and "drop one" in listed.stdout
    as_json = json.loads(run_in_process(home, "review", "list", "--json", now=NOW).stdout)
    assert [(r["id"], r["note"], r["undone"]) for r in as_json] == [("R1", "drop one", False)]


def test_undoing_a_review_moves_the_rhythm_back(tmp_path: Path) -> None:
    home = _home(tmp_path)
    assert run_in_process(home, "sync", now=NOW).returncode == 0
    before = _review_dues(home)
    assert run_in_process(home, "review", "done", "--on", "2026-11-10", now=NOW).returncode == 0
    assert run_in_process(home, "sync", now=NOW).returncode == 0
    after_done = _review_dues(home)
    assert after_done[:1] == ["2026-12-10"], "a month after the review done"
    undone = run_in_process(home, "review", "undo", "R1", now=NOW)
    assert undone.returncode == 0, undone.stderr
    assert undone.stdout.startswith("undone self-review R1 of 2026-11-10")
    assert run_in_process(home, "sync", now=NOW).returncode == 0
    assert _review_dues(home) == before
    again = run_in_process(home, "review", "undo", "1", now=NOW)
    assert again.returncode == 0 and again.stdout.startswith("was already undone")
    assert run_in_process(home, "review", "list", now=NOW).stdout.startswith("no self-review")
    assert "(undone)" in run_in_process(home, "review", "list", "--all", now=NOW).stdout


def test_an_unknown_review_is_a_clear_error_and_changes_nothing(tmp_path: Path) -> None:
    home = _home(tmp_path)
    assert run_in_process(home, "review", "done", "--on", "2026-11-10", now=NOW).returncode == 0
    missing = run_in_process(home, "review", "undo", "R7", now=NOW)
    assert missing.returncode == 2
    assert "no self-review R7" in missing.stderr
    garbled = run_in_process(home, "review", "undo", "x7", now=NOW)
    assert garbled.returncode == 2 and "expected a review number" in garbled.stderr
    assert run_in_process(home, "review", "list", now=NOW).stdout.startswith("R1")

"""Issue 11 end to end: `circleback sync` run as a person runs it after `circleback auth google`, with the
issue's `[google]` table, against the fake Calendar v3 server through the real client library."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta
from pathlib import Path

from cli_runner import run_in_process
from fake_google import FakeGoogle

from connectors.google import SCOPES

ADA = Path(__file__).parent / "fixtures" / "plans" / "ada.yaml"
OWNER = "ada@example.com"


def setup_home(tmp_path: Path, fake: FakeGoogle) -> Path:
    config = tmp_path / "config" / "circleback"
    config.mkdir(parents=True)
    shutil.copy(ADA, config / "plan.yaml")
    token = config / "google-token.json"
    token.write_text(
        json.dumps(
            {
                "refresh_token": fake.add_user(OWNER, time_zone="Europe/London"),
                "token_uri": fake.token_uri,
                "client_id": "circleback-tests",
                "client_secret": "not-checked",
                "scopes": SCOPES,
            }
        )
    )
    token.chmod(0o600)
    (config / "config.toml").write_text(
        "[google]\n"
        'calendar_id = "primary"\n'
        'busy_calendars = ["primary"]\n'
        f'token_file = "{token}"\n'
        f'api_endpoint = "{fake.url}"\n'
        f'token_uri = "{fake.token_uri}"\n'
        'horizon = "8 weeks"\n'
    )
    return tmp_path


def ours(fake: FakeGoogle) -> dict[str, dict[str, object]]:
    return {
        str(e["extendedProperties"]["private"]["circleback-key"]): e
        for e in fake.events(OWNER, include_cancelled=False)
        if "circleback-key" in e.get("extendedProperties", {}).get("private", {})
    }


def test_sync_writes_the_plan_into_google_then_a_quiet_cycle_costs_one_list(
    tmp_path: Path, fake_google: FakeGoogle
) -> None:
    home = setup_home(tmp_path, fake_google)
    first = run_in_process(home, "sync", check=True)
    placed = ours(fake_google)
    assert placed, first.stdout + first.stderr
    assert any(key.startswith("touchpoint:grace hopper:") for key in placed)
    assert any(key == "review:kickoff" for key in placed)

    assert "google: 2 API request(s)" in first.stdout, first.stdout  # one list, one batch of writes
    fake_google.clear_log()
    again = run_in_process(home, "sync", check=True)
    assert "google: 1 API request(s)" in again.stdout, again.stdout
    calls = fake_google.api_calls()
    writes = [c for c in calls if c.method in ("POST", "PUT", "PATCH", "DELETE")]
    assert writes == [], f"nothing changed, nothing written: {writes}\n{again.stdout}"
    assert ours(fake_google).keys() == placed.keys(), "no duplicate, nothing lost"
    status = json.loads(run_in_process(home, "status", "--json", check=True).stdout)
    assert {c["name"]: c["health"] for c in status["calendars"]}.get("google") == "ok"


def test_a_revoked_grant_is_reported_and_the_feed_goes_on(tmp_path: Path, fake_google: FakeGoogle) -> None:
    home = setup_home(tmp_path, fake_google)
    fake_google.revoke(user=OWNER)
    failed = run_in_process(home, "sync")
    assert failed.returncode == 1
    assert "re-run `circleback auth google`" in failed.stderr
    assert "Traceback" not in failed.stderr
    feed = home / "state" / "circleback" / "circleback.ics"
    assert feed.exists(), "the ICS feed is still written"


def test_a_touchpoint_the_person_deletes_in_google_is_skipped_not_recreated(
    tmp_path: Path, fake_google: FakeGoogle
) -> None:
    home = setup_home(tmp_path, fake_google)
    run_in_process(home, "sync", check=True)
    placed = ours(fake_google)
    key = sorted(k for k in placed if k.startswith("touchpoint:grace hopper:"))[1]
    fake_google.person_deletes(OWNER, str(placed[key]["id"]))
    later = sorted(k for k in placed if k.startswith("touchpoint:grace hopper:"))[2]
    event = placed[later]
    start = datetime.fromisoformat(str(event["start"]["dateTime"])) + timedelta(hours=1)  # type: ignore[index]
    end = datetime.fromisoformat(str(event["end"]["dateTime"])) + timedelta(hours=1)  # type: ignore[index]
    fake_google.person_moves(OWNER, str(event["id"]), start, end)
    summary = run_in_process(home, "sync", "--dry-run", check=True).stdout
    assert "would settle 1 skipped" in summary and "1 event(s) you moved stay where you put them" in summary
    shown = run_in_process(home, "reconcile", check=True)
    assert "skipped" in shown.stdout and "deleted or declined in google calendar" in shown.stdout
    run_in_process(home, "sync", check=True)
    assert key not in ours(fake_google), "the person's decision stands: not written again"
    agenda = json.loads(run_in_process(home, "agenda", "--json", "--days", "120", check=True).stdout)
    keys = [item["key"] for item in agenda]
    assert key not in keys and not any(k.startswith(key + "#") for k in keys)
    assert any(k.startswith("touchpoint:grace hopper:") for k in keys), "the rhythm goes on"

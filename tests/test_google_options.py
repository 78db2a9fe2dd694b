"""The `[google]` settings: exactly issue 11's keys, each problem named by where it is and the key."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from builders import london_plan

from connectors import registry
from connectors.base import Capability
from connectors.google import GoogleCalendar
from connectors.google_options import GoogleOptions, google_options


def test_defaults_follow_the_issue(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    options = google_options({}, "config.toml [google]")
    assert options == GoogleOptions()
    assert (options.calendar_id, options.busy_calendars, options.horizon) == (
        "primary",
        ("primary",),
        timedelta(weeks=8),
    )
    assert options.token_path == tmp_path / "circleback" / "google-token.json"
    assert options.service_endpoint == "https://www.googleapis.com/calendar/v3/"
    assert options.batch_uri == "https://www.googleapis.com/batch/calendar/v3"
    assert options.token_uri == "https://oauth2.googleapis.com/token" and options.invite is False


def test_every_key_is_read() -> None:
    options = google_options(
        {
            "calendar_id": "work@example.com",
            "busy_calendars": ["primary", "team@example.com"],
            "token_file": "~/token.json",
            "client_secrets": "/etc/client.json",
            "service_account_file": "/etc/account.json",
            "subject": "ada@example.com",
            "horizon": "30 days",
            "api_endpoint": "http://127.0.0.1:8080",
            "token_uri": "http://127.0.0.1:8080/token",
            "invite": True,
        },
        "x",
    )
    assert options.busy_calendars == ("primary", "team@example.com")
    assert options.token_file == Path.home() / "token.json"
    assert options.horizon == timedelta(days=30) and options.invite
    assert options.service_endpoint == "http://127.0.0.1:8080/calendar/v3/"
    assert options.batch_uri == "http://127.0.0.1:8080/batch/calendar/v3"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"calender_id": "x"}, "where: unknown key 'calender_id'"),
        ({"calendar_id": ""}, "where: calendar_id must be a non-empty string"),
        ({"busy_calendars": "primary"}, "where: busy_calendars must be a non-empty list"),
        ({"busy_calendars": ["a", "a"]}, "where: busy_calendars names a calendar twice"),
        ({"busy_calendars": ["a", 3]}, "where: busy_calendars must be a non-empty string"),
        ({"horizon": "2 fortnights"}, "where: horizon: cannot read '2 fortnights'"),
        ({"horizon": "200 weeks"}, "where: horizon: '200 weeks' is out of range"),
        ({"horizon": 8}, "where: horizon must be a non-empty string"),
        ({"api_endpoint": "www.googleapis.com"}, "where: api_endpoint must be an http(s) URL"),
        ({"token_uri": "ftp://x/token"}, "where: token_uri must be an http(s) URL"),
        ({"invite": "yes"}, "where: invite must be true or false"),
        ({"subject": "ada@example.com"}, "where: subject is only used with service_account_file"),
    ],
)
def test_bad_values_name_the_key(table: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        google_options(table, "where")
    assert str(caught.value).startswith(message), str(caught.value)


def test_the_registry_builds_the_google_back_end(tmp_path: Path) -> None:
    token = tmp_path / "token.json"
    token.write_text('{"refresh_token": "r", "client_id": "c", "client_secret": "s"}')
    google = registry.backend("google")
    assert google.check is not None and google.reads and google.writes
    settings = google.check({"token_file": str(token)}, "x")
    context = registry.Context(plan=london_plan(), state_dir=tmp_path, owner_emails=("a@x",))
    calendar = google.factory("work", {"settings": settings}, context)
    assert isinstance(calendar, GoogleCalendar) and calendar.name == "work"
    assert calendar.capabilities == {Capability.READ, Capability.WRITE, Capability.INCREMENTAL}

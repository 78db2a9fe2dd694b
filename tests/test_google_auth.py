"""`circleback auth google`, the stored token, its refresh, and the service account, against the fake."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cli_runner import xdg_env
from fake_google import FakeGoogle
from fake_google.keys import write_service_account
from google.oauth2.credentials import Credentials
from google_helpers import NOW, OWNER, WINDOW, ZONE, occurrences

from connectors.base import ConnectorError
from connectors.google import SCOPES, make_google_calendar, save_token
from connectors.google_options import google_options
from daemon.cli import main
from schedules.occurrence import revise


class CodeExchange(BaseHTTPRequestHandler):
    """Google's token endpoint for the authorization-code grant: hands out the fake's refresh token."""

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        form = urllib.parse.parse_qs(self.rfile.read(length).decode())
        server: Any = self.server
        server.forms.append(form)
        body = json.dumps(
            {
                "access_token": "from-the-code",
                "refresh_token": server.refresh_token,
                "expires_in": 3599,
                "token_type": "Bearer",
                "scope": " ".join(SCOPES),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def code_exchange(fake_google: FakeGoogle) -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), CodeExchange)
    server.forms = []  # type: ignore[attr-defined]
    server.refresh_token = fake_google.add_user(OWNER, time_zone=ZONE)  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def client_secrets(path: Path, token_uri: str) -> Path:
    path.write_text(
        json.dumps(
            {
                "installed": {
                    "client_id": "circleback-tests.apps.googleusercontent.com",
                    "client_secret": "not-checked",
                    "auth_uri": "https://accounts.google.com/o/oauth2/auth",
                    "token_uri": token_uri,
                    "redirect_uris": ["http://localhost"],
                }
            }
        )
    )
    return path


def test_auth_google_no_browser_prints_the_address_and_stores_a_private_token(
    tmp_path: Path, fake_google: FakeGoogle, code_exchange: ThreadingHTTPServer
) -> None:
    host, port = code_exchange.server_address[:2]
    secrets = client_secrets(tmp_path / "client.json", f"http://{host!s}:{port}/token")
    # The code exchange runs over plain HTTP here; oauthlib insists on HTTPS unless told otherwise.
    env = {**xdg_env(tmp_path), "OAUTHLIB_INSECURE_TRANSPORT": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "daemon.cli",
            "auth",
            "google",
            "--client-secrets",
            str(secrets),
            "--no-browser",
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        address = ""
        for line in proc.stdout:
            if line.startswith("https://"):
                address = line.strip()
                break
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(address).query)
        assert query["access_type"] == ["offline"] and "calendar" in query["scope"][0]
        redirect = query["redirect_uri"][0]
        answer = urllib.parse.urlencode({"code": "the-code", "state": query["state"][0], "scope": SCOPES[0]})
        with urllib.request.urlopen(f"{redirect}?{answer}", timeout=30) as page:
            assert b"You can close this tab" in page.read()
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    token_file = tmp_path / "config" / "circleback" / "google-token.json"
    assert f"Google token stored in {token_file}" in out
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert code_exchange.forms[0]["code"] == ["the-code"]  # type: ignore[attr-defined]
    stored = json.loads(token_file.read_text())
    assert stored["refresh_token"] == code_exchange.refresh_token  # type: ignore[attr-defined]

    # The stored token is what the connector runs on; Google's refreshes go where the config says.
    options = google_options(
        {"api_endpoint": fake_google.url, "token_uri": fake_google.token_uri, "token_file": str(token_file)},
        "test",
    )
    calendar = make_google_calendar(options, name="work", plan_timezone=ZONE, owner_emails=[OWNER])
    assert calendar.read(WINDOW).observations == ()


def test_auth_google_refuses_a_missing_or_wrong_client_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["auth", "google", "--client-secrets", str(tmp_path / "nope.json"), "--no-browser"])
    assert caught.value.code == 2 and "nope.json: no such client secrets file" in capsys.readouterr().err
    wrong = tmp_path / "wrong.json"
    wrong.write_text('{"type": "service_account"}')
    with pytest.raises(SystemExit) as caught:
        main(["auth", "google", "--client-secrets", str(wrong), "--no-browser"])
    err = capsys.readouterr().err
    assert caught.value.code == 2 and "wrong.json: not an OAuth client file" in err and "Traceback" not in err


def stored_token(tmp_path: Path, fake: FakeGoogle) -> Path:
    creds = Credentials(  # type: ignore[no-untyped-call]
        token=None,
        refresh_token=fake.add_user(OWNER, time_zone=ZONE),
        token_uri="https://oauth2.googleapis.com/token",  # ignored: the config's token_uri wins
        client_id="circleback-tests",
        client_secret="not-checked",
        scopes=SCOPES,
    )
    path = tmp_path / "token.json"
    save_token(path, creds)
    return path


def test_a_refreshed_token_is_written_back_atomically_and_stays_private(
    tmp_path: Path, fake_google: FakeGoogle
) -> None:
    path = stored_token(tmp_path, fake_google)
    first_inode = path.stat().st_ino
    assert json.loads(path.read_text()).get("token") is None
    options = google_options(
        {"api_endpoint": fake_google.url, "token_uri": fake_google.token_uri, "token_file": str(path)}, "test"
    )
    calendar = make_google_calendar(options, name="work", plan_timezone=ZONE, owner_emails=[OWNER])
    calendar.read(WINDOW)
    refreshed = json.loads(path.read_text())
    assert refreshed["token"] and refreshed["refresh_token"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.stat().st_ino != first_inode, "replaced by rename, never rewritten in place"
    assert [p.name for p in tmp_path.iterdir()] == ["token.json"], "no temporary file left behind"

    fake_google.expire_access_tokens()
    calendar.apply([])
    calendar.read(WINDOW)
    again = json.loads(path.read_text())
    assert again["token"] != refreshed["token"] and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [c.kind for c in fake_google.log].count("token") == 2


def test_a_revoked_grant_stops_that_calendar_with_the_way_out(
    tmp_path: Path, fake_google: FakeGoogle
) -> None:
    path = stored_token(tmp_path, fake_google)
    options = google_options(
        {"api_endpoint": fake_google.url, "token_uri": fake_google.token_uri, "token_file": str(path)}, "test"
    )
    fake_google.revoke(user=OWNER)
    calendar = make_google_calendar(options, name="work", plan_timezone=ZONE, owner_emails=[OWNER])
    with pytest.raises(ConnectorError) as caught:
        calendar.read(WINDOW)
    assert str(caught.value) == (
        "work: Google refused the grant (invalid_grant): re-run `circleback auth google`"
    )
    assert not caught.value.retryable


def test_a_missing_token_file_says_how_to_get_one(tmp_path: Path, fake_google: FakeGoogle) -> None:
    options = google_options({"token_file": str(tmp_path / "absent.json")}, "test")
    with pytest.raises(ConnectorError, match=r"absent\.json: re-run `circleback auth google`"):
        make_google_calendar(options, name="work", plan_timezone=ZONE, owner_emails=[OWNER])


def test_a_service_account_acts_for_its_subject(tmp_path: Path, fake_google: FakeGoogle) -> None:
    fake_google.add_user(OWNER, time_zone=ZONE)
    fake_google.add_service_account("circleback@project.iam.gserviceaccount.com")
    account = write_service_account(tmp_path / "account.json", "circleback@project.iam.gserviceaccount.com")
    options = google_options(
        {
            "api_endpoint": fake_google.url,
            "token_uri": fake_google.token_uri,
            "service_account_file": str(account),
            "subject": OWNER,
        },
        "test",
    )
    calendar = make_google_calendar(options, name="work", plan_timezone=ZONE, owner_emails=[OWNER])
    written = calendar.apply(revise({}, occurrences(1), NOW))
    assert len(written.created) == 1 and len(fake_google.events(OWNER)) == 1
    assert {c.user for c in fake_google.log if c.kind == "inner"} == {OWNER}, "acting as the subject"
    assert [c.status for c in fake_google.log if c.kind == "token"] == [200]

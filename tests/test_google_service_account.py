"""One service-account key file serves every person of an organisation: its key is parsed once per
version of the file, each person's calendar still acts as that person, and a rotated key is used at once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fake_google import FakeGoogle
from fake_google.keys import write_service_account
from google.oauth2 import service_account
from google_helpers import NOW, WINDOW, ZONE, occurrences

from connectors.base import ConnectorError
from connectors.google import load_credentials, make_google_calendar
from connectors.google_options import GoogleOptions, google_options
from schedules.occurrence import revise

PEOPLE = ("ada@example.org", "bo@example.org")


def write_account(path: Path, client_email: str, key_id: str) -> None:
    write_service_account(path, client_email, key_id=key_id)


def options(fake: FakeGoogle, account: Path, subject: str) -> GoogleOptions:
    return google_options(
        {
            "api_endpoint": fake.url,
            "token_uri": fake.token_uri,
            "service_account_file": str(account),
            "subject": subject,
        },
        "test",
    )


def test_each_person_acts_as_themselves_with_one_parsed_key(tmp_path: Path, fake_google: FakeGoogle) -> None:
    for email in PEOPLE:
        fake_google.add_user(email, time_zone=ZONE)
    fake_google.add_service_account("circleback@project.iam.gserviceaccount.com")
    account = tmp_path / "account.json"
    write_account(account, "circleback@project.iam.gserviceaccount.com", "k1")

    loaded = [load_credentials(options(fake_google, account, email)) for email in PEOPLE]
    credentials = [c for c in loaded if isinstance(c, service_account.Credentials)]
    assert len(credentials) == 2 and credentials[0].signer is credentials[1].signer
    assert [c._subject for c in credentials] == list(PEOPLE)

    for email in PEOPLE:
        calendar = make_google_calendar(
            options(fake_google, account, email),
            name="work",
            plan_timezone=ZONE,
            owner_emails=[email],
            owner=email,
        )
        assert len(calendar.apply(revise({}, occurrences(1), NOW)).created) == 1
    assert [len(fake_google.events(email)) for email in PEOPLE] == [1, 1]
    assert sorted({str(c.user) for c in fake_google.log if c.kind == "inner"}) == sorted(PEOPLE)


def test_a_rotated_key_file_is_read_again(tmp_path: Path, fake_google: FakeGoogle) -> None:
    fake_google.add_user(PEOPLE[0], time_zone=ZONE)
    fake_google.add_service_account("new@project.iam.gserviceaccount.com")
    account = tmp_path / "account.json"
    write_account(account, "old@project.iam.gserviceaccount.com", "k1")
    old = load_credentials(options(fake_google, account, PEOPLE[0]))
    assert isinstance(old, service_account.Credentials)
    assert old.service_account_email == "old@project.iam.gserviceaccount.com"

    write_account(account, "new@project.iam.gserviceaccount.com", "k2")
    stat = account.stat()
    os.utime(account, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # a coarse clock
    calendar = make_google_calendar(
        options(fake_google, account, PEOPLE[0]),
        name="work",
        plan_timezone=ZONE,
        owner_emails=[PEOPLE[0]],
        owner=PEOPLE[0],
    )
    # Only the new account may act for anyone on the fake: the old key would be refused.
    assert len(calendar.apply(revise({}, occurrences(1), NOW)).created) == 1


def test_a_persons_access_token_serves_their_next_cycles(tmp_path: Path, fake_google: FakeGoogle) -> None:
    fake_google.add_user(PEOPLE[0], time_zone=ZONE)
    fake_google.add_service_account("circleback@project.iam.gserviceaccount.com")
    account = tmp_path / "account.json"
    write_account(account, "circleback@project.iam.gserviceaccount.com", "k1")
    state: dict[str, str] = {}
    for _cycle in range(3):  # each cycle builds its calendar anew, as organisation mode does
        calendar = make_google_calendar(
            options(fake_google, account, PEOPLE[0]),
            name="work",
            plan_timezone=ZONE,
            owner_emails=[PEOPLE[0]],
            owner=PEOPLE[0],
        )
        state = dict(calendar.read(WINDOW, state).state or {})
    assert [c.status for c in fake_google.log if c.kind == "token"] == [200], "one token for three cycles"
    assert len([c for c in fake_google.log if c.kind == "api"]) == 3

    # Delegation withdrawn: the token stops working, and the next cycle says why instead of reading.
    fake_google.revoke_delegation(PEOPLE[0])
    calendar = make_google_calendar(
        options(fake_google, account, PEOPLE[0]),
        name="work",
        plan_timezone=ZONE,
        owner_emails=[PEOPLE[0]],
        owner=PEOPLE[0],
    )
    with pytest.raises(ConnectorError, match="unauthorized_client"):
        calendar.read(WINDOW, state)

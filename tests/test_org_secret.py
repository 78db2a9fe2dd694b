"""Organisation mode keeps each person's key-marker secret in the database; private files are read one way.

The race is real: separate processes, each with its own engine and connections, ask for the secrets of the
same fresh people at the same moment, and must all come back with the same ones.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from connectors.ics_feed import sign_key
from daemon.config import load_settings
from daemon.marker_secret import FILE_NAME
from daemon.org import cycle_person
from daemon.org_secret import person_marker_secret
from daemon.people import People, UnknownPerson
from daemon.private_file import read_private_file
from daemon.store import Store

REPO = Path(__file__).resolve().parents[1]
ADA_PLAN = Path(__file__).parent / "fixtures" / "plans" / "ada.yaml"
NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
PEOPLE = [f"p{n}@example.org" for n in range(12)]

_RACER = """
import sys, time
from daemon.org_secret import person_marker_secret
from daemon.store import Store
url, start, emails = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
with Store(url, migrate=False) as store:
    with store.engine.connect():
        pass  # connected before the start: the race is between the statements, not the connects
    time.sleep(max(0.0, start - time.time()))
    for email in emails:
        print(email, person_marker_secret(store.engine, email).hex())
"""


class _Refused(Exception):
    pass


def test_read_private_file_refuses_what_others_may_read_and_what_is_not_a_file(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("abc\n")
    os.chmod(path, 0o600)
    assert read_private_file(path, what="the secret", limit=2, error=_Refused) == b"ab"
    os.chmod(path, 0o640)
    with pytest.raises(_Refused, match=r"the secret is readable or writable by other users \(mode 0640\)"):
        read_private_file(path, what="the secret", limit=64, error=_Refused, remedy=", or else")
    assert read_private_file(path, what="the secret", limit=64, error=_Refused, shared_ok=True) == b"abc\n"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    started = time.monotonic()
    with pytest.raises(_Refused, match="not a regular file"):
        read_private_file(fifo, what="the secret", limit=64, error=_Refused)  # returns: no writer waited for
    assert time.monotonic() - started < 5
    with pytest.raises(FileNotFoundError):
        read_private_file(tmp_path / "absent", what="the secret", limit=64, error=_Refused)


@pytest.mark.postgres
@pytest.mark.slow
def test_replicas_starting_at_once_agree_on_each_persons_secret(postgres_url: str) -> None:
    plan = ADA_PLAN.read_text(encoding="utf-8")
    with Store(postgres_url) as store:
        for email in PEOPLE:
            People(store.engine).add(email, name=email, plan_text=plan, google_subject=None, now=NOW)
    start = time.time() + 3
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, postgres_url, str(start), *order],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for order in (PEOPLE, PEOPLE, list(reversed(PEOPLE)))
    ]
    answers = []
    for racer in racers:
        out, err = racer.communicate(timeout=60)
        assert racer.returncode == 0, err
        answers.append(dict(line.split() for line in out.splitlines()))
    assert answers[0] == answers[1] == answers[2] and set(answers[0]) == set(PEOPLE)
    assert len(set(answers[0].values())) == len(PEOPLE)  # one each, nobody shares
    with Store(postgres_url) as store, store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM marker_secret")).scalar_one() == len(PEOPLE)
        assert person_marker_secret(store.engine, PEOPLE[0]).hex() == answers[0][PEOPLE[0]]
        with pytest.raises(UnknownPerson):
            person_marker_secret(store.engine, "nobody@example.org")


def _signatures(feed: bytes) -> list[tuple[str, str]]:
    unfolded = feed.replace(b"\r\n ", b"").decode("utf-8")
    return re.findall(r"(?:X-CIRCLEBACK-KEY:|circleback-key: )([^\\\r\n]+?) sig=([0-9a-f]{32})", unfolded)


@pytest.mark.postgres
def test_a_cycle_signs_with_the_persons_own_secret_and_writes_no_secret_file(
    tmp_path: Path, postgres_url: str
) -> None:
    config = tmp_path / "org.toml"
    config.write_text(
        f'database_url = "{postgres_url}"\nstate_dir = "{tmp_path / "state"}"\n', encoding="utf-8"
    )
    settings = load_settings(config, environ={})
    plan = ADA_PLAN.read_text(encoding="utf-8")
    emails = ("ada@example.org", "bo@example.org")
    with Store(postgres_url) as store:
        for email in emails:
            People(store.engine).add(email, name=email, plan_text=plan, google_subject=None, now=NOW)
    for email in emails:
        cycle_person(settings, email, NOW)
    assert not list((tmp_path / "state").rglob(FILE_NAME)), "organisation mode keeps no secret file"
    with Store(postgres_url) as store:
        secrets = {email: person_marker_secret(store.engine, email) for email in emails}
        with store.engine.connect() as conn:
            feeds: dict[str, bytes] = dict(
                conn.execute(
                    text("SELECT o.key, f.body FROM person_feed f JOIN owner o ON o.id = f.owner_id")
                ).all()
            )
    assert secrets["ada@example.org"] != secrets["bo@example.org"]
    for email, other in (emails, tuple(reversed(emails))):
        signed = _signatures(bytes(feeds[email]))
        assert signed, "the feed carries signed markers"
        assert all(sig == sign_key(key, secrets[email]) for key, sig in signed)
        # The same keys (same plan), but another person's secret: none of these signatures would count there.
        assert all(sig != sign_key(key, secrets[other]) for key, sig in signed)

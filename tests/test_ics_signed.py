"""Only copies of touchpoints circleback itself wrote complete them: the key markers are signed.

Everything goes through real ICS text: a feed rendered with this install's secret, the copies a calendar
gives back, and spoofs written by someone else.
"""

from __future__ import annotations

import os
import shutil
import stat
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from builders import connection, london_plan
from cli_runner import run_cli
from ics_reading import parse_calendar

from connectors.base import ConnectorError
from connectors.ics_feed import FeedFile, render_feed, sign_key
from connectors.ics_source import IcsSource
from daemon.marker_secret import (
    FILE_NAME,
    MarkerSecretError,
    load_or_create_marker_secret,
    read_marker_secret,
)
from schedules.events import Interval, Snapshot
from schedules.occurrence import Occurrence, OccurrenceKind, OccurrenceStatus, Revision, occurrence_uid
from schedules.reconcile import Outcomes, TrackedOccurrence, reconcile

GRACE = connection("Grace Hopper", email="grace@example.com")
PLAN = london_plan(GRACE)
KEY = "touchpoint:grace hopper:2026-W48"
TUE_10 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)  # the touchpoint's grace period is over
WINDOW = Interval(NOW - timedelta(days=30), NOW + timedelta(days=30))
OCC = Occurrence(
    key=KEY,
    kind=OccurrenceKind.TOUCHPOINT,
    connection="Grace Hopper",
    due=date(2026, 11, 23),
    start=TUE_10,
    end=TUE_10 + timedelta(minutes=30),
    title="Nurture: Grace Hopper",
    description="Next wise action: send the article",
)
REVISION = Revision(OCC, 0, datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC))


@pytest.fixture
def secret(tmp_path: Path) -> bytes:
    return load_or_create_marker_secret(tmp_path / "state" / FILE_NAME)


def calendar(*events: str) -> bytes:
    body = "".join(
        f"BEGIN:VEVENT\r\nDTSTAMP:20261101T000000Z\r\n{event.strip()}\r\nEND:VEVENT\r\n" for event in events
    )
    text = f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\n{body}END:VCALENDAR\r\n"
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


def read(data: bytes, secret: bytes) -> Snapshot:
    return parse_calendar(data, "work", WINDOW, marker_secret=secret)


def outcome(snapshot: Snapshot) -> Outcomes:
    tracked = [TrackedOccurrence(OCC, OccurrenceStatus.PLACED)]
    return reconcile(PLAN, tracked, snapshot.observations, [], NOW)


def test_the_feed_itself_completes_its_touchpoint(secret: bytes) -> None:
    feed = render_feed([REVISION], plan=PLAN, marker_secret=secret)
    assert f"{KEY} sig={sign_key(KEY, secret)}".encode() in feed.replace(b"\r\n ", b"")
    snapshot = read(feed, secret)
    assert [o.circleback_key for o in snapshot.observations] == [KEY]
    assert snapshot.busy == (), "our own event never blocks"
    result = outcome(snapshot)
    assert result.statuses[KEY].status is OccurrenceStatus.COMPLETED
    assert [e.occurrence_key for e in result.entries] == [KEY]


def test_a_hand_made_copy_keeps_the_signed_line_and_counts_where_it_was_moved(secret: bytes) -> None:
    # "Copy to" another calendar: new UID, no X- properties, the description kept.
    marker = f"circleback-key: {KEY} sig={sign_key(KEY, secret)}"
    copy = (
        "UID:8a7d@google.com\nDTSTART:20261125T150000Z\nDTEND:20261125T153000Z\nSUMMARY:Nurture: Grace\n"
        f"DESCRIPTION:Next wise action: send the article\\n\\n{marker}"
    )
    result = outcome(read(calendar(copy), secret))
    assert result.statuses[KEY].status is OccurrenceStatus.COMPLETED
    assert result.statuses[KEY].at == datetime(2026, 11, 25, 15, 0, tzinfo=UTC)


OTHER_INSTALL = bytes(32)
SPOOFS = {
    "unsigned description line": f"UID:spoof@evil.example\nDESCRIPTION:hi\\n\\ncircleback-key: {KEY}",
    "unsigned X- property": f"UID:spoof@evil.example\nX-CIRCLEBACK-KEY:{KEY}",
    "another install's signature": (
        f"UID:spoof@evil.example\nX-CIRCLEBACK-KEY:{KEY} sig={sign_key(KEY, OTHER_INSTALL)}"
    ),
    "a made-up signature": f"UID:spoof@evil.example\nDESCRIPTION:circleback-key: {KEY} sig={'0' * 32}",
}


@pytest.mark.parametrize("name", sorted(SPOOFS))
def test_a_spoofed_marker_is_an_ordinary_event(name: str, secret: bytes) -> None:
    spoof = f"{SPOOFS[name]}\nDTSTART:20261124T100000Z\nDTEND:20261124T103000Z\nSUMMARY:Nurture: Grace Hopper"
    snapshot = read(calendar(spoof), secret)
    (observation,) = snapshot.observations
    assert observation.circleback_key is None
    assert [(b.start, b.end) for b in snapshot.busy] == [(TUE_10, TUE_10 + timedelta(minutes=30))]
    result = outcome(snapshot)
    assert result.statuses[KEY].status is OccurrenceStatus.MISSED
    assert result.entries == ()


def test_a_signature_copied_from_another_key_does_not_fit(secret: bytes) -> None:
    other = "touchpoint:grace hopper:2026-W40"
    spoof = (
        f"UID:spoof@x\nX-CIRCLEBACK-KEY:{KEY} sig={sign_key(other, secret)}\n"
        "DTSTART:20261124T100000Z\nDTEND:20261124T103000Z"
    )
    (observation,) = read(calendar(spoof), secret).observations
    assert observation.circleback_key is None


def test_our_uid_alone_does_not_complete_a_touchpoint(secret: bytes) -> None:
    # Anyone who can guess the key can compute the UID (schedules.occurrence.occurrence_uid).
    guessed = f"UID:{occurrence_uid(KEY)}\nDTSTART:20261124T100000Z\nDTEND:20261124T103000Z\nSUMMARY:Hi"
    result = outcome(read(calendar(guessed), secret))
    assert result.statuses[KEY].status is OccurrenceStatus.MISSED
    assert result.entries == ()


def test_another_installs_feed_is_not_ours(secret: bytes) -> None:
    theirs = render_feed([REVISION], plan=PLAN, marker_secret=OTHER_INSTALL)
    (observation,) = read(theirs, secret).observations
    assert observation.circleback_key is None


def test_the_feed_file_signs_with_the_secret_it_is_given(tmp_path: Path, secret: bytes) -> None:
    path = tmp_path / "feed.ics"
    applied = FeedFile(path, plan=PLAN, marker_secret=lambda: secret).apply([REVISION])
    assert applied.created == (KEY,), "keys are reported without their signature"
    assert path.read_bytes() == render_feed([REVISION], plan=PLAN, marker_secret=secret)
    again = FeedFile(path, plan=PLAN, marker_secret=lambda: secret).apply([REVISION])
    assert again.created == again.updated == again.removed == ()


# --- the secret file ---------------------------------------------------------------------------------


def test_the_secret_is_made_once_private_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "new" / "state" / FILE_NAME
    first = load_or_create_marker_secret(path)
    assert len(first) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_or_create_marker_secret(path) == first == read_marker_secret(path)


def test_a_secret_others_can_read_is_refused_without_showing_it(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    secret = load_or_create_marker_secret(path)
    os.chmod(path, 0o644)
    with pytest.raises(MarkerSecretError, match="readable or writable by other users") as info:
        read_marker_secret(path)
    assert secret.hex() not in str(info.value)


def test_a_damaged_secret_is_refused_without_showing_it(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    path.write_text("not-a-secret-but-close-0123456789\n")
    os.chmod(path, 0o600)
    with pytest.raises(MarkerSecretError, match="not 64 lower-case hexadecimal digits") as info:
        read_marker_secret(path)
    assert "close" not in str(info.value)


ADA = Path(__file__).parent / "fixtures" / "plans" / "ada.yaml"


def test_feed_export_signs_its_markers_with_the_installs_secret(tmp_path: Path) -> None:
    for sub in ("config", "data", "state"):
        (tmp_path / sub).mkdir()
    plan = tmp_path / "plan.yaml"
    shutil.copy(ADA, plan)
    feed = tmp_path / "feed.ics"
    proc = run_cli(tmp_path, "feed", "export", "--plan", str(plan), "-o", str(feed), now=NOW)
    secret_file = tmp_path / "state" / "circleback" / FILE_NAME
    secret = read_marker_secret(secret_file)
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert secret.hex() not in proc.stdout + proc.stderr
    observations = read(feed.read_bytes(), secret).observations
    assert observations and all(o.circleback_key for o in observations)
    assert all(o.circleback_key is None for o in read(feed.read_bytes(), OTHER_INSTALL).observations)


def test_an_unusable_secret_is_a_calendar_error_naming_the_file(tmp_path: Path, secret: bytes) -> None:
    path = tmp_path / "state" / FILE_NAME
    os.chmod(path, 0o644)
    feed = tmp_path / "feed.ics"

    def load() -> bytes:
        return read_marker_secret(path)

    with pytest.raises(ConnectorError, match=f"feed: cannot sign the feed's events: {path}: ") as written:
        FeedFile(feed, plan=PLAN, marker_secret=load).apply([REVISION])
    assert not feed.exists(), "nothing half-written"
    source_file = tmp_path / "work.ics"
    source_file.write_bytes(calendar("UID:a@x\nDTSTART:20261124T100000Z\nDTEND:20261124T103000Z"))
    source = IcsSource("work", str(source_file), cache_dir=tmp_path / "cache", marker_secret=load)
    reason = f"work: cannot check copies of circleback's events: {path}: "
    with pytest.raises(ConnectorError, match=reason) as read_:
        source.read(WINDOW)
    assert secret.hex() not in str(written.value) + str(read_.value)

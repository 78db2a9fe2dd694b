"""The Google Calendar connector through the real google-api-python-client against the fake server."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from fake_google import FakeGoogle
from google_helpers import NOW, OWNER, WINDOW, Keeper, connector, kinds, occurrences, user_credentials

from connectors.base import ConnectorError, Outcome
from connectors.google import KEY_PROPERTY, event_id
from schedules.events import PartStat
from schedules.occurrence import occurrence_uid


def test_first_placement_is_one_batch_and_nothing_changed_is_one_list(fake_google: FakeGoogle) -> None:
    keeper = Keeper(connector(fake_google))
    desired = occurrences(5)
    keeper.read()
    fake_google.clear_log()
    applied = keeper.apply(desired)
    assert set(applied.created) == {o.key for o in desired} and not applied.failed
    assert kinds(fake_google) == {"batch": 1, "inner": 5}
    stored = {e["id"]: e for e in fake_google.events(OWNER)}
    for occ in desired:
        event = stored[event_id("default", occ.key)]
        assert event["extendedProperties"]["private"][KEY_PROPERTY] == occ.key
        assert event["summary"] == occ.title

    keeper.read()  # sees its own writes once
    fake_google.clear_log()
    snapshot = keeper.read()
    again = keeper.apply(desired)
    assert kinds(fake_google) == {"api": 1}, "nothing changed: one list, no writes"
    assert fake_google.log[0].path.endswith("/events") and "syncToken" in fake_google.log[0].query
    assert {r.action for r in again.results} == {"keep"} and not again.created
    ours = {o.circleback_key: o for o in snapshot.observations}
    assert set(ours) == {o.key for o in desired}
    assert ours[desired[0].key].uid == occurrence_uid(desired[0].key)
    assert ours[desired[0].key].start == desired[0].start
    assert snapshot.busy == (), "circleback's own events never block"


def test_the_persons_moves_deletions_and_declines_are_observed(fake_google: FakeGoogle) -> None:
    keeper = Keeper(connector(fake_google))
    moved, deleted, declined, met, free = desired = occurrences(5)
    keeper.read()
    keeper.apply(desired)
    keeper.read()
    new_start = moved.start + timedelta(days=1, hours=3)
    fake_google.person_moves(OWNER, event_id("default", moved.key), new_start, new_start + timedelta(hours=1))
    fake_google.person_deletes(OWNER, event_id("default", deleted.key))
    fake_google.person_declines(OWNER, event_id("default", declined.key))
    fake_google.attendee_responds(OWNER, event_id("default", met.key), "Grace@Example.com", "declined")
    fake_google.person_marks_free(OWNER, event_id("default", free.key))
    fake_google.clear_log()

    snapshot = keeper.read()
    assert kinds(fake_google) == {"api": 1}
    seen = {o.circleback_key: o for o in snapshot.observations}
    assert (seen[moved.key].start, seen[moved.key].end) == (new_start, new_start + timedelta(hours=1))
    assert not seen[moved.key].cancelled
    assert seen[deleted.key].cancelled, "a deleted own event is reported, so the core records it skipped"
    assert seen[declined.key].cancelled, "one the person declined did not happen either"
    assert not seen[met.key].cancelled
    assert [(a.email, a.partstat) for a in seen[met.key].attendees] == [
        ("grace@example.com", PartStat.DECLINED)
    ]
    assert seen[free.key].transparent
    # Nothing was desired differently: the person's edits are not written over, no write at all.
    fake_google.clear_log()
    keeper.apply(desired)
    assert kinds(fake_google) == {}


def test_a_meeting_with_attendees_is_observed_and_blocks(fake_google: FakeGoogle) -> None:
    keeper = Keeper(connector(fake_google))
    start = NOW + timedelta(days=2)
    fake_google.person_inserts(
        OWNER,
        {
            "summary": "1:1 with Grace",
            "start": {"dateTime": start.isoformat()},
            "end": {"dateTime": (start + timedelta(hours=1)).isoformat()},
            "attendees": [{"email": "grace@example.com", "responseStatus": "accepted"}],
        },
    )
    vendor = start + timedelta(days=1)
    fake_google.person_inserts(
        OWNER,
        {
            "summary": "Vendor pitch",
            "start": {"dateTime": vendor.isoformat()},
            "end": {"dateTime": (vendor + timedelta(hours=1)).isoformat()},
            "attendees": [{"email": OWNER, "responseStatus": "declined"}],
        },
    )
    snapshot = keeper.read()
    (meeting,) = snapshot.observations
    assert meeting.summary == "1:1 with Grace" and meeting.circleback_key is None
    assert meeting.attendees[0].partstat is PartStat.ACCEPTED
    assert [(b.start, b.end) for b in snapshot.busy] == [(start, start + timedelta(hours=1))]


def test_a_lost_sync_token_costs_one_full_read_and_loses_nothing(fake_google: FakeGoogle) -> None:
    keeper = Keeper(connector(fake_google))
    desired = occurrences(3)
    keeper.read()
    keeper.apply(desired)
    before = keeper.read()
    fake_google.invalidate_sync_tokens()
    fake_google.clear_log()
    after = keeper.read()
    assert [c.status for c in fake_google.log] == [410, 200]
    assert "syncToken" not in fake_google.log[1].query
    assert after.observations == before.observations
    fake_google.clear_log()
    keeper.read()
    assert [c.status for c in fake_google.log] == [200] and "syncToken" in fake_google.log[0].query


@pytest.mark.parametrize("kind", ["429", "rateLimitExceeded", "userRateLimitExceeded", "500", "503"])
def test_retryable_faults_inside_a_batch_are_retried_alone(fake_google: FakeGoogle, kind: str) -> None:
    keeper = Keeper(connector(fake_google))
    desired = occurrences(6)
    fake_google.faults.fail_next(2, kind, targets=("inner",))
    applied = keeper.apply(desired)
    assert not applied.failed and len(applied.created) == 6
    counts = kinds(fake_google)
    assert counts["batch"] == 2 and counts["inner"] == 8, "only the two failed calls go again"
    assert len(fake_google.events(OWNER)) == 6


def test_a_failing_batch_envelope_and_a_dropped_connection_are_retried(fake_google: FakeGoogle) -> None:
    keeper = Keeper(connector(fake_google))
    fake_google.faults.fail_next(1, "503", targets=("batch",))
    fake_google.faults.drop_next(2, targets=("batch",))
    applied = keeper.apply(occurrences(4))
    assert not applied.failed and len(applied.created) == 4
    assert len(fake_google.events(OWNER)) == 4


def test_quota_exceeded_fails_that_event_alone_and_is_not_retried(fake_google: FakeGoogle) -> None:
    keeper = Keeper(connector(fake_google))
    desired = occurrences(4)
    fake_google.faults.fail_next(1, "quotaExceeded", targets=("inner",))
    applied = keeper.apply(desired)
    (failure,) = applied.failed
    assert "403" in failure.reason and "quotaExceeded" in failure.reason and failure.placement is None
    assert kinds(fake_google) == {"batch": 1, "inner": 4, "token": 1}
    assert len(applied.created) == 3
    fake_google.clear_log()
    retried = keeper.apply(desired)
    assert retried.created == (failure.key,) and kinds(fake_google) == {"batch": 1, "inner": 1}


def test_other_client_errors_are_reported_per_event(fake_google: FakeGoogle) -> None:
    keeper = Keeper(connector(fake_google))
    desired = occurrences(2)
    keeper.apply(desired)
    # A placement the calendar does not know (deleted outright by an admin): 404 on update.
    gone = dataclasses.replace(keeper.placements[desired[0].key], remote_id="unknownid0")
    keeper.placements[desired[0].key] = gone
    moved = [dataclasses.replace(o, title=o.title + " (moved)") for o in desired]
    applied = keeper.apply(moved)
    (failure,) = applied.failed
    assert failure.key == desired[0].key and "404" in failure.reason and not failure.retryable
    assert applied.updated == (desired[1].key,)


def test_a_retry_after_a_crash_never_duplicates(fake_google: FakeGoogle) -> None:
    calendar = connector(fake_google)
    desired = occurrences(3)
    first = Keeper(calendar)
    first.apply(desired)
    # The store lost what it placed (a crash before the commit): the same writes again.
    again = Keeper(calendar).apply(desired)
    assert set(again.created) == {o.key for o in desired} and not again.failed
    assert len(fake_google.events(OWNER)) == 3
    # A deleted event keeps its id: inserting it again is a 409, and it is brought back instead.
    fake_google.person_deletes(OWNER, event_id("default", desired[0].key))
    revived = Keeper(calendar).apply(desired)
    assert desired[0].key in revived.created and not revived.failed
    assert fake_google.event(OWNER, event_id("default", desired[0].key))["status"] == "confirmed"
    assert len(fake_google.events(OWNER)) == 3


def test_only_circleback_events_are_changed_or_deleted(fake_google: FakeGoogle) -> None:
    keeper = Keeper(connector(fake_google))
    start = NOW + timedelta(days=1, hours=2)
    theirs = fake_google.person_inserts(
        OWNER,
        {
            "summary": "Nurture: grace #0",
            "start": {"dateTime": start.isoformat()},
            "end": {"dateTime": (start + timedelta(minutes=30)).isoformat()},
        },
    )
    desired = occurrences(2)
    keeper.apply(desired)
    removed = keeper.apply([])
    assert set(removed.removed) == {o.key for o in desired}
    live = fake_google.events(OWNER, include_cancelled=False)
    assert [e["id"] for e in live] == [theirs["id"]]
    # What circleback deleted itself is not reported as the person deleting it.
    snapshot = keeper.read()
    assert [o.uid for o in snapshot.observations] == [theirs["iCalUID"]]


def test_only_occurrences_inside_the_horizon_are_written(fake_google: FakeGoogle) -> None:
    keeper = Keeper(connector(fake_google, table={"horizon": "2 weeks"}))
    near = occurrences(2)
    far = occurrences(1, start=NOW + timedelta(weeks=3), prefix="zoe")
    applied = keeper.apply([*near, *far])
    assert set(applied.created) == {o.key for o in near}
    assert far[0].key not in {r.key for r in applied.results}, "not written yet: it stays planned"
    later = Keeper(connector(fake_google, now=NOW + timedelta(weeks=2), table={"horizon": "2 weeks"}))
    later.placements = dict(keeper.placements)
    later.revisions = dict(keeper.revisions)
    assert later.apply([*near, *far]).created == (far[0].key,)


def test_a_changed_revision_is_one_patch_in_place(fake_google: FakeGoogle) -> None:
    keeper = Keeper(connector(fake_google))
    desired = occurrences(3)
    keeper.apply(desired)
    fake_google.clear_log()
    moved = dataclasses.replace(
        desired[1], start=desired[1].start + timedelta(hours=2), end=desired[1].end + timedelta(hours=2)
    )
    applied = keeper.apply([desired[0], moved, desired[2]])
    assert applied.updated == (moved.key,)
    assert kinds(fake_google) == {"batch": 1, "inner": 1}
    assert fake_google.log[1].method == "PATCH"
    event = fake_google.event(OWNER, event_id("default", moved.key))
    assert event["start"]["timeZone"] == "Europe/London"


def test_a_revoked_grant_is_a_clear_error(fake_google: FakeGoogle) -> None:
    credentials = user_credentials(fake_google)
    keeper = Keeper(connector(fake_google, credentials))
    fake_google.revoke(user=OWNER)
    with pytest.raises(ConnectorError) as caught:
        keeper.read()
    assert "re-run `circleback auth google`" in str(caught.value) and "invalid_grant" in str(caught.value)
    assert not caught.value.retryable and caught.value.calendar == "work"
    with pytest.raises(ConnectorError, match="re-run `circleback auth google`"):
        keeper.apply(occurrences(1))


def test_a_busy_calendar_shared_for_free_busy_only_is_read_with_freebusy(fake_google: FakeGoogle) -> None:
    credentials = user_credentials(fake_google)
    fake_google.add_user("team@example.com", time_zone="UTC")
    start = NOW + timedelta(days=100)  # beyond a first 90-day chunk
    fake_google.person_inserts(
        "team@example.com",
        {
            "summary": "Team offsite",
            "start": {"dateTime": start.isoformat()},
            "end": {"dateTime": (start + timedelta(hours=3)).isoformat()},
        },
    )
    keeper = Keeper(
        connector(fake_google, credentials, table={"busy_calendars": ["primary", "team@example.com"]})
    )
    window = dataclasses.replace(WINDOW, end=NOW + timedelta(days=200))
    snapshot = keeper.read(window)
    assert [(b.start, b.end) for b in snapshot.busy] == [(start, start + timedelta(hours=3))]
    assert snapshot.observations == ()
    fake_google.clear_log()
    keeper.read(window)
    paths = sorted(c.path.rsplit("/", 1)[-1] for c in fake_google.log)
    assert paths == ["events", "freeBusy", "freeBusy", "freeBusy"], "one list, the rest in 90-day chunks"


def test_another_owners_events_in_the_same_calendar_are_not_ours(fake_google: FakeGoogle) -> None:
    credentials = user_credentials(fake_google)
    Keeper(connector(fake_google, credentials, owner="grace")).apply(occurrences(1))
    snapshot = Keeper(connector(fake_google, credentials)).read()
    (obs,) = snapshot.observations
    assert obs.circleback_key is None
    assert len(snapshot.busy) == 1
    assert all(
        r.outcome is Outcome.DONE for r in Keeper(connector(fake_google, credentials)).apply([]).results
    )


def test_following_the_persons_move_costs_no_write(fake_google: FakeGoogle) -> None:
    keeper = Keeper(connector(fake_google))
    desired = occurrences(3)
    keeper.read()
    keeper.apply(desired)
    keeper.read()
    target = desired[2]
    later = target.start + timedelta(hours=3)
    fake_google.person_moves(OWNER, event_id("default", target.key), later, later + timedelta(minutes=30))
    keeper.read()
    fake_google.clear_log()
    # The core follows the person: the occurrence is now desired where they put it.
    followed = dataclasses.replace(target, start=later, end=later + timedelta(minutes=30))
    applied = keeper.apply([*desired[:2], followed])
    assert kinds(fake_google) == {}, "the calendar already shows it"
    result = next(r for r in applied.results if r.key == target.key)
    assert result.action == "keep" and result.placement is not None and result.placement.sequence == 1
    # A later real change is still written.
    retitled = dataclasses.replace(followed, title="Nurture: grace, again")
    assert keeper.apply([*desired[:2], retitled]).updated == (target.key,)


def test_every_page_is_read_full_and_incremental(fake_google: FakeGoogle) -> None:
    keeper = Keeper(connector(fake_google, page_size=2))
    desired = occurrences(5)
    keeper.apply(desired)
    fake_google.clear_log()
    assert len(keeper.read().observations) == 5
    assert [c.query.get("pageToken") is not None for c in fake_google.log] == [False, True, True]
    moved = [dataclasses.replace(o, title=o.title + "!") for o in desired[:3]]
    keeper.apply([*moved, *desired[3:]])
    fake_google.clear_log()
    snapshot = keeper.read()
    assert len(fake_google.log) == 2 and all("syncToken" in c.query for c in fake_google.log)
    assert sorted(o.summary for o in snapshot.observations) == sorted(
        [o.title for o in moved] + [o.title for o in desired[3:]]
    )


def test_with_invite_the_contact_is_invited_and_their_answer_is_read(fake_google: FakeGoogle) -> None:
    calendar = connector(fake_google, table={"invite": True})
    calendar.contact_emails = {"grace": "grace@example.com"}
    keeper = Keeper(calendar)
    (touchpoint,) = occurrences(1)
    keeper.apply([touchpoint])
    inserted = next(c for c in fake_google.log if c.kind == "inner")
    assert inserted.query.get("sendUpdates") == ["all"]
    stored = fake_google.event(OWNER, event_id("default", touchpoint.key))
    assert [a["email"] for a in stored["attendees"]] == ["grace@example.com"]
    fake_google.attendee_responds(OWNER, stored["id"], "grace@example.com", "declined")
    (obs,) = keeper.read().observations
    assert obs.circleback_key == touchpoint.key and not obs.cancelled
    assert [(a.email, a.partstat) for a in obs.attendees] == [("grace@example.com", PartStat.DECLINED)]

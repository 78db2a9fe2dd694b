"""The fake Google Calendar behaves like Google, as seen through the real google-api-python-client.

Every test drives tests/fake_google with `googleapiclient.discovery.build(..., static_discovery=True)`
pointed at it by `client_options={"api_endpoint": ...}`, `BatchHttpRequest(batch_uri=...)` and
google-auth `Credentials(token_uri=...)`: what these tests accept is what a connector built on that
library will see.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httplib2
import pytest
from fake_google import FakeGoogle
from fake_google.keys import service_account_info
from google.auth.exceptions import RefreshError
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from googleapiclient.http import BatchHttpRequest

OWNER = "ada@example.com"
CONTACT = "grace@example.com"
SCOPES = ["https://www.googleapis.com/auth/calendar"]
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parent.parent


def credentials(fake: FakeGoogle, refresh_token: str) -> Credentials:
    return Credentials(  # type: ignore[no-untyped-call]
        token=None,
        refresh_token=refresh_token,
        token_uri=fake.token_uri,
        client_id="client-id.apps.googleusercontent.com",
        client_secret="client-secret",
        scopes=SCOPES,
    )


def service_for(fake: FakeGoogle, creds: Credentials) -> Any:
    return build(
        "calendar",
        "v3",
        credentials=creds,
        static_discovery=True,
        cache_discovery=False,
        client_options={"api_endpoint": fake.api_endpoint},
    )


@pytest.fixture
def calendar(fake_google: FakeGoogle) -> Any:
    """The real client, authorised as OWNER through the fake's token endpoint."""
    return service_for(fake_google, credentials(fake_google, fake_google.add_user(OWNER)))


def timed(start: datetime, minutes: int = 30, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "summary": "Coffee",
        "start": {"dateTime": start.isoformat(), "timeZone": "UTC"},
        "end": {"dateTime": (start + timedelta(minutes=minutes)).isoformat(), "timeZone": "UTC"},
    }
    body.update(extra)
    return body


def error_reason(error: HttpError) -> str:
    details = error.error_details
    assert isinstance(details, list), details
    return str(details[0]["reason"])


def list_all(calendar: Any, **params: Any) -> tuple[list[dict[str, Any]], str, int]:
    """All pages of events.list: items, the nextSyncToken of the last page, pages read."""
    items: list[dict[str, Any]] = []
    page_token = None
    pages = 0
    while True:
        page = calendar.events().list(calendarId="primary", pageToken=page_token, **params).execute()
        pages += 1
        items.extend(page.get("items", []))
        page_token = page.get("nextPageToken")
        if page_token is None:
            assert "nextSyncToken" in page
            return items, page["nextSyncToken"], pages
        assert "nextSyncToken" not in page


# --- events: insert, get, update, patch, delete -------------------------------------------------------


def test_insert_with_client_id_then_get_returns_the_event_with_metadata(calendar: Any) -> None:
    body = timed(T0, attendees=[{"email": CONTACT}], extendedProperties={"private": {"circleback-key": "k1"}})
    created = calendar.events().insert(calendarId="primary", body={"id": "abc0123v", **body}).execute()

    fetched = calendar.events().get(calendarId="primary", eventId="abc0123v").execute()

    assert fetched["id"] == created["id"] == "abc0123v"
    assert fetched["etag"] == created["etag"]
    assert fetched["status"] == "confirmed"
    assert fetched["sequence"] == 0
    assert fetched["organizer"] == {"email": OWNER, "self": True}
    assert fetched["attendees"] == [{"email": CONTACT, "responseStatus": "needsAction"}]
    assert fetched["extendedProperties"]["private"] == {"circleback-key": "k1"}
    assert fetched["updated"].endswith("Z")
    assert fetched["eventType"] == "default"


@pytest.mark.parametrize("bad_id", ["abcd", "ABCDEF", "abcdw", "abc-def", "x" * 6, "a" * 1025])
def test_insert_rejects_ids_that_are_not_base32hex_of_5_to_1024_chars(calendar: Any, bad_id: str) -> None:
    with pytest.raises(HttpError) as raised:
        calendar.events().insert(calendarId="primary", body={"id": bad_id, **timed(T0)}).execute()

    assert raised.value.status_code == 400
    assert error_reason(raised.value) == "invalid"


def test_insert_accepts_the_longest_and_shortest_valid_ids(calendar: Any) -> None:
    for event_id in ("0v0v0", "a" * 1024):
        created = calendar.events().insert(calendarId="primary", body={"id": event_id, **timed(T0)}).execute()
        assert created["id"] == event_id


def test_insert_of_an_existing_id_is_409_duplicate_even_after_delete(calendar: Any) -> None:
    calendar.events().insert(calendarId="primary", body={"id": "dup00001", **timed(T0)}).execute()
    with pytest.raises(HttpError) as first:
        calendar.events().insert(calendarId="primary", body={"id": "dup00001", **timed(T0)}).execute()
    calendar.events().delete(calendarId="primary", eventId="dup00001").execute()
    with pytest.raises(HttpError) as after_delete:
        calendar.events().insert(calendarId="primary", body={"id": "dup00001", **timed(T0)}).execute()

    for raised in (first, after_delete):
        assert raised.value.status_code == 409
        assert error_reason(raised.value) == "duplicate"
        assert raised.value.reason == "The requested identifier already exists."


def test_a_deleted_event_is_still_readable_cancelled_and_update_revives_it(calendar: Any) -> None:
    calendar.events().insert(calendarId="primary", body={"id": "gone0001", **timed(T0)}).execute()
    calendar.events().delete(calendarId="primary", eventId="gone0001").execute()

    cancelled = calendar.events().get(calendarId="primary", eventId="gone0001").execute()
    revived = calendar.events().update(calendarId="primary", eventId="gone0001", body=timed(T0)).execute()

    assert cancelled["status"] == "cancelled"
    assert revived["status"] == "confirmed"


def test_deleting_twice_is_410_deleted(calendar: Any) -> None:
    calendar.events().insert(calendarId="primary", body={"id": "gone0002", **timed(T0)}).execute()
    calendar.events().delete(calendarId="primary", eventId="gone0002").execute()

    with pytest.raises(HttpError) as raised:
        calendar.events().delete(calendarId="primary", eventId="gone0002").execute()

    assert raised.value.status_code == 410
    assert error_reason(raised.value) == "deleted"


def test_unknown_event_and_unknown_calendar_are_404_not_found(calendar: Any) -> None:
    with pytest.raises(HttpError) as event:
        calendar.events().get(calendarId="primary", eventId="nothere01").execute()
    with pytest.raises(HttpError) as other_calendar:
        calendar.events().list(calendarId="someone@example.com").execute()

    for raised in (event, other_calendar):
        assert raised.value.status_code == 404
        assert error_reason(raised.value) == "notFound"


def test_every_change_gets_a_new_etag_and_updated_and_time_changes_bump_sequence(calendar: Any) -> None:
    first = calendar.events().insert(calendarId="primary", body={"id": "etag0001", **timed(T0)}).execute()
    renamed = (
        calendar.events().patch(calendarId="primary", eventId="etag0001", body={"colorId": "5"}).execute()
    )
    moved = (
        calendar.events()
        .update(calendarId="primary", eventId="etag0001", body=timed(T0 + timedelta(hours=2)))
        .execute()
    )

    assert len({first["etag"], renamed["etag"], moved["etag"]}) == 3
    assert first["updated"] <= renamed["updated"] <= moved["updated"]
    assert (first["sequence"], renamed["sequence"], moved["sequence"]) == (0, 0, 1)
    assert moved["start"]["dateTime"].startswith("2026-12-01T11:00")


def test_patch_merges_objects_and_update_replaces_the_event(calendar: Any) -> None:
    body = timed(T0, description="context", extendedProperties={"private": {"a": "1"}})
    calendar.events().insert(calendarId="primary", body={"id": "patch001", **body}).execute()

    patched = (
        calendar.events()
        .patch(calendarId="primary", eventId="patch001", body={"extendedProperties": {"private": {"b": "2"}}})
        .execute()
    )
    updated = calendar.events().update(calendarId="primary", eventId="patch001", body=timed(T0)).execute()

    assert patched["extendedProperties"]["private"] == {"a": "1", "b": "2"}
    assert patched["description"] == "context"
    assert "description" not in updated and "extendedProperties" not in updated


def test_update_with_a_stale_etag_is_412(calendar: Any, fake_google: FakeGoogle) -> None:
    created = calendar.events().insert(calendarId="primary", body={"id": "cond0001", **timed(T0)}).execute()
    fake_google.person_marks_free(OWNER, "cond0001")
    request = calendar.events().update(calendarId="primary", eventId="cond0001", body=timed(T0))
    request.headers["If-Match"] = created["etag"]

    with pytest.raises(HttpError) as raised:
        request.execute()

    assert raised.value.status_code == 412


def test_all_day_and_timed_events_with_event_types_and_transparency(calendar: Any) -> None:
    all_day = {"start": {"date": "2026-12-24"}, "end": {"date": "2026-12-25"}, "transparency": "transparent"}
    focus = timed(T0, eventType="focusTime")
    away = timed(T0 + timedelta(days=1), minutes=480, eventType="outOfOffice")
    for event_id, body in (("alld0001", all_day), ("focus001", focus), ("ooo00001", away)):
        calendar.events().insert(calendarId="primary", body={"id": event_id, **body}).execute()

    got = {e["id"]: e for e in calendar.events().list(calendarId="primary").execute()["items"]}

    assert (
        got["alld0001"]["start"] == {"date": "2026-12-24"}
        and got["alld0001"]["transparency"] == "transparent"
    )
    assert got["focus001"]["eventType"] == "focusTime"
    assert got["ooo00001"]["eventType"] == "outOfOffice"
    with pytest.raises(HttpError) as raised:
        calendar.events().patch(
            calendarId="primary", eventId="focus001", body={"eventType": "default"}
        ).execute()
    assert raised.value.status_code == 400


def test_end_before_start_is_400_time_range_empty(calendar: Any) -> None:
    body = timed(T0)
    body["end"] = {"dateTime": (T0 - timedelta(hours=1)).isoformat(), "timeZone": "UTC"}

    with pytest.raises(HttpError) as raised:
        calendar.events().insert(calendarId="primary", body=body).execute()

    assert error_reason(raised.value) == "timeRangeEmpty"


def test_primary_aliases_the_owner_email_and_other_calendars_are_separate(
    calendar: Any, fake_google: FakeGoogle
) -> None:
    fake_google.add_calendar("team@group.calendar.google.com", OWNER)
    calendar.events().insert(calendarId=OWNER, body={"id": "alias001", **timed(T0)}).execute()
    calendar.events().insert(
        calendarId="team@group.calendar.google.com", body={"id": "team0001", **timed(T0)}
    ).execute()

    primary = calendar.events().list(calendarId="primary").execute()["items"]
    team = calendar.events().list(calendarId="team@group.calendar.google.com").execute()["items"]

    assert [e["id"] for e in primary] == ["alias001"]
    assert [e["id"] for e in team] == ["team0001"]


# --- events.list ------------------------------------------------------------------------------------


def test_list_paginates_and_gives_the_sync_token_only_on_the_last_page(calendar: Any) -> None:
    for n in range(7):
        calendar.events().insert(calendarId="primary", body=timed(T0 + timedelta(hours=n))).execute()

    items, sync_token, pages = list_all(calendar, maxResults=3)

    assert pages == 3
    assert len({e["id"] for e in items}) == 7
    assert sync_token


def test_list_filters_by_time_window_and_orders_by_start_time(calendar: Any) -> None:
    for n in (5, 1, 3, 30):
        calendar.events().insert(
            calendarId="primary", body=timed(T0 + timedelta(hours=n), summary=f"h{n}")
        ).execute()

    page = (
        calendar.events()
        .list(
            calendarId="primary",
            timeMin=(T0 + timedelta(hours=1, minutes=30)).isoformat(),
            timeMax=(T0 + timedelta(hours=24)).isoformat(),
            singleEvents=True,
            orderBy="startTime",
        )
        .execute()
    )

    # timeMin bounds the end (exclusive): the event at 01:00-01:30 ends exactly at timeMin.
    assert [e["summary"] for e in page["items"]] == ["h3", "h5"]


def test_order_by_start_time_needs_single_events(calendar: Any) -> None:
    with pytest.raises(HttpError) as raised:
        calendar.events().list(calendarId="primary", orderBy="startTime").execute()

    assert raised.value.status_code == 400


def test_time_max_not_after_time_min_is_time_range_empty(calendar: Any) -> None:
    with pytest.raises(HttpError) as raised:
        calendar.events().list(calendarId="primary", timeMin=T0.isoformat(), timeMax=T0.isoformat()).execute()

    assert error_reason(raised.value) == "timeRangeEmpty"


def test_private_extended_property_filter_matches_all_constraints(calendar: Any) -> None:
    tagged = {"private": {"circleback-key": "k1", "owner": "ada"}}
    calendar.events().insert(calendarId="primary", body=timed(T0, extendedProperties=tagged)).execute()
    shared_only = {"shared": {"circleback-key": "k1"}}
    calendar.events().insert(calendarId="primary", body=timed(T0, extendedProperties=shared_only)).execute()
    calendar.events().insert(calendarId="primary", body=timed(T0)).execute()

    one = calendar.events().list(calendarId="primary", privateExtendedProperty="circleback-key=k1").execute()
    both = (
        calendar.events()
        .list(calendarId="primary", privateExtendedProperty=["circleback-key=k1", "owner=ada"])
        .execute()
    )
    none = (
        calendar.events()
        .list(calendarId="primary", privateExtendedProperty=["circleback-key=k1", "owner=bob"])
        .execute()
    )

    assert [e["extendedProperties"]["private"]["owner"] for e in one["items"]] == ["ada"]
    assert len(both["items"]) == 1
    assert none["items"] == []


def test_show_deleted_controls_cancelled_events_in_a_full_list(calendar: Any) -> None:
    calendar.events().insert(calendarId="primary", body={"id": "keep0001", **timed(T0)}).execute()
    calendar.events().insert(calendarId="primary", body={"id": "drop0001", **timed(T0)}).execute()
    calendar.events().delete(calendarId="primary", eventId="drop0001").execute()

    default = calendar.events().list(calendarId="primary").execute()["items"]
    with_deleted = calendar.events().list(calendarId="primary", showDeleted=True).execute()["items"]

    assert [e["id"] for e in default] == ["keep0001"]
    assert {e["id"]: e["status"] for e in with_deleted} == {"keep0001": "confirmed", "drop0001": "cancelled"}


def test_incremental_list_returns_only_changes_with_deletions_cancelled(
    calendar: Any, fake_google: FakeGoogle
) -> None:
    for event_id in ("sinc0001", "sinc0002", "sinc0003"):
        calendar.events().insert(calendarId="primary", body={"id": event_id, **timed(T0)}).execute()
    _, token, _ = list_all(calendar)
    fake_google.person_moves(OWNER, "sinc0001", T0 + timedelta(hours=3), T0 + timedelta(hours=4))
    fake_google.person_deletes(OWNER, "sinc0002")

    changes, next_token, _ = list_all(calendar, syncToken=token)
    nothing, _, _ = list_all(calendar, syncToken=next_token)

    assert {e["id"]: e["status"] for e in changes} == {"sinc0001": "confirmed", "sinc0002": "cancelled"}
    assert nothing == []
    assert next_token != token


def test_incremental_list_paginates_with_the_same_sync_token(calendar: Any) -> None:
    _, token, _ = list_all(calendar)
    for n in range(5):
        calendar.events().insert(calendarId="primary", body=timed(T0 + timedelta(hours=n))).execute()

    changes, _, pages = list_all(calendar, syncToken=token, maxResults=2)

    assert len(changes) == 5
    assert pages == 3


@pytest.mark.parametrize(
    "extra",
    [
        {"timeMin": T0.isoformat()},
        {"timeMax": T0.isoformat()},
        {"privateExtendedProperty": "circleback-key=k1"},
        {"orderBy": "updated"},
        {"q": "coffee"},
        {"updatedMin": T0.isoformat()},
        {"iCalUID": "x@google.com"},
        {"sharedExtendedProperty": "a=b"},
        {"showDeleted": False},
    ],
)
def test_sync_token_with_a_forbidden_parameter_is_400(calendar: Any, extra: dict[str, Any]) -> None:
    _, token, _ = list_all(calendar)

    with pytest.raises(HttpError) as raised:
        calendar.events().list(calendarId="primary", syncToken=token, **extra).execute()

    assert raised.value.status_code == 400


def test_invalidated_sync_token_is_410_full_sync_required(calendar: Any, fake_google: FakeGoogle) -> None:
    calendar.events().insert(calendarId="primary", body=timed(T0)).execute()
    _, token, _ = list_all(calendar)
    fake_google.invalidate_sync_tokens()

    with pytest.raises(HttpError) as raised:
        calendar.events().list(calendarId="primary", syncToken=token).execute()
    full, fresh_token, _ = list_all(calendar)
    after, _, _ = list_all(calendar, syncToken=fresh_token)

    assert raised.value.status_code == 410
    assert error_reason(raised.value) == "fullSyncRequired"
    assert len(full) == 1 and after == []


# --- recurring events ---------------------------------------------------------------------------------


def test_single_events_expands_a_weekly_rule_in_its_time_zone_and_instances_agrees(calendar: Any) -> None:
    # 10:00 Berlin every Monday: 09:00Z in winter, 08:00Z after the change to summer time on 29 March.
    body = {
        "id": "recur0001",
        "summary": "1:1",
        "start": {"dateTime": "2027-03-15T10:00:00", "timeZone": "Europe/Berlin"},
        "end": {"dateTime": "2027-03-15T10:30:00", "timeZone": "Europe/Berlin"},
        "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=4"],
    }
    calendar.events().insert(calendarId="primary", body=body).execute()

    listed = (
        calendar.events()
        .list(calendarId="primary", singleEvents=True, orderBy="startTime", timeMin="2027-03-01T00:00:00Z")
        .execute()["items"]
    )
    masters = calendar.events().list(calendarId="primary").execute()["items"]
    instances = calendar.events().instances(calendarId="primary", eventId="recur0001").execute()["items"]

    assert [e["id"] for e in listed] == [
        "recur0001_20270315T090000Z",
        "recur0001_20270322T090000Z",
        "recur0001_20270329T080000Z",
        "recur0001_20270405T080000Z",
    ]
    assert all(e["recurringEventId"] == "recur0001" and "recurrence" not in e for e in listed)
    assert listed[2]["start"] == {"dateTime": "2027-03-29T10:00:00+02:00", "timeZone": "Europe/Berlin"}
    assert [e["id"] for e in masters] == ["recur0001"] and masters[0]["recurrence"]
    assert [e["id"] for e in instances] == [e["id"] for e in listed]


def test_an_instance_can_be_moved_or_cancelled_on_its_own(calendar: Any) -> None:
    body = {
        "id": "dai10001",
        "start": {"date": "2026-12-01"},
        "end": {"date": "2026-12-02"},
        "recurrence": ["RRULE:FREQ=DAILY;COUNT=3"],
    }
    calendar.events().insert(calendarId="primary", body=body).execute()
    calendar.events().delete(calendarId="primary", eventId="dai10001_20261202").execute()

    listed = calendar.events().list(calendarId="primary", singleEvents=True).execute()["items"]
    with_deleted = (
        calendar.events().list(calendarId="primary", singleEvents=True, showDeleted=True).execute()["items"]
    )

    assert sorted(e["id"] for e in listed) == ["dai10001_20261201", "dai10001_20261203"]
    cancelled = [e for e in with_deleted if e["status"] == "cancelled"]
    assert [(e["id"], e["originalStartTime"]) for e in cancelled] == [
        ("dai10001_20261202", {"date": "2026-12-02"})
    ]


# --- freebusy -----------------------------------------------------------------------------------------


def test_freebusy_counts_opaque_events_not_cancelled_declined_or_transparent(
    calendar: Any, fake_google: FakeGoogle
) -> None:
    fake_google.add_user(CONTACT)
    for n, event_id in enumerate(("bus00001", "free0001", "decl0001", "canc0001", "over0001")):
        start = T0 + timedelta(hours=2 * n)
        body = timed(start, minutes=60, attendees=[{"email": OWNER}, {"email": CONTACT}])
        calendar.events().insert(calendarId="primary", body={"id": event_id, **body}).execute()
    fake_google.person_marks_free(OWNER, "free0001")
    fake_google.person_declines(OWNER, "decl0001")
    fake_google.person_deletes(OWNER, "canc0001")
    fake_google.attendee_responds(OWNER, "over0001", CONTACT, "declined")  # a contact declining: still busy
    overlapping = timed(T0 + timedelta(minutes=30), minutes=60)
    calendar.events().insert(calendarId="primary", body=overlapping).execute()

    answer = (
        calendar.freebusy()
        .query(
            body={
                "timeMin": T0.isoformat(),
                "timeMax": (T0 + timedelta(days=1)).isoformat(),
                "items": [{"id": "primary"}, {"id": "nobody@example.com"}, {"id": CONTACT}],
            }
        )
        .execute()
    )

    assert answer["calendars"]["primary"]["busy"] == [
        {"start": "2026-12-01T09:00:00Z", "end": "2026-12-01T10:30:00Z"},
        {"start": "2026-12-01T17:00:00Z", "end": "2026-12-01T18:00:00Z"},
    ]
    assert answer["calendars"]["nobody@example.com"]["errors"] == [{"domain": "global", "reason": "notFound"}]
    assert answer["calendars"][CONTACT]["busy"] == []


def test_freebusy_rejects_a_range_longer_than_google_accepts(calendar: Any) -> None:
    body = {"timeMin": T0.isoformat(), "timeMax": (T0 + timedelta(days=91)).isoformat(), "items": []}

    with pytest.raises(HttpError) as raised:
        calendar.freebusy().query(body=body).execute()

    assert raised.value.status_code == 400
    assert error_reason(raised.value) == "timeRangeTooLong"


# --- batch --------------------------------------------------------------------------------------------


def test_batch_of_many_inserts_with_per_part_errors_parsed_by_the_client(
    calendar: Any, fake_google: FakeGoogle
) -> None:
    calendar.events().insert(calendarId="primary", body={"id": "prior001", **timed(T0)}).execute()
    fake_google.clear_log()
    results: dict[str, tuple[Any, HttpError | None]] = {}

    def collect(request_id: str, response: Any, exception: HttpError | None) -> None:
        results[request_id] = (response, exception)

    batch = BatchHttpRequest(callback=collect, batch_uri=fake_google.batch_uri)
    for n in range(200):
        batch.add(
            calendar.events().insert(calendarId="primary", body={"id": f"batch{n:04d}", **timed(T0)}),
            request_id=f"r{n}",
        )
    batch.add(
        calendar.events().insert(calendarId="primary", body={"id": "prior001", **timed(T0)}), request_id="dup"
    )
    batch.add(
        calendar.events().insert(calendarId="primary", body={"id": "UPPER", **timed(T0)}), request_id="bad"
    )
    batch.add(calendar.events().delete(calendarId="primary", eventId="prior001"), request_id="del")
    batch.execute()

    assert all(results[f"r{n}"][0]["id"] == f"batch{n:04d}" for n in range(200))
    assert results["del"] == ("", None)  # delete has no response schema: RawModel gives ""
    duplicate, invalid = results["dup"][1], results["bad"][1]
    assert duplicate is not None and duplicate.status_code == 409 and error_reason(duplicate) == "duplicate"
    assert invalid is not None and invalid.status_code == 400
    assert [c.kind for c in fake_google.round_trips()] == ["batch"]
    inner = fake_google.api_calls()
    assert len(inner) == 203 and {c.kind for c in inner} == {"inner"}
    assert inner[0].method == "POST" and inner[0].path == "/calendar/v3/calendars/primary/events"


def test_batch_per_call_faults_surface_on_those_calls_only(calendar: Any, fake_google: FakeGoogle) -> None:
    results: dict[str, HttpError | None] = {}
    batch = BatchHttpRequest(
        callback=lambda rid, _resp, exc: results.__setitem__(rid, exc), batch_uri=fake_google.batch_uri
    )
    for n in range(4):
        batch.add(calendar.events().insert(calendarId="primary", body=timed(T0)), request_id=f"r{n}")
    fake_google.faults.fail_next(1, "rateLimitExceeded", match=lambda call: call.kind == "inner")
    fake_google.faults.fail_next(1, "500", match=lambda call: call.kind == "inner")

    batch.execute()

    failed = {rid: exc for rid, exc in results.items() if exc is not None}
    assert sorted(failed) == ["r0", "r1"]
    assert error_reason(failed["r0"]) == "rateLimitExceeded" and failed["r0"].status_code == 403
    assert failed["r1"].status_code == 500
    assert len(fake_google.events(OWNER)) == 2


def test_batch_with_more_than_1000_calls_is_refused(fake_google: FakeGoogle) -> None:
    token = fake_google.access_token(fake_google.add_user(OWNER) and OWNER)
    boundary = "b0undary"
    part = (
        f"--{boundary}\r\nContent-Type: application/http\r\nContent-ID: <x + {{n}}>\r\n\r\n"
        "GET /calendar/v3/calendars/primary/events HTTP/1.1\r\n\r\n"
    )
    body = "".join(part.format(n=n) for n in range(1001)) + f"--{boundary}--\r\n"
    request = urllib.request.Request(
        fake_google.batch_uri,
        data=body.encode(),
        method="POST",
        headers={"Content-Type": f"multipart/mixed; boundary={boundary}", "Authorization": f"Bearer {token}"},
    )

    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=10)

    assert raised.value.code == 400
    assert fake_google.api_calls() == []


# --- OAuth --------------------------------------------------------------------------------------------


def test_refresh_token_grant_gives_an_access_token_the_api_accepts(fake_google: FakeGoogle) -> None:
    creds = credentials(fake_google, fake_google.add_user(OWNER))
    service = service_for(fake_google, creds)

    service.events().list(calendarId="primary").execute()

    assert creds.token and creds.token.startswith("ya29.")
    assert [c.kind for c in fake_google.round_trips()] == ["token", "api"]


def test_revoked_grant_is_invalid_grant_refresh_error(fake_google: FakeGoogle) -> None:
    refresh_token = fake_google.add_user(OWNER)
    fake_google.revoke(refresh_token)
    service = service_for(fake_google, credentials(fake_google, refresh_token))

    with pytest.raises(RefreshError) as raised:
        service.events().list(calendarId="primary").execute()

    assert "invalid_grant" in str(raised.value)


def test_unknown_or_expired_access_token_is_401_and_the_client_refreshes(fake_google: FakeGoogle) -> None:
    creds = credentials(fake_google, fake_google.add_user(OWNER))
    service = service_for(fake_google, creds)
    service.events().list(calendarId="primary").execute()
    fake_google.expire_access_tokens()
    fake_google.clear_log()

    service.events().list(calendarId="primary").execute()

    assert [(c.kind, c.status) for c in fake_google.round_trips()] == [
        ("api", 401),
        ("token", 200),
        ("api", 200),
    ]


def test_api_without_valid_token_answers_google_401_body(fake_google: FakeGoogle) -> None:
    fake_google.add_user(OWNER)
    request = urllib.request.Request(
        fake_google.api_endpoint + "calendars/primary/events", headers={"Authorization": "Bearer nope"}
    )

    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=10)

    body = json.loads(raised.value.read())
    assert raised.value.code == 401
    assert body["error"]["errors"][0]["reason"] == "authError"
    assert body["error"]["status"] == "UNAUTHENTICATED"


def test_access_tokens_map_to_their_user(fake_google: FakeGoogle) -> None:
    grace = service_for(fake_google, credentials(fake_google, fake_google.add_user(CONTACT)))
    ada = service_for(fake_google, credentials(fake_google, fake_google.add_user(OWNER)))
    ada.events().insert(calendarId="primary", body={"id": "ada00001", **timed(T0)}).execute()

    graces_events = grace.events().list(calendarId="primary").execute()["items"]
    with pytest.raises(HttpError) as raised:
        grace.events().get(calendarId=OWNER, eventId="ada00001").execute()

    assert graces_events == []
    assert raised.value.status_code == 404


# --- faults -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "reason"),
    [
        ("429", 429, "rateLimitExceeded"),
        ("rateLimitExceeded", 403, "rateLimitExceeded"),
        ("userRateLimitExceeded", 403, "userRateLimitExceeded"),
        ("quotaExceeded", 403, "quotaExceeded"),
        ("500", 500, "backendError"),
    ],
)
def test_injected_errors_surface_as_http_error_with_googles_reason(
    calendar: Any, fake_google: FakeGoogle, kind: str, status: int, reason: str
) -> None:
    calendar.events().list(calendarId="primary").execute()
    fake_google.faults.fail_next(1, kind)

    with pytest.raises(HttpError) as raised:
        calendar.events().list(calendarId="primary").execute()
    calendar.events().list(calendarId="primary").execute()

    assert raised.value.status_code == status
    assert error_reason(raised.value) == reason


def test_client_retries_rate_limits_but_not_quota_exceeded(calendar: Any, fake_google: FakeGoogle) -> None:
    calendar.events().list(calendarId="primary").execute()
    fake_google.faults.fail_next(2, "rateLimitExceeded")
    retried = calendar.events().list(calendarId="primary")
    retried._sleep = lambda _seconds: None  # the client's own backoff hook: no real waiting in tests
    retried.execute(num_retries=3)
    fake_google.faults.fail_next(1, "quotaExceeded")

    with pytest.raises(HttpError) as raised:
        calendar.events().list(calendarId="primary").execute(num_retries=3)

    assert error_reason(raised.value) == "quotaExceeded"
    assert [c.status for c in fake_google.api_calls()] == [200, 403, 403, 200, 403]


def test_a_seeded_fraction_of_calls_fails_reproducibly(fake_google: FakeGoogle) -> None:
    def statuses() -> list[int]:
        fake_google.reset()
        service = service_for(fake_google, credentials(fake_google, fake_google.add_user(OWNER)))
        fake_google.faults.fail_fraction(0.3, seed=7)
        out = []
        for _ in range(30):
            try:
                service.events().list(calendarId="primary").execute()
                out.append(200)
            except HttpError as error:
                out.append(error.status_code)
        return out

    first, second = statuses(), statuses()

    assert first == second
    assert 3 <= sum(s != 200 for s in first) <= 18
    assert {s for s in first if s != 200} <= {429, 403, 500}


def test_dropped_connection_gets_no_answer(fake_google: FakeGoogle) -> None:
    fake_google.faults.drop_next(1)
    host, port = fake_google.url.removeprefix("http://").rstrip("/").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)

    connection.request("GET", "/calendar/v3/calendars/primary/events")
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        connection.getresponse()
    connection.close()

    assert [c.fault for c in fake_google.round_trips()] == ["drop"]


def test_dropped_connections_reach_the_client_as_connection_errors(
    calendar: Any, fake_google: FakeGoogle
) -> None:
    calendar.events().list(calendarId="primary").execute()
    # httplib2 silently retries a request once on a dropped connection: two drops reach the caller.
    fake_google.faults.drop_next(2)

    with pytest.raises((ConnectionError, httplib2.HttpLib2Error, http.client.HTTPException)):
        calendar.events().list(calendarId="primary").execute()


def test_slow_answer_is_slow_and_a_client_timeout_fires(fake_google: FakeGoogle) -> None:
    creds = credentials(fake_google, fake_google.add_user(OWNER))
    creds.refresh(google_request())  # type: ignore[no-untyped-call]
    impatient = build(
        "calendar",
        "v3",
        http=authorized_http(creds, timeout=0.3),
        static_discovery=True,
        client_options={"api_endpoint": fake_google.api_endpoint},
    )
    fake_google.faults.slow_next(1, 1.0)
    began = time.monotonic()

    with pytest.raises(TimeoutError):
        impatient.events().list(calendarId="primary").execute()
    impatient.events().list(calendarId="primary").execute()

    assert time.monotonic() - began < 5


def credentials_for_token_uri(refresh_token: str, token_uri: str) -> Credentials:
    return Credentials(  # type: ignore[no-untyped-call]
        token=None, refresh_token=refresh_token, token_uri=token_uri, client_id="c", client_secret="s"
    )


def google_request() -> Any:
    from google.auth.transport.requests import Request

    return Request()


def authorized_http(creds: Credentials, timeout: float) -> Any:
    import google_auth_httplib2

    return google_auth_httplib2.AuthorizedHttp(creds, http=httplib2.Http(timeout=timeout))


# --- the person ---------------------------------------------------------------------------------------


def test_person_hooks_change_the_event_like_the_calendar_ui(calendar: Any, fake_google: FakeGoogle) -> None:
    body = timed(T0, minutes=60, attendees=[{"email": CONTACT}])
    created = calendar.events().insert(calendarId="primary", body={"id": "person01", **body}).execute()

    fake_google.person_moves(OWNER, "person01", T0 + timedelta(days=1), T0 + timedelta(days=1, hours=1))
    fake_google.person_shortens(OWNER, "person01", T0 + timedelta(days=1, minutes=20))
    fake_google.attendee_responds(OWNER, "person01", CONTACT, "declined")
    fake_google.person_declines(OWNER, "person01")
    fake_google.person_marks_free(OWNER, "person01")
    final = calendar.events().get(calendarId="primary", eventId="person01").execute()

    assert final["start"] == {"dateTime": "2026-12-02T09:00:00+00:00", "timeZone": "UTC"}
    assert final["end"] == {"dateTime": "2026-12-02T09:20:00+00:00", "timeZone": "UTC"}
    assert {a["email"]: a["responseStatus"] for a in final["attendees"]} == {
        CONTACT: "declined",
        OWNER: "declined",
    }
    assert final["transparency"] == "transparent"
    assert final["etag"] != created["etag"] and final["sequence"] == 2


# --- stand-alone --------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["-m", "tests.fake_google"], ["tests/fake_google"]])
def test_stand_alone_server_prints_its_url_and_serves(command: list[str]) -> None:
    process = subprocess.Popen(
        [sys.executable, *command, "--port", "0", "--user", OWNER],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        user = json.loads(process.stdout.readline())
        creds = credentials_for_token_uri(user["refresh_token"], user["token_uri"])
        service = build(
            "calendar",
            "v3",
            credentials=creds,
            static_discovery=True,
            client_options={"api_endpoint": url + "calendar/v3/"},
        )
        listed = service.events().list(calendarId="primary").execute()
    finally:
        process.terminate()
        process.wait(timeout=10)

    assert url.startswith("http://127.0.0.1:")
    assert listed["items"] == []


# --- more Google behaviour the connector relies on ------------------------------------------------------


def test_service_account_with_subject_acts_as_that_user(fake_google: FakeGoogle) -> None:
    from google.oauth2 import service_account

    fake_google.add_user(OWNER)
    fake_google.add_service_account("circleback@project.iam.gserviceaccount.com")
    info = service_account_info("circleback@project.iam.gserviceaccount.com", token_uri=fake_google.token_uri)
    base = service_account.Credentials.from_service_account_info(info, scopes=SCOPES)  # type: ignore[no-untyped-call]
    as_ada = service_for(fake_google, base.with_subject(OWNER))
    as_stranger = service_for(fake_google, base.with_subject("nobody@example.com"))

    as_ada.events().insert(calendarId="primary", body={"id": "sa000001", **timed(T0)}).execute()
    with pytest.raises(RefreshError) as raised:
        as_stranger.events().list(calendarId="primary").execute()

    assert [e["id"] for e in fake_google.events(OWNER)] == ["sa000001"]
    assert "invalid_grant" in str(raised.value)


def test_incremental_single_events_carries_changed_instances_and_the_log_shows_the_token(
    calendar: Any, fake_google: FakeGoogle
) -> None:
    body = {
        "id": "recur0002",
        "start": {"dateTime": "2026-12-07T15:00:00Z", "timeZone": "UTC"},
        "end": {"dateTime": "2026-12-07T15:30:00Z", "timeZone": "UTC"},
        "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=3"],
    }
    calendar.events().insert(calendarId="primary", body=body).execute()
    _, token, _ = list_all(calendar, singleEvents=True)
    moved_at = datetime(2026, 12, 15, 9, 0, tzinfo=UTC)
    fake_google.person_moves(OWNER, "recur0002_20261214T150000Z", moved_at, moved_at + timedelta(minutes=30))
    fake_google.clear_log()

    changes, _, _ = list_all(calendar, singleEvents=True, syncToken=token)

    assert [(e["id"], e["start"]["dateTime"]) for e in changes] == [
        ("recur0002_20261214T150000Z", "2026-12-15T09:00:00+00:00")
    ]
    assert changes[0]["originalStartTime"]["dateTime"] == "2026-12-14T15:00:00+00:00"
    [call] = fake_google.api_calls()
    assert call.method == "GET" and call.query["syncToken"] == [token]


def test_api_endpoint_without_the_service_path_is_404_like_google(fake_google: FakeGoogle) -> None:
    # client_options.api_endpoint replaces rootUrl + servicePath: the root alone misses "calendar/v3/".
    creds = credentials(fake_google, fake_google.add_user(OWNER))
    wrong = build(
        "calendar",
        "v3",
        credentials=creds,
        static_discovery=True,
        client_options={"api_endpoint": fake_google.url},
    )

    with pytest.raises(HttpError) as raised:
        wrong.events().list(calendarId="primary").execute()

    assert raised.value.status_code == 404
    assert fake_google.round_trips("other")[0].path == "/calendars/primary/events"


def test_conditional_get_with_the_current_etag_is_304(calendar: Any) -> None:
    created = calendar.events().insert(calendarId="primary", body={"id": "cond0002", **timed(T0)}).execute()
    request = calendar.events().get(calendarId="primary", eventId="cond0002")
    request.headers["If-None-Match"] = created["etag"]

    with pytest.raises(HttpError) as raised:
        request.execute()

    assert raised.value.status_code == 304


def test_updated_min_lists_changes_including_deletions(calendar: Any, fake_google: FakeGoogle) -> None:
    calendar.events().insert(calendarId="primary", body={"id": "old00001", **timed(T0)}).execute()
    time.sleep(0.01)
    since = datetime.now(UTC)
    time.sleep(0.01)
    fake_google.person_deletes(OWNER, "old00001")
    calendar.events().insert(calendarId="primary", body={"id": "fresh001", **timed(T0)}).execute()

    changed = calendar.events().list(calendarId="primary", updatedMin=since.isoformat()).execute()["items"]

    assert {e["id"]: e["status"] for e in changed} == {"old00001": "cancelled", "fresh001": "confirmed"}


def test_a_shared_calendar_is_readable_by_its_reader_and_the_persons_own_events_appear(
    fake_google: FakeGoogle,
) -> None:
    grace = service_for(fake_google, credentials(fake_google, fake_google.add_user(CONTACT)))
    fake_google.add_user(OWNER)
    fake_google.add_calendar("board@group.calendar.google.com", OWNER, readers=(CONTACT,))
    meeting = timed(T0, attendees=[{"email": OWNER}, {"email": CONTACT.upper()}])
    fake_google.person_inserts("board@group.calendar.google.com", {"id": "board001", **meeting})

    seen = grace.events().list(calendarId="board@group.calendar.google.com").execute()["items"]

    assert [e["id"] for e in seen] == ["board001"]
    assert [a["email"] for a in seen[0]["attendees"]] == [OWNER, CONTACT.upper()]


def test_a_fault_on_the_batch_envelope_fails_the_whole_batch(calendar: Any, fake_google: FakeGoogle) -> None:
    batch = BatchHttpRequest(batch_uri=fake_google.batch_uri)
    batch.add(calendar.events().insert(calendarId="primary", body=timed(T0)))
    fake_google.faults.fail_next(1, "503", targets=("batch",))

    with pytest.raises(HttpError) as raised:
        batch.execute()

    assert raised.value.status_code == 503
    assert fake_google.events(OWNER) == []


def test_faults_can_target_one_kind_of_call(calendar: Any, fake_google: FakeGoogle) -> None:
    fake_google.faults.fail_next(1, "500", match=lambda call: call.method == "POST")

    listed = calendar.events().list(calendarId="primary").execute()
    with pytest.raises(HttpError) as raised:
        calendar.events().insert(calendarId="primary", body=timed(T0)).execute()

    assert listed["items"] == []
    assert raised.value.status_code == 500
    assert [(c.method, c.fault) for c in fake_google.api_calls()] == [("GET", None), ("POST", "error:500")]

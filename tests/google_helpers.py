"""Helpers for the Google connector's tests and benchmark: a connector pointed at the fake, and a tiny
stand-in for the store (placements and calendar state carried from one cycle to the next)."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from fake_google import FakeGoogle
from google.oauth2.credentials import Credentials

from connectors.base import Applied, Outcome, Placement
from connectors.google import SCOPES, GoogleCalendar
from connectors.google_options import google_options
from schedules.events import Interval, Snapshot
from schedules.occurrence import Occurrence, OccurrenceKind, Revision, revise

OWNER = "ada@example.com"
ZONE = "Europe/London"
NOW = datetime(2025, 3, 3, 8, tzinfo=UTC)
WINDOW = Interval(NOW - timedelta(days=30), NOW + timedelta(weeks=12))


def user_credentials(fake: FakeGoogle, email: str = OWNER) -> Credentials:
    refresh_token = fake.add_user(email, time_zone=ZONE)
    return Credentials(  # type: ignore[no-untyped-call]
        token=None,
        refresh_token=refresh_token,
        token_uri=fake.token_uri,
        client_id="circleback-tests",
        client_secret="not-checked",
        scopes=SCOPES,
    )


def connector(
    fake: FakeGoogle,
    credentials: Credentials | None = None,
    *,
    now: datetime = NOW,
    table: Mapping[str, Any] | None = None,
    owner: str = "default",
    page_size: int = 2500,
) -> GoogleCalendar:
    options = google_options(
        {"api_endpoint": fake.url, "token_uri": fake.token_uri, "horizon": "8 weeks", **(table or {})}, "test"
    )
    return GoogleCalendar(
        "work",
        options,
        credentials=credentials if credentials is not None else user_credentials(fake),
        plan_timezone=ZONE,
        owner_emails=[OWNER],
        owner=owner,
        clock=lambda: now,
        sleep=lambda seconds: None,  # backoff is exercised, not waited for
        rng=random.Random(7),
        page_size=page_size,
    )


def occurrences(count: int, *, start: datetime = NOW, prefix: str = "grace") -> list[Occurrence]:
    """`count` half-hour touchpoints on consecutive working days at 10:00 UTC."""
    out = []
    day = start.replace(hour=10, minute=0)
    for index in range(count):
        when = day + timedelta(days=index + 1)
        out.append(
            Occurrence(
                key=f"touchpoint:{prefix}:{index}",
                kind=OccurrenceKind.TOUCHPOINT,
                connection=prefix,
                due=when.date(),
                start=when,
                end=when + timedelta(minutes=30),
                title=f"Nurture: {prefix} #{index}",
                description="Send the article",
            )
        )
    return out


class Keeper:
    """What the store does for one calendar: keeps its state and placements between cycles."""

    def __init__(self, calendar: GoogleCalendar) -> None:
        self.calendar = calendar
        self.state: dict[str, str] = {}
        self.placements: dict[str, Placement] = {}
        self.revisions: dict[str, Revision] = {}

    def read(self, window: Interval = WINDOW) -> Snapshot:
        snapshot = self.calendar.read(window, self.state)
        if snapshot.state is not None:
            self.state = dict(snapshot.state)
        return snapshot

    def apply(self, desired: Sequence[Occurrence], now: datetime = NOW) -> Applied:
        revisions = revise(self.revisions, list(desired), now)
        self.revisions = {r.occurrence.key: r for r in revisions}
        applied = self.calendar.apply(revisions, placements=self.placements, state=self.state)
        if applied.state is not None:
            self.state = dict(applied.state)
        for result in applied.results:
            if result.outcome is not Outcome.DONE:
                continue
            if result.action == "delete":
                self.placements.pop(result.key, None)
            elif result.placement is not None:
                self.placements[result.key] = result.placement
        return applied


def kinds(fake: FakeGoogle) -> dict[str, int]:
    """Requests by kind since the log was cleared: HTTP round trips, and calls inside batches."""
    counts: dict[str, int] = {}
    for call in fake.log:
        counts[call.kind] = counts.get(call.kind, 0) + 1
    return counts

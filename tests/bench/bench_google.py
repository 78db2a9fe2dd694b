"""Benchmark: what the Google connector costs in requests, against the fake Calendar v3 server.

Run on demand: `.venv/bin/python tests/bench/bench_google.py [--plans 100] [--cycles 50]`.

Figures (issue 11):
1. first placement of an 8-week horizon for a five-connection plan: HTTP round trips, reads and writes
   apart, against one request per event written; the same for N plans (one calendar each);
2. a cycle with nothing changed (target: one list per calendar, no writes);
3. a cycle after the person moved three events;
4. C daily cycles with 20% of API calls failing (429 / 403 rateLimitExceeded / 500) and the sync tokens
   invalidated twice, the person moving, deleting and meeting contacts meanwhile: duplicate events and
   lost log entries (targets: zero and zero).
The connector's backoff pauses are skipped (a zero sleep) so the figures count requests, not waiting.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from fake_google import FakeGoogle  # noqa: E402
from google.oauth2.credentials import Credentials  # noqa: E402

from connectors.base import ConnectorError, Outcome, Placement  # noqa: E402
from connectors.google import KEY_PROPERTY, SCOPES, GoogleCalendar, event_id  # noqa: E402
from connectors.google_options import google_options  # noqa: E402
from schedules.events import Interval, Observation  # noqa: E402
from schedules.model import Plan  # noqa: E402
from schedules.occurrence import Occurrence, Revision, revise  # noqa: E402
from schedules.plan import parse_plan  # noqa: E402
from schedules.planner import plan_placement  # noqa: E402

PLAN = """
owner: {name: Bench Owner, email: OWNER}
timezone: Europe/London
mindset: Relationships first.
working_hours: {days: [mon, tue, wed, thu, fri], start: "09:00", end: "17:30"}
review: {every: month}
connections:
  - {name: Person Zero, email: p0@example.com, stage: nurture, every: 2 weeks, next_action: Call}
  - {name: Person One, email: p1@example.com, stage: elevate, every: 2 weeks, next_action: Lunch}
  - {name: Person Two, email: p2@example.com, stage: find, target: true, every: month, next_action: Meet}
  - {name: Person Three, email: p3@example.com, stage: nurture, every: week, next_action: Coffee}
  - {name: Person Four, email: p4@example.com, stage: nurture, every: 2 weeks, next_action: Share}
"""
NOW = datetime(2025, 3, 3, 7, tzinfo=UTC)
HORIZON = timedelta(weeks=8)
ZONE = "Europe/London"


class Owner:
    """One person: their calendar on the fake, their connector, and what the store keeps for it."""

    def __init__(self, fake: FakeGoogle, email: str) -> None:
        self.email = email
        self.plan: Plan = parse_plan(PLAN.replace("OWNER", email), "bench.yaml")
        creds = Credentials(  # type: ignore[no-untyped-call]
            token=None,
            refresh_token=fake.add_user(email, time_zone=ZONE),
            token_uri=fake.token_uri,
            client_id="bench",
            client_secret="bench",
            scopes=SCOPES,
        )
        self.now = NOW
        options = google_options({"api_endpoint": fake.url, "token_uri": fake.token_uri}, "bench")
        self.calendar = GoogleCalendar(
            "work",
            options,
            credentials=creds,
            plan_timezone=ZONE,
            owner_emails=[email],
            owner=email,
            clock=lambda: self.now,
            sleep=lambda seconds: None,
            rng=random.Random(1),
        )
        self.state: dict[str, str] = {}
        self.placements: dict[str, Placement] = {}
        self.revisions: dict[str, Revision] = {}
        self.desired: dict[str, Occurrence] = {}

    def window(self) -> Interval:
        return Interval(self.now - timedelta(days=14), self.now + HORIZON)

    def read(self) -> list[Observation]:
        snapshot = self.calendar.read(self.window(), self.state)
        if snapshot.state is not None:
            self.state = dict(snapshot.state)
        return list(snapshot.observations)

    def plan_now(self) -> None:
        """What the core would desire: past occurrences stay as they were, the future is re-planned."""
        planned = list(
            plan_placement(
                self.plan,
                interactions=(),
                reviews_done=(),
                busy=(),
                now=self.now,
                horizon=HORIZON,
                previous=self.desired,
            ).occurrences
        )
        for occ in planned:
            if occ.key not in self.desired or self.desired[occ.key].start >= self.now:
                self.desired[occ.key] = occ

    def apply(self) -> tuple[int, int]:
        revisions = revise(self.revisions, list(self.desired.values()), self.now)
        self.revisions = {r.occurrence.key: r for r in revisions}
        applied = self.calendar.apply(revisions, placements=self.placements, state=self.state)
        if applied.state is not None:
            self.state = dict(applied.state)
        for result in applied.results:
            if result.outcome is Outcome.DONE and result.action == "delete":
                self.placements.pop(result.key, None)
            elif result.outcome is Outcome.DONE and result.placement is not None:
                self.placements[result.key] = result.placement
        written = len(applied.created) + len(applied.updated) + len(applied.removed)
        return written, len(applied.failed)


def counts(fake: FakeGoogle) -> Counter[str]:
    found: Counter[str] = Counter()
    for call in fake.log:
        if call.kind == "api":
            found["read" if call.method == "GET" or call.path.endswith("freeBusy") else "write"] += 1
        else:
            found[call.kind] += 1
    return found


def trips(found: Counter[str]) -> str:
    return (
        f"reads {found['read']}, writes {found['write'] + found['batch']} "
        f"(batches {found['batch']} carrying {found['inner']} calls), token {found['token']}"
    )


def first_placement(fake: FakeGoogle, plans: int) -> list[Owner]:
    owners = [Owner(fake, f"owner{i}@example.com") for i in range(plans)]
    fake.clear_log()
    t0 = time.perf_counter()
    events = 0
    for owner in owners:
        owner.read()
        owner.plan_now()
        written, failed = owner.apply()
        assert failed == 0
        events += written
    elapsed = time.perf_counter() - t0
    found = counts(fake)
    print(
        f"first placement, {plans} plan(s), {events} events: {trips(found)}; "
        f"one request per event would be {events} writes; {elapsed:.2f} s"
    )
    return owners


def nothing_changed(fake: FakeGoogle, owner: Owner) -> None:
    owner.read()  # sees its own writes once
    fake.clear_log()
    owner.read()
    owner.plan_now()
    owner.apply()
    print(f"cycle with nothing changed: {trips(counts(fake))}")


def after_three_moves(fake: FakeGoogle, owner: Owner) -> None:
    future = sorted((k for k in owner.placements if owner.desired[k].start > owner.now), key=str)[:3]
    for key in future:
        occ = owner.desired[key]
        fake.person_moves(
            owner.email,
            event_id(owner.email, key),
            occ.start + timedelta(hours=2),
            occ.end + timedelta(hours=2),
        )
    fake.clear_log()
    observations = owner.read()
    moved = [o for o in observations if o.circleback_key in future]
    # The core follows the person: the moved occurrences are desired at their new times.
    for obs in moved:
        moved_key = obs.circleback_key
        assert moved_key is not None
        old = owner.desired[moved_key]
        owner.desired[moved_key] = Occurrence(
            moved_key,
            old.kind,
            old.connection,
            old.due,
            obs.start,
            obs.end,
            old.title,
            old.description,
        )
    owner.apply()
    print(f"cycle after the person moved 3 events ({len(moved)} seen moved): {trips(counts(fake))}")


def note_happened(
    observed: list[Observation],
    now: datetime,
    touchpoints: set[str],
    meetings: dict[str, datetime],
    meetings_seen: set[str],
) -> None:
    """What a reconcile could log from this read: own events and meetings that are over, not cancelled."""
    for obs in observed:
        if obs.end > now or obs.cancelled:
            continue
        if obs.circleback_key:
            touchpoints.add(obs.circleback_key)
        elif obs.uid in meetings:
            meetings_seen.add(obs.uid)


def stormy_cycles(cycles: int) -> None:
    with FakeGoogle() as fake:
        owner = Owner(fake, "storm@example.com")
        fake.faults.fail_fraction(0.2, ("429", "rateLimitExceeded", "500"), seed=11, targets=("api", "inner"))
        rng = random.Random(5)
        invalidate_at = {cycles // 3, 2 * cycles // 3}
        seen_after_end: set[str] = set()
        meetings: dict[str, datetime] = {}
        meetings_seen: set[str] = set()
        failed_cycles = failed_events = 0
        fake.clear_log()
        for day in range(cycles):
            owner.now = NOW + timedelta(days=day)
            if day in invalidate_at:
                fake.invalidate_sync_tokens()
            # The person: a meeting with a contact now and then, a moved or deleted touchpoint.
            if day % 4 == 1:
                start = owner.now + timedelta(hours=5)
                meeting = fake.person_inserts(
                    owner.email,
                    {
                        "summary": "Coffee with Person One",
                        "start": {"dateTime": start.isoformat()},
                        "end": {"dateTime": (start + timedelta(minutes=45)).isoformat()},
                        "attendees": [{"email": "p1@example.com", "responseStatus": "accepted"}],
                    },
                )
                meetings[meeting["iCalUID"]] = start + timedelta(minutes=45)
            future = sorted(
                k for k in owner.placements if owner.desired[k].start > owner.now + timedelta(days=1)
            )
            if future and day % 5 == 2:
                key = rng.choice(future)
                occ = owner.desired[key]
                fake.person_moves(
                    owner.email,
                    event_id(owner.email, key),
                    occ.start + timedelta(hours=1),
                    occ.end + timedelta(hours=1),
                )
            try:
                observed = owner.read()
            except ConnectorError:
                failed_cycles += 1
                continue
            note_happened(observed, owner.now, seen_after_end, meetings, meetings_seen)
            owner.plan_now()
            try:
                _written, failed = owner.apply()
                failed_events += failed
            except ConnectorError:
                failed_cycles += 1
        fake.faults.clear()
        owner.now = NOW + timedelta(days=cycles)
        note_happened(owner.read(), owner.now, seen_after_end, meetings, meetings_seen)
        live = [
            e
            for e in fake.events(owner.email, include_cancelled=False)
            if KEY_PROPERTY in e.get("extendedProperties", {}).get("private", {})
        ]
        per_key = Counter(e["extendedProperties"]["private"][KEY_PROPERTY] for e in live)
        duplicates = sum(n - 1 for n in per_key.values() if n > 1)
        due = {k for k, p in owner.placements.items() if owner.desired[k].end <= owner.now}
        lost = len(due - seen_after_end) + len(set(meetings) - meetings_seen)
        faults = sum(1 for c in fake.log if c.fault)
        print(
            f"{cycles} cycles, 20% of calls failing ({faults} faults injected), tokens invalidated twice: "
            f"duplicates {duplicates}, lost log entries {lost} "
            f"({len(due)} touchpoints passed, {len(meetings)} meetings); cycles that failed {failed_cycles}, "
            f"events failed then retried {failed_events}; {trips(counts(fake))}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--plans", type=int, default=100)
    parser.add_argument("--cycles", type=int, default=50)
    args = parser.parse_args()
    with FakeGoogle() as fake:
        (owner,) = first_placement(fake, 1)
        nothing_changed(fake, owner)
        after_three_moves(fake, owner)
    with FakeGoogle() as fake:
        first_placement(fake, args.plans)
    stormy_cycles(args.cycles)


if __name__ == "__main__":
    main()

"""Issue 9: a Hypothesis state machine drives whole cycles (as vdirsyncer's SyncMachine drives its sync)
over the in-memory calendar and the real store. The person moves, deletes and declines circleback's
events and meets a focus contact; the calendar refuses writes and heals; the clock moves; the plan is
edited. After every step:

- no two events in the calendar stand for one occurrence, and the calendar holds what the store says
  is placed there (no duplicate, nothing hidden as placed);
- no log entry is ever lost;
- a second cycle at the same moment changes nothing (no churn when nothing changed).
"""

from __future__ import annotations

import tempfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from connectors.memory import MemoryCalendar
from daemon.cycle import run_cycle
from daemon.store import Store
from schedules.events import Attendee, PartStat
from schedules.occurrence import OccurrenceStatus
from schedules.plan import parse_plan

ADA = (Path(__file__).parent / "fixtures" / "plans" / "ada.yaml").read_text()
OWNER = "ada@example.com"
START = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
HORIZON, GRACE = timedelta(weeks=6), timedelta(hours=24)


class CycleMachine(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.directory = tempfile.TemporaryDirectory()
        self.now = START
        # The store stamps what it records with the machine's clock, as the CLI's --now and the service do.
        self.store = Store(f"sqlite:///{Path(self.directory.name) / 'cb.db'}", clock=lambda: self.now)
        self.calendar = MemoryCalendar("work", owner_emails=[OWNER])
        self.plan_text = ADA
        self.parsed_text = ""
        self.grace_every = "2 weeks"
        self.logged: Counter[tuple[str, datetime]] = Counter()
        self.cycle()

    def teardown(self) -> None:
        self.store.close()
        self.directory.cleanup()

    def cycle(self) -> None:
        # As the service does: the plan is parsed again only when its text changed (the YAML parse was a
        # good part of this test's time when done before every cycle).
        if self.plan_text != self.parsed_text:
            self.plan, self.parsed_text = parse_plan(self.plan_text, "plan.yaml"), self.plan_text
        plan = self.plan
        run_cycle(
            plan,
            self.store,
            readers=[self.calendar],
            writers=[self.calendar],
            now=self.now,
            horizon=HORIZON,
            grace=GRACE,
        )

    def ours(self) -> dict[str, str]:
        return {e.uid: e.circleback_key for e in self.calendar.events.values() if e.circleback_key}

    # --- what happens -----------------------------------------------------------------------------------

    @rule(hours=st.integers(1, 80))
    def time_passes(self, hours: int) -> None:
        self.now += timedelta(hours=hours)
        self.cycle()

    @precondition(lambda self: bool(self.ours()))
    @rule(data=st.data(), shift=st.integers(-3, 3))
    def person_moves_one(self, data: st.DataObject, shift: int) -> None:
        uid = data.draw(st.sampled_from(sorted(self.ours())))
        event = self.calendar.events[uid]
        delta = timedelta(hours=shift or 1)
        self.calendar.edit_event(uid, start=event.start + delta, end=event.end + delta)
        self.cycle()

    @precondition(lambda self: bool(self.ours()))
    @rule(data=st.data())
    def person_deletes_one(self, data: st.DataObject) -> None:
        self.calendar.delete_event(data.draw(st.sampled_from(sorted(self.ours()))))
        self.cycle()

    @precondition(lambda self: bool(self.ours()))
    @rule(data=st.data())
    def person_declines_one(self, data: st.DataObject) -> None:
        uid = data.draw(st.sampled_from(sorted(self.ours())))
        self.calendar.edit_event(uid, attendees=[Attendee(OWNER, PartStat.DECLINED)])
        self.cycle()

    @rule(hours_ago=st.integers(1, 48))
    def person_meets_grace(self, hours_ago: int) -> None:
        start = self.now - timedelta(hours=hours_ago)
        self.calendar.add_event(
            start,
            start + timedelta(minutes=30),
            "Coffee",
            attendees=[Attendee(OWNER, PartStat.ACCEPTED), Attendee("grace@example.com", PartStat.ACCEPTED)],
        )
        self.cycle()

    @precondition(lambda self: bool(self.ours()))
    @rule(data=st.data())
    def calendar_refuses_one(self, data: st.DataObject) -> None:
        # The person deletes one event and the calendar refuses to write it again (a quota, a conflict).
        uid = data.draw(st.sampled_from(sorted(self.ours())))
        self.calendar.fail_writes(self.ours()[uid], "quota exceeded")
        self.calendar.delete_event(uid)
        self.cycle()

    @rule()
    def calendar_heals(self) -> None:
        self.calendar.heal()
        self.cycle()

    @rule(every=st.sampled_from(["week", "2 weeks", "month"]))
    def plan_is_edited(self, every: str) -> None:
        # Grace Hopper's cadence: her entry comes first in the plan, so hers is the first `every:` line.
        self.plan_text = self.plan_text.replace(
            f"    every: {self.grace_every}\n", f"    every: {every}\n", 1
        )
        self.grace_every = every
        self.cycle()

    # --- what must always hold ---------------------------------------------------------------------------

    @invariant()
    def one_event_per_occurrence(self) -> None:
        keys = list(self.ours().values())
        assert len(keys) == len(set(keys)), f"duplicate events: {sorted(keys)}"

    @invariant()
    def placed_means_held(self) -> None:
        held = set(self.ours().values())
        for row in self.store.occurrences([OccurrenceStatus.PLACED]):
            if row.occurrence.end > self.now:
                assert row.key in held, f"{row.key} is 'placed' but the calendar does not hold it"

    @invariant()
    def no_log_entry_is_lost(self) -> None:
        now = Counter(
            (s.interaction.connection, s.interaction.at) for s in self.store.interactions(include_undone=True)
        )
        assert not (self.logged - now), f"lost: {self.logged - now}"
        self.logged = now

    @invariant()
    def nothing_changes_when_nothing_happened(self) -> None:
        before = dict(self.calendar.events)
        stored = [(r.key, r.status, r.revision.sequence) for r in self.store.occurrences()]
        self.cycle()
        assert dict(self.calendar.events) == before, "a second cycle at the same moment changed the calendar"
        assert [(r.key, r.status, r.revision.sequence) for r in self.store.occurrences()] == stored


TestCycleMachine = CycleMachine.TestCase
TestCycleMachine.pytestmark = [pytest.mark.slow]  # type: ignore[attr-defined]
TestCycleMachine.settings = settings(
    max_examples=25, stateful_step_count=10, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

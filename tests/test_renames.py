"""Issue 9: renaming a connection keeps its history and its identities: by the plan's `id:`, or detected
from an email address the old and the new entry share. Through real cycles on the real store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connectors.memory import MemoryCalendar
from daemon.cycle import run_cycle
from daemon.store import Store
from schedules.events import Interaction
from schedules.plan import PlanInvalid, parse_plan

ADA = Path(__file__).parent / "fixtures" / "plans" / "ada.yaml"
NOW = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
HORIZON, GRACE = timedelta(weeks=14), timedelta(hours=24)


def cycle(store: Store, text: str, calendar: MemoryCalendar, now: datetime) -> dict[str, str]:
    plan = parse_plan(text, "plan.yaml")
    report = run_cycle(plan, store, readers=[], writers=[calendar], now=now, horizon=HORIZON, grace=GRACE)
    return {r.occurrence.key: r.occurrence.uid for r in report.published if r.occurrence.connection}


@pytest.mark.parametrize(
    "renamed",
    [
        "  - name: Grace B. Hopper\n    id: grace hopper\n",  # said by the plan
        "  - name: Grace B. Hopper\n",  # detected: the same email address
    ],
)
def test_a_renamed_connection_keeps_its_history_keys_and_uids(tmp_path: Path, renamed: str) -> None:
    text = ADA.read_text()
    calendar = MemoryCalendar("feed")
    with Store(f"sqlite:///{tmp_path / 'cb.db'}") as store:
        store.add_interaction(Interaction("Grace Hopper", NOW - timedelta(days=3), note="coffee"))
        before = cycle(store, text, calendar, NOW)
        after = cycle(
            store, text.replace("  - name: Grace Hopper\n", renamed), calendar, NOW + timedelta(minutes=5)
        )
        grace = {k: v for k, v in before.items() if k.startswith("touchpoint:grace hopper:")}
        assert grace, before
        assert {k: after[k] for k in grace} == grace, "same keys, same UIDs: nothing churns"
        titles = {e.circleback_key: e.summary for e in calendar.events.values()}
        assert all(titles[k].endswith("Grace B. Hopper") for k in grace), "the new name is shown"
        (known,) = [k for k in store.known_connections() if k.conn_id == "grace hopper"]
        assert known.name == "Grace B. Hopper"
        # The coffee three days ago still counts: the next touchpoint is due two weeks after it.
        first = min(k for k in grace)
        assert first == "touchpoint:grace hopper:2026-W49"


def test_two_connections_cannot_share_an_id() -> None:
    text = ADA.read_text().replace("    kind: group\n", "    kind: group\n    id: grace hopper\n")
    with pytest.raises(PlanInvalid, match="ids must be unique"):
        parse_plan(text, "plan.yaml")

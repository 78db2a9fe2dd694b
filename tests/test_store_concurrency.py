"""Two writers on one database at once, as two services on one PostgreSQL (or a CLI command beside the
service on SQLite) start their first cycles together: each real Store has its own engine and connections."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from functools import partial
from typing import TypeVar

from builders import connection, london_plan
from store_builders import NOW, rev, review, save, touchpoint

from daemon.store import ConnectionSync, Store
from schedules.model import Plan

ROUNDS = 25
T = TypeVar("T")


def a_round(i: int) -> Plan:
    """Each round drops the previous round's connections and adds two new ones."""
    return london_plan(
        connection("Grace Hopper", target=True),
        connection(f"Round {i} Alan", every="month"),
        connection(f"Round {i} Joan", stage="find"),
    )


def together(first: Callable[[], T], second: Callable[[], T]) -> tuple[T, T]:
    """Run both at the same instant (as near as threads allow)."""
    barrier = threading.Barrier(2)

    def go(work: Callable[[], T]) -> T:
        barrier.wait()
        return work()

    with ThreadPoolExecutor(2) as pool:
        a, b = pool.submit(go, first), pool.submit(go, second)
        return a.result(timeout=60), b.result(timeout=60)


def test_two_writers_mirror_the_plan_at_once_without_a_constraint_violation(db_url: str) -> None:
    with Store(db_url) as one, Store(db_url) as other:
        for i in range(ROUNDS):
            plan = a_round(i)
            results: tuple[ConnectionSync, ConnectionSync] = together(
                lambda plan=plan: one.sync_connections(plan),  # type: ignore[misc]
                lambda plan=plan: other.sync_connections(plan),  # type: ignore[misc]
            )
            added = sorted(name for result in results for name in result.added)
            removed = sorted(name for result in results for name in result.removed)
            new = sorted({f"Round {i} Alan", f"Round {i} Joan"} | ({"Grace Hopper"} if i == 0 else set()))
            assert added == new, f"round {i}: each new connection is added by exactly one writer"
            gone = [] if i == 0 else sorted({f"Round {i - 1} Alan", f"Round {i - 1} Joan"})
            assert removed == gone, f"round {i}: each dropped connection is removed by exactly one writer"
            assert [c.name for c in one.connections()] == sorted(c.name for c in plan.connections)


def test_two_writers_save_the_same_first_cycle_at_once(db_url: str) -> None:
    with Store(db_url) as one, Store(db_url) as other:
        for i in range(ROUNDS):
            start = NOW + timedelta(days=i)
            revisions = [
                rev(review(start, period=f"round-{i}")),
                rev(touchpoint("Grace Hopper", start, period=f"round-{i}")),
            ]
            results = together(partial(save, one, *revisions), partial(save, other, *revisions))
            assert sum(r.created for r in results) == len(revisions), f"round {i}: created once"
            assert sum(r.unchanged for r in results) == len(revisions), f"round {i}: then found as is"
        keys = [row.key for row in one.occurrences()]
        assert len(keys) == 2 * ROUNDS == len(set(keys))

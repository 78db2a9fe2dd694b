"""Run one owner's cycle: the one function both engines call.

APScheduler calls it in the personal mode (daemon.service), a procrastinate job in organisation mode
(daemon.org); neither the cycle nor this function knows which. It runs the cycle (read, decide, apply,
persist, in daemon.cycle) and renders that owner's feed from what the cycle published.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from connectors.base import Reader, Writer
from connectors.ics_feed import render_feed
from daemon.config import Settings
from daemon.cycle import CycleReport, run_cycle
from daemon.store import Store
from schedules.model import Plan


@dataclass(frozen=True)
class OwnerCycle:
    report: CycleReport
    feed: bytes  # the owner's ICS feed after this cycle


def run_owner_cycle(
    settings: Settings,
    plan: Plan,
    store: Store,
    *,
    readers: Sequence[Reader],
    writers: Sequence[Writer],
    marker_secret: Callable[[], bytes],
    now: datetime,
) -> OwnerCycle:
    report = run_cycle(
        plan,
        store,
        readers=readers,
        writers=writers,
        now=now,
        horizon=settings.horizon,
        grace=settings.grace,
    )
    feed = render_feed(
        report.published,
        plan=plan,
        name=settings.feed_name,
        refresh=settings.feed_refresh,
        marker_secret=marker_secret(),
    )
    return OwnerCycle(report, feed)

"""Per-calendar fault isolation: a failing calendar is retried with exponential backoff while the
others go on, and its state is what `circleback status` and `/readyz` report."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from connectors.base import EMPTY_STATE, CalendarState, ConnectorError, Reader
from schedules.events import Interval, Snapshot

log = logging.getLogger(__name__)


@dataclass
class CalendarHealth:
    name: str
    failures: int = 0
    last_error: str | None = None
    ok_at: datetime | None = None
    next_attempt_at: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.failures == 0


def backoff_delay(failures: int, *, base: timedelta, cap: timedelta, rng: random.Random) -> timedelta:
    """Full-jitter exponential backoff: spreads retries so a recovering server is not stampeded."""
    ceiling = min(cap.total_seconds(), base.total_seconds() * (2 ** max(failures - 1, 0)))
    return timedelta(seconds=rng.uniform(ceiling / 2, ceiling))


class GuardedReader:
    """A Reader that remembers its last good snapshot and skips attempts while backing off."""

    def __init__(
        self,
        inner: Reader,
        *,
        clock: Callable[[], datetime],
        base: timedelta = timedelta(minutes=1),
        cap: timedelta = timedelta(hours=1),
        fresh_for: timedelta = timedelta(0),
        seed: int | None = None,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.health = CalendarHealth(inner.name)
        self._clock = clock
        self._base, self._cap = base, cap
        self._fresh_for = fresh_for
        self._rng = random.Random(seed)
        self._last: Snapshot | None = None
        self._last_at: datetime | None = None
        # Held for a whole fetch: the calendar's own job and a cycle never fetch the same calendar twice
        # at once, and a read waits for a refresh in flight instead of starting another.
        self._lock = threading.RLock()

    @property
    def refreshed_at(self) -> datetime | None:
        return self._last_at if self.health.ok else None

    def read(self, window: Interval, state: CalendarState = EMPTY_STATE) -> Snapshot:
        """The calendar's data: the last refresh while it is fresh (the service refreshes each calendar
        in its own job), otherwise a refresh now. Raises ConnectorError only with no copy at all."""
        with self._lock:
            now = self._clock()
            if not (
                self._last is not None and self._last_at is not None and now - self._last_at < self._fresh_for
            ):
                self.refresh(window, state)
            if self._last is None:
                raise ConnectorError(self.name, self.health.last_error or "no data")
            # Each warning, and a new state, is handed out once: the next cycle served from this copy has
            # nothing new to say or to store.
            snapshot, self._last = self._last, replace(self._last, warnings=(), state=None)
            return snapshot

    def refresh(self, window: Interval, state: CalendarState = EMPTY_STATE) -> bool:
        """Read the calendar now, unless backing off; True when its data changed. Never raises.

        `state` is the calendar's stored state when the caller has it; the back end may keep its own."""
        with self._lock:
            now = self._clock()
            before = self._last
            if self.health.next_attempt_at is not None and now < self.health.next_attempt_at:
                self._keep_last(
                    f"backing off after {self.health.failures} failure(s): {self.health.last_error}"
                )
                return False
            try:
                snapshot = self.inner.read(window, state)
            except ConnectorError as exc:
                self._failed(exc.reason, now)
                self._keep_last(exc.reason)
                return False
            if snapshot.stale is not None:
                # The back end fell back on its own last good copy: usable, but still a failure to retry.
                self._failed(snapshot.stale, now)
            else:
                if self.health.failures:
                    log.info("calendar %s recovered after %d failure(s)", self.name, self.health.failures)
                self.health = CalendarHealth(self.name, ok_at=now)
            if snapshot.state is None and before is not None and before.state is not None:
                snapshot = replace(snapshot, state=before.state)  # not handed out yet: still to be stored
            self._last, self._last_at = snapshot, now
            return before is None or (before.busy, before.observations) != (
                snapshot.busy,
                snapshot.observations,
            )

    def _keep_last(self, reason: str) -> None:
        if self._last is None:
            return
        self._last = Snapshot(
            busy=self._last.busy,
            observations=self._last.observations,
            warnings=(
                *[w for w in self._last.warnings if "using the last good copy" not in w],
                f"{self.name}: using the last good copy ({reason})",
            ),
            stale=reason,
            state=self._last.state,
        )
        self._last_at = self._clock()

    def _failed(self, reason: str, now: datetime) -> None:
        with self._lock:
            self.health.failures += 1
            self.health.last_error = reason
            delay = backoff_delay(self.health.failures, base=self._base, cap=self._cap, rng=self._rng)
            self.health.next_attempt_at = now + delay
        log.warning(
            "calendar %s failed (%d in a row), next attempt in %ds: %s",
            self.name,
            self.health.failures,
            delay.total_seconds(),
            reason,
        )

"""`circleback run`: the long-running service.

APScheduler 3.11 with its in-memory job store (3.11 job stores must never be shared between processes,
and every job here is rebuilt from the config and the database at start). Jobs coalesce missed runs and
never run twice at once. The HTTP server runs in a thread; the main thread only waits for a signal.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from connectors.base import Reader
from daemon.app import PlanFileError, build_calendars, load_plan
from daemon.backoff import CalendarHealth, GuardedReader
from daemon.config import Settings
from daemon.cycle import LOOKBACK
from daemon.feed_cache import FeedCache
from daemon.lock import AlreadyRunning, ProcessLock, database_file_for
from daemon.logs import setup_logging
from daemon.notify import Notifier
from daemon.owner_cycle import run_owner_cycle
from daemon.secret_token import TokenFileError
from daemon.store import Store, StoreError
from schedules.events import Interval
from schedules.model import Plan
from schedules.plan import PlanInvalid

log = logging.getLogger("circleback.service")

HEARTBEAT_EVERY = timedelta(seconds=5)
PLAN_WATCH_EVERY = timedelta(seconds=2)
STOP_TIMEOUT = 10.0
# A new calendar is first read by the cycle that configures it; its own job takes over after this.
CALENDAR_FIRST_RUN = timedelta(seconds=5)


def utcnow() -> datetime:
    return datetime.now(UTC)


def file_stamp(path: Path) -> tuple[int, int, int]:
    """What tells an edit apart: an editor that replaces the file atomically within one mtime tick still
    changes the inode, and one that rewrites it in place usually changes the size."""
    st = path.stat()
    return (st.st_mtime_ns, st.st_size, st.st_ino)


@dataclass
class PlanWatch:
    """The plan in force and the stamp of the file it came from; an invalid edit keeps the last good plan.

    The stamp is taken before reading and kept only once the file was read: a read that failed (the file
    briefly missing, no descriptor left) is tried again at the next poll, while a file that was read but
    is invalid waits for the next edit. `generation` counts the plans put in force, so whatever was built
    from an older plan can tell that it must be rebuilt."""

    path: Path
    plan: Plan
    stamp: tuple[int, int, int]
    last_error: str | None = None
    generation: int = 0

    @classmethod
    def load(cls, path: Path) -> PlanWatch:
        stamp = file_stamp(path)
        return cls(path, load_plan(path), stamp)

    def poll(self) -> bool:
        try:
            stamp = file_stamp(self.path)
        except OSError as exc:
            self._read_failed(str(exc))
            return False
        if stamp == self.stamp:
            return False
        try:
            plan = load_plan(self.path)
        except PlanFileError as exc:
            self._read_failed(str(exc))
            return False
        except PlanInvalid as exc:
            self.stamp, self.last_error = stamp, str(exc)
            log.error("plan edit rejected; the last good plan stays in force:\n%s", exc)
            return False
        self.plan, self.stamp, self.last_error = plan, stamp, None
        self.generation += 1
        log.info("plan reloaded from %s (%d connections)", self.path, len(plan.connections))
        return True

    def _read_failed(self, reason: str) -> None:
        if self.last_error != reason:
            log.error("plan file cannot be read (%s); keeping the last good plan, trying again", reason)
        self.last_error = reason


@dataclass
class Service:
    settings: Settings
    notifier: Notifier = field(default_factory=Notifier)
    stop_event: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.store: Store | None = None
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300},
        )
        self.cache = FeedCache(refresh=self.settings.feed_refresh)
        self.readers: list[GuardedReader] = []
        self.last_heartbeat: datetime | None = None
        self.last_cycle_ok: datetime | None = None
        self._unplaced_said: tuple[tuple[str | None, str], ...] = ()
        self.last_cycle_error: str | None = None
        self._cycle_lock = threading.Lock()
        self._readers_lock = threading.Lock()
        self._readers_generation = 0
        self.cycle_running_since: datetime | None = None
        self._database_error: str | None = None
        self._server: Any = None
        self._lock: ProcessLock | None = None
        self.watch: PlanWatch | None = None

    # ------------------------------------------------------------------ jobs
    def window(self, now: datetime) -> Interval:
        return Interval(now - LOOKBACK, now + self.settings.horizon)

    def sync_calendar_jobs(self, configured: Sequence[Reader], generation: int = 0) -> list[GuardedReader]:
        """One job per configured calendar: each is fetched on its own schedule and retried with its own
        backoff, so a failing calendar never delays the others.

        A reader is built from the plan (its time zone reads floating times, the owner's addresses tell
        declined meetings apart), and it keeps what it parsed: after a plan edit every reader is replaced
        by one built from the new plan, or the old zone and addresses would stay in force until restart."""
        with self._readers_lock:
            rebuilt = generation != self._readers_generation
            known = {} if rebuilt else {r.name: r for r in self.readers}
            fresh_for = self.settings.sync_every * 2
            readers = [
                known.get(r.name) or GuardedReader(r, clock=utcnow, fresh_for=fresh_for) for r in configured
            ]
            names = {r.name for r in readers}
            for gone in {r.name for r in self.readers} - names:
                if self.scheduler.get_job(f"calendar:{gone}"):
                    self.scheduler.remove_job(f"calendar:{gone}")
            for reader in readers:
                job = self.scheduler.get_job(f"calendar:{reader.name}")
                if job is not None:
                    if job.args[0] is not reader:
                        job.modify(args=[reader])
                    continue
                self.scheduler.add_job(
                    self.refresh_calendar,
                    "interval",
                    args=[reader],
                    id=f"calendar:{reader.name}",
                    seconds=self.settings.sync_every.total_seconds(),
                    jitter=int(self.settings.jitter.total_seconds()) or None,
                    next_run_time=utcnow() + CALENDAR_FIRST_RUN,
                )
            if rebuilt and self.readers:
                log.info("plan changed: calendars are read again with its time zone and addresses")
            self.readers, self._readers_generation = readers, generation
            return readers

    def refresh_calendar(self, reader: GuardedReader) -> None:
        last = reader.refreshed_at
        if last is not None and utcnow() - last < self.settings.sync_every / 2:
            return  # a cycle has just read it
        changed = reader.refresh(self.window(utcnow()))
        retry_at = reader.health.next_attempt_at
        job = self.scheduler.get_job(f"calendar:{reader.name}")
        if (
            retry_at is not None
            and job is not None
            and (job.next_run_time is None or retry_at < job.next_run_time)
        ):
            # Retry on the backoff schedule rather than waiting for the next regular fetch.
            job.modify(next_run_time=retry_at)
        if changed:
            # New busy time or meetings: re-plan now instead of at the next interval.
            self.scheduler.modify_job("cycle", next_run_time=utcnow())

    def cycle_job(self) -> None:
        """The scheduled cycle, timed for /readyz: a first cycle still running (or stuck in a calendar
        that takes long to read) is reported as such rather than as ready."""
        self.cycle_running_since = utcnow()
        try:
            self.cycle()
        except Exception as exc:  # anything outside run_cycle's own guard: retried at the next run too
            self.last_cycle_error = type(exc).__name__
            log.exception("cycle failed; retrying at the next run")
        finally:
            self.cycle_running_since = None

    def cycle(self) -> None:
        assert self.store is not None and self.watch is not None
        with self._cycle_lock:
            plan, generation = self.watch.plan, self.watch.generation
            calendars = build_calendars(self.settings, plan)
            readers = self.sync_calendar_jobs(calendars.readers, generation)
            now = utcnow()
            try:
                done = run_owner_cycle(
                    self.settings,
                    plan,
                    self.store,
                    readers=readers,
                    writers=calendars.writers,
                    marker_secret=calendars.marker_secret,
                    now=now,
                )
            except Exception as exc:  # a cycle failure must not kill the scheduler; it retries next time
                self.last_cycle_error = f"{type(exc).__name__}: {exc}"
                log.exception("cycle failed; retrying at the next run")
                return
            report, data = done.report, done.feed
            changed = self.cache.update(data, self._changed_at(data, now))
            self.last_cycle_ok, self.last_cycle_error = now, None
            log.info(
                "cycle done: %d upcoming, %d logged, %d removed, %d calendar fault(s), feed %s",
                len(report.upcoming),
                report.new_entries,
                len(report.removed),
                len(report.faults),
                "changed" if changed else "unchanged",
            )
            for warning in report.warnings:
                log.warning("%s", warning)
            # What could not be placed is said when it changes, not every cycle: it is a state, not news.
            unplaced = tuple(report.unplaced)
            if unplaced != self._unplaced_said:
                for connection, reason in unplaced:
                    log.warning("not placed: %s: %s", connection or "self-review", reason)
                self._unplaced_said = unplaced
            self.notifier.status(f"last cycle {now:%H:%M:%S}Z; {len(report.upcoming)} upcoming")

    def _changed_at(self, data: bytes, now: datetime) -> datetime:
        """When the feed's bytes last changed. After a restart the served bytes are usually those of the
        feed file (rewritten only when they change), so its mtime keeps Last-Modified stable and clients'
        If-Modified-Since copies stay valid."""
        if self.cache.snapshot() is None:
            try:
                path = self.settings.feed_path
                if path.read_bytes() == data:
                    return datetime.fromtimestamp(path.stat().st_mtime, UTC)
            except OSError:
                pass
        return now

    def watch_plan(self) -> None:
        assert self.watch is not None
        if self.watch.poll():
            # Re-plan now rather than at the next interval: the person just edited the plan.
            self.scheduler.modify_job("cycle", next_run_time=utcnow())

    def heartbeat(self) -> None:
        self.last_heartbeat = utcnow()
        self.health.beat(self.last_heartbeat)
        self.notifier.watchdog()

    def housekeeping(self) -> None:
        assert self.store is not None
        removed = self.store.prune(before=utcnow() - timedelta(days=400))
        log.info("housekeeping: pruned %d old occurrence(s)", removed)

    # ------------------------------------------------------------------ readiness
    def readiness(self) -> tuple[bool, dict[str, object]]:
        """What /readyz reports. It is unauthenticated, so it names things and gives short states, never
        a path, a URL or an error text (those go to the log). Ready means the feed can be served: the
        database answers at the current schema and a first cycle has rendered the feed."""
        details: dict[str, object] = {}
        db_ok = self._database_state(details)
        feed_ok = self.cache.snapshot() is not None
        details["feed"] = "ok" if feed_ok else self._feed_waiting()
        details["plan"] = "ok" if self.watch and not self.watch.last_error else "last edit not in force"
        details["last_cycle"] = self.last_cycle_ok.isoformat() if self.last_cycle_ok else None
        details["cycle"] = self._cycle_state()
        details["calendars"] = {r.name: calendar_state(r.health) for r in self.readers}
        return db_ok and feed_ok, details

    def _database_state(self, details: dict[str, object]) -> bool:
        try:
            assert self.store is not None
            self.store.ping()
            at_head = self.store.at_head()
        except Exception as exc:
            reason = str(exc)
            if reason != self._database_error:  # /readyz is polled: say each new reason once
                log.warning("readiness: database unreachable: %s", reason)
            self._database_error = reason
            details["database"] = "unreachable"
            return False
        self._database_error = None
        details["database"] = "ok" if at_head else "migrations not at head"
        return at_head

    def _cycle_state(self) -> str:
        running = self.cycle_running_since
        if running is not None:
            return f"running for {int((utcnow() - running).total_seconds())}s"
        return "last one failed; retrying" if self.last_cycle_error else "idle"

    def _feed_waiting(self) -> str:
        if self.last_cycle_error and self.cycle_running_since is None:
            return "not rendered yet: the first cycle failed and is retried (see the log)"
        return "not rendered yet: waiting for the first cycle"

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        from daemon.web import HealthState, TokenFile, build_app, serve, start_in_thread

        settings = self.settings
        self.watch = PlanWatch.load(settings.plan)
        database_file = database_file_for(settings.database_url)
        if database_file is not None:
            self._lock = ProcessLock(database_file)
            self._lock.acquire()
        self.store = Store(settings.database_url)
        self.health = HealthState(max_age=HEARTBEAT_EVERY * 6, readiness=self.readiness)
        self.heartbeat()
        if settings.http_enabled:
            from daemon.secret_token import load_or_create_token

            load_or_create_token(settings.feed_token_file)
            app = build_app(cache=self.cache, token=TokenFile(settings.feed_token_file), health=self.health)
            # READY=1 must mean "up": wait until the socket listens before telling systemd.
            self._server = start_in_thread(serve(app, settings.http_host, settings.http_port))
            log.info("serving the feed and health endpoints on %s:%d", settings.http_host, settings.http_port)

        jitter = int(settings.jitter.total_seconds()) or None
        self.scheduler.add_job(
            self.cycle_job,
            "interval",
            id="cycle",
            seconds=settings.sync_every.total_seconds(),
            jitter=jitter,
            next_run_time=utcnow(),
        )
        self.scheduler.add_job(
            self.watch_plan, "interval", id="plan-watch", seconds=PLAN_WATCH_EVERY.total_seconds()
        )
        self.scheduler.add_job(
            self.heartbeat, "interval", id="heartbeat", seconds=HEARTBEAT_EVERY.total_seconds()
        )
        self.scheduler.add_job(self.housekeeping, "cron", id="housekeeping", hour=3, minute=30)
        self.scheduler.start()
        self.notifier.ready("started")

    def stop(self) -> bool:
        """Stop everything; False when a job was still running and had to be abandoned."""
        clean = True
        self.notifier.stopping()
        log.info("stopping: finishing the job in flight")
        if self.scheduler.running:
            # Let the job in flight finish, but not for longer than systemd's stop timeout allows: every
            # cycle writes in one transaction, so abandoning one loses nothing.
            waiter = threading.Thread(target=self.scheduler.shutdown, kwargs={"wait": True}, daemon=True)
            waiter.start()
            waiter.join(STOP_TIMEOUT)
            if waiter.is_alive():
                clean = False
                log.warning("the job in flight did not finish within %ds; stopping anyway", STOP_TIMEOUT)
        if self._server is not None:
            self._server.stop()
        if self.store is not None:
            self.store.close()
        if self._lock is not None:
            self._lock.release()
        log.info("stopped")
        return clean


def run_service(settings: Settings) -> int:
    setup_logging(settings.log_format, settings.log_level, access_log=settings.http_access_log)
    service = Service(settings)
    signals_seen = 0

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen > 1:
            # The person asked twice: do not wait for the job in flight.
            os._exit(128 + signum)
        log.info("received %s", signal.Signals(signum).name)
        service.stop_event.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        service.start()
    except AlreadyRunning as exc:
        log.error("%s", exc)
        return 1
    except (StoreError, TokenFileError, RuntimeError, TimeoutError, OSError) as exc:
        # Could not come up (database unreachable, port taken, unusable token file): say why, release
        # what was taken, and let the supervisor restart us with backoff.
        log.error("cannot start: %s", exc)
        service.stop()
        return 1
    service.stop_event.wait()
    if not service.stop():
        # A worker thread is still inside a job; the interpreter would wait for it at exit.
        logging.shutdown()
        os._exit(0)
    return 0


def calendar_state(health: CalendarHealth) -> dict[str, object]:
    """A calendar's short state for /readyz: no error text (it may carry a local path or an address on
    the internal network); the log and `circleback status` have the reason."""
    if health.failures:
        state = "failing"
    elif health.ok_at is None:
        state = "not read yet"
    else:
        state = "ok"
    return {
        "state": state,
        "ok": health.ok,
        "failures": health.failures,
        "last_ok": health.ok_at.isoformat() if health.ok_at else None,
        "next_attempt": health.next_attempt_at.isoformat() if health.next_attempt_at else None,
    }

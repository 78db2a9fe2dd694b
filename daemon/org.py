"""Organisation mode: every person's cycle, run by procrastinate workers on PostgreSQL.

Imported only by `circleback run` in organisation mode (procrastinate is the optional extra `org`; the
personal mode never imports this module).

- A periodic task (`circleback.tick`, one cron period = `schedule.sync_every`) is deferred once per period
  however many workers run: procrastinate records each periodic defer under a unique key.
- The tick defers one `circleback.cycle` job per person with `lock=<email>` (never two cycles of one person
  at once) and `queueing_lock=<email>` (never two waiting): a person whose last cycle is still waiting is
  not queued twice.
- A job whose worker died (kill -9, power loss) stays `doing`; the tick hands it back to the queue once its
  worker has missed heartbeats for STALLED_AFTER (procrastinate's stalled-job handling). The cycle writes in
  one transaction and is idempotent, so running it again is safe.
- A job loads the person's newest plan from the database and runs `run_owner_cycle` with
  `Store(url, owner=email)`: nothing of one person is visible to another's cycle.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import procrastinate
from procrastinate.exceptions import AlreadyEnqueued, UniqueViolation
from procrastinate.jobs import Status
from sqlalchemy import Engine, text

from connectors.address_guard import AddressGuard
from daemon import org_schema
from daemon.app import build_calendars
from daemon.config import Settings
from daemon.logs import setup_logging
from daemon.org_metrics import record_api_requests
from daemon.org_person import person_readers, person_settings
from daemon.org_secret import person_marker_secret
from daemon.owner_cycle import run_owner_cycle
from daemon.people import People
from daemon.store import Store, normalise_url

log = logging.getLogger("circleback.org")

CYCLE_TASK: Final = "circleback.cycle"
TICK_TASK: Final = "circleback.tick"
CYCLE_QUEUE: Final = "cycles"
TICK_QUEUE: Final = "ticks"
# A worker writes its heartbeat this often; a job whose worker has been silent for STALLED_AFTER is
# retried. Long enough that a busy event loop is not mistaken for a dead worker.
HEARTBEAT: Final = timedelta(seconds=2)
STALLED_AFTER: Final = timedelta(seconds=10)
# Jobs run in threads: a cycle mostly waits for calendars, so a few per worker keep it busy.
CONCURRENCY: Final = 4
_SCHEMA_LOCK_ID: Final = 0x0C1C1EBAE
DEFER_BATCH: Final = 500  # cycle jobs deferred in one statement by the tick


def utcnow() -> datetime:
    return datetime.now(UTC)


def conninfo(database_url: str) -> str:
    """libpq's form of the store's URL; its `options` (a test's search_path, say) carry over."""
    return normalise_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def cron_for(period: timedelta) -> str:
    """A cron expression that fires every `period` (croniter's sixth field is seconds)."""
    seconds = int(period.total_seconds())
    if seconds <= 0:
        raise ValueError(f"a cycle period must be positive, not {period}")
    if seconds < 60:
        return f"* * * * * */{seconds}"
    if seconds < 3600:
        return f"*/{max(1, seconds // 60)} * * * *"
    if seconds < 86400:
        return f"0 */{max(1, seconds // 3600)} * * *"
    return "0 0 * * *"


def cycle_person(
    settings: Settings,
    email: str,
    now: datetime,
    *,
    guard: AddressGuard | None = None,
    engine: Engine | None = None,
) -> None:
    """One person's cycle, from the plan and own calendars in force in the database; `guard` stands in
    for the one the settings make (a test's resolver); `engine`: the worker's, shared by every cycle."""
    with Store(settings.database_url, owner=email, migrate=False, engine=engine) as store:
        people = People(store.engine)
        person = people.get(email)
        _text, plan = people.latest_plan(email)
        own = person_settings(settings, person)
        engine = store.engine
        # The person's own secret from the database, not the state directory's file: replicas share none.
        secret = functools.cache(lambda: person_marker_secret(engine, email))
        calendars = build_calendars(own, plan, owner=email, marker_secret=secret)
        taken = {calendar.name.casefold() for calendar in own.calendars}
        readers = calendars.readers + person_readers(
            settings,
            email,
            people.sources(email),
            taken=taken,
            default_tz=plan.timezone,
            marker_secret=calendars.marker_secret,
            guard=guard,
        )
        done = run_owner_cycle(
            own,
            plan,
            store,
            readers=readers,
            writers=calendars.writers,
            marker_secret=calendars.marker_secret,
            now=now,
        )
        People(store.engine).save_feed(email, done.feed, now)
        record_api_requests(store.engine, done.report.api_requests)
    report = done.report
    log.info(
        "cycle of %s done: %d upcoming, %d logged, %d calendar fault(s)",
        email,
        len(report.upcoming),
        report.new_entries,
        len(report.faults),
    )


def prepare(settings: Settings) -> None:
    """Migrate circleback's schema and make sure the queue's tables exist (one process at a time)."""
    with Store(settings.database_url) as store:
        if store.backend != "postgresql":
            raise org_schema.QueueUnavailable("organisation mode needs a PostgreSQL database_url")
        with store.engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _SCHEMA_LOCK_ID})
            org_schema.ensure_schema(conn)


def make_app(settings: Settings, period: timedelta | None = None) -> procrastinate.App:
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=conninfo(settings.database_url))
    )
    people_store = Store(settings.database_url, migrate=False)

    @app.task(name=CYCLE_TASK, queue=CYCLE_QUEUE)
    def cycle(owner: str, period: int) -> None:
        del period  # in the arguments so each period's job is told apart in the queue's history
        # Every person's cycle on this worker's one engine: a new engine per cycle cost a connection
        # and recompiling every statement each time.
        cycle_person(settings, owner, utcnow(), engine=people_store.engine)

    async def retry_stalled() -> None:
        stalled = await app.job_manager.get_stalled_jobs(
            task_name=CYCLE_TASK, seconds_since_heartbeat=STALLED_AFTER.total_seconds()
        )
        for job in stalled:
            try:
                await app.job_manager.retry_job(job)
                log.warning("cycle job %s of %s: its worker stopped; running it again", job.id, job.lock)
            except UniqueViolation:
                # A later period's job for this person is already waiting (queueing lock): that one runs
                # the cycle; this one is closed so its lock no longer holds the person back.
                await app.job_manager.finish_job(job, status=Status.FAILED, delete_job=False)
                log.warning(
                    "cycle job %s of %s: its worker stopped; a newer job takes over", job.id, job.lock
                )

    @app.periodic(cron=cron_for(period or settings.sync_every), periodic_id="people")
    @app.task(name=TICK_TASK, queue=TICK_QUEUE)
    async def tick(timestamp: int) -> None:
        await retry_stalled()
        emails = await asyncio.to_thread(People(people_store.engine).emails)
        # In batches, one statement each: one defer per person took ~8 ms each (minutes per period at
        # 10,000 people). A batch that meets a person whose job still waits is refused whole (the
        # queueing lock), and goes again one person at a time.
        for start in range(0, len(emails), DEFER_BATCH):
            batch = emails[start : start + DEFER_BATCH]
            jobs = [
                cycle.configure(lock=email, queueing_lock=email).make_new_job(owner=email, period=timestamp)
                for email in batch
            ]
            try:
                await app.job_manager.batch_defer_jobs_async(jobs)
                continue
            except AlreadyEnqueued:
                pass
            for email in batch:
                try:
                    await cycle.configure(lock=email, queueing_lock=email).defer_async(
                        owner=email, period=timestamp
                    )
                except AlreadyEnqueued:
                    log.info("cycle of %s is still waiting from an earlier period; not queued twice", email)

    return app


def run_org(settings: Settings, *, period: timedelta | None = None, worker_name: str | None = None) -> int:
    """`circleback run` in organisation mode: a procrastinate worker until SIGTERM or SIGINT."""
    setup_logging(settings.log_format, settings.log_level, access_log=settings.http_access_log)
    try:
        prepare(settings)
    except org_schema.QueueUnavailable as exc:
        log.error("cannot start: %s", exc)
        return 2
    app = make_app(settings, period)
    options: dict[str, Any] = {
        "concurrency": CONCURRENCY,
        "update_heartbeat_interval": HEARTBEAT.total_seconds(),
        "stalled_worker_timeout": STALLED_AFTER.total_seconds(),
    }
    if worker_name:
        options["name"] = worker_name
    server = _start_http(settings, period or settings.sync_every) if settings.http_enabled else None
    log.info("organisation mode: procrastinate worker on %s", normalise_url(settings.database_url))
    try:
        app.run_worker(**options)
    finally:
        if server is not None:
            server.stop()
    log.info("stopped")
    return 0


def _start_http(settings: Settings, period: timedelta) -> Any:
    from daemon.org_web import build_org_app
    from daemon.web import serve, start_in_thread

    feeds = Store(settings.database_url, migrate=False)
    max_age = max(1, int(settings.feed_refresh.total_seconds()))
    app = build_org_app(feeds.engine, max_age=max_age, period=period)
    server = start_in_thread(serve(app, settings.http_host, settings.http_port))
    log.info("serving the people's feeds on %s:%d", settings.http_host, settings.http_port)
    return server

"""The tick defers one cycle job per person, in batches, and never a second one for a person whose job
still waits: a batch that meets such a person is refused whole and goes again one person at a time."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from daemon.config import load_settings
from daemon.org import CYCLE_TASK, TICK_TASK, make_app, prepare
from daemon.people import People
from daemon.store import Store

pytestmark = pytest.mark.postgres

ADA = Path(__file__).parent / "fixtures" / "plans" / "ada.yaml"
NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
EMAILS = ["ada@example.org", "bo@example.org", "cy@example.org", "di@example.org", "ed@example.org"]


def waiting(jobs: list[tuple[str, int]]) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for lock, period in jobs:
        found.setdefault(lock, []).append(period)
    return found


def test_the_tick_defers_each_person_once_and_skips_who_still_waits(
    tmp_path: Path, postgres_url: str
) -> None:
    config = tmp_path / "org.toml"
    config.write_text(f'database_url = "{postgres_url}"\nstate_dir = "{tmp_path}"\n', encoding="utf-8")
    settings = load_settings(config, environ={})
    with Store(postgres_url) as store:
        for email in EMAILS:
            People(store.engine).add(
                email, name=email, plan_text=ADA.read_text(encoding="utf-8"), google_subject=None, now=NOW
            )
    prepare(settings)
    app = make_app(settings, timedelta(days=1))

    async def scenario() -> tuple[dict[str, list[int]], dict[str, list[int]], set[bool]]:
        async with app.open_async():
            tick = app.tasks[TICK_TASK].func

            async def todo() -> dict[str, list[int]]:
                jobs = await app.job_manager.list_jobs_async(task=CYCLE_TASK, status="todo")
                return waiting([(str(j.lock), int(j.task_kwargs["period"])) for j in jobs])  # type: ignore[arg-type]

            await tick(timestamp=1)
            first = await todo()
            # Everyone's first job ran, except ada's, which still waits.
            for job in await app.job_manager.list_jobs_async(task=CYCLE_TASK, status="todo"):
                if job.lock != EMAILS[0]:
                    assert job.id is not None
                    await app.job_manager.cancel_job_by_id_async(job.id)
            # The batch holding everyone is refused (ada's job waits): one by one, the others go.
            await tick(timestamp=2)
            every = await app.job_manager.list_jobs_async(task=CYCLE_TASK)
            return first, await todo(), {j.lock == j.queueing_lock is not None for j in every}

    first, second, locked = asyncio.run(scenario())

    assert first == {email: [1] for email in EMAILS}
    assert second == {EMAILS[0]: [1], **{email: [2] for email in EMAILS[1:]}}
    assert locked == {True}, "every job carries its person as lock and queueing lock"

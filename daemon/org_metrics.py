"""`/metrics` of organisation mode, in the Prometheus text exposition format (version 0.0.4).

Every figure is read from the database, so every replica reports the same organisation-wide numbers
(scrape any one of them, or all: they agree): people, cycles by outcome and their durations (from
procrastinate's job events), the queue's depth, and calendar failures by calendar name, summed over
people (no email addresses in the labels: a metrics scraper is not entitled to know who fails), and the
requests every cycle sent to each calendar's API (`record_api_requests`, summed in the database).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from sqlalchemy import Engine, text
from sqlalchemy.dialects import postgresql, sqlite

from daemon.dbtypes import ApiRequestCountRow, table_of

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

_CYCLES = text(
    "SELECT status::text, count(*) FROM procrastinate_jobs WHERE task_name = 'circleback.cycle' GROUP BY 1"
)
_QUEUE = text(
    "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'circleback.cycle' AND status = 'todo'"
)
# A job's duration: from its last start to its success (a retried job counts its successful run).
_DURATIONS = text(
    "SELECT count(*), coalesce(sum(extract(epoch FROM done.at - started.at)), 0) FROM procrastinate_jobs j "
    "JOIN LATERAL (SELECT max(at) AS at FROM procrastinate_events e WHERE e.job_id = j.id "
    "AND e.type = 'succeeded') done ON done.at IS NOT NULL "
    "JOIN LATERAL (SELECT max(at) AS at FROM procrastinate_events e WHERE e.job_id = j.id "
    "AND e.type = 'started') started ON started.at IS NOT NULL "
    "WHERE j.task_name = 'circleback.cycle'"
)
_PEOPLE = text("SELECT count(*) FROM person")
_SOURCE_FAILURES = text(
    "SELECT s.name, count(*) FROM source_state s JOIN person p ON p.owner_id = s.owner_id "
    "WHERE s.failures > 0 GROUP BY s.name ORDER BY s.name"
)
_API_REQUESTS = text("SELECT calendar, total FROM api_request_count ORDER BY calendar")
_PLACEMENT_FAILURES = text(
    "SELECT pl.calendar, count(*) FROM placement pl JOIN person p ON p.owner_id = pl.owner_id "
    "WHERE pl.state = 'failed' GROUP BY pl.calendar ORDER BY pl.calendar"
)


def record_api_requests(engine: Engine, counts: Mapping[str, int]) -> None:
    """Add one cycle's API requests per calendar to the organisation's totals (any replica, any person).

    One upsert per calendar, adding to the stored total; in name order, so two cycles adding to the same
    calendars lock their rows in the same order and never deadlock."""
    if not counts:
        return
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    table = table_of(ApiRequestCountRow)
    with engine.begin() as conn:
        for calendar in sorted(counts):
            insert = dialect.insert(table).values(calendar=calendar, total=max(0, int(counts[calendar])))
            conn.execute(
                insert.on_conflict_do_update(
                    index_elements=["calendar"], set_={"total": table.c.total + insert.excluded.total}
                )
            )


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _family(name: str, kind: str, help_text: str, samples: Iterable[tuple[str, float]]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    lines.extend(f"{name}{labels} {value:g}" for labels, value in samples)
    return lines


def render_metrics(engine: Engine) -> str:
    with engine.connect() as conn:
        cycles = {str(status): int(n) for status, n in conn.execute(_CYCLES)}
        queued = int(conn.execute(_QUEUE).scalar_one())
        count, seconds = conn.execute(_DURATIONS).one()
        people = int(conn.execute(_PEOPLE).scalar_one())
        sources = [(str(name), int(n)) for name, n in conn.execute(_SOURCE_FAILURES)]
        placements = [(str(name), int(n)) for name, n in conn.execute(_PLACEMENT_FAILURES)]
        requests = [(str(name), int(n)) for name, n in conn.execute(_API_REQUESTS)]
    statuses = sorted({"succeeded", "failed", *cycles})
    lines = [
        *_family("circleback_people", "gauge", "People whose cycles the workers run.", [("", people)]),
        *_family(
            "circleback_cycles_total",
            "counter",
            "Cycle jobs by state (succeeded, failed, doing, todo, ...).",
            [(f'{{status="{_label(s)}"}}', cycles.get(s, 0)) for s in statuses],
        ),
        *_family(
            "circleback_cycle_duration_seconds",
            "summary",
            "Time from a cycle job's start to its success.",
            [("_count", int(count)), ("_sum", float(seconds))],
        ),
        *_family("circleback_queue_depth", "gauge", "Cycle jobs waiting to run.", [("", queued)]),
        *_family(
            "circleback_calendar_failing_people",
            "gauge",
            "People for whom a calendar is failing, by calendar name and direction.",
            [(f'{{calendar="{_label(n)}",direction="read"}}', c) for n, c in sources]
            + [(f'{{calendar="{_label(n)}",direction="write"}}', c) for n, c in placements],
        ),
        *_family(
            "circleback_api_requests_total",
            "counter",
            "HTTP requests the cycles sent to each calendar's API (retries and batches count once each).",
            [(f'{{calendar="{_label(n)}"}}', c) for n, c in requests],
        ),
    ]
    return "\n".join(lines) + "\n"

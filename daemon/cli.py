"""The `circleback` command: thin commands that parse, call what the service calls, and print.

Exit status: 0 success, 2 bad input (plan, config, arguments, unknown names), 1 any other failure.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import logging
import os
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from zoneinfo import ZoneInfo

from connectors.base import ConnectorError
from daemon import render
from daemon.app import PlanFileError, build_calendars, load_plan, load_plan_source, open_store
from daemon.config import ConfigError, Settings, add_flags, flag_overrides, load_settings, toml_key
from daemon.errors import BadInput
from daemon.secret_token import TokenFileError
from schedules.events import Interaction, InteractionKind
from schedules.model import Plan
from schedules.occurrence import Occurrence, OccurrenceStatus
from schedules.plan import PlanInvalid
from schedules.renames import renamed, resolve

if TYPE_CHECKING:
    from daemon.org_status import CalendarStatus
    from daemon.people import People, Person, PersonSource
    from daemon.store import Store

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2


def _now() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------------------------- parsing


def _global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    group = parser.add_argument_group("global options")
    add_flags(group, suppress=suppress)  # every setting with a flag, from daemon.config's schema
    default: Any = argparse.SUPPRESS if suppress else None
    group.add_argument("--now", default=default, help=argparse.SUPPRESS)  # for reproducible runs in tests


def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date; use YYYY-MM-DD") from None


def _version() -> str:
    # importlib.metadata pulls in the e-mail package; only `--version` needs it.
    from importlib import metadata

    try:
        return metadata.version("circleback")
    except metadata.PackageNotFoundError:
        return "(not installed: no package metadata)"


class _VersionAction(argparse.Action):
    """argparse's "version" action, looking the version up only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **_: Any) -> None:
        super().__init__(option_strings, dest, default=argparse.SUPPRESS, nargs=0, help=_VERSION_HELP)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        print(f"{parser.prog} {_version()}")
        parser.exit()


_VERSION_HELP = "show program's version number and exit"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="circleback",
        description="Keep your key professional relationships warm: a focus plan, placed in your calendar.",
    )
    parser.add_argument("--version", action=_VersionAction)
    _global_options(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str, parent: Any = commands) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = parent.add_parser(name, help=help_text, description=help_text)
        _global_options(sub, suppress=True)
        return sub

    init = command("init", "write a commented starter plan and config")
    init.add_argument("directory", nargs="?", type=Path, help="where to write them (default: XDG config dir)")
    init.add_argument("--force", action="store_true", help="overwrite existing files")

    plan = commands.add_parser(
        "plan", help="work with the focus plan", description="work with the focus plan"
    )
    plan_commands = plan.add_subparsers(dest="plan_command", metavar="COMMAND", required=True)
    check = command("check", "validate the focus plan and report every problem", plan_commands)
    check.add_argument("plan_file", nargs="?", type=Path, metavar="PLAN")
    diff = command(
        "diff", "show what an edited plan would change in the calendar (nothing is written)", plan_commands
    )
    diff.add_argument("plan_file", nargs="?", type=Path, metavar="PLAN", help="the edited plan")

    agenda = command("agenda", "show the planned touchpoints and reviews")
    agenda.add_argument("--from", dest="start", type=_iso_date, metavar="DATE", help="first day, YYYY-MM-DD")
    agenda.add_argument("--days", type=int, default=14, help="how many days (default 14)")
    agenda.add_argument("--json", action="store_true", help="machine-readable output")

    sync = command("sync", "run one cycle: read calendars, reconcile, plan, write the feed")
    sync.add_argument("--dry-run", action="store_true", help="show what would change, write nothing")

    reconcile = command("reconcile", "log what happened in your calendars since the last run")
    reconcile.add_argument("--dry-run", action="store_true", help="show what would be logged")

    feed = commands.add_parser("feed", help="the ICS feed", description="the ICS feed")
    feed_commands = feed.add_subparsers(dest="feed_command", metavar="COMMAND", required=True)
    export = command("export", "write the ICS feed to a file", feed_commands)
    export.add_argument("-o", "--output", type=Path, required=True, metavar="FILE")
    command("url", "print the feed's secret http and webcal addresses", feed_commands)
    command("rotate", "make a new secret feed address (the old one stops working)", feed_commands)

    log_cmd = commands.add_parser("log", help="the interaction log", description="the interaction log")
    log_commands = log_cmd.add_subparsers(dest="log_command", metavar="COMMAND", required=True)
    add = command("add", "log an interaction no calendar shows (a call, a coffee)", log_commands)
    add.add_argument("name", help="the connection's name as written in the plan")
    add.add_argument("--on", dest="on", metavar="DATE", help="YYYY-MM-DD or YYYY-MM-DDTHH:MM (default: now)")
    add.add_argument("--kind", choices=[k.value for k in InteractionKind], default="give")
    add.add_argument("--note", default="", help="what was said, what they care about")
    listing = command("list", "show the interaction log", log_commands)
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.add_argument("--all", action="store_true", help="include undone entries")
    undo = command("undo", "take back a log entry", log_commands)
    undo.add_argument("entry_id", type=int, metavar="ID")
    edit = command("edit", "correct a log entry: whether it gave or asked, and its note", log_commands)
    edit.add_argument("entry_id", type=int, metavar="ID")
    edit.add_argument("--kind", choices=[k.value for k in InteractionKind])
    edit.add_argument("--note", help="replaces the entry's note")

    review = commands.add_parser(
        "review", help="your self-review blocks", description="your self-review blocks"
    )
    review_commands = review.add_subparsers(dest="review_command", metavar="COMMAND", required=True)
    done = command(
        "done", "record that you did your self-review (the next one is planned from it)", review_commands
    )
    done.add_argument("--on", dest="on", metavar="DATE", help="YYYY-MM-DD or YYYY-MM-DDTHH:MM (default: now)")
    done.add_argument("--note", default="", help="what you decided to change")
    reviews = command("list", "show the self-reviews you recorded", review_commands)
    reviews.add_argument("--json", action="store_true", help="machine-readable output")
    reviews.add_argument("--all", action="store_true", help="include undone reviews")
    review_undo = command("undo", "take back a recorded self-review", review_commands)
    review_undo.add_argument("review_id", metavar="ID", help="as shown by `circleback review list` (R3 or 3)")

    skip = command("skip", "skip one planned touchpoint or review (the next one is planned as usual)")
    skip.add_argument("occurrence", metavar="KEY_OR_UID", help="as shown by `circleback agenda --json`")

    finished = command("done", "record a planned touchpoint as done, with what happened")
    finished.add_argument("occurrence", metavar="KEY_OR_UID", help="as shown by `circleback agenda --json`")
    finished.add_argument("--kind", choices=[k.value for k in InteractionKind], help="give (default) or ask")
    finished.add_argument("--note", help="what was said, what they care about")

    audit_cmd = command(
        "audit", "a SWOT of your network from the plan and the log, with the give/ask balance"
    )
    audit_cmd.add_argument("--json", action="store_true", help="machine-readable output")
    audit_cmd.add_argument(
        "--html", type=Path, metavar="FILE", help="also write a self-contained HTML report"
    )
    audit_cmd.add_argument("--png", type=Path, metavar="FILE", help="also write the timeline as a PNG")

    status = command("status", "per connection: last interaction, next due, overdue; calendar health")
    status.add_argument("--json", action="store_true", help="machine-readable output")

    run = command("run", "run the background service in the foreground (systemd, Docker, launchd)")
    run.add_argument(
        "--org",
        action="store_true",
        help="organisation mode: run every person's cycle with procrastinate workers (PostgreSQL only; "
        "the default on a PostgreSQL database that has people)",
    )

    auth = commands.add_parser(
        "auth", help="connect a calendar account", description="connect a calendar account"
    )
    auth_commands = auth.add_subparsers(dest="auth_command", metavar="COMMAND", required=True)
    google = command(
        "google", "let circleback use your Google calendar (stores a token, mode 0600)", auth_commands
    )
    google.add_argument(
        "--client-secrets", type=Path, required=True, metavar="FILE", help="OAuth client JSON"
    )
    google.add_argument("--no-browser", action="store_true", help="print the address instead of opening it")
    google.add_argument("--token-file", type=Path, metavar="FILE", help="default: XDG config dir")
    google.add_argument("--port", type=int, default=0, help="local port for Google's answer (default: any)")
    command("config", "show the settings in force and where each came from")
    _people_parser(commands, command)
    return parser


def _people_parser(commands: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    people = commands.add_parser(
        "people",
        help="the people of an organisation (organisation mode)",
        description="the people of an organisation (organisation mode)",
    )
    people_commands = people.add_subparsers(dest="people_command", metavar="COMMAND", required=True)
    add = command("add", "add a person with their focus plan (give it with --plan FILE)", people_commands)
    add.add_argument("email", metavar="EMAIL")
    add.add_argument("--name", required=True, help="the person's name")
    add.add_argument("--google-subject", metavar="EMAIL", help="their Google account (default: EMAIL)")
    # Their own calendars come with the global `--source URL` (repeatable), as their plan comes with --plan.
    listing = command("list", "list the people", people_commands)
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    show = command("show", "show one person and their plan's history", people_commands)
    show.add_argument("email", metavar="EMAIL")
    set_plan = command(
        "set-plan", "give a person a new focus plan (checked like `plan check`)", people_commands
    )
    set_plan.add_argument("email", metavar="EMAIL")
    set_plan.add_argument("plan_path", type=Path, metavar="FILE")
    sources = command(
        "set-sources",
        "replace a person's own calendars (https:// or webcal:// addresses; none: remove them all)",
        people_commands,
    )
    sources.add_argument("email", metavar="EMAIL")
    sources.add_argument("locations", nargs="*", metavar="URL")
    rotate = command("rotate-feed", "give a person a new secret feed URL", people_commands)
    rotate.add_argument("email", metavar="EMAIL")
    remove = command("remove", "stop running a person's cycles", people_commands)
    remove.add_argument("email", metavar="EMAIL")
    remove.add_argument(
        "--purge",
        action="store_true",
        help="also remove circleback's events from their calendars, then delete their plans, log, "
        "placements and feed",
    )
    remove.add_argument(
        "--keep-remote-events",
        action="store_true",
        help="with --purge: leave circleback's events in their calendars (when those cannot be reached)",
    )


# --------------------------------------------------------------------------------------------- helpers


def _settings(args: argparse.Namespace) -> Settings:
    overrides = flag_overrides(args)
    overrides["plan"] = getattr(args, "plan_file", None) or overrides["plan"]
    return load_settings(overrides=overrides)


def _now_from(args: argparse.Namespace) -> datetime:
    if not args.now:
        return _now()
    try:
        value = datetime.fromisoformat(args.now)
    except ValueError:
        raise BadInput(f"--now: cannot read {args.now!r}; use an ISO datetime with offset") from None
    if value.tzinfo is None:
        raise BadInput(f"--now: {args.now!r} needs a UTC offset")
    return value.astimezone(UTC)


def _print_json(value: object) -> None:
    json.dump(value, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def _warn(lines: Sequence[str]) -> None:
    for line in lines:
        print(f"warning: {line}", file=sys.stderr)


# --------------------------------------------------------------------------------------------- commands


def cmd_init(args: argparse.Namespace) -> int:
    from daemon.starter import write_starter

    result = write_starter(args.directory, force=args.force)
    for path in result.written:
        print(f"wrote {path}")
    for path in result.kept:
        print(f"kept  {path} (it exists; --force overwrites it)")
    plan = next(p for p in (*result.written, *result.kept) if p.name == "plan.yaml")
    config = plan.with_name("config.toml")
    prog = shutil.which("circleback") or sys.argv[0]
    hint = "" if args.directory is None else f" --config {config}"
    print(f"next: edit {plan}, then run `{prog} agenda{hint}`")
    return EXIT_OK


def cmd_plan_check(args: argparse.Namespace) -> int:
    settings = _settings(args)
    plan = load_plan(settings.plan)
    targets = sum(1 for c in plan.connections if c.target)
    print(
        f"{settings.plan}: ok ({len(plan.connections)} connections, {targets} target(s), "
        f"review every {plan.review.every})"
    )
    return EXIT_OK


def _cycle(args: argparse.Namespace, *, dry_run: bool, feed_path: Path | None = None) -> tuple[Any, Any]:
    from daemon.cycle import run_cycle

    settings = _settings(args)
    plan = load_plan(settings.plan)  # before anything is opened: a broken plan writes nothing
    now = _now_from(args)
    calendars = build_calendars(settings, plan, feed_path=feed_path)
    with open_store(settings, read_only=dry_run, now=now) as store:
        report = run_cycle(
            plan,
            store,
            readers=calendars.readers,
            writers=calendars.writers,
            now=now,
            horizon=settings.horizon,
            grace=settings.grace,
            dry_run=dry_run,
        )
    _warn(report.warnings)
    for fault in report.faults:
        print(f"error: {fault.calendar}: {fault.reason}", file=sys.stderr)
    _explain_unread(report.unread)
    for calendar, key, reason in report.failed_events:
        print(f"error: {calendar} refused {key}: {reason} (retried next cycle)", file=sys.stderr)
    for connection, reason in report.unplaced:
        print(f"warning: not placed: {connection or 'self-review'}: {reason}", file=sys.stderr)
    return plan, report


def _explain_unread(names: Sequence[str]) -> None:
    for name in names:
        print(
            f"error: calendar {name} has no data yet, so nothing new is placed until it can be read "
            "(what was placed before stays); fix or remove it in [ics] sources (or --source), then run "
            "`circleback sync`",
            file=sys.stderr,
        )


def _cycle_status(report: Any) -> int:
    return EXIT_FAILURE if report.faults or report.unplaced or report.failed_events else EXIT_OK


def cmd_sync(args: argparse.Namespace) -> int:
    plan, report = _cycle(args, dry_run=args.dry_run)
    print(render.cycle_summary(report, plan, dry_run=args.dry_run))
    return _cycle_status(report)


def cmd_reconcile(args: argparse.Namespace) -> int:
    _plan, report = _cycle(args, dry_run=args.dry_run)
    lines = list(report.outcomes.explain) if report.outcomes else []
    if args.dry_run:
        lines = [render.as_dry_run(line) for line in lines]
    verb = "would log" if args.dry_run else "logged"
    if lines:
        print("\n".join(lines))
        print(f"{verb} {report.new_entries} interaction(s)")
    else:
        print("nothing new happened")
    return EXIT_FAILURE if report.faults else EXIT_OK


@dataclass(frozen=True)
class _Schedule:
    """What the last cycle placed (the feed's content), as agenda and status show it."""

    plan: Plan
    now: datetime
    upcoming: list[Occurrence]
    interactions: list[Interaction]
    reviews_done: list[datetime]
    calendars: list[Any]
    problems: list[str]  # calendars that were never read, or are not read yet: the schedule ignores them
    preview: bool  # nothing was ever placed: `upcoming` is what a sync would place
    refused: list[tuple[str, str, str]]  # (calendar, occurrence key, reason): writes a calendar refused


def _schedule(args: argparse.Namespace) -> _Schedule:
    """The schedule the feed publishes, read from the store without touching any calendar.

    Re-planning here would show a schedule the feed does not have (other calendars, another moment).
    Only before the first sync, when nothing is placed yet, is a dry-run cycle shown as a preview.
    """
    from schedules.occurrence import OPEN_STATUSES

    settings = _settings(args)
    plan = load_plan(settings.plan)
    now = _now_from(args)
    names = render.source_names(settings)
    with open_store(settings, read_only=True) as store:
        synced = bool(store.connections())
        rows = store.occurrences(OPEN_STATUSES)
        # The log under each connection's current name (a renamed connection keeps its history).
        aliases = resolve(plan, store.known_connections()).aliases
        interactions = [
            dataclasses.replace(r.interaction, connection=renamed(r.interaction.connection, aliases))
            for r in store.interactions()
        ]
        reviews_done = store.reviews_done()
        states = {name: store.source_state(name) for name in names}
        refused = [
            (calendar, failure.key, failure.reason)
            for calendar, failures in store.calendar_failures().items()
            for failure in failures
        ]
    problems: list[str] = []
    if synced:
        upcoming = [row.occurrence for row in rows if row.occurrence.end > now]
        for name, state in states.items():
            if state is None:
                problems.append(name)
                print(f"error: calendar {name} has not been read yet: run `circleback sync`", file=sys.stderr)
            elif state.ok_at is None:
                problems.append(name)
                _explain_unread([name])
    else:
        # The preview reads the calendars as `sync --dry-run` does, and reports the same faults.
        _plan, report = _cycle(args, dry_run=True)
        upcoming = report.upcoming
        problems = [fault.calendar for fault in report.faults]
    return _Schedule(
        plan,
        now,
        sorted(upcoming, key=lambda o: (o.start, o.key)),
        interactions,
        reviews_done,
        [s for s in states.values() if s is not None],
        problems,
        preview=not synced,
        refused=refused,
    )


def cmd_agenda(args: argparse.Namespace) -> int:
    if args.days < 1:
        raise BadInput("--days: must be at least 1")
    schedule = _schedule(args)
    zone = ZoneInfo(schedule.plan.timezone)
    first = args.start or schedule.now.astimezone(zone).date()
    start = datetime.combine(first, time(0), zone)
    end = datetime.combine(first + timedelta(days=args.days), time(0), zone)
    items = [o for o in schedule.upcoming if start <= o.start.astimezone(zone) < end]
    if args.json:
        _print_json([render.occurrence_json(o, zone) for o in items])
    else:
        if schedule.preview:
            print("preview: nothing is placed yet; `circleback sync` places these and writes the feed")
        print(render.agenda_text(items, zone, first, args.days))
    return EXIT_FAILURE if schedule.problems else EXIT_OK


def cmd_feed_export(args: argparse.Namespace) -> int:
    _plan, report = _cycle(args, dry_run=False, feed_path=args.output)
    if report.faults:
        return EXIT_FAILURE
    print(f"wrote {args.output} ({len(report.published)} events)")
    return _cycle_status(report)


def cmd_feed_url(args: argparse.Namespace) -> int:
    from daemon.secret_token import load_or_create_token

    settings = _settings(args)
    token = load_or_create_token(settings.feed_token_file)
    base = settings.feed_base_url or f"http://{settings.http_host}:{settings.http_port}"
    http_url = f"{base.rstrip('/')}/feed/{token}.ics"
    print(http_url)
    print("webcal" + http_url[http_url.index("://") :])
    return EXIT_OK


def cmd_feed_rotate(args: argparse.Namespace) -> int:
    from daemon.secret_token import rotate_token

    settings = _settings(args)
    rotate_token(settings.feed_token_file)
    print("made a new feed address; the old one no longer works. Subscribe again with:")
    return cmd_feed_url(args)


def _parse_on(text: str | None, zone: ZoneInfo, now: datetime) -> datetime:
    if not text:
        return now
    try:
        if "T" in text or " " in text:
            value = datetime.fromisoformat(text)
            return (value if value.tzinfo else value.replace(tzinfo=zone)).astimezone(UTC)
        # A date without a time: midday local, so it lands on that date in any zone.
        return datetime.combine(date.fromisoformat(text), time(12), zone).astimezone(UTC)
    except ValueError:
        raise BadInput(f"--on: cannot read {text!r}; use YYYY-MM-DD or YYYY-MM-DDTHH:MM") from None


def cmd_log_add(args: argparse.Namespace) -> int:
    settings = _settings(args)
    plan = load_plan(settings.plan)
    connection = plan.connection(args.name)
    if connection is None:
        names = ", ".join(c.name for c in plan.connections)
        raise BadInput(f"{args.name!r} is not a connection in {settings.plan} (known: {names})")
    now = _now_from(args)
    at = _parse_on(args.on, ZoneInfo(plan.timezone), now)
    if at > now + timedelta(minutes=5):
        raise BadInput(f"--on: {args.on} is in the future; log what has happened")
    entry = Interaction(
        connection=connection.name, at=at, kind=InteractionKind(args.kind), note=args.note, source="manual"
    )
    with open_store(settings, now=now) as store:
        entry_id = store.add_interaction(entry)
    print(f"logged #{entry_id}: {render.interaction_line(entry, ZoneInfo(plan.timezone))}")
    return EXIT_OK


def cmd_review_done(args: argparse.Namespace) -> int:
    from daemon.store import REVIEW_CONNECTION

    settings = _settings(args)
    plan = load_plan(settings.plan)
    now = _now_from(args)
    zone = ZoneInfo(plan.timezone)
    at = _parse_on(args.on, zone, now)
    if at > now + timedelta(minutes=5):
        raise BadInput(f"--on: {args.on} is in the future; record a review you have done")
    entry = Interaction(connection=REVIEW_CONNECTION, at=at, note=args.note, source="manual")
    with open_store(settings, now=now) as store:
        entry_id = store.add_interaction(entry)
    print(
        f"recorded self-review {review_label(entry_id)} on {at.astimezone(zone):%Y-%m-%d}; "
        "the next one is planned from it"
    )
    return EXIT_OK


def review_label(review_id: int | None) -> str:
    """Reviews are numbered apart from the log: `R3`, so they are never taken for log entry #3."""
    return f"R{review_id}" if review_id is not None else "R?"


def _review_id(text: str) -> int:
    digits = text[1:] if text[:1] in ("R", "r") else text
    if not digits.isdigit():
        raise BadInput(f"review ID: expected a review number such as R3, got {text!r}")
    return int(digits)


def cmd_review_list(args: argparse.Namespace) -> int:
    settings = _settings(args)
    zone = ZoneInfo(load_plan(settings.plan).timezone)
    with open_store(settings, read_only=True) as store:
        rows = store.reviews(include_undone=args.all)
    if args.json:
        _print_json(
            [
                {
                    "id": review_label(r.id),
                    "at": r.at.astimezone(zone).isoformat(),
                    "note": r.note,
                    "source": r.source,
                    "undone": r.undone,
                }
                for r in rows
            ]
        )
    elif not rows:
        print("no self-review recorded: `circleback review done` records one")
    else:
        for r in rows:
            mark = " (undone)" if r.undone else ""
            note = f"  {r.note}" if r.note else ""
            print(f"{review_label(r.id):<5} {r.at.astimezone(zone):%Y-%m-%d %H:%M}{note}{mark}")
    return EXIT_OK


def cmd_review_undo(args: argparse.Namespace) -> int:
    from daemon.store import ReviewNotFound

    settings = _settings(args)
    zone = ZoneInfo(load_plan(settings.plan).timezone)
    review_id = _review_id(args.review_id)
    with open_store(settings) as store:
        try:
            was_undone = any(r.id == review_id for r in store.reviews(include_undone=True) if r.undone)
            row = store.undo_review(review_id)
        except ReviewNotFound:
            raise BadInput(
                f"no self-review {review_label(review_id)} (see `circleback review list`)"
            ) from None
    verb = "was already undone" if was_undone else "undone"
    print(f"{verb} self-review {review_label(row.id)} of {row.at.astimezone(zone):%Y-%m-%d}")
    return EXIT_OK


def cmd_skip(args: argparse.Namespace) -> int:
    settings = _settings(args)
    plan = load_plan(settings.plan)
    now = _now_from(args)
    with open_store(settings, now=now) as store:
        rows = store.occurrences((OccurrenceStatus.PLANNED, OccurrenceStatus.PLACED))
        row = next((r for r in rows if args.occurrence in (r.key, r.revision.occurrence.uid)), None)
        if row is None:
            raise BadInput(
                f"no planned occurrence {args.occurrence!r} (see the keys in `circleback agenda --json`)"
            )
        store.save_cycle(
            revisions=(),
            removed=(),
            statuses={row.key: (OccurrenceStatus.SKIPPED, now, None)},
            interactions=(),
        )
    when = row.revision.occurrence.start.astimezone(ZoneInfo(plan.timezone))
    print(f"skipped {row.revision.occurrence.title} on {when:%a %d %b %H:%M}; the next sync removes it")
    return EXIT_OK


def cmd_log_list(args: argparse.Namespace) -> int:
    settings = _settings(args)
    plan = load_plan(settings.plan)
    zone = ZoneInfo(plan.timezone)
    with open_store(settings, read_only=True) as store:
        rows = store.interactions(include_undone=args.all)
    rows = sorted(rows, key=lambda r: (r.interaction.at, r.id))
    if args.json:
        _print_json([render.stored_interaction_json(r, zone) for r in rows])
    elif not rows:
        print("the log is empty: `circleback log add NAME` records a call or a coffee")
    else:
        for row in rows:
            mark = " (undone)" if row.undone else ""
            print(f"#{row.id:<4} {render.interaction_line(row.interaction, zone)}{mark}")
    return EXIT_OK


def cmd_log_undo(args: argparse.Namespace) -> int:
    settings = _settings(args)
    plan = load_plan(settings.plan)
    with open_store(settings) as store:
        try:
            was_undone = store.interaction(args.entry_id).undone
            row = store.undo_interaction(args.entry_id)
        except KeyError:
            raise BadInput(f"no log entry #{args.entry_id} (see `circleback log list`)") from None
    verb = "was already undone" if was_undone else "undone"
    print(f"{verb} #{row.id}: {render.interaction_line(row.interaction, ZoneInfo(plan.timezone))}")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    schedule = _schedule(args)
    plan = schedule.plan
    rows = render.status_rows(plan, schedule.interactions, schedule.upcoming, schedule.now)
    review = render.review_status(plan, schedule.reviews_done, schedule.upcoming)
    if args.json:
        _print_json(
            {
                "connections": rows,
                "review": review,
                "calendars": [render.source_json(s) for s in schedule.calendars],
                "refused": [{"calendar": c, "key": k, "reason": r} for c, k, r in schedule.refused],
                "preview": schedule.preview,
            }
        )
    else:
        if schedule.preview:
            print("preview: nothing is placed yet; `circleback sync` places it and writes the feed")
        print(render.status_text(rows, schedule.calendars, review))
        for calendar, key, reason in schedule.refused:
            print(f"calendar {calendar} refused {key}: {reason} (retried every cycle)")
    return EXIT_FAILURE if schedule.problems else EXIT_OK


def cmd_config(args: argparse.Namespace) -> int:
    settings = _settings(args)
    print(f"# config file: {settings.config_file or 'none (defaults)'}")
    items = render.settings_items(settings)
    width = max(len(f"{key} = {value}") for key, value in items)
    origins = {toml_key(name): where for name, where in settings.origin.items()}
    for key, value in items:
        print(f"{f'{key} = {value}':{width}}  # {origins.get(key, 'default')}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if _organisation_mode(settings, requested=args.org):
        # Only here: the personal mode never imports procrastinate.
        from daemon.org import run_org

        return run_org(settings)
    from daemon.service import run_service

    return run_service(settings)


def _organisation_mode(settings: Settings, *, requested: bool) -> bool:
    from daemon.people import People
    from daemon.store import Store

    postgres = Store.url_backend(settings.database_url) == "postgresql"
    if requested and not postgres:
        raise BadInput("--org: organisation mode needs a PostgreSQL database_url (postgresql+psycopg://...)")
    if requested or not postgres:
        return requested
    with Store(settings.database_url) as store:
        return bool(People(store.engine).emails())


# --------------------------------------------------------------------------------------------- the audit


def cmd_audit(args: argparse.Namespace) -> int:
    from daemon import report
    from schedules.audit import audit

    settings = _settings(args)
    plan = load_plan(settings.plan)
    today = _now_from(args).astimezone(ZoneInfo(plan.timezone)).date()
    with open_store(settings, read_only=True) as store:
        interactions = [row.interaction for row in store.interactions()]
        occurrences = [(row.occurrence, row.status) for row in store.occurrences()]
    result = audit(plan, interactions, occurrences, today)
    if args.html or args.png:
        rows = report.timeline_rows(plan, result, interactions, occurrences)
        figure = report.timeline_figure(plan, result, rows)
        if args.html:
            page = report.render_html(plan, result, rows, report.figure_svg(figure))
            report.write_atomically(args.html, page.encode("utf-8"))
        if args.png:
            report.write_atomically(args.png, report.figure_png(figure))
    if args.json:
        _print_json(report.audit_json(result))
    else:
        print(report.audit_text(result))
        for path in (args.html, args.png):
            if path:
                print(f"wrote {path}")
    return EXIT_OK


def cmd_log_edit(args: argparse.Namespace) -> int:
    if args.kind is None and args.note is None:
        raise BadInput("log edit: say what to change with --kind give|ask and/or --note TEXT")
    settings = _settings(args)
    plan = load_plan(settings.plan)
    kind = InteractionKind(args.kind) if args.kind else None
    with open_store(settings, now=_now_from(args)) as store:
        try:
            row = store.edit_interaction(args.entry_id, kind=kind, note=args.note)
        except KeyError:
            raise BadInput(f"no log entry #{args.entry_id} (see `circleback log list`)") from None
    mark = " (undone)" if row.undone else ""
    print(f"edited #{row.id}: {render.interaction_line(row.interaction, ZoneInfo(plan.timezone))}{mark}")
    return EXIT_OK


def cmd_done(args: argparse.Namespace) -> int:
    from daemon.store import REVIEW_CONNECTION
    from schedules.occurrence import OPEN_STATUSES

    settings = _settings(args)
    plan = load_plan(settings.plan)
    now = _now_from(args)
    zone = ZoneInfo(plan.timezone)
    with open_store(settings, now=now) as store:
        row = next((r for r in store.occurrences() if args.occurrence in (r.key, r.occurrence.uid)), None)
        if row is None:
            raise BadInput(f"no touchpoint {args.occurrence!r} (see the keys in `circleback agenda --json`)")
        occ = row.occurrence
        if row.status is OccurrenceStatus.COMPLETED:
            return _done_again(store, args, row.key, occ, zone)
        if occ.start > now + timedelta(hours=24) and row.status in OPEN_STATUSES:
            when = occ.start.astimezone(zone)
            raise BadInput(f"{occ.title} is on {when:%a %d %b}; record it as done once it has happened")
        # Done before its planned time (a call today instead of Thursday) counts from now.
        at = min(occ.start, now)
        entries: list[tuple[Interaction, str | None]] = []
        if occ.connection is not None:
            known = plan.connection(occ.connection)
            name = known.name if known is not None else occ.connection
            kind = InteractionKind(args.kind or "give")
            entry = Interaction(name, at, kind, args.note or "", "touchpoint", occ.uid)
            entries.append((entry, row.key))
        elif args.note:
            entries.append((Interaction(REVIEW_CONNECTION, at, note=args.note, source="manual"), None))
        store.save_cycle(
            revisions=(),
            removed=(),
            statuses={row.key: (OccurrenceStatus.COMPLETED, at, None)},
            interactions=entries,
        )
    print(f"done: {occ.title} on {at.astimezone(zone):%a %d %b %H:%M}; the next one is planned from it")
    return EXIT_OK


def _done_again(store: Store, args: argparse.Namespace, key: str, occ: Occurrence, zone: ZoneInfo) -> int:
    """A touchpoint already seen done: `done` then only corrects what its log entry says."""
    entry = next((r for r in store.interactions() if r.occurrence_key == key), None)
    if entry is None or (args.kind is None and args.note is None):
        print(f"{occ.title} is already done; nothing to change")
        return EXIT_OK
    kind = InteractionKind(args.kind) if args.kind else None
    edited = store.edit_interaction(entry.id, kind=kind, note=args.note)
    print(f"already done; edited #{edited.id}: {render.interaction_line(edited.interaction, zone)}")
    return EXIT_OK


def cmd_plan_diff(args: argparse.Namespace) -> int:
    from schedules.occurrence import OPEN_STATUSES

    settings = _settings(args)
    load_plan(settings.plan)  # a broken plan is reported before anything is read
    now = _now_from(args)
    with open_store(settings, read_only=True) as store:
        rows = store.occurrences()
    settled = {row.key for row in rows if row.status not in OPEN_STATUSES}
    before = {
        row.key: row.occurrence for row in rows if row.status in OPEN_STATUSES and row.occurrence.end > now
    }
    plan, report = _cycle(args, dry_run=True)
    after = {
        r.occurrence.key: r.occurrence
        for r in report.published
        if r.occurrence.end > now and r.occurrence.key not in settled
    }
    zone = ZoneInfo(plan.timezone)
    print(render_plan_diff(before, after, zone, settings.plan))
    return EXIT_FAILURE if report.faults else EXIT_OK


def render_plan_diff(
    before: dict[str, Occurrence], after: dict[str, Occurrence], zone: ZoneInfo, plan_path: Path
) -> str:
    def when(occ: Occurrence) -> str:
        return f"{occ.start.astimezone(zone):%a %d %b %Y %H:%M}-{occ.end.astimezone(zone):%H:%M}"

    def span(occ: Occurrence) -> tuple[datetime, datetime]:
        return occ.start, occ.end

    lines: list[str] = []
    for occ in sorted((o for k, o in after.items() if k not in before), key=lambda o: (o.start, o.key)):
        lines.append(f"+ added    {when(occ)}  {occ.title}")
    moved = [(before[k], o) for k, o in after.items() if k in before and span(before[k]) != span(o)]
    for old, new in sorted(moved, key=lambda pair: (pair[1].start, pair[1].key)):
        lines.append(f"~ moved    {when(old)} -> {when(new)}  {new.title}")
    for occ in sorted((o for k, o in before.items() if k not in after), key=lambda o: (o.start, o.key)):
        lines.append(f"- removed  {when(occ)}  {occ.title}")
    same = [k for k, o in after.items() if k in before and span(before[k]) == span(o)]
    reworded = sum(
        1 for k in same if (before[k].title, before[k].description) != (after[k].title, after[k].description)
    )
    if not lines:
        lines.append(f"{plan_path}: no touchpoint or review would be added, moved or removed")
    lines.append(f"{len(same)} unchanged in place ({reworded} with new text)")
    return "\n".join(lines)


HANDLERS: dict[tuple[str, str | None], Callable[[argparse.Namespace], int]] = {
    ("init", None): cmd_init,
    ("plan", "check"): cmd_plan_check,
    ("agenda", None): cmd_agenda,
    ("sync", None): cmd_sync,
    ("reconcile", None): cmd_reconcile,
    ("feed", "export"): cmd_feed_export,
    ("feed", "url"): cmd_feed_url,
    ("feed", "rotate"): cmd_feed_rotate,
    ("log", "add"): cmd_log_add,
    ("log", "list"): cmd_log_list,
    ("log", "undo"): cmd_log_undo,
    ("log", "edit"): cmd_log_edit,
    ("plan", "diff"): cmd_plan_diff,
    ("done", None): cmd_done,
    ("audit", None): cmd_audit,
    ("review", "done"): cmd_review_done,
    ("review", "list"): cmd_review_list,
    ("review", "undo"): cmd_review_undo,
    ("skip", None): cmd_skip,
    ("status", None): cmd_status,
    ("config", None): cmd_config,
    ("run", None): cmd_run,
}


def cmd_auth_google(args: argparse.Namespace) -> int:
    from daemon.google_auth import AuthFailed, authorize

    # The address must reach a person reading over SSH before the flow waits for Google's answer.
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    try:
        path = authorize(
            args.client_secrets, args.token_file, open_browser=not args.no_browser, port=args.port
        )
    except AuthFailed as exc:
        _fail(EXIT_FAILURE, f"error: {exc}")
    print(f"Google token stored in {path}")
    return EXIT_OK


HANDLERS[("auth", "google")] = cmd_auth_google


def _store_errors(name: str) -> tuple[type[BaseException], ...]:
    """The store's exception class, once the store is loaded: until then none can have been raised, and
    importing it only to name it would put the database layer on every command's start-up."""
    store = sys.modules.get("daemon.store")
    return (getattr(store, name),) if store is not None else ()


# --------------------------------------------------------------------------------------------- people


@contextmanager
def _people(args: argparse.Namespace) -> Iterator[People]:
    from daemon.people import People
    from daemon.store import Store

    settings = load_settings(overrides=flag_overrides(args))
    with Store(settings.database_url) as store:
        yield People(store.engine)


def _person_json(person: Person) -> dict[str, object]:
    return {
        "email": person.email,
        "name": person.name,
        "google_subject": person.google_subject,
        "created_at": person.created_at.isoformat(),
        "plan_versions": person.plan_versions,
        "plan_checksum": person.plan_checksum,
        "plan_updated_at": person.plan_updated_at.isoformat() if person.plan_updated_at else None,
    }


def cmd_people_add(args: argparse.Namespace) -> int:
    if not getattr(args, "plan", None):
        raise BadInput("people add: give the person's focus plan with --plan FILE")
    # Checked before the database is opened: a bad plan or address writes nothing.
    owner_key(args.email)
    plan_text, _plan = load_plan_source(Path(args.plan))
    locations = list(getattr(args, "sources", None) or ())
    _person_sources(locations)
    with _people(args) as people:
        person, token = people.add(
            args.email,
            name=args.name,
            plan_text=plan_text,
            google_subject=args.google_subject,
            now=_now_from(args),
            sources=locations,
        )
    print(f"added {person.email} ({person.name}), plan {person.plan_checksum}")
    for source in _person_sources(locations):
        print(f"own calendar {source.name}: {source.shown}")
    # Shown once: only its hash is kept (`people rotate-feed` makes a new one).
    print(f"feed: {_person_feed_url(args, token)}")
    return EXIT_OK


def _person_feed_url(args: argparse.Namespace, token: str) -> str:
    settings = load_settings(overrides=flag_overrides(args))
    base = settings.feed_base_url.rstrip("/") or f"http://{settings.http_host}:{settings.http_port}"
    return f"{base}/feed/{token}.ics"


def cmd_people_rotate_feed(args: argparse.Namespace) -> int:
    with _people(args) as people:
        token = people.rotate_feed_token(args.email)
    url = _person_feed_url(args, token)
    print(f"{owner_key(args.email)}: new feed URL (the old one no longer works): {url}")
    return EXIT_OK


def cmd_people_list(args: argparse.Namespace) -> int:
    with _people(args) as people:
        found = people.everyone()
    if args.json:
        _print_json([_person_json(p) for p in found])
        return EXIT_OK
    if not found:
        print("no people yet (add one with `circleback people add EMAIL --name NAME --plan FILE`)")
    for person in found:
        print(f"{person.email}  {person.name}  plan v{person.plan_versions}")
    return EXIT_OK


def cmd_people_show(args: argparse.Namespace) -> int:
    with _people(args) as people:
        person = people.get(args.email)
        versions = people.plan_versions(args.email)
        health = people.health(args.email)
        own = people.sources(args.email)
        calendars = _person_calendars(people, args.email)
    print(f"{person.email}: {person.name}")
    print(f"google subject: {person.google_subject or person.email}")
    print(f"added: {person.created_at.isoformat()}")
    for version in versions:
        print(f"plan v{version.number}: {version.created_at.isoformat()}  sha256 {version.checksum}")
    for source in own:
        print(f"own calendar {source.name}: {source.shown}")
    if health.last_cycle is None:
        print("last cycle: none yet")
    else:
        when = f" at {health.last_cycle_at.isoformat()}" if health.last_cycle_at else ""
        print(f"last cycle: {health.last_cycle}{when}")
    for line in _calendar_lines(calendars):
        print(line)
    return EXIT_OK


def _calendar_lines(calendars: Sequence[CalendarStatus]) -> Iterator[str]:
    """One line per calendar of a person: its reads, then what circleback holds there."""
    for c in calendars:
        if c.read == "failing":
            yield f"calendar {c.name}: failing to read: {c.error or 'failing'} ({c.failures} in a row)"
        elif c.read == "ok":
            when = f", last {c.last_ok_at.isoformat()}" if c.last_ok_at else ""
            yield f"calendar {c.name}: read ok{when}"
        if c.placed or c.refused:
            refused = f", {c.refused} event(s) refused" if c.refused else ""
            yield f"calendar {c.name}: {c.placed} event(s) placed{refused}"


def cmd_people_set_plan(args: argparse.Namespace) -> int:
    plan_text, _plan = load_plan_source(args.plan_path)
    with _people(args) as people:
        changed = people.set_plan(args.email, plan_text, now=_now_from(args))
        person = people.get(args.email)
    if changed:
        print(f"{person.email}: plan v{person.plan_versions} stored ({person.plan_checksum})")
    else:
        print(f"{person.email}: plan unchanged (v{person.plan_versions})")
    return EXIT_OK


def _person_calendars(people: People, email: str) -> list[CalendarStatus]:
    from daemon.org_status import person_calendars

    return person_calendars(people.engine, email)


def _person_sources(locations: Sequence[str]) -> list[PersonSource]:
    from daemon.people import person_sources

    return person_sources(locations)


def cmd_people_set_sources(args: argparse.Namespace) -> int:
    _person_sources(args.locations)  # checked before the database is opened
    with _people(args) as people:
        own = people.set_sources(args.email, args.locations)
    key = owner_key(args.email)
    if not own:
        print(f"{key}: no own calendars")
    for source in own:
        print(f"{key}: own calendar {source.name}: {source.shown}")
    return EXIT_OK


def cmd_people_remove(args: argparse.Namespace) -> int:
    if args.keep_remote_events and not args.purge:
        raise BadInput("--keep-remote-events goes with --purge (a removal without it keeps everything)")
    with _people(args) as people:
        if args.purge and not args.keep_remote_events and not _purge_remote_events(args):
            return EXIT_FAILURE
        people.remove(args.email, purge=args.purge)
    what = "removed with everything they owned" if args.purge else "removed (their history is kept)"
    print(f"{owner_key(args.email)}: {what}")
    return EXIT_OK


def _purge_remote_events(args: argparse.Namespace) -> bool:
    """Remove circleback's events from the person's calendars; False (said why) if one was not reached."""
    from daemon.purge import remove_remote_events

    outcome = remove_remote_events(load_settings(overrides=flag_overrides(args)), owner_key(args.email))
    for calendar, count in outcome.removed.items():
        print(f"calendar {calendar}: {count} event(s) of circleback removed")
    for unreached in outcome.unreached:
        print(
            f"calendar {unreached.calendar}: cannot remove circleback's events: {unreached.reason}",
            file=sys.stderr,
        )
    if outcome.complete:
        return True
    print(
        f"{owner_key(args.email)} was not removed and nothing of theirs was deleted; run it again once "
        "the calendar can be reached, or add --keep-remote-events to leave those events in place",
        file=sys.stderr,
    )
    return False


HANDLERS[("people", "add")] = cmd_people_add
HANDLERS[("people", "list")] = cmd_people_list
HANDLERS[("people", "show")] = cmd_people_show
HANDLERS[("people", "set-plan")] = cmd_people_set_plan
HANDLERS[("people", "remove")] = cmd_people_remove
HANDLERS[("people", "rotate-feed")] = cmd_people_rotate_feed
HANDLERS[("people", "set-sources")] = cmd_people_set_sources


def _fail(status: int, message: str) -> NoReturn:
    print(message, file=sys.stderr)
    raise SystemExit(status)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sub = next(
        (
            getattr(args, name)
            for name in (
                "plan_command",
                "feed_command",
                "log_command",
                "review_command",
                "auth_command",
                "people_command",
            )
            if getattr(args, name, None)
        ),
        None,
    )
    handler = HANDLERS[(args.command, sub)]
    if args.command != "run":
        # Commands print calendar faults and warnings themselves (`error: NAME: reason`); without a
        # handler, Python's last-resort one would print the cycle's log line for each a second time.
        logging.getLogger().addHandler(logging.NullHandler())
    try:
        status = handler(args)
        # Output to a pipe is buffered: a reader that went away shows up here, not at the print.
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        # `circleback feed url | head -1`: the reader has what it wanted; that is not a failure. Python
        # would flush stdout again at exit and complain, so what is left goes nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except (PlanInvalid, ConfigError) as exc:
        # One line per problem, each starting with where it is (FILE:LINE[:COL], a variable, a flag).
        _fail(EXIT_BAD_INPUT, str(exc))
    except (PlanFileError, BadInput) as exc:
        _fail(EXIT_BAD_INPUT, f"error: {exc}")
    except _store_errors("DatabaseURLError") as exc:
        _fail(EXIT_BAD_INPUT, f"error: {exc}")
    except (ConnectorError, TokenFileError) as exc:
        _fail(EXIT_FAILURE, f"error: {exc}")
    except _store_errors("StoreError") as exc:
        _fail(EXIT_FAILURE, f"error: {exc}")
    except KeyboardInterrupt:
        _fail(130, "interrupted")
    except OSError as exc:
        _fail(EXIT_FAILURE, f"error: {exc}")


if __name__ == "__main__":
    sys.exit(main())


def owner_key(email: str) -> str:
    """A person's owner key from their address (checked), loading the people module only when needed."""
    from daemon.people import owner_key as key_of

    return key_of(email)

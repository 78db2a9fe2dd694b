"""Back ends by the type the config names, each with the options it takes, so the daemon never imports a
back end directly and the config schema learns every back end's options from one place.

A `[calendars.NAME]` table with `type = "ics"` is read against `BACKENDS["ics"].options`; its checked
values, plus what the daemon knows (the plan, the cache directory, the owner's addresses), go to the back
end's factory. A new back end (`caldav`) is one more `Backend` in `BACKENDS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from connectors.base import Reader, Writer

if TYPE_CHECKING:
    from connectors.memory import MemoryCalendar
    from schedules.model import Plan

# How a value is written in the config: a text, a file path (relative ones resolve against the state
# directory), a time span ('20s', '1h'), true/false, or a calendar location (a file or an address,
# possibly secret, kept as written).
OptionKind = Literal["str", "path", "span", "bool", "location"]


@dataclass(frozen=True)
class ConnectorOption:
    """One option of a `[calendars.NAME]` table."""

    name: str
    kind: OptionKind
    help: str
    default: Any = None  # in the config's notation ("20s"); None with required=False means "unset"
    required: bool = False
    secret: bool = False  # never printed by `circleback config`
    bounds: tuple[int, int] | None = None  # (shortest, longest) in seconds, for spans
    # The global setting whose value is the default when the table does not set this option
    # (`[ics] timeout` for every ics calendar).
    inherit: str | None = None


@dataclass(frozen=True)
class Context:
    """What the daemon knows that no calendar table says: handed to every factory."""

    plan: Plan
    state_dir: Path
    owner_emails: tuple[str, ...] = ()
    # The install's secret that signs and checks key markers, read or made on first use.
    marker_secret: Callable[[], bytes] | None = None
    # Whose calendars these are (the store's owner): a calendar that stamps its events with an owner
    # must stamp the right one, or one person's connector would take another's events for its own.
    owner: str = "default"


# factory(name, options, context) -> the back end; options are checked values keyed by option name.
Factory = Callable[[str, Mapping[str, Any], Context], Any]


@dataclass(frozen=True)
class Backend:
    type: str
    help: str
    factory: Factory
    reads: bool
    writes: bool
    options: tuple[ConnectorOption, ...] = field(default_factory=tuple)
    # A back end with richer options than ConnectorOption describes checks its whole table itself:
    # check(table, where) -> the checked value, handed to the factory as options["settings"]; it raises
    # ValueError with a message that starts with `where` and names the key.
    check: Callable[[Mapping[str, Any], str], Any] | None = None

    def option(self, name: str) -> ConnectorOption | None:
        return next((o for o in self.options if o.name == name), None)


def _ics(name: str, options: Mapping[str, Any], context: Context) -> Reader:
    from connectors.ics_source import IcsSource

    timeout: timedelta = options["timeout"]
    return IcsSource(
        name=name,
        location=options["location"],
        cache_dir=context.state_dir / "sources",
        timeout=timeout.total_seconds(),
        default_tz=context.plan.timezone,
        marker_secret=context.marker_secret,
    )


def _ics_feed(name: str, options: Mapping[str, Any], context: Context) -> Writer:
    from connectors.ics_feed import FeedFile

    return FeedFile(
        options["path"],
        plan=context.plan,
        name=options.get("title") or name,
        refresh=options["refresh"],
        connector=name,
        marker_secret=context.marker_secret,
    )


def _google_backend(name: str, options: Mapping[str, Any], context: Context) -> Any:
    from connectors.google import make_google_calendar

    return make_google_calendar(
        options["settings"],
        name=name,
        plan_timezone=context.plan.timezone,
        owner_emails=context.owner_emails,
        owner=context.owner,
        contact_emails={c.name: c.email for c in context.plan.connections if c.email},
    )


def _google_check(table: Mapping[str, Any], where: str) -> Any:
    from connectors.google_options import google_options

    return google_options(table, where)


def _memory_backend(name: str, options: Mapping[str, Any], context: Context) -> MemoryCalendar:
    # One calendar per name, so every command and cycle of this process sees the same memory calendar.
    from connectors.memory import shared_calendar

    return shared_calendar(name)


ICS = Backend(
    "ics",
    "a calendar to read busy time and past meetings from: an .ics file or an http(s)/webcal address",
    _ics,
    reads=True,
    writes=False,
    options=(
        ConnectorOption(
            "location",
            "location",
            "the .ics file (relative: beside the config file), or the https:// or webcal:// address "
            "(secret addresses are never shown)",
            required=True,
        ),
        ConnectorOption(
            "timeout",
            "span",
            "how long to wait for the address",
            "20s",
            bounds=(1, 600),
            inherit="ics.timeout",
        ),
    ),
)
ICS_FEED = Backend(
    "ics_feed",
    "an ICS feed file circleback writes its touchpoints and reviews into (calendar apps subscribe to it)",
    _ics_feed,
    reads=False,
    writes=True,
    options=(
        ConnectorOption("path", "path", "the feed file (relative: inside state_dir)", required=True),
        ConnectorOption("title", "str", "the calendar's name in calendar apps (default: the table's NAME)"),
        ConnectorOption("refresh", "span", "how often subscribers should refresh", "1h", bounds=(60, 604800)),
    ),
)
MEMORY = Backend(
    "memory",
    "a calendar held in this process only, read and written (for tests and trials)",
    _memory_backend,
    reads=True,
    writes=True,
)

GOOGLE = Backend(
    "google",
    "a Google calendar circleback writes touchpoints into and reads free/busy and meetings from; the keys "
    "are those of the [google] table (calendar_id, busy_calendars, token_file, client_secrets, "
    "service_account_file, subject, horizon, api_endpoint, token_uri, invite)",
    _google_backend,
    reads=True,
    writes=True,
    check=_google_check,
)

BACKENDS: dict[str, Backend] = {b.type: b for b in (ICS, ICS_FEED, MEMORY, GOOGLE)}


def backend(kind: str) -> Backend:
    try:
        return BACKENDS[kind]
    except KeyError:
        raise ValueError(f"unknown calendar type {kind!r}; known: {', '.join(sorted(BACKENDS))}") from None

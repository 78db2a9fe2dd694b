"""Back ends by the name the config uses, so the daemon never imports a back end directly."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connectors.base import Reader, Writer

if TYPE_CHECKING:
    from connectors.google import GoogleCalendar
    from connectors.memory import MemoryCalendar

ReaderFactory = Callable[..., Reader]
WriterFactory = Callable[..., Writer]


def _ics_reader(**options: Any) -> Reader:
    from connectors.ics_source import IcsSource

    return IcsSource(**options)


def _feed_writer(**options: Any) -> Writer:
    from connectors.ics_feed import FeedFile

    return FeedFile(Path(options.pop("path")), **options)


def _memory(**options: Any) -> MemoryCalendar:
    # One calendar per name, so the same memory calendar configured as reader and writer is one calendar.
    from connectors.memory import shared_calendar

    return shared_calendar(**options)


def _google(**options: Any) -> GoogleCalendar:
    # Options come as `make_google_calendar`'s keywords: `options` (a GoogleOptions), name, plan_timezone,
    # owner_emails, and optionally credentials, owner, contact_emails.
    from connectors.google import make_google_calendar

    settings = options.pop("options")
    return make_google_calendar(settings, **options)


READERS: dict[str, ReaderFactory] = {"ics": _ics_reader, "memory": _memory, "google": _google}
WRITERS: dict[str, WriterFactory] = {"ics_feed": _feed_writer, "memory": _memory, "google": _google}


def make_reader(kind: str, **options: Any) -> Reader:
    try:
        factory = READERS[kind]
    except KeyError:
        raise ValueError(f"unknown calendar back end {kind!r}; known: {', '.join(sorted(READERS))}") from None
    return factory(**options)


def make_writer(kind: str, **options: Any) -> Writer:
    try:
        factory = WRITERS[kind]
    except KeyError:
        raise ValueError(f"unknown calendar back end {kind!r}; known: {', '.join(sorted(WRITERS))}") from None
    return factory(**options)

"""One person's view of the organisation's calendars: what their cycle reads and writes.

Kept apart from daemon.org so that `people remove --purge` (daemon.purge) reaches exactly the calendars a
cycle writes without importing procrastinate, which only the replicas need.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path

from connectors.address_guard import AddressGuard
from connectors.base import Reader
from connectors.fetch import Fetcher
from connectors.ics_source import IcsSource
from daemon.config import FEED_CALENDAR, CalendarConfig, Settings
from daemon.people import Person, PersonSource


def person_settings(settings: Settings, person: Person) -> Settings:
    """The organisation's calendars as this person's: Google through domain-wide delegation as the
    person, and no shared feed file (each person's feed is theirs alone)."""
    calendars: list[CalendarConfig] = []
    for calendar in settings.calendars:
        if calendar.name == FEED_CALENDAR:
            continue
        if calendar.type == "google":
            google = calendar.options["settings"]
            if google.service_account_file is not None:
                subject = person.google_subject or person.email
                options = {**calendar.options, "settings": dataclasses.replace(google, subject=subject)}
                calendar = dataclasses.replace(calendar, options=options)
        calendars.append(calendar)
    return dataclasses.replace(settings, calendars=tuple(calendars))


def person_cache_dir(settings: Settings, email: str) -> Path:
    """Where this replica keeps the last good copies of a person's own calendars: apart from everyone
    else's, so one person's copy is never another's fallback. The name is a hash: no address on disk."""
    return settings.state_dir / "people" / hashlib.sha256(email.encode("utf-8")).hexdigest()[:32] / "sources"


def source_guard(settings: Settings) -> AddressGuard:
    return AddressGuard(allow_private=settings.allow_private_sources)


def person_readers(
    settings: Settings,
    email: str,
    sources: list[PersonSource],
    *,
    taken: set[str],
    default_tz: str,
    marker_secret: Callable[[], bytes] | None = None,
    guard: AddressGuard | None = None,
) -> list[Reader]:
    """The person's own calendars as readers: addresses only, every connection through the guard. A name
    the organisation's calendars already use gets a suffix, so health and state stay apart."""
    fetcher = Fetcher(
        person_cache_dir(settings, email),
        settings.source_timeout.total_seconds(),
        guard=guard or source_guard(settings),
    )
    readers: list[Reader] = []
    for source in sources:
        name = source.name
        while name.casefold() in taken:
            name = f"{name} (own)"
        taken.add(name.casefold())
        reader = IcsSource(
            name,
            source.location,
            cache_dir=fetcher.cache_dir,
            default_tz=default_tz,
            fetcher=fetcher,
            marker_secret=marker_secret,
        )
        readers.append(reader)
    return readers

"""Back ends by the name the config uses, so the daemon never imports a back end directly."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from connectors.base import Reader, Writer

ReaderFactory = Callable[..., Reader]
WriterFactory = Callable[..., Writer]


def _ics_reader(**options: Any) -> Reader:
    from connectors.ics_source import IcsSource

    return IcsSource(**options)


def _feed_writer(**options: Any) -> Writer:
    from connectors.ics_feed import FeedFile

    return FeedFile(Path(options.pop("path")), **options)


READERS: dict[str, ReaderFactory] = {"ics": _ics_reader}
WRITERS: dict[str, WriterFactory] = {"ics_feed": _feed_writer}


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

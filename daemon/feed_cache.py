"""The rendered feed, held in memory so that serving it costs no rendering, no I/O and no lock.

The scheduler thread calls `update` after each cycle; the HTTP thread reads `snapshot()`, a reference
to an immutable value that is swapped in one assignment (atomic in CPython), so a reader sees either the
old feed or the new one, never a mix of new bytes and old validators.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import format_datetime

from schedules.events import require_utc

DEFAULT_MAX_AGE = 300


@dataclass(frozen=True, slots=True)
class FeedSnapshot:
    body: bytes
    etag: str  # strong validator, quoted: '"<hex>"'
    last_modified: datetime  # UTC, whole seconds (HTTP dates carry no fraction)
    last_modified_http: str  # IMF-fixdate, e.g. 'Sun, 06 Nov 1994 08:49:37 GMT'


def feed_etag(data: bytes) -> str:
    # 128 bits of SHA-256: collisions are out of reach and the header stays short.
    return '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


def http_date(value: datetime) -> str:
    return format_datetime(require_utc(value, "http_date value"), usegmt=True)


class FeedCache:
    """The current feed bytes with their ETag and Last-Modified; `max_age` feeds Cache-Control."""

    def __init__(self, *, refresh: timedelta | None = None) -> None:
        seconds = int(refresh.total_seconds()) if refresh is not None else 0
        self.max_age = seconds if seconds > 0 else DEFAULT_MAX_AGE
        self._lock = threading.Lock()
        self._snapshot: FeedSnapshot | None = None

    def snapshot(self) -> FeedSnapshot | None:
        """The current feed, or None before the first render. Lock-free."""
        return self._snapshot

    def update(self, data: bytes, now: datetime) -> bool:
        """Publish `data` as the feed; returns True if it differs from what was being served.

        Last-Modified is the time the bytes last changed, so it stays put while they stay the same and
        never moves backwards (a clock stepped back must not make clients' copies look newer)."""
        now = require_utc(now, "FeedCache.update now").replace(microsecond=0)
        etag = feed_etag(data)
        with self._lock:  # serialises writers; readers never take it
            current = self._snapshot
            if current is not None and current.etag == etag and current.body == data:
                return False
            stamp = now if current is None else max(now, current.last_modified)
            self._snapshot = FeedSnapshot(bytes(data), etag, stamp, http_date(stamp))
            return True

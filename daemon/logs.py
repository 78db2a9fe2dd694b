"""One line per event: readable on a terminal, JSON under journald or when asked for.

Messages never carry secrets or contact notes at INFO; the feed token and source URLs are redacted by
the code that logs them, and this formatter adds nothing from the environment.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import TextIO

_RESERVED = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _RESERVED and not k.startswith("_")})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def choose_format(requested: str, stream: TextIO, environ: dict[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    if requested != "auto":
        return requested
    if env.get("JOURNAL_STREAM"):
        return "json"
    return "text"


def setup_logging(
    requested_format: str = "auto",
    level: str = "info",
    stream: TextIO | None = None,
    *,
    access_log: bool = True,
) -> str:
    out = stream or sys.stderr
    chosen = choose_format(requested_format, out)
    handler = logging.StreamHandler(out)
    if chosen == "json":
        handler.setFormatter(JsonFormatter())
    else:
        # journald and docker add their own timestamps, but a terminal needs one.
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # APScheduler logs every job run at INFO; one line per cycle from us is enough.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    # httpx logs full URLs at INFO, and secret ICS addresses carry their secret in the path.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    # Alembic announces its context on every readiness check.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # Feed requests: one line each when asked for; server errors are logged either way.
    logging.getLogger("circleback.access").setLevel(logging.NOTSET if access_log else logging.WARNING)
    return chosen

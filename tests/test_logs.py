"""Log lines: JSON under journald or when asked, text on a terminal; one line per event."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from daemon.logs import choose_format, setup_logging


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_auto_picks_json_under_journald_and_text_elsewhere() -> None:
    stream = io.StringIO()
    assert choose_format("auto", stream, {"JOURNAL_STREAM": "8:1234"}) == "json"
    assert choose_format("auto", stream, {}) == "text"
    assert choose_format("text", stream, {"JOURNAL_STREAM": "8:1234"}) == "text"


def test_json_lines_are_one_object_per_event_with_extras() -> None:
    stream = io.StringIO()
    assert setup_logging("json", "info", stream) == "json"
    log = logging.getLogger("circleback.test")
    log.info("cycle done: %d upcoming", 3, extra={"calendar": "work"})
    log.debug("not shown at info")
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        log.exception("failed")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2, "one line per event, even with a multi-line traceback"
    first, second = (json.loads(line) for line in lines)
    assert first["msg"] == "cycle done: 3 upcoming" and first["level"] == "info"
    assert first["calendar"] == "work" and first["ts"].endswith("+00:00")
    assert second["level"] == "error" and "ValueError: boom" in second["exc"]


def test_noisy_libraries_are_quiet_at_info() -> None:
    stream = io.StringIO()
    setup_logging("text", "info", stream)
    # httpx logs request URLs (secret ICS addresses carry their secret in the path) at INFO.
    logging.getLogger("httpx").info("HTTP Request: GET https://calendar.example/private-SECRET/basic.ics")
    logging.getLogger("alembic.runtime.migration").info("Context impl SQLiteImpl.")
    logging.getLogger("circleback").info("kept")
    assert "SECRET" not in stream.getvalue()
    assert "Context impl" not in stream.getvalue()
    assert "kept" in stream.getvalue()

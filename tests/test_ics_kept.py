"""What a read keeps in the store: a later read from it equals a fresh parse, and anything doubtful parses.

Each `IcsSource` here stands for one process (a CLI command): it knows nothing but the state it is given,
which is what the store hands back.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

from builders import london_plan
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_ics_window import calendars, windows

from connectors import ics_kept
from connectors.ics_parse import expand, load_calendar
from connectors.ics_source import COVER_MARGIN, IcsSource
from daemon.backoff import GuardedReader
from daemon.cycle import run_cycle
from daemon.store import Store
from schedules.events import Attendee, Interval, Observation, PartStat, Snapshot

HORIZON = timedelta(weeks=6)
GRACE = timedelta(days=2)
WINDOW = Interval(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC))


def _calendar(*events: str) -> bytes:
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\n" + "".join(events) + "END:VCALENDAR\r\n").encode()


def _event(uid: str, *lines: str) -> str:
    body = "".join(f"{line}\r\n" for line in lines)
    return f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20260101T000000Z\r\n{body}END:VEVENT\r\n"


DATA = _calendar(
    _event(
        "weekly",
        "DTSTART;TZID=Europe/Berlin:20260105T090000",
        "DURATION:PT1H",
        "RRULE:FREQ=WEEKLY;COUNT=40",
        "SUMMARY:Weekly",
        "ORGANIZER:mailto:boss@example.com",
        "ATTENDEE;PARTSTAT=ACCEPTED:mailto:grace@example.com",
        "ATTENDEE;PARTSTAT=DECLINED:mailto:ada@example.com",
    ),
    _event(
        "weekly",
        "RECURRENCE-ID;TZID=Europe/Berlin:20260309T090000",
        "DTSTART;TZID=Europe/Berlin:20260310T140000",
        "DURATION:PT1H",
        "SUMMARY:Weekly (moved)",
    ),
    _event("holiday", "DTSTART;VALUE=DATE:20260406", "SUMMARY:Easter Monday"),
    _event("cancelled", "DTSTART:20260402T090000Z", "DTEND:20260402T100000Z", "STATUS:CANCELLED"),
    _event("free", "DTSTART:20260403T090000Z", "DTEND:20260403T100000Z", "TRANSP:TRANSPARENT"),
    _event("floating", "DTSTART:20260404T090000", "DTEND:20260404T100000"),
    _event("broken", "DTSTART:20260405T090000Z", "DTEND:20260404T100000Z"),
)


class Process:
    """One command's reader over a file, given the state the store holds for the calendar."""

    def __init__(self, path: Path, *, default_tz: str | None = None, secret: bytes | None = None) -> None:
        self.source = IcsSource(
            "cal",
            str(path),
            cache_dir=path.parent / f"cache-{id(self)}",
            default_tz=default_tz,
            marker_secret=(lambda: secret) if secret is not None else None,
        )

    def read(self, window: Interval, stored: Mapping[str, str]) -> Snapshot:
        return self.source.read(window, stored)


def _store(stored: Mapping[str, str], snapshot: Snapshot) -> dict[str, str]:
    """What the cycle does with a read's state: replace the stored one, or keep it (None)."""
    return dict(stored) if snapshot.state is None else dict(snapshot.state)


def test_an_unchanged_calendar_is_read_from_the_store_without_parsing(tmp_path: Path) -> None:
    path = tmp_path / "cal.ics"
    path.write_bytes(DATA)
    first = Process(path, default_tz="Europe/London")
    read = first.read(WINDOW, {})
    assert first.source.parses == 1 and read.state is not None
    stored = _store({}, read)
    # The next command, minutes later: a window moved a little, inside what was read.
    later = Interval(WINDOW.start + timedelta(hours=3), WINDOW.end + timedelta(hours=3))
    second = Process(path, default_tz="Europe/London")
    again = second.read(later, stored)
    assert second.source.parses == 0
    assert again.state is None  # nothing new to store
    fresh = Process(path, default_tz="Europe/London").read(later, {})
    assert again.observations == fresh.observations
    assert {o.uid for o in again.observations} >= {"weekly", "holiday", "cancelled", "free", "floating"}
    # What the first read said about the broken event is not said again by every command after it.
    assert any("'broken'" in w for w in read.warnings)
    assert again.warnings == ()


def test_every_doubt_falls_back_to_a_real_parse(tmp_path: Path) -> None:
    path = tmp_path / "cal.ics"
    path.write_bytes(DATA)
    stored = _store({}, Process(path).read(WINDOW, {}))

    def parses(state: Mapping[str, str], window: Interval = WINDOW, **options: object) -> int:
        process = Process(path, **options)  # type: ignore[arg-type]
        read = process.read(window, state)
        assert read.observations == Process(path, **options).read(window, {}).observations  # type: ignore[arg-type]
        return process.source.parses

    assert parses(stored) == 0
    # A window outside what was read.
    assert parses(stored, Interval(WINDOW.end, WINDOW.end + timedelta(days=30))) == 1
    assert parses(stored, Interval(WINDOW.start - COVER_MARGIN - timedelta(hours=1), WINDOW.end)) == 1
    # Another format (a newer or older circleback wrote it).
    version, blob = stored[ics_kept.READ].split(":", 1)
    assert parses({**stored, ics_kept.READ: f"{int(version) + 1}:{blob}"}) == 1
    # Corrupt in every way the bytes can be.
    raw = zlib.decompress(base64.b64decode(blob))
    body = json.loads(raw)
    for broken in (
        blob[: len(blob) // 2],
        "not base64 at all!",
        base64.b64encode(b"not zlib").decode(),
        base64.b64encode(zlib.compress(b"[1, 2")).decode(),
        base64.b64encode(zlib.compress(json.dumps({**body, "observations": [[1, 2]]}).encode())).decode(),
        base64.b64encode(zlib.compress(json.dumps({**body, "cover": ["a", "b"]}).encode())).decode(),
        base64.b64encode(zlib.compress(json.dumps({**body, "key": "another"}).encode())).decode(),
    ):
        assert parses({**stored, ics_kept.READ: f"{version}:{broken}"}) == 1, broken
    assert parses({**stored, ics_kept.KEY: "0" * 64}) == 1
    # What else the read depended on: the zone floating times are read in, which signed markers count.
    assert parses(stored, default_tz="Asia/Tokyo") == 1
    assert parses(stored, secret=b"s" * 32) == 1
    # The calendar changed.
    path.write_bytes(DATA.replace(b"SUMMARY:Easter Monday", b"SUMMARY:Ostermontag"))
    process = Process(path)
    assert "Ostermontag" in {o.summary for o in process.read(WINDOW, stored).observations}
    assert process.source.parses == 1


def test_new_stamps_are_not_a_change_and_the_new_hash_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "cal.ics"
    path.write_bytes(DATA)
    stored = _store({}, Process(path).read(WINDOW, {}))
    path.write_bytes(DATA.replace(b"DTSTAMP:20260101T000000Z", b"DTSTAMP:20260301T101010Z"))
    process = Process(path)
    read = process.read(WINDOW, stored)
    assert process.source.parses == 0 and read.state is not None
    assert read.state[ics_kept.SHA256] != stored[ics_kept.SHA256]
    assert {k: v for k, v in read.state.items() if k != ics_kept.SHA256} == {
        k: v for k, v in stored.items() if k != ics_kept.SHA256
    }


def test_a_new_window_on_the_same_calendar_says_nothing_twice(tmp_path: Path) -> None:
    path = tmp_path / "cal.ics"
    path.write_bytes(DATA)
    stored = _store({}, Process(path).read(WINDOW, {}))
    later = Interval(WINDOW.end, WINDOW.end + timedelta(days=60))
    process = Process(path)
    read = process.read(later, stored)
    assert process.source.parses == 1 and read.warnings == ()
    path.write_bytes(DATA.replace(b"UID:free", b"UID:free-2"))
    changed = Process(path).read(later, _store(stored, read))
    assert any("'broken'" in w for w in changed.warnings)  # a changed calendar is read and said afresh


def test_the_stored_form_names_no_location(tmp_path: Path) -> None:
    secret_dir = tmp_path / "private-0123456789abcdef0123456789abcdef"
    secret_dir.mkdir()
    path = secret_dir / "cal.ics"
    path.write_bytes(DATA)
    state = Process(path, secret=b"k" * 32).read(WINDOW, {}).state
    assert state is not None
    decoded = zlib.decompress(base64.b64decode(state[ics_kept.READ].split(":", 1)[1])).decode()
    for text in (*state.values(), decoded):
        assert "0123456789abcdef" not in text and str(tmp_path) not in text
        assert "kkkk" not in text and (b"k" * 32).hex() not in text


def test_every_observation_field_survives_the_store() -> None:
    moment = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)
    observations = (
        Observation(
            source="cal",
            uid="ü@x",
            start=moment,
            end=moment + timedelta(hours=1),
            summary='Café ☕ \\n "quoted"',
            attendees=(Attendee("a@x", PartStat.DECLINED), Attendee("b@x", PartStat.DELEGATED)),
            organizer="o@x",
            cancelled=True,
            transparent=True,
            all_day=True,
            recurrence_id=moment - timedelta(days=1),
            circleback_key="touchpoint:Grace:2026-W10",
        ),
        Observation(source="cal", uid="plain", start=moment, end=moment),
    )
    kept = ics_kept.KeptRead("k", "r", WINDOW, observations, ("cal: one", "cal: two"))
    back = ics_kept.decode(ics_kept.encode(kept, "sha"), "cal")
    assert back == kept
    assert back is not None and all(o.start.tzinfo is UTC for o in back.observations)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(calendars(), windows(), st.data(), st.sampled_from((None, "Europe/London", "Asia/Kolkata")))
def test_a_read_from_the_store_equals_a_fresh_parse(
    data: bytes, window: Interval, draw: st.DataObject, default_tz: str | None
) -> None:
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "cal.ics"
        path.write_bytes(data)
        first = Process(path, default_tz=default_tz).read(window, {})
        assert first.state is not None
        kept = ics_kept.decode(first.state, "cal")
        assert kept is not None
        # The kept form is exactly the expansion of the parse over the cover.
        cover = Interval(window.start - COVER_MARGIN, window.end + COVER_MARGIN)
        parsed = load_calendar(data, "cal", default_tz=default_tz, cover=cover)
        assert kept.observations == expand(parsed, cover).observations
        assert kept.warnings == expand(parsed, cover).warnings
        # Any window inside the cover, read from the store, is what expanding the parse for it gives.
        shift = timedelta(hours=draw.draw(st.integers(-7 * 24, 7 * 24)))
        start = max(cover.start, min(window.start + shift, cover.end))
        end = min(cover.end, max(start, window.end + shift))
        inner = Interval(start, end)
        process = Process(path, default_tz=default_tz)
        read = process.read(inner, first.state)
        assert process.source.parses == 0
        assert read.observations == expand(parsed, inner).observations
        assert (
            read.observations == expand(load_calendar(data, "cal", default_tz=default_tz), inner).observations
        )


def test_a_cycle_keeps_the_read_in_the_store_for_the_next_process(tmp_path: Path) -> None:
    path = tmp_path / "cal.ics"
    path.write_bytes(DATA)
    now = datetime(2026, 3, 20, 8, tzinfo=UTC)
    url = f"sqlite:///{tmp_path}/store.db"
    with Store(url) as store:
        first = Process(path, default_tz="Europe/London")
        report = run_cycle(
            london_plan(), store, readers=[first.source], writers=[], now=now, horizon=HORIZON, grace=GRACE
        )
        assert first.source.parses == 1 and not report.faults
    # The next command, another process an hour later: the store hands the read back.
    with Store(url) as store:
        second = Process(path, default_tz="Europe/London")
        again = run_cycle(
            london_plan(),
            store,
            readers=[second.source],
            writers=[],
            now=now + timedelta(hours=1),
            horizon=HORIZON,
            grace=GRACE,
        )
        assert second.source.parses == 0 and not again.faults
        assert again.calendar_states == {}  # nothing new to store
    # A read-only store (a dry run: agenda, status before the first sync) reads it the same way.
    with Store(url, migrate=False) as store:
        third = Process(path, default_tz="Europe/London")
        run_cycle(
            london_plan(),
            store,
            readers=[third.source],
            writers=[],
            now=now + timedelta(hours=2),
            horizon=HORIZON,
            grace=GRACE,
            dry_run=True,
        )
        assert third.source.parses == 0


def test_the_service_stores_a_new_read_once_and_holds_no_parse(tmp_path: Path) -> None:
    path = tmp_path / "cal.ics"
    path.write_bytes(DATA)
    clock = [datetime(2026, 3, 20, 8, tzinfo=UTC)]
    process = Process(path)
    guarded = GuardedReader(process.source, clock=lambda: clock[0], fresh_for=timedelta(minutes=10))
    # The calendar's own job refreshes it twice before a cycle reads it: the new state is not lost.
    assert guarded.refresh(WINDOW)
    clock[0] += timedelta(minutes=5)
    guarded.refresh(WINDOW)
    read = guarded.read(WINDOW, {})
    assert read.state is not None and process.source.parses == 1
    assert guarded.read(WINDOW, read.state).state is None  # handed out once, like a warning
    # After a restart, the first cycle reads with the stored state and parses nothing.
    restarted = Process(path)
    fresh = GuardedReader(restarted.source, clock=lambda: clock[0], fresh_for=timedelta(minutes=10))
    assert fresh.read(WINDOW, read.state).observations == read.observations
    assert restarted.source.parses == 0


_PROBE = """
import json, sys
from daemon.cli import main
try:
    status = main(sys.argv[1:])
except SystemExit as exc:
    status = exc.code
sys.stdout.flush()
print("\\n" + json.dumps({"status": status, "parser": "connectors.ics_parse" in sys.modules}))
"""


def _command(home: Path, *args: str) -> tuple[int, bool]:
    """A real `circleback` command in a fresh process: its exit status, and whether it loaded the parser."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIRCLEBACK_")}
    env.update({f"XDG_{d.upper()}_HOME": str(home / d) for d in ("config", "data", "state")})
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, *args], env=env, cwd=home, capture_output=True, text=True, timeout=120
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result["status"], result["parser"]


def test_commands_on_an_unchanged_calendar_do_not_load_the_parser(tmp_path: Path) -> None:
    path = tmp_path / "cal.ics"
    path.write_bytes(DATA)
    shutil.copy(Path(__file__).parent / "fixtures" / "plans" / "ada.yaml", tmp_path / "plan.yaml")
    given = (
        "--plan",
        str(tmp_path / "plan.yaml"),
        "--source",
        str(path),
        "--now",
        "2026-03-20T08:00:00+00:00",
    )
    assert _command(tmp_path, "sync", *given) == (0, True)
    assert _command(tmp_path, "sync", *given) == (0, False)  # read from the store
    assert _command(tmp_path, "sync", "--dry-run", *given) == (0, False)
    assert _command(tmp_path, "agenda", *given) == (0, False)
    assert _command(tmp_path, "status", *given) == (0, False)
    path.write_bytes(DATA.replace(b"SUMMARY:Weekly\r\n", b"SUMMARY:Weekly sync\r\n"))
    assert _command(tmp_path, "sync", *given) == (0, True)  # changed: parsed again

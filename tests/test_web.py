"""The HTTP side: the feed at its secret URL with correct conditional requests, health and readiness,
no token in the logs; in-process with Starlette's TestClient and once over a real socket with uvicorn."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from types import FrameType

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.exceptions import StarletteDeprecationWarning

from daemon.feed_cache import FeedCache, feed_etag
from daemon.secret_token import load_or_create_token, rotate_token
from daemon.web import (
    HealthState,
    TokenFile,
    build_app,
    etag_list_matches,
    serve,
    start_in_thread,
)

with warnings.catch_warnings():
    # Starlette 1.10 would rather drive its TestClient with the httpx2 package; httpx, a dependency of
    # the project anyway, still works.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

FEED = (
    b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//circleback//test//EN\r\n"
    b"BEGIN:VEVENT\r\nUID:cb-1@circleback.invalid\r\nDTSTAMP:20250301T090000Z\r\n"
    b"DTSTART:20250303T090000Z\r\nDTEND:20250303T093000Z\r\nSUMMARY:Coffee with Ada\r\n"
    b"END:VEVENT\r\nEND:VCALENDAR\r\n"
)
RENDERED_AT = datetime(2025, 3, 1, 9, 0, 12, 345678, tzinfo=UTC)
RENDERED_AT_HTTP = "Sat, 01 Mar 2025 09:00:12 GMT"


class Ready:
    """A readiness check the test can flip, standing in for the service's database check."""

    def __init__(self) -> None:
        self.ok = True
        self.fail_with: Exception | None = None

    def __call__(self) -> tuple[bool, dict[str, object]]:
        if self.fail_with is not None:
            raise self.fail_with
        return self.ok, {"database": "ok" if self.ok else "unreachable", "migrations": "head"}


class Env:
    def __init__(self, tmp_path: Path) -> None:
        self.token_path = tmp_path / "state" / "feed-token"
        self.token = load_or_create_token(self.token_path)
        self.cache = FeedCache(refresh=timedelta(hours=1))
        self.ready = Ready()
        self.health = HealthState(max_age=timedelta(minutes=5), readiness=self.ready)
        self.app = build_app(cache=self.cache, token=TokenFile(self.token_path), health=self.health)
        self.client = TestClient(self.app)

    def url(self, token: str | None = None) -> str:
        return f"/feed/{token or self.token}.ics"

    def render(self, data: bytes = FEED, now: datetime = RENDERED_AT) -> None:
        self.cache.update(data, now)


@pytest.fixture(autouse=True)
def no_credentials_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)


@pytest.fixture
def env(tmp_path: Path) -> Env:
    e = Env(tmp_path)
    e.render()
    return e


@pytest.fixture
def blank(tmp_path: Path) -> Env:
    return Env(tmp_path)


# ---------------------------------------------------------------------------------------------- feed


def test_feed_full_response(env: Env) -> None:
    r = env.client.get(env.url())
    assert r.status_code == 200
    assert r.content == FEED
    assert r.headers["content-type"] == "text/calendar; charset=utf-8"
    assert r.headers["etag"] == feed_etag(FEED)
    assert r.headers["etag"].startswith('"') and r.headers["etag"].endswith('"')
    assert r.headers["last-modified"] == RENDERED_AT_HTTP
    assert r.headers["cache-control"] == "private, max-age=3600"
    assert r.headers["content-disposition"] == 'inline; filename="circleback.ics"'
    assert r.headers["content-length"] == str(len(FEED))
    assert "vary" not in r.headers


def test_no_content_negotiation(env: Env) -> None:
    for accept in ("application/json", "text/html", "text/plain;q=1, */*;q=0"):
        r = env.client.get(env.url(), headers={"Accept": accept})
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/calendar; charset=utf-8"
        assert r.content == FEED


def test_head_has_headers_and_no_body(env: Env) -> None:
    r = env.client.head(env.url())
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["content-length"] == str(len(FEED))
    assert r.headers["etag"] == feed_etag(FEED)
    assert r.headers["content-type"] == "text/calendar; charset=utf-8"


def test_if_none_match_gives_304(env: Env) -> None:
    etag = env.client.get(env.url()).headers["etag"]
    r = env.client.get(env.url(), headers={"If-None-Match": etag})
    assert r.status_code == 304
    assert r.content == b""
    assert r.headers["etag"] == etag
    assert r.headers["cache-control"] == "private, max-age=3600"
    assert "content-type" not in r.headers
    head = env.client.head(env.url(), headers={"If-None-Match": etag})
    assert head.status_code == 304


@pytest.mark.parametrize(
    "header",
    [
        "W/{etag}",
        '"0000", {etag}',
        '"0000" , W/{etag} ,"1111"',
        "*",
    ],
)
def test_if_none_match_lists_and_weak_comparison(env: Env, header: str) -> None:
    r = env.client.get(env.url(), headers={"If-None-Match": header.format(etag=feed_etag(FEED))})
    assert r.status_code == 304


@pytest.mark.parametrize("header", ['"0000"', 'W/"0000", "1111"', ""])
def test_if_none_match_mismatch_gives_full_body(env: Env, header: str) -> None:
    r = env.client.get(env.url(), headers={"If-None-Match": header})
    assert r.status_code == 200
    assert r.content == FEED


def test_changed_feed_invalidates_the_old_etag(env: Env) -> None:
    old = env.client.get(env.url()).headers["etag"]
    env.render(FEED.replace(b"Ada", b"Grace"), RENDERED_AT + timedelta(minutes=15))
    r = env.client.get(env.url(), headers={"If-None-Match": old})
    assert r.status_code == 200
    assert b"Grace" in r.content
    assert r.headers["etag"] != old
    assert r.headers["last-modified"] == "Sat, 01 Mar 2025 09:15:12 GMT"


def test_if_modified_since(env: Env) -> None:
    lm = env.client.get(env.url()).headers["last-modified"]
    assert env.client.get(env.url(), headers={"If-Modified-Since": lm}).status_code == 304
    later = format_datetime(RENDERED_AT + timedelta(days=1), usegmt=True)
    assert env.client.get(env.url(), headers={"If-Modified-Since": later}).status_code == 304
    earlier = format_datetime(RENDERED_AT - timedelta(seconds=1), usegmt=True)
    r = env.client.get(env.url(), headers={"If-Modified-Since": earlier})
    assert r.status_code == 200
    assert r.content == FEED
    # Obsolete formats a recipient must still accept (RFC 9110 5.6.7).
    for legacy in ("Saturday, 01-Mar-25 09:00:12 GMT", "Sat Mar  1 09:00:12 2025"):
        assert env.client.get(env.url(), headers={"If-Modified-Since": legacy}).status_code == 304


@pytest.mark.parametrize(
    "header", ["yesterday", "", "Sat, 01 Mar 2025 09:00:12 GMT, Sun, 02 Mar 2025 09:00:12 GMT"]
)
def test_invalid_if_modified_since_is_ignored(env: Env, header: str) -> None:
    assert env.client.get(env.url(), headers={"If-Modified-Since": header}).status_code == 200


def test_if_none_match_overrides_if_modified_since(env: Env) -> None:
    lm = env.client.get(env.url()).headers["last-modified"]
    r = env.client.get(env.url(), headers={"If-None-Match": '"0000"', "If-Modified-Since": lm})
    assert r.status_code == 200
    assert r.content == FEED


def test_wrong_token_is_404_and_reveals_nothing(env: Env) -> None:
    unknown = env.client.get("/no/such/path")
    wrong = [
        "x" * len(env.token),
        env.token[:-1],
        env.token + "x",
        env.token.upper() if env.token.upper() != env.token else env.token.lower(),
        "",
        "%00",
        "ä" * 43,
    ]
    for token in wrong:
        r = env.client.get(f"/feed/{token}.ics")
        assert r.status_code == 404, token
        assert r.content == unknown.content == b"Not Found"
        assert r.headers["content-type"] == unknown.headers["content-type"]
        assert "etag" not in r.headers and "last-modified" not in r.headers
    assert env.client.head(env.url("x" * 43)).status_code == 404
    assert env.client.get(f"/feed/{env.token}").status_code == 404  # the .ics suffix is part of the URL


def test_repeated_if_none_match_fields_form_one_list(env: Env) -> None:
    headers = [("If-None-Match", '"0000"'), ("If-None-Match", feed_etag(FEED))]
    assert env.client.get(env.url(), headers=headers).status_code == 304


def test_malformed_feed_paths_and_methods(env: Env) -> None:
    for path in ("/feed/", "/feed/.ics", f"/feed/{env.token}.ics/x", f"/feed/a/{env.token}.ics", "/feed"):
        r = env.client.get(path)
        assert r.status_code == 404, path
        assert r.content == b"Not Found"
    r = env.client.post(env.url(), content=b"x")
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, HEAD"


def test_wrong_token_before_first_render_is_still_404(blank: Env) -> None:
    assert blank.client.get(blank.url("y" * 43)).status_code == 404


def test_503_before_first_render(blank: Env) -> None:
    r = blank.client.get(blank.url())
    assert r.status_code == 503
    assert r.headers["retry-after"] == "30"
    assert r.headers["cache-control"] == "no-store"
    assert "etag" not in r.headers
    blank.render()
    assert blank.client.get(blank.url()).status_code == 200


def test_rotated_token_takes_effect_without_restart(env: Env) -> None:
    assert env.client.get(env.url()).status_code == 200
    new = rotate_token(env.token_path)
    assert env.client.get(env.url()).status_code == 404
    r = env.client.get(env.url(new))
    assert r.status_code == 200
    assert r.content == FEED


def test_unusable_token_file_keeps_the_last_good_token(env: Env) -> None:
    env.token_path.chmod(0o644)
    env.token_path.touch()
    assert env.client.get(env.url()).status_code == 200
    env.token_path.unlink()
    assert env.client.get(env.url()).status_code == 200
    new = load_or_create_token(env.token_path)
    assert env.client.get(env.url(new)).status_code == 200
    assert env.client.get(env.url()).status_code == 404


def test_default_max_age_without_refresh(tmp_path: Path) -> None:
    e = Env(tmp_path)
    e.cache = FeedCache()
    e.cache.update(FEED, RENDERED_AT)
    client = TestClient(build_app(cache=e.cache, token=TokenFile(e.token_path), health=e.health))
    assert client.get(e.url()).headers["cache-control"] == "private, max-age=300"


@settings(max_examples=100, deadline=None)
@given(
    others=st.lists(st.text(alphabet="0123456789abcdef", min_size=1, max_size=40), max_size=5),
    position=st.integers(min_value=0, max_value=5),
    weak=st.booleans(),
    spaces=st.sampled_from(["", " ", "  ", "\t"]),
)
def test_etag_list_matching(others: list[str], position: int, weak: bool, spaces: str) -> None:
    ours = feed_etag(FEED)
    members = [f'"{o}"' for o in others if f'"{o}"' != ours]
    assert not etag_list_matches(("," + spaces).join(members), ours)
    members.insert(min(position, len(members)), ("W/" if weak else "") + ours)
    assert etag_list_matches(("," + spaces).join(members), ours)


# --------------------------------------------------------------------------------------- feed cache


def test_cache_update_reports_changes_and_keeps_last_modified_stable() -> None:
    cache = FeedCache()
    assert cache.snapshot() is None
    assert cache.update(FEED, RENDERED_AT)
    first = cache.snapshot()
    assert first is not None
    assert first.last_modified == RENDERED_AT.replace(microsecond=0)
    assert first.last_modified_http == RENDERED_AT_HTTP
    assert not cache.update(bytes(FEED), RENDERED_AT + timedelta(hours=3))
    assert cache.snapshot() is first
    assert cache.update(FEED + b"\r\n", RENDERED_AT + timedelta(hours=4))
    second = cache.snapshot()
    assert second is not None and second.etag != first.etag
    assert second.last_modified == (RENDERED_AT + timedelta(hours=4)).replace(microsecond=0)


def test_cache_last_modified_never_goes_backwards() -> None:
    cache = FeedCache()
    cache.update(FEED, RENDERED_AT)
    cache.update(b"other", RENDERED_AT - timedelta(hours=1))  # the clock was stepped back
    snap = cache.snapshot()
    assert snap is not None and snap.last_modified == RENDERED_AT.replace(microsecond=0)


def test_cache_rejects_naive_times_and_normalises_zones() -> None:
    cache = FeedCache()
    with pytest.raises(ValueError, match="timezone-aware"):
        cache.update(FEED, datetime(2025, 3, 1, 9, 0))
    from zoneinfo import ZoneInfo

    cache.update(FEED, datetime(2025, 3, 1, 10, 0, 12, tzinfo=ZoneInfo("Europe/Berlin")))
    snap = cache.snapshot()
    assert snap is not None and snap.last_modified_http == RENDERED_AT_HTTP


def test_cache_readers_see_consistent_snapshots_while_a_writer_updates() -> None:
    cache = FeedCache()
    bodies = [f"feed {i}".encode() * 50 for i in range(200)]
    cache.update(bodies[0], RENDERED_AT)
    stop = threading.Event()
    problems: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            snap = cache.snapshot()
            if snap is None or feed_etag(snap.body) != snap.etag:
                problems.append("torn snapshot")

    readers = [threading.Thread(target=reader) for _ in range(3)]
    for t in readers:
        t.start()
    for i, body in enumerate(bodies[1:], start=1):
        assert cache.update(body, RENDERED_AT + timedelta(seconds=i))
    stop.set()
    for t in readers:
        t.join()
    assert problems == []


# ------------------------------------------------------------------------------------------- health


def test_healthz_fresh_stale_and_starting(blank: Env) -> None:
    r = blank.client.get("/healthz")
    assert r.status_code == 503
    assert r.json()["status"] == "starting"
    beat = datetime.now(UTC) - timedelta(seconds=10)
    blank.health.beat(beat)
    r = blank.client.get("/healthz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["last_heartbeat"] == beat.isoformat()
    assert 10 <= body["age_seconds"] < 70
    assert r.headers["content-type"] == "application/json"
    assert r.headers["cache-control"] == "no-store"
    blank.health.beat(datetime.now(UTC) - timedelta(minutes=6))
    r = blank.client.get("/healthz")
    assert r.status_code == 503
    assert r.json()["status"] == "stale"
    assert r.json()["age_seconds"] >= 360


def test_healthz_uses_the_given_clock() -> None:
    now = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    health = HealthState(max_age=timedelta(minutes=2), readiness=Ready(), clock=lambda: now)
    health.beat(now - timedelta(minutes=2))
    assert health.liveness() == (
        True,
        {"status": "ok", "last_heartbeat": "2025-03-01T11:58:00+00:00", "age_seconds": 120.0},
    )
    health.beat(now - timedelta(minutes=2, seconds=1))
    assert health.liveness()[0] is False
    with pytest.raises(ValueError, match="timezone-aware"):
        health.beat(datetime(2025, 3, 1, 12, 0))


def test_readyz_ok_and_failing(env: Env) -> None:
    r = env.client.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "details": {"database": "ok", "migrations": "head"}}
    env.ready.ok = False
    r = env.client.get("/readyz")
    assert r.status_code == 503
    assert r.json() == {"status": "unavailable", "details": {"database": "unreachable", "migrations": "head"}}


def test_readyz_check_that_raises_is_503_without_the_message(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    env.ready.fail_with = ConnectionError("postgresql://circleback:hunter2@db/circleback refused")
    r = env.client.get("/readyz")
    assert r.status_code == 503
    assert r.json() == {"status": "unavailable", "details": {"error": "ConnectionError"}}
    assert "hunter2" not in r.text


# --------------------------------------------------------------------------------------------- logs


def server_log(caplog: pytest.LogCaptureFixture) -> str:
    """Everything logged except by the test's own HTTP client (httpx logs full request URLs at INFO)."""
    return "\n".join(
        f"{r.name} {r.getMessage()} {r.exc_text or ''}"
        for r in caplog.records
        if not r.name.startswith(("httpx", "httpcore"))
    )


def test_no_token_in_logs(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    env.client.get(env.url())
    env.client.get(env.url(), headers={"If-None-Match": feed_etag(FEED)})
    env.client.get(env.url("w" * 43) + "?token=" + env.token)
    new = rotate_token(env.token_path)
    env.client.get(env.url(new))
    env.token_path.chmod(0o644)
    env.token_path.touch()
    env.client.get(env.url(new))
    text = server_log(caplog)
    assert env.token not in text
    assert new not in text
    assert "/feed/<redacted>.ics" in text
    access = [r.getMessage() for r in caplog.records if r.name == "circleback.access"]
    assert len(access) == 5
    assert '"GET /feed/<redacted>.ics HTTP/1.1" 200' in access[0]
    assert '"GET /feed/<redacted>.ics HTTP/1.1" 304' in access[1]
    assert '"GET /feed/<redacted>.ics HTTP/1.1" 404' in access[2]


# ------------------------------------------------------------------------------------- real uvicorn


@pytest.fixture
def own_sigterm_handler() -> Iterator[signal.Handlers | object]:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise AssertionError("not expected to be called")

    old = signal.signal(signal.SIGTERM, handler)
    yield handler
    signal.signal(signal.SIGTERM, old)


def test_real_uvicorn_in_a_thread(
    env: Env, caplog: pytest.LogCaptureFixture, own_sigterm_handler: object
) -> None:
    caplog.set_level(logging.DEBUG)
    running = start_in_thread(serve(env.app, "127.0.0.1", 0))
    try:
        base = f"http://127.0.0.1:{running.port}"
        with httpx.Client(base_url=base, timeout=5) as client:
            r = client.get(env.url())
            assert r.status_code == 200
            assert r.content == FEED
            assert r.headers["content-type"] == "text/calendar; charset=utf-8"
            assert "server" not in r.headers
            etag = r.headers["etag"]
            r304 = client.get(env.url(), headers={"If-None-Match": etag})
            assert r304.status_code == 304
            assert r304.content == b""
            assert r304.headers["etag"] == etag
            ims = client.get(env.url(), headers={"If-Modified-Since": r.headers["last-modified"]})
            assert ims.status_code == 304
            head = client.head(env.url())
            assert head.status_code == 200 and head.content == b""
            assert head.headers["content-length"] == str(len(FEED))
            assert client.get(env.url("q" * 43)).status_code == 404
            env.health.beat(datetime.now(UTC))
            assert client.get("/healthz").status_code == 200
            assert client.get("/readyz").status_code == 200
        assert signal.getsignal(signal.SIGTERM) is own_sigterm_handler
    finally:
        running.stop()
    assert not running.thread.is_alive()
    assert signal.getsignal(signal.SIGTERM) is own_sigterm_handler
    assert env.token not in server_log(caplog)
    assert "/feed/<redacted>.ics" in server_log(caplog)


def test_uvicorn_on_the_main_thread_leaves_signal_handlers_alone(
    env: Env, own_sigterm_handler: object
) -> None:
    server = serve(env.app, "127.0.0.1", 0)

    async def main() -> int:
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        during = signal.getsignal(signal.SIGTERM)
        port = server.servers[0].sockets[0].getsockname()[1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            status = (await client.get(env.url())).status_code
        server.should_exit = True
        await task
        assert during is own_sigterm_handler
        return status

    assert asyncio.run(main()) == 200
    assert signal.getsignal(signal.SIGTERM) is own_sigterm_handler


def test_start_in_thread_reports_a_port_in_use(env: Env) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(RuntimeError, match=f"could not listen on 127.0.0.1:{port}"):
            start_in_thread(serve(env.app, "127.0.0.1", port))

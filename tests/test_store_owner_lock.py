"""On PostgreSQL a write waits only for the same owner's writes: organisation mode runs many people's
cycles at once, and a lock shared by all of them made every cycle queue behind every other one."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime

import pytest

from daemon.store import Store

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)


def test_one_owners_open_write_holds_back_that_owner_only(postgres_url: str) -> None:
    with (
        Store(postgres_url, owner="ada@example.org") as ada,
        Store(postgres_url, owner="ada@example.org", migrate=False) as ada_elsewhere,
        Store(postgres_url, owner="bo@example.org", migrate=False) as bo,
    ):
        opened, release = threading.Event(), threading.Event()

        def a_long_write() -> None:
            with ada._write():
                opened.set()
                release.wait(60)

        holder = threading.Thread(target=a_long_write)
        holder.start()
        try:
            assert opened.wait(10)
            with ThreadPoolExecutor(2) as pool:
                other = pool.submit(bo.add_review, NOW, "bo's")
                assert other.result(timeout=10) > 0, "another owner's write does not wait"
                same = pool.submit(ada_elsewhere.add_review, NOW, "ada's")
                with pytest.raises(FutureTimeout):
                    same.result(timeout=1)  # the same owner's write waits for the open one...
                release.set()
                assert same.result(timeout=10) > 0  # ...and goes through once it ends
        finally:
            release.set()
            holder.join(10)
        assert [r.note for r in ada.reviews()] == ["ada's"]
        assert [r.note for r in bo.reviews()] == ["bo's"]

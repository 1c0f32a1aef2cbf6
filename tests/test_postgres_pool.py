"""PostgresStore's connections: the pool on first use from many threads at once, and a flow cut
off in the middle of its transaction (an error, a cancellation), which the store rolls back
itself before the connection goes back to the pool."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from psycopg_pool import ConnectionPool

from coatcheck.stores import postgres
from coatcheck.stores._protocol import Record
from coatcheck.stores._sql import BEGIN, Statement
from coatcheck.testing import FakeClock
from tests import test_sql_stores
from tests.test_sql_stores import Maker

pytestmark = [pytest.mark.anyio, pytest.mark.server]

make = test_sql_stores.make  # on the db below


@pytest.fixture
def db() -> test_sql_stores.Database:
    return test_sql_stores.reachable(test_sql_stores.DATABASES["postgres"])


KEY = "a" * 64


async def test_threads_that_first_use_a_store_together_all_get_an_open_pool(make: Maker, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pool is opened by the first caller; callers that come while it opens wait for it
    instead of taking a pool that is not open yet (which fails: "the pool is not open yet")."""
    store = make()
    store.migrate()
    store.close()  # the next call opens a new pool
    opening = threading.Event()
    real_open = ConnectionPool.open

    def slow_open(self: ConnectionPool[Any], *args: Any, **kwargs: Any) -> None:
        opening.set()
        time.sleep(0.3)  # the others arrive while the pool opens
        real_open(self, *args, **kwargs)

    monkeypatch.setattr(ConnectionPool, "open", slow_open)
    with ThreadPoolExecutor(8) as threads:
        first = threads.submit(store.load, KEY)
        assert opening.wait(5)
        others = [threads.submit(store.load, KEY) for _ in range(7)]
        assert [call.result(timeout=10) for call in [first, *others]] == [None] * 8


def _cut_off() -> Generator[Statement, Any, None]:
    """A flow that fails (in Python, not in the database) in the middle of its transaction."""
    yield BEGIN
    yield Statement("SELECT 1")
    raise RuntimeError("cut off")


def _pool_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("psycopg") and r.levelno >= logging.WARNING]


async def test_a_flow_that_fails_mid_transaction_is_rolled_back_by_the_store(
    make: Maker, caplog: pytest.LogCaptureFixture, clock: FakeClock
) -> None:
    store = make("pool_size=1")
    store.migrate()
    caplog.set_level(logging.INFO)
    with pytest.raises(RuntimeError, match="cut off"):
        store._run(_cut_off)
    with pytest.raises(RuntimeError, match="cut off"):
        await store._arun(_cut_off)
    assert _pool_warnings(caplog) == [], "the pool had to roll back a transaction the store left open"
    record = Record(b"d", clock() + 60, 1, None)
    assert store.save(KEY, record, expected_version=None)  # the one connection works, outside any transaction
    assert await store.aload(KEY) == record


async def test_a_cancelled_rotation_is_rolled_back_by_the_store(
    make: Maker, caplog: pytest.LogCaptureFixture, clock: FakeClock
) -> None:
    """A rotation waiting for alice's lock (held by a revoke in another transaction) is cancelled:
    its transaction is rolled back before its connection goes back to the pool."""
    store = make("pool_size=1")
    store.migrate()
    assert await store.asave(KEY, Record(b"d", clock() + 60, 1, "alice"), expected_version=None)
    caplog.set_level(logging.INFO)
    with test_sql_stores.DATABASES["postgres"].connect() as holder:
        holder.execute("BEGIN")
        holder.execute(postgres._USER_LOCKS[True], (f"coatcheck:{store.table}:user:alice",))  # what a revoke holds
        for _ in range(3):
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(
                    store.arotate(KEY, "b" * 64, Record(b"e", clock() + 60, 2, "alice"), expected_version=1), 0.3
                )
        holder.execute("ROLLBACK")
    assert _pool_warnings(caplog) == [], "the pool had to roll back a transaction the store left open"
    assert await store.aload(KEY) is not None  # nothing rotated, and the connection still works

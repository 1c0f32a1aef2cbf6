"""PostgresStore's connections: the pool on first use from many threads at once, and a flow cut
off in the middle of its transaction (an error, a cancellation), which the store rolls back
itself before the connection goes back to the pool."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio.to_thread
import pytest

from coatcheck.errors import StoreUnavailableError
from coatcheck.stores import postgres
from coatcheck.stores._protocol import Record
from coatcheck.stores._sql import BEGIN, Statement
from coatcheck.testing import FakeClock
from tests import test_sql_stores
from tests.test_sql_stores import Maker
from tests.waiting import eventually

pytestmark = [pytest.mark.anyio, pytest.mark.server]

make = test_sql_stores.make  # on the db below


@pytest.fixture
def db() -> test_sql_stores.Database:
    return test_sql_stores.reachable(test_sql_stores.DATABASES["postgres"])


KEY = "a" * 64


async def test_a_loop_that_closed_leaves_its_idle_connections_to_the_next(make: Maker) -> None:
    """A loop per call (a script's ``asyncio.run()``, asgiref's loop per async view under WSGI):
    each loop after the first reuses the connections the last one left idle, and opens none."""
    store = make("create_schema=1&pool_size=3")

    async def pids_after_loads_in_a_loop() -> set[int]:
        idle = await anyio.to_thread.run_sync(test_sql_stores.idle_after_loads_in_a_loop, store)
        return {conn.info.backend_pid for conn in idle}

    first = await pids_after_loads_in_a_loop()
    assert len(first) == 3
    assert await pids_after_loads_in_a_loop() == first
    assert await pids_after_loads_in_a_loop() == first
    assert await store.aload(KEY) is None
    assert {conn.info.backend_pid for conn in store._async_pool().idle} <= first


async def test_threads_that_first_use_a_store_together_share_its_pool(make: Maker, monkeypatch: pytest.MonkeyPatch) -> None:
    """Eight threads use a store with two connections at once, while connecting is slow: all
    are served, by one pool, on at most two connections."""
    store = make("pool_size=2")
    store.migrate()
    store.close()  # the next call builds a new pool
    opened: list[postgres._Connection] = []
    real_connect = postgres._Connection.connect

    def slow_connect(*args: Any, **kwargs: Any) -> postgres._Connection:
        time.sleep(0.2)  # the others arrive while the first connections open
        conn = real_connect(*args, **kwargs)
        opened.append(conn)
        return conn

    monkeypatch.setattr(postgres._Connection, "connect", slow_connect)
    with ThreadPoolExecutor(8) as threads:
        calls = [threads.submit(store.load, KEY) for _ in range(8)]
        assert [call.result(timeout=10) for call in calls] == [None] * 8
    assert 1 <= len(opened) <= 2


def _cut_off() -> Generator[Statement, Any, None]:
    """A flow that fails (in Python, not in the database) in the middle of its transaction."""
    yield BEGIN
    yield Statement("SELECT 1")
    raise RuntimeError("cut off")


async def _no_transaction_left_open(store: postgres.PostgresStore) -> None:
    """Neither the store's idle pooled connections nor the server's sessions of this application
    (``coatcheck``) are in a transaction."""
    pools = [pool for pool in (store._pool, store._async_pool()) if pool is not None]
    left = [f"pooled connection {conn}" for pool in pools for conn in pool.idle if not postgres._idle(conn)]
    with test_sql_stores.DATABASES["postgres"].connect() as admin:
        rows = admin.execute(
            "SELECT pid, state FROM pg_stat_activity WHERE application_name = 'coatcheck' AND state LIKE 'idle in transaction%'"
        ).fetchall()
    assert left + [f"server session {pid}: {state}" for pid, state in rows] == []


async def test_a_flow_that_fails_mid_transaction_leaves_no_transaction_open(make: Maker, clock: FakeClock) -> None:
    """Its connection is closed, never reused: the server ends the transaction with it."""
    store = make("pool_size=1")
    store.migrate()
    with pytest.raises(RuntimeError, match="cut off"):
        store._run(_cut_off)
    with pytest.raises(RuntimeError, match="cut off"):
        await store._arun(_cut_off)
    await eventually(lambda: _no_transaction_left_open(store))
    record = Record(b"d", clock() + 60, 1, None)
    assert store.save(KEY, record, expected_version=None)  # the one connection works, outside any transaction
    assert await store.aload(KEY) == record


async def test_a_cancelled_rotation_leaves_no_transaction_open(make: Maker, clock: FakeClock) -> None:
    """A rotation waiting for alice's lock (held by a revoke in another transaction) is cancelled:
    its connection is closed, so its transaction ends, and the one slot of the pool is free again."""
    store = make("pool_size=1")
    store.migrate()
    assert await store.asave(KEY, Record(b"d", clock() + 60, 1, "alice"), expected_version=None)
    with test_sql_stores.DATABASES["postgres"].connect() as holder:
        holder.execute("BEGIN")
        holder.execute(postgres._USER_LOCKS[True], (f"coatcheck:{store.table}:user:alice",))  # what a revoke holds
        for _ in range(3):
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(
                    store.arotate(KEY, "b" * 64, Record(b"e", clock() + 60, 2, "alice"), expected_version=1), 0.3
                )
        holder.execute("ROLLBACK")
    await eventually(lambda: _no_transaction_left_open(store))
    assert await store.aload(KEY) is not None  # nothing rotated, and the connection still works


async def test_a_statement_timeout_keeps_the_other_idle_connections(make: Maker) -> None:
    """A statement the server cancels (its connection is alive) closes that connection only; a
    lost server closes the idle ones too (tests/faults), not a slow statement."""
    store = make("pool_size=4&statement_timeout=1")
    store.migrate()
    await asyncio.gather(store.aload(KEY), store.aload(KEY))  # two connections, both idle after
    pool = store._async_pool()
    assert len(pool.idle) == 2
    with test_sql_stores.DATABASES["postgres"].connect() as holder:
        holder.execute("BEGIN")
        holder.execute(f'LOCK TABLE "{store.table}" IN ACCESS EXCLUSIVE MODE')
        with pytest.raises(StoreUnavailableError, match="statement timeout"):
            await store.aload(KEY)
        holder.execute("ROLLBACK")
    assert len(pool.idle) == 1
    assert await store.aload(KEY) is None

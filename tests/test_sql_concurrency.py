"""PostgresStore and MySQLStore against transactions held open by hand: "log out everywhere" and
a rotation in flight, in either order, and an operation that loses a deadlock.

Each test opens a transaction on a direct connection, starts the store's operation in a thread,
waits until the server reports that operation waiting for the open transaction's locks, and only
then moves the transaction on: the interleaving is forced, not hoped for.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import pytest

from coatcheck.stores._protocol import Record
from coatcheck.testing import FakeClock
from tests import test_sql_stores
from tests.test_sql_stores import Database, Maker

pytestmark = [pytest.mark.anyio, pytest.mark.server]

T = TypeVar("T")
db = test_sql_stores.db
make = test_sql_stores.make
mode = test_sql_stores.mode

OLD, NEW = "a" * 64, "b" * 64  # the first sorts first, in the primary key and in the user index


class Holder:
    """A direct connection with a transaction open, moved on by the test."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.conn = db.connect()
        self.cur = self.conn.cursor()
        self.ident: int = self.conn.info.backend_pid if db.name == "postgres" else self.conn.thread_id()
        self.execute("BEGIN")

    def execute(self, sql: str, params: tuple[Any, ...] | None = None) -> tuple[int, list[tuple[Any, ...]]]:
        self.cur.execute(sql, params)
        return self.cur.rowcount, list(self.cur.fetchall()) if self.cur.description else []

    def run(self, flow: Generator[Any, Any, T]) -> T:
        """Run a store flow's statements inside this transaction, which stays open (the flow's
        own BEGIN, COMMIT and ROLLBACK are skipped)."""
        reply = None
        try:
            while True:
                op = flow.send(reply)
                reply = (0, []) if op.sql in ("BEGIN", "COMMIT", "ROLLBACK") else self.execute(op.sql, op.params or None)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    def update(self, table: str, key: str) -> None:
        """Lock the row under ``key`` by rewriting its data."""
        column = "`key`" if self.db.name == "mysql" else "key"
        assert self.execute(f"UPDATE {self.db.q(table)} SET data = %s WHERE {column} = %s", (b"held", key))[0] == 1  # noqa: S608

    def waiters(self) -> int:
        """How many sessions wait for a lock this transaction holds (asked on another connection)."""
        if self.db.name == "postgres":
            sql = "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))"
        else:
            sql = (
                "SELECT COUNT(*) FROM information_schema.innodb_lock_waits w JOIN information_schema.innodb_trx t"
                " ON t.trx_id = w.blocking_trx_id WHERE t.trx_mysql_thread_id = %s"
            )
        return int(self.db.query(sql, (self.ident,))[0][0])

    def wait_for_waiter(self, call: Future[Any], *, deadline: float = 10.0) -> None:
        """Return once ``call`` (running in a thread) waits for this transaction's locks."""
        give_up = time.monotonic() + deadline
        while not self.waiters():
            assert not call.done(), f"the call finished without waiting for the open transaction: {call.result()!r}"
            assert time.monotonic() < give_up, f"the call did not wait for the open transaction within {deadline} s"
            time.sleep(0.01)

    def commit(self) -> None:
        self.execute("COMMIT")


@contextlib.contextmanager
def holding(db: Database) -> Iterator[tuple[Holder, ThreadPoolExecutor]]:
    """A :class:`Holder` and a thread for the store's call; on the way out the transaction ends
    (rolled back if the test failed before committing) before the thread is waited for."""
    with ThreadPoolExecutor(1) as pool:
        holder = Holder(db)
        with contextlib.closing(holder.conn):
            yield holder, pool


def in_thread(pool: ThreadPoolExecutor, mode: str, store: Any, method: str, *args: Any, **kwargs: Any) -> Future[Any]:
    """``store.method(...)``, or ``store.amethod(...)`` on the thread's own event loop."""

    async def on_own_loop() -> Any:
        try:
            return await getattr(store, "a" + method)(*args, **kwargs)
        finally:
            await store.aclose()  # the async pool belongs to this loop

    if mode == "sync":
        return pool.submit(getattr(store, method), *args, **kwargs)
    return pool.submit(asyncio.run, on_own_loop())


def alice(clock: FakeClock, version: int) -> Record:
    return Record(b"v%d" % version, clock() + 60, version, "alice")


async def test_revoke_waits_for_a_rotation_in_flight(db: Database, make: Maker, mode: str, clock: FakeClock) -> None:
    """A rotation has replaced alice's session but not committed when "log out everywhere" starts:
    once the rotation commits, the revoke removes the new session too."""
    store = make()
    store.migrate()
    assert store.save(OLD, alice(clock, 1), expected_version=None)
    with holding(db) as (holder, pool):
        assert holder.run(store._flows.rotate(OLD, NEW, alice(clock, 2), 1, clock())) is True
        revoke = in_thread(pool, mode, store, "delete_user", "alice")
        holder.wait_for_waiter(revoke)
        holder.commit()
        revoked = revoke.result(timeout=10)
    assert store.load(NEW) is None, "a session of alice outlived the revoke"
    assert store.load(OLD) is None
    assert revoked == 1


async def test_rotation_fails_after_a_revoke_in_flight(db: Database, make: Maker, mode: str, clock: FakeClock) -> None:
    """ "Log out everywhere" has deleted alice's session but not committed when a rotation of it
    starts: once the revoke commits, the rotation finds the old session gone and writes nothing."""
    store = make()
    store.migrate()
    assert store.save(OLD, alice(clock, 1), expected_version=None)
    with holding(db) as (holder, pool):
        assert holder.run(store._flows.delete_user("alice", clock())) == 1
        rotation = in_thread(pool, mode, store, "rotate", OLD, NEW, alice(clock, 2), expected_version=1)
        holder.wait_for_waiter(rotation)
        holder.commit()
        assert rotation.result(timeout=10) is False
    assert store.load(NEW) is None
    assert store.load(OLD) is None


async def test_an_operation_that_loses_a_deadlock_runs_again(db: Database, make: Maker, mode: str, clock: FakeClock) -> None:
    """The revoke has deleted alice's first session and waits for her second, which the open
    transaction holds; that transaction then asks for the first: a deadlock. The server rolls the
    revoke back (PostgreSQL: the revoke's backend checks first, having waited longest; MariaDB:
    the lighter transaction, hence the open one writes some rows first); the store runs it again,
    and once the open transaction commits the revoke succeeds."""
    store = make()
    store.migrate()
    for key in (OLD, NEW):
        assert store.save(key, alice(clock, 1), expected_version=None)
    with holding(db) as (holder, pool):
        if db.name == "mysql":
            ballast = [(f"c{i:063d}", b"x", clock() + 60, 1, "ballast") for i in range(50)]
            holder.cur.executemany(f"INSERT INTO {db.q(store.table)} VALUES (%s, %s, %s, %s, %s)", ballast)  # noqa: S608
        holder.update(store.table, NEW)
        revoke = in_thread(pool, mode, store, "delete_user", "alice")
        holder.wait_for_waiter(revoke)
        holder.update(store.table, OLD)  # returns once the server has rolled the revoke back
        holder.commit()
        revoked = revoke.result(timeout=10)
    assert revoked == 2
    assert store.load(OLD) is None and store.load(NEW) is None

"""The SQL stores' connection pools (``coatcheck.stores._pools``), with plain objects for
connections: slots, the order of those who wait, timeouts, cancellation, and what is closed.
The stores' own tests run the same pools on the real databases (tests/test_sql_stores.py,
tests/test_postgres_pool.py, tests/faults)."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from dataclasses import dataclass, field

import pytest

from coatcheck.stores._pools import AsyncPool, Pool, PoolTimeout

pytestmark = pytest.mark.anyio


@dataclass(eq=False)
class Conn:
    number: int
    closed: bool = False
    dirty: bool = False  # what ``reusable`` rejects: a transaction left open, say


@dataclass
class Server:
    """Opens numbered connections; refuses with ``refusing`` set."""

    opened: list[Conn] = field(default_factory=list)
    refusing: str | None = None

    def connect(self) -> Conn:
        if self.refusing:
            raise ConnectionRefusedError(self.refusing)
        conn = Conn(len(self.opened))
        self.opened.append(conn)
        return conn

    async def aconnect(self) -> Conn:
        await asyncio.sleep(0)  # a real connect suspends
        return self.connect()


def _close(conn: Conn) -> None:
    conn.closed = True


async def _aclose(conn: Conn) -> None:
    conn.closed = True


def _clean(conn: Conn) -> bool:
    return not conn.dirty


def async_pool(server: Server, size: int = 1, timeout: float = 5.0) -> AsyncPool[Conn]:
    return AsyncPool("Test", server.aconnect, _aclose, size, timeout, reusable=_clean)


def sync_pool(server: Server, size: int = 1, timeout: float = 5.0) -> Pool[Conn]:
    return Pool("Test", server.connect, _close, size, timeout, reusable=_clean)


async def test_a_connection_is_reused_and_no_more_than_size_are_opened() -> None:
    server = Server()
    pool = async_pool(server, size=2)
    held = [await pool.take(), await pool.take()]
    waiter = asyncio.ensure_future(pool.take())
    await asyncio.sleep(0.01)
    assert not waiter.done() and len(server.opened) == 2
    await pool.give_back(held[0])
    assert await waiter is held[0]  # the one given back, not a third
    await pool.give_back(held[0])
    await pool.give_back(held[1])
    async with pool.connection() as conn:
        assert conn in held
    assert len(server.opened) == 2 and not any(conn.closed for conn in server.opened)


async def test_those_who_wait_are_served_in_order() -> None:
    pool = async_pool(Server())
    conn = await pool.take()
    served: list[int] = []

    async def wait(number: int) -> None:
        taken = await pool.take()
        served.append(number)
        await pool.give_back(taken)

    waiters = [asyncio.ensure_future(wait(number)) for number in range(5)]
    await asyncio.sleep(0.01)
    await pool.give_back(conn)
    late = asyncio.ensure_future(wait(5))  # comes after the slot was handed on: waits its turn
    await asyncio.gather(*waiters, late)
    assert served == [0, 1, 2, 3, 4, 5]


async def test_waiting_ends_with_pool_timeout_after_the_timeout() -> None:
    pool = async_pool(Server(), timeout=0.1)
    conn = await pool.take()
    start = time.monotonic()
    with pytest.raises(PoolTimeout, match=r"no free Test connection within 0\.1 s$"):
        await pool.take()
    assert 0.09 <= time.monotonic() - start < 2
    assert not pool._waiting, "a waiter that gave up stays queued"
    await pool.give_back(conn)
    assert pool.free == 1


async def test_a_failed_connect_raises_its_own_error_and_frees_its_slot() -> None:
    server = Server(refusing="connection refused to db:5432")
    pool = async_pool(server)
    with pytest.raises(ConnectionRefusedError, match="refused"):
        await pool.take()
    assert pool.last_failure == "connection refused to db:5432"
    server.refusing = None
    conn = await pool.take()  # the one slot is free again
    assert pool.last_failure is None
    await pool.give_back(conn)


async def test_the_timeout_says_why_the_last_connect_failed() -> None:
    """While connects hang (a server that stopped answering), those who wait time out with the
    reason the last connect that ended gave."""
    server = Server(refusing="connection refused to db:5432")
    pool = async_pool(server, size=2, timeout=0.1)
    with pytest.raises(ConnectionRefusedError):
        await pool.take()
    server.refusing = None
    release = asyncio.Event()

    async def hanging_connect() -> Conn:
        await release.wait()
        return server.connect()

    pool._connect = hanging_connect
    hanging = [asyncio.ensure_future(pool.take()) for _ in range(2)]
    await asyncio.sleep(0.01)
    with pytest.raises(PoolTimeout, match=r"within 0\.1 s; last connection attempt: connection refused to db:5432$"):
        await pool.take()
    release.set()
    for conn in await asyncio.gather(*hanging):
        await pool.give_back(conn)


async def test_a_cancelled_waiter_takes_no_slot() -> None:
    pool = async_pool(Server())
    conn = await pool.take()
    waiter = asyncio.ensure_future(pool.take())
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await pool.give_back(conn)
    assert pool.free == 1
    assert await asyncio.wait_for(pool.take(), 1) is conn


async def test_a_waiter_cancelled_after_it_was_handed_a_slot_passes_it_on() -> None:
    """The slot goes to the first waiter when the connection comes back; if that waiter is
    cancelled before it runs, the slot goes to the next one, not nowhere."""
    pool = async_pool(Server())
    conn = await pool.take()
    first, second = asyncio.ensure_future(pool.take()), asyncio.ensure_future(pool.take())
    await asyncio.sleep(0.01)
    await pool.give_back(conn)  # hands the slot to ``first``, which has not run yet
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await asyncio.wait_for(second, 1) is conn
    await pool.give_back(conn)
    assert pool.free == 1


async def test_a_connection_whose_use_raised_or_that_is_not_reusable_is_closed() -> None:
    server = Server()
    pool = async_pool(server)
    with pytest.raises(RuntimeError):
        async with pool.connection() as first:
            raise RuntimeError("cut off")
    assert first.closed
    async with pool.connection() as second:
        second.dirty = True
    assert second is not first and second.closed
    async with pool.connection() as third:
        pass
    assert third not in (first, second) and not third.closed and pool.idle == [third]


async def test_the_idle_connections_are_closed_too_only_when_one_was_lost() -> None:
    server = Server()
    dead: set[int] = set()
    pool = AsyncPool("Test", server.aconnect, _aclose, 3, 5.0, lost=lambda conn: conn.number in dead)
    first, second, third = await pool.take(), await pool.take(), await pool.take()
    await pool.give_back(first)
    await pool.give_back(second, ValueError)  # a statement failed; the connection is alive
    assert second.closed and pool.idle == [first] and not first.closed
    dead.add(third.number)
    await pool.give_back(third, asyncio.CancelledError)  # cut off: a driver may close such a one itself
    assert third.closed and pool.idle == [first] and not first.closed
    fourth = await pool.take()
    assert fourth is first
    fifth = await pool.take()
    await pool.give_back(fourth)
    dead.add(fifth.number)
    await pool.give_back(fifth, OSError)  # the server went away
    assert fifth.closed and first.closed and pool.idle == []


async def test_a_close_that_fails_hides_no_error_and_stops_no_other_close(caplog: pytest.LogCaptureFixture) -> None:
    server = Server()

    async def failing_close(conn: Conn) -> None:
        conn.closed = True
        raise OSError("close failed")

    pool = AsyncPool("Test", server.aconnect, failing_close, 3, 5.0)
    with pytest.raises(ValueError, match="the caller's"):
        async with pool.connection():
            raise ValueError("the caller's")
    idle = [await pool.take(), await pool.take()]
    for conn in idle:
        await pool.give_back(conn)
    await pool.clear()
    assert all(conn.closed for conn in idle)
    assert [r.getMessage() for r in caplog.records].count("closing a Test connection failed") == 3
    assert pool.free == 3


async def test_clear_closes_the_idle_connections_and_with_close_those_given_back() -> None:
    pool = async_pool(Server(), size=2)
    idle, held = await pool.take(), await pool.take()
    await pool.give_back(idle)
    await pool.clear()
    assert idle.closed and pool.idle == []
    await pool.clear(close=True)
    await pool.give_back(held)
    assert held.closed and pool.idle == []


def test_the_thread_pool_shares_its_connections_among_threads() -> None:
    server = Server()
    pool = sync_pool(server, size=2, timeout=5)
    inside, most = 0, 0
    lock = threading.Lock()
    pair = threading.Barrier(2, timeout=5)  # each holder waits for a second one to be inside too

    def use() -> None:
        nonlocal inside, most
        with pool.connection():
            with lock:
                inside += 1
                most = max(most, inside)
            pair.wait()
            with lock:
                inside -= 1

    threads = [threading.Thread(target=use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert most == 2 and len(server.opened) == 2


def test_the_thread_pool_serves_those_who_wait_before_those_who_come_later() -> None:
    """A thread that gives its connection back and asks again at once does not take the slot
    from one that was waiting (a semaphore would let it: the waiter starves and times out)."""
    pool = sync_pool(Server(), timeout=5)
    order: list[str] = []

    def waiter() -> None:
        with pool.connection():
            order.append("waiter")

    held = pool.connection()
    held.__enter__()
    thread = threading.Thread(target=waiter)
    thread.start()
    deadline = time.monotonic() + 5
    while not pool._waiting:  # until the waiter is queued
        assert time.monotonic() < deadline, "the waiter never queued"
        time.sleep(0.001)
    held.__exit__(None, None, None)
    with pool.connection():
        order.append("came later")
    thread.join(5)
    assert order == ["waiter", "came later"]


def test_a_thread_interrupted_while_it_waits_leaves_the_queue() -> None:
    """A signal handler that raises in a waiting thread (a deadline, SIGTERM): the thread leaves
    the queue, so the slot given back later is not handed to nobody."""

    class Interrupted(Exception):
        pass

    def interrupt(*_: object) -> None:
        raise Interrupted

    pool = sync_pool(Server(), timeout=5)
    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        with pool.connection():  # what another thread's request holds
            signal.setitimer(signal.ITIMER_REAL, 0.1)
            with pytest.raises(Interrupted), pool.connection():
                pass
            assert not pool._waiting
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert pool.free == 1
    with pool.connection():
        pass


def test_the_thread_pool_times_out_and_closes_what_raised() -> None:
    server = Server()
    pool = sync_pool(server, timeout=0.1)
    with pool.connection() as held:
        start = time.monotonic()
        with pytest.raises(PoolTimeout, match=r"no free Test connection within 0\.1 s$"), pool.connection():
            pass
        assert time.monotonic() - start >= 0.09
        assert not pool._waiting
    with pytest.raises(RuntimeError), pool.connection() as conn:
        raise RuntimeError("cut off")
    assert conn is held and conn.closed
    server.refusing = "no route to host"
    with pytest.raises(ConnectionRefusedError), pool.connection():
        pass
    assert pool.last_failure == "no route to host"

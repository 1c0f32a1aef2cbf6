"""The SQL stores' connection pools: a thread-safe one and an asyncio one (one per event loop),
each at most ``size`` connections open and ``timeout`` seconds to wait for one.

A caller takes an idle connection, or opens one itself when there is none (so a failed connect
raises its own error, with its reason, in the request that needed it), or waits for a slot.
Those who wait are served in order: a slot given back goes to the first of them, never to a
caller that comes later. A connection whose use raised, or that ``reusable`` rejects when it
comes back, is closed, never handed out again; when ``lost`` says it died (the server went away;
not after a cancellation) the idle ones are closed too, since they are likely dead as well.
Beyond waiting, a checkout is a list pop and append: no task and no log record.

:class:`PooledStore` gives a store with a driver for each side its pools, built on first use:
one for threads and one per event loop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import ClassVar, Generic, TypeVar

from .._aio import PerLoop
from .._logs import log

__all__ = ["AsyncPool", "Pool", "PoolTimeout", "PooledStore"]

C = TypeVar("C")
A = TypeVar("A")  # the async pool's connections


class PoolTimeout(TimeoutError):
    """No connection became free within the pool timeout."""


def _never(conn: object) -> bool:
    return False


def _always(conn: object) -> bool:
    return True


class _Slots(Generic[C]):
    """What both pools keep: the idle connections, the free slots, and why the last connect failed."""

    def __init__(
        self, what: str, size: int, timeout: float, reusable: Callable[[C], bool] | None, lost: Callable[[C], bool] | None
    ) -> None:
        self.what, self.timeout = what, timeout
        self.reusable = reusable or _always
        self.lost = lost or _never
        self.idle: list[C] = []
        self.free = size  # slots nobody holds and nobody waits for
        self.closed = False
        self.last_failure: str | None = None  # why the last connect failed, until one succeeds

    def timed_out(self) -> PoolTimeout:
        why = f"; last connection attempt: {self.last_failure}" if self.last_failure else ""
        return PoolTimeout(f"no free {self.what} connection within {self.timeout:g} s{why}")

    @contextlib.contextmanager
    def connecting(self) -> Iterator[None]:
        """Around a connect: keep why it failed (for the timeout of those who wait meanwhile)."""
        try:
            yield
        except Exception as exc:
            self.last_failure = " ".join(str(exc).split()) or type(exc).__name__
            raise
        self.last_failure = None

    def keeps(self, conn: C, raised: type[BaseException] | None) -> bool:
        """Whether ``conn``, coming back (its use having raised ``raised``, or not), can be idle again."""
        return raised is None and not self.closed and self.reusable(conn)

    def discarded(self, conn: C, raised: type[BaseException] | None) -> list[C]:
        """What to close with ``conn``, which is not kept: the idle connections too if it was
        lost. Not after a cancellation: a driver may close a connection whose call it cut off
        (aiomysql does), which says nothing of the others."""
        if (raised is not None and not issubclass(raised, Exception)) or not self.lost(conn):
            return [conn]
        idle, self.idle = self.idle, []
        return [conn, *idle]

    def closing_failed(self) -> None:
        log.warning("closing a %s connection failed", self.what, exc_info=True)


class Pool(_Slots[C]):
    """A thread-safe pool; ``connect()`` opens a connection, ``close(conn)`` closes one."""

    def __init__(
        self,
        what: str,
        connect: Callable[[], C],
        close: Callable[[C], object],
        size: int,
        timeout: float,
        *,
        reusable: Callable[[C], bool] | None = None,
        lost: Callable[[C], bool] | None = None,
    ) -> None:
        super().__init__(what, size, timeout, reusable, lost)
        self._connect, self._close = connect, close
        self._lock = threading.Lock()
        self._waiting: collections.deque[threading.Lock] = collections.deque()  # each held until handed a slot

    @contextlib.contextmanager
    def connection(self) -> Iterator[C]:
        """``with pool.connection() as conn``: a connection, given back on the way out (closed
        if the block raised)."""
        self._slot()
        try:
            with self._lock:
                conn = self.idle.pop() if self.idle else None
            if conn is None:
                with self.connecting():
                    conn = self._connect()
            try:
                yield conn
            except BaseException as exc:
                self._back(conn, type(exc))
                raise
            self._back(conn, None)
        finally:
            self._pass_on()

    def _slot(self) -> None:
        with self._lock:
            if self.free:
                self.free -= 1
                return
            handed = threading.Lock()
            handed.acquire()
            self._waiting.append(handed)
        try:
            got = handed.acquire(timeout=self.timeout)
        except BaseException:  # interrupted (a signal handler raised): leave the queue, or pass the slot on
            if not self._leave(handed):
                self._pass_on()
            raise
        if got or not self._leave(handed):  # handed a slot, maybe as the wait ended: it is ours
            return
        raise self.timed_out()

    def _leave(self, handed: threading.Lock) -> bool:
        """Take ``handed`` out of the queue; False if it was handed a slot already."""
        with self._lock:
            try:
                self._waiting.remove(handed)
            except ValueError:
                return False
        return True

    def _pass_on(self) -> None:
        """A slot is given back: to the first who waits, else to the free ones."""
        with self._lock:
            if self._waiting:
                self._waiting.popleft().release()
            else:
                self.free += 1

    def _back(self, conn: C, raised: type[BaseException] | None) -> None:
        with self._lock:
            if self.keeps(conn, raised):
                self.idle.append(conn)
                return
            gone = self.discarded(conn, raised)
        self._close_all(gone)

    def _close_all(self, conns: list[C]) -> None:
        for conn in conns:
            try:
                self._close(conn)
            except Exception:  # the caller's own error, if any, is what it must see
                self.closing_failed()

    def clear(self, *, close: bool = False) -> None:
        """Close the idle connections; with ``close=True`` also those handed back later."""
        with self._lock:
            idle, self.idle = self.idle, []
            self.closed = self.closed or close
        self._close_all(idle)


class AsyncPool(_Slots[C]):
    """The asyncio pool, for one event loop; ``connect()`` and ``close(conn)`` are coroutines."""

    def __init__(
        self,
        what: str,
        connect: Callable[[], Awaitable[C]],
        close: Callable[[C], Awaitable[object]],
        size: int,
        timeout: float,
        *,
        reusable: Callable[[C], bool] | None = None,
        lost: Callable[[C], bool] | None = None,
    ) -> None:
        super().__init__(what, size, timeout, reusable, lost)
        self._connect, self._close = connect, close
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()

    def connection(self) -> _Lease[C]:
        """``async with pool.connection() as conn``: a connection, given back on the way out
        (closed if the block raised)."""
        return _Lease(self)

    async def take(self) -> C:
        """A connection: an idle one, else a new one; when all slots are held, the first one
        given back, within ``timeout`` seconds (else :class:`PoolTimeout`)."""
        if self.free:
            self.free -= 1
        else:
            await self._slot()
        try:
            if self.idle:
                return self.idle.pop()
            with self.connecting():
                return await self._connect()
        except BaseException:
            self._pass_on()
            raise

    async def give_back(self, conn: C, raised: type[BaseException] | None = None) -> None:
        """End the use of ``conn``, whose use raised ``raised`` (or nothing): idle again, or
        closed (see the module docstring)."""
        try:
            if self.keeps(conn, raised):
                self.idle.append(conn)
            else:
                await self._close_all(self.discarded(conn, raised))
        finally:
            self._pass_on()

    async def _slot(self) -> None:
        loop = asyncio.get_running_loop()
        handed = loop.create_future()
        self._waiting.append(handed)
        timer = loop.call_later(self.timeout, self._expire, handed)
        try:
            await handed
        except BaseException:
            if handed.done() and not handed.cancelled() and handed.exception() is None:
                self._pass_on()  # handed a slot, then cancelled before taking it
            else:
                with contextlib.suppress(ValueError):  # not left in the queue until a slot comes back
                    self._waiting.remove(handed)
            raise
        finally:
            timer.cancel()

    def _expire(self, handed: asyncio.Future[None]) -> None:
        if not handed.done():
            handed.set_exception(self.timed_out())

    def _pass_on(self) -> None:
        """A slot is given back: to the first who still waits, else to the free ones."""
        waiting = self._waiting
        while waiting:
            handed = waiting.popleft()
            if not handed.done():  # not timed out or cancelled in the meantime
                handed.set_result(None)
                return
        self.free += 1

    async def _close_all(self, conns: list[C]) -> None:
        for conn in conns:
            try:
                await self._close(conn)
            except Exception:  # the caller's own error, if any, is what it must see
                self.closing_failed()

    async def clear(self, *, close: bool = False) -> None:
        """Close the idle connections; with ``close=True`` also those handed back later."""
        idle, self.idle = self.idle, []
        self.closed = self.closed or close
        await self._close_all(idle)


class _Lease(Generic[C]):
    """One use of an :class:`AsyncPool` connection (a class, not a generator: it is on every request)."""

    __slots__ = ("conn", "pool")

    def __init__(self, pool: AsyncPool[C]) -> None:
        self.pool = pool

    async def __aenter__(self) -> C:
        self.conn = await self.pool.take()
        return self.conn

    async def __aexit__(self, kind: type[BaseException] | None, *_: object) -> None:
        await self.pool.give_back(self.conn, kind)


class PooledStore(Generic[C, A]):
    """A store's pools, each built on first use: one for threads by :meth:`_new_pool`, and one per
    event loop by :meth:`_new_async_pool` (a pool's queue of waiters belongs to its loop, and so
    may its connections). ``close()`` closes the first, ``aclose()`` the running loop's and what
    loops that closed left behind; a later call builds new ones.

    A loop that closed without ``aclose()`` (a script's ``asyncio.run()``, asgiref's loop per call
    of an async view under WSGI) has its pool dropped when a loop next uses the store for the
    first time. Its idle connections serve that loop's pool if :attr:`_reusable_across_loops`
    (up to ``pool_size``); the others are closed by :meth:`_abandon`, without a loop."""

    pool_size: int
    _reusable_across_loops: ClassVar[bool] = False  # can an async connection serve a loop other than its own?
    _pool: Pool[C] | None
    _apools: PerLoop[AsyncPool[A]]
    _left_idle: list[A]  # idle connections of loops that closed, for the next loop's pool (under _lock)

    def _no_pools(self) -> None:
        self._lock = threading.Lock()
        self._pool = None
        self._left_idle = []
        self._apools = PerLoop(self._loop_pool, retire=self._loop_closed)

    def _new_pool(self) -> Pool[C]:
        raise NotImplementedError

    def _new_async_pool(self) -> AsyncPool[A]:
        raise NotImplementedError

    def _abandon(self, conn: A) -> None:
        """Close ``conn`` without an event loop: its own loop has closed."""
        raise NotImplementedError

    def _loop_pool(self) -> AsyncPool[A]:
        pool = self._new_async_pool()
        with self._lock:
            pool.idle, self._left_idle = self._left_idle, []
        return pool

    def _loop_closed(self, pool: AsyncPool[A]) -> None:
        idle, pool.idle = pool.idle, []
        with self._lock:
            kept = max(0, self.pool_size - len(self._left_idle)) if self._reusable_across_loops else 0
            self._left_idle += idle[:kept]
        self._abandon_all(idle[kept:])

    def _abandon_all(self, conns: list[A]) -> None:
        for conn in conns:
            try:
                self._abandon(conn)
            except Exception:
                log.warning("closing a connection of a closed event loop failed", exc_info=True)

    def _sync_pool(self) -> Pool[C]:
        if (pool := self._pool) is not None:  # built: no lock on the way to every statement
            return pool
        with self._lock:
            if self._pool is None:
                self._pool = self._new_pool()
            return self._pool

    def _async_pool(self) -> AsyncPool[A]:
        return self._apools.get()

    def close(self) -> None:
        """Close the sync connections (a later call opens new ones)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.clear(close=True)

    async def aclose(self) -> None:
        """Close the running event loop's connections, and those that loops that closed left
        idle (a later call opens new ones)."""
        pool = self._apools.pop()
        with self._lock:
            left, self._left_idle = self._left_idle, []
        self._abandon_all(left)
        if pool is not None:
            await pool.clear(close=True)

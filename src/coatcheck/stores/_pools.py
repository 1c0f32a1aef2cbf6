"""The SQL stores' connection pools: a thread-safe one and an asyncio one (one per event loop),
each at most ``size`` connections open and ``timeout`` seconds to wait for one.

A caller takes an idle connection, or opens one itself when there is none (so a failed connect
raises its own error, with its reason, in the request that needed it), or waits for a free slot.
A connection whose use raised, or that ``reusable`` rejects when it comes back, is closed, never
handed out again. Waiting is the only work beyond a list pop and append: no lock is taken by a
request that finds a connection idle, no task and no log record per checkout.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Generic, TypeVar

__all__ = ["AsyncPool", "Pool", "PoolTimeout"]

C = TypeVar("C")


class PoolTimeout(TimeoutError):
    """No connection became free within the pool timeout."""


def _always(conn: object) -> bool:
    return True


class _Slots(Generic[C]):
    """What both pools keep: the idle connections, the timeout, and why the last connect failed."""

    def __init__(self, what: str, size: int, timeout: float, reusable: Callable[[C], bool] | None) -> None:
        self.what, self.size, self.timeout = what, size, timeout
        self.reusable = reusable or _always
        self.idle: list[C] = []
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

    def keeps(self, conn: C) -> bool:
        """Whether ``conn``, used without an error, goes back to the idle list."""
        if self.closed or not self.reusable(conn):
            return False
        self.idle.append(conn)
        return True


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
    ) -> None:
        super().__init__(what, size, timeout, reusable)
        self._connect, self._close = connect, close
        self._free = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def connection(self) -> Iterator[C]:
        if not self._free.acquire(timeout=self.timeout):
            raise self.timed_out()
        try:
            with self._lock:
                conn = self.idle.pop() if self.idle else None
            if conn is None:
                with self.connecting():
                    conn = self._connect()
            try:
                yield conn
            except BaseException:
                self._close(conn)
                raise
            with self._lock:
                kept = self.keeps(conn)
            if not kept:
                self._close(conn)
        finally:
            self._free.release()

    def clear(self, *, close: bool = False) -> None:
        """Close the idle connections; with ``close=True`` also those handed back later."""
        with self._lock:
            idle, self.idle = self.idle, []
            self.closed = self.closed or close
        for conn in idle:
            self._close(conn)


class AsyncPool(_Slots[C]):
    """The asyncio pool, for one event loop; ``connect()`` and ``close(conn)`` are coroutines.
    Those who wait for a slot queue in order; a slot given back goes to the first of them."""

    def __init__(
        self,
        what: str,
        connect: Callable[[], Awaitable[C]],
        close: Callable[[C], Awaitable[object]],
        size: int,
        timeout: float,
        *,
        reusable: Callable[[C], bool] | None = None,
    ) -> None:
        super().__init__(what, size, timeout, reusable)
        self._connect, self._close = connect, close
        self._free = size  # slots nobody holds
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()

    def connection(self) -> _Lease[C]:
        """``async with pool.connection() as conn``: a connection, given back on the way out
        (closed if the block raised)."""
        return _Lease(self)

    async def take(self) -> C:
        """A connection: an idle one, else a new one; when all slots are held, the first one
        given back, within ``timeout`` seconds (else :class:`PoolTimeout`)."""
        if self._free:
            self._free -= 1
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

    async def give_back(self, conn: C, *, broken: bool = False) -> None:
        """End the use of ``conn``: idle again, or closed if ``broken`` or not reusable."""
        try:
            if broken or not self.keeps(conn):
                await self._close(conn)
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
            if not handed.done():  # not timed out, not cancelled
                handed.set_result(None)
                return
        self._free += 1

    async def clear(self, *, close: bool = False) -> None:
        """Close the idle connections; with ``close=True`` also those handed back later."""
        idle, self.idle = self.idle, []
        self.closed = self.closed or close
        for conn in idle:
            await self._close(conn)


class _Lease(Generic[C]):
    """One use of an :class:`AsyncPool` connection (a class, not a generator: it is on every request)."""

    __slots__ = ("conn", "pool")

    def __init__(self, pool: AsyncPool[C]) -> None:
        self.pool = pool

    async def __aenter__(self) -> C:
        self.conn = await self.pool.take()
        return self.conn

    async def __aexit__(self, kind: type[BaseException] | None, *_: object) -> None:
        await self.pool.give_back(self.conn, broken=kind is not None)

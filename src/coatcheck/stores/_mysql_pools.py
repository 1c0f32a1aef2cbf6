"""MySQL's connection pools: a thread-safe one over PyMySQL and an asyncio one over aiomysql
(one per event loop), each at most ``size`` connections and ``timeout`` seconds to get one. A
connection that raised is closed, never handed out again."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiomysql
import pymysql

__all__ = ["AsyncPool", "Pool", "PoolTimeout"]


class PoolTimeout(TimeoutError):
    """No connection became free within the pool timeout."""


class Pool:
    """A small thread-safe pool of PyMySQL connections: at most ``size`` open, ``timeout``
    seconds to get one. A connection that raised is closed, never put back."""

    def __init__(self, connect: Callable[[], pymysql.connections.Connection[Any]], size: int, timeout: float) -> None:
        self._connect = connect
        self._timeout = timeout
        self._slots = threading.BoundedSemaphore(size)
        self._idle: list[pymysql.connections.Connection[Any]] = []
        self._lock = threading.Lock()
        self.closed = False

    @contextlib.contextmanager
    def connection(self) -> Iterator[pymysql.connections.Connection[Any]]:
        if not self._slots.acquire(timeout=self._timeout):
            raise PoolTimeout(f"no free MySQL connection within {self._timeout} s")
        try:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            conn = conn or self._connect()
            try:
                yield conn
            except BaseException:
                _close(conn)
                raise
            with self._lock:
                if not self.closed:
                    self._idle.append(conn)
                    return
            _close(conn)
        finally:
            self._slots.release()

    def clear(self, *, close: bool = False) -> None:
        """Close the idle connections; with ``close=True`` also those handed back later."""
        with self._lock:
            idle, self._idle = self._idle, []
            self.closed = self.closed or close
        for conn in idle:
            _close(conn)


class _AioConnection(aiomysql.Connection):  # type: ignore[misc]
    """aiomysql's connection, escaping bytes itself: aiomysql 0.3 imports an escaper that recent
    PyMySQL releases replaced with a placeholder string (PyMySQL issue 1274): bytes would break."""

    def escape(self, obj: Any) -> str:
        if isinstance(obj, bytes):
            return pymysql.converters.escape_bytes(obj)
        return super().escape(obj)  # type: ignore[no-any-return]


class AsyncPool:
    """The asyncio twin of :class:`Pool` over aiomysql connections, for one event loop."""

    def __init__(self, connect_args: dict[str, Any], size: int, timeout: float, connect_timeout: float) -> None:
        self._args = connect_args
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._slots = asyncio.Semaphore(size)
        self._idle: list[Any] = []
        self.closed = False

    async def _connect(self) -> Any:
        # Not aiomysql.connect(): cancelled mid-handshake it leaks the open socket (it cleans up on
        # Exception only), and the handshake has no timeout of its own. Here any failure closes it.
        conn = _AioConnection(**self._args)
        try:
            await asyncio.wait_for(conn._connect(), self._connect_timeout)
        except BaseException:
            conn.close()
            raise
        return conn

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        try:
            await asyncio.wait_for(self._slots.acquire(), self._timeout)
        except asyncio.TimeoutError:
            raise PoolTimeout(f"no free MySQL connection within {self._timeout} s") from None
        try:
            conn = self._idle.pop() if self._idle else await self._connect()
            try:
                yield conn
            except BaseException:
                conn.close()
                raise
            if self.closed:
                conn.close()
            else:
                self._idle.append(conn)
        finally:
            self._slots.release()

    async def clear(self, *, close: bool = False) -> None:
        """Close the idle connections; ``close=True`` as in :class:`Pool`, saying goodbye to the
        server first (within a second each) instead of just dropping the sockets."""
        idle, self._idle = self._idle, []
        self.closed = self.closed or close
        for conn in idle:
            if close:
                with contextlib.suppress(Exception, asyncio.TimeoutError):
                    await asyncio.wait_for(conn.ensure_closed(), 1.0)
            conn.close()


def _close(conn: pymysql.connections.Connection[Any]) -> None:
    if conn.open:
        conn.close()

"""SQLiteStore: the embedded default. Standard-library ``sqlite3``, WAL, no server to run.

A member of the SQL family (see ``_sql``): its statements are PostgreSQL's with SQLite's
placeholders, run by the same flows; what is its own is the connection (one per thread, opened
on first use with WAL and the schema) and what its errors mean.

Safe for several threads and several processes on one file (WAL, a busy timeout, single-statement
compare-and-set, ``BEGIN IMMEDIATE`` for the two operations that are a transaction). The async
side runs each flow in a worker thread (``_aio.to_thread``: coatcheck's own under asyncio,
trio's under trio): SQLite has no asynchronous API, so this is the one documented thread hop in
coatcheck.

A connection recovers from what happens to the file while the app runs: one opened while the
file was read-only is dropped at its first failed write, and before each operation one
``os.stat`` compares the file's (device, inode) with the one the connection opened, so a
deleted or replaced file is reopened instead of split between old and new connections.
"""

from __future__ import annotations

import contextlib
import math
import os
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar
from urllib.parse import unquote, urlsplit

from .. import _aio
from .._ops import drive
from ..errors import ConfigurationError, StoreError, StoreUnavailableError
from ._sql import COMMIT, Flow, Result, SQLFlows, SQLStoreMethods, Statement, check_options
from ._urls import query_options

__all__ = ["SQLiteStore"]

T = TypeVar("T")
_SCHEMA = (
    'CREATE TABLE IF NOT EXISTS "{t}" (key TEXT PRIMARY KEY, data BLOB NOT NULL,'
    " expires_at REAL NOT NULL, version INTEGER NOT NULL, user_id TEXT) WITHOUT ROWID",
    'CREATE INDEX IF NOT EXISTS "{t}_expires_at" ON "{t}" (expires_at)',
    'CREATE INDEX IF NOT EXISTS "{t}_user_id" ON "{t}" (user_id) WHERE user_id IS NOT NULL',
)
_SQL = {
    "load": 'SELECT data, expires_at, version, user_id FROM "{t}" WHERE key = ? AND expires_at > ?',
    "create": (
        'INSERT INTO "{t}" (key, data, expires_at, version, user_id) VALUES (?, ?, ?, ?, ?)'
        " ON CONFLICT (key) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at,"
        ' version = excluded.version, user_id = excluded.user_id WHERE "{t}".expires_at <= ?'
    ),
    "update": (
        'UPDATE "{t}" SET data = ?, expires_at = max(expires_at, ?), version = ?, user_id = ?'
        " WHERE key = ? AND version = ? AND expires_at > ?"
    ),
    "touch": 'UPDATE "{t}" SET expires_at = ? WHERE key = ? AND expires_at > ? AND expires_at < ?',
    "delete": 'DELETE FROM "{t}" WHERE key = ?',
    "delete_version": 'DELETE FROM "{t}" WHERE key = ? AND version = ? AND expires_at > ?',
    "purge": 'DELETE FROM "{t}" WHERE key IN (SELECT key FROM "{t}" WHERE expires_at <= ? LIMIT ?)',
    "delete_live_user": 'DELETE FROM "{t}" WHERE user_id = ? AND expires_at > ?',
    "delete_user": 'DELETE FROM "{t}" WHERE user_id = ?',
    "list_user": 'SELECT key, data, expires_at, version, user_id FROM "{t}" WHERE user_id = ? AND expires_at > ?',
    "scan": 'SELECT key, data, expires_at, version, user_id FROM "{t}" WHERE key > ? ORDER BY key LIMIT ?',
}
_URL_OPTIONS: dict[str, Callable[[str], Any]] = {"table": str, "timeout": float, "purge_batch": int}
_FIRST_PAUSE, _LONGEST_PAUSE = 0.001, 0.05  # between attempts to set up a connection on a busy file

# Serialises the first connections to each file (by absolute path) within this process.
_OPENING: dict[str, threading.Lock] = {}

_Identity = tuple[int, int]  # a file's (st_dev, st_ino)


class _Flows(SQLFlows):
    """SQLite's statements, and its two-statement revoke."""

    begin = Statement("BEGIN IMMEDIATE")  # take the write lock now: a deferred one could deadlock

    def __init__(self, table: str) -> None:
        super().__init__(table, _SQL)

    def delete_user(self, user_id: str, now: float) -> Flow[int]:
        yield self.begin
        live, _ = yield Statement(self.sql["delete_live_user"], (user_id, now))
        yield Statement(self.sql["delete_user"], (user_id,))
        yield COMMIT
        return live

    def migrate(self) -> Flow[None]:
        for statement in _SCHEMA:
            yield Statement(statement.format(t=self.table))


class _Cursor:
    """What a flow's statements run against: one connection (through its implicit cursor)."""

    __slots__ = ("conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, params: tuple[Any, ...]) -> Result:
        cur = self.conn.execute(sql, params)
        return cur.rowcount, (cur.fetchall() if cur.description else [])


def _is_busy(exc: sqlite3.Error) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


def _retry_while_busy(step: Callable[[], None], deadline: float) -> None:
    """Run ``step``, again after a short, growing pause while it fails as busy, until ``deadline``."""
    pause = _FIRST_PAUSE
    while True:
        try:
            return step()
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(2 * pause, _LONGEST_PAUSE)


class SQLiteStore(SQLStoreMethods):
    """Sessions in one SQLite file; the table is created on first use.

    ``timeout`` (seconds) bounds the wait for a busy file; ``purge_batch`` bounds how many rows
    one purge statement deletes, so a purge never holds the write lock for long.
    """

    database_name = "SQLite"
    expires_natively = False
    _driver_errors: ClassVar[tuple[type[Exception], ...]] = (sqlite3.Error,)

    def __init__(
        self,
        path: str | Path,
        *,
        table: str = "coatcheck_sessions",
        timeout: float = 5.0,
        purge_batch: int = 1000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = str(path)
        if self.path == ":memory:":
            raise ConfigurationError("an SQLite :memory: database is per connection; use memory:// instead")
        if not Path(self.path).parent.is_dir():
            raise ConfigurationError(f"SQLite store directory does not exist: {Path(self.path).parent}")
        check_options(table, purge_batch)
        if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout >= 0):
            raise ConfigurationError(f"timeout must be a finite number of seconds, 0 or more (0: never wait), not {timeout!r}")
        self._setup(_Flows(table), where=repr(self.path), table=table, create_schema=True, purge_batch=purge_batch, clock=clock)
        self._schema_pending = False  # each connection creates the schema as it opens
        self.timeout = timeout
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._opening = _OPENING.setdefault(os.path.abspath(self.path), threading.Lock())

    @classmethod
    def from_url(cls, url: str, *, clock: Callable[[], float] = time.time) -> SQLiteStore:
        """``sqlite:///relative.db`` or ``sqlite:////absolute/path.db``, with ``table``,
        ``timeout`` and ``purge_batch`` as query parameters."""
        parts = urlsplit(url)
        path = unquote(parts.netloc + parts.path)
        if path.startswith("/") and not parts.netloc:
            path = path[1:]
        if not path:
            raise ConfigurationError("sqlite:// URL needs a file path, e.g. sqlite:///sessions.db")
        return cls(path, clock=clock, **query_options(parts.query, _URL_OPTIONS, "SQLite store"))

    def __repr__(self) -> str:
        return f"<SQLiteStore {self._where} table={self.table}>"

    # -- connections -------------------------------------------------------------------------------

    def _identity(self) -> _Identity | None:
        """The database file's (device, inode), or None when it is missing."""
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return stat.st_dev, stat.st_ino

    def _connection(self) -> tuple[sqlite3.Connection, _Cursor]:
        """This thread's connection (and the cursor its flows run on), reopened if the file was
        deleted or replaced since it opened."""
        opened: tuple[sqlite3.Connection, _Identity | None, _Cursor] | None = getattr(self._local, "opened", None)
        if opened is not None:
            identity = self._identity()
            if identity is not None and identity == opened[1]:
                return opened[0], opened[2]
            self._drop_connection()
        conn, identity = self._open()
        cursor = _Cursor(conn)
        self._local.opened = conn, identity, cursor
        return conn, cursor

    def _open(self) -> tuple[sqlite3.Connection, _Identity | None]:
        """Connect and set up (WAL, ``synchronous=NORMAL``, the schema), waiting up to
        ``timeout`` for the file like any write.

        Setting WAL mode on a new file can fail at once with "database is locked" (SQLite does
        not call the busy handler there), so the first connections in this process take turns
        and each retries with a short backoff while another process holds the lock.
        """
        deadline = time.monotonic() + self.timeout
        if not self._opening.acquire(timeout=self.timeout):
            raise StoreUnavailableError(f"SQLite store {self._where} unavailable: other threads are still opening it")
        try:
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
            try:
                _retry_while_busy(lambda: self._set_up(conn), deadline)
            except BaseException:
                conn.close()
                raise
            identity = self._identity()
        finally:
            self._opening.release()
        with self._connections_lock:
            self._connections.append(conn)
        return conn, identity

    def _set_up(self, conn: sqlite3.Connection) -> None:
        """Idempotent, so safe to retry."""
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        drive(self._flows.migrate(), _Cursor(conn))

    def _drop_connection(self) -> None:
        """Close this thread's connection; its next operation opens a new one."""
        opened: tuple[sqlite3.Connection, _Identity | None, _Cursor] | None = getattr(self._local, "opened", None)
        if opened is None:
            return
        self._local.opened = None
        with self._connections_lock:
            if opened[0] in self._connections:
                self._connections.remove(opened[0])
        opened[0].close()

    # -- the SQL family's drivers ------------------------------------------------------------------

    def _once(self, flow: Flow[T]) -> T:
        conn, cursor = self._connection()
        try:
            return drive(flow, cursor)
        except BaseException as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):  # what failed first is what propagates
                    conn.execute("ROLLBACK")
            readonly = isinstance(exc, sqlite3.OperationalError) and "readonly" in str(exc)
            if readonly:  # opened while the file was read-only: reopen next time
                self._drop_connection()
            raise

    def _arun(self, build: Callable[[], Flow[T]]) -> Awaitable[T]:
        # The whole of _run, retries included, in a worker thread: the awaitable to_thread returns,
        # with none of ours around it (this runs for every store operation).
        return _aio.to_thread(self._run, build)

    def _transient(self, exc: Exception) -> bool:
        return False  # a busy file was already waited for, up to ``timeout``

    def _error(self, exc: Exception) -> StoreError:
        if isinstance(exc, sqlite3.OperationalError) and (_is_busy(exc) or "unable to open" in str(exc)):
            return StoreUnavailableError(f"SQLite store {self._where} unavailable: {exc}")
        return StoreError(f"SQLite store {self._where} failed: {exc}")

    def close(self) -> None:
        """Close every connection this store opened."""
        with self._connections_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    async def aclose(self) -> None:
        """Async :meth:`close`."""
        self.close()

"""SQLiteStore: the embedded default. Standard-library ``sqlite3``, WAL, no server to run.

Safe for several threads (one connection per thread) and several processes on one file (WAL,
a busy timeout, single-statement compare-and-set). The async side runs each operation in a
worker thread (asyncio's or trio's): SQLite has no asynchronous API, so this is the one
documented thread hop in coatcheck.

A connection recovers from what happens to the file while the app runs: one opened while the
file was read-only is dropped at its first failed write, and before each operation one
``os.stat`` compares the file's (device, inode) with the one the connection opened, so a
deleted or replaced file is reopened instead of split between old and new connections.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from .. import _aio
from ..errors import ConfigurationError, StoreError, StoreUnavailableError
from ._protocol import Record

__all__ = ["SQLiteStore"]

T = TypeVar("T")
_TABLE = "coatcheck_sessions"
_SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {_TABLE} (key TEXT PRIMARY KEY, data BLOB NOT NULL,"
    " expires_at REAL NOT NULL, version INTEGER NOT NULL, user_id TEXT) WITHOUT ROWID",
    f"CREATE INDEX IF NOT EXISTS {_TABLE}_expires_at ON {_TABLE} (expires_at)",
    f"CREATE INDEX IF NOT EXISTS {_TABLE}_user_id ON {_TABLE} (user_id) WHERE user_id IS NOT NULL",
)
_LOAD = f"SELECT data, expires_at, version, user_id FROM {_TABLE} WHERE key = ? AND expires_at > ?"
_CREATE = (
    f"INSERT INTO {_TABLE} (key, data, expires_at, version, user_id) VALUES (?, ?, ?, ?, ?)"
    f" ON CONFLICT (key) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at,"
    f" version = excluded.version, user_id = excluded.user_id WHERE {_TABLE}.expires_at <= ?"
)
_UPDATE = (
    f"UPDATE {_TABLE} SET data = ?, expires_at = max(expires_at, ?), version = ?, user_id = ?"
    " WHERE key = ? AND version = ? AND expires_at > ?"
)
_TOUCH = f"UPDATE {_TABLE} SET expires_at = ? WHERE key = ? AND expires_at > ? AND expires_at < ?"
_DELETE = f"DELETE FROM {_TABLE} WHERE key = ?"
_DELETE_VERSION = f"DELETE FROM {_TABLE} WHERE key = ? AND version = ? AND expires_at > ?"
_PURGE = f"DELETE FROM {_TABLE} WHERE key IN (SELECT key FROM {_TABLE} WHERE expires_at <= ? LIMIT ?)"
_DELETE_USER = f"DELETE FROM {_TABLE} WHERE user_id = ? AND expires_at > ?"
_DELETE_USER_ALL = f"DELETE FROM {_TABLE} WHERE user_id = ?"
_LIST_USER = f"SELECT key, data, expires_at, version, user_id FROM {_TABLE} WHERE user_id = ? AND expires_at > ?"
_FIRST_PAUSE, _LONGEST_PAUSE = 0.001, 0.05  # between attempts to set up a connection on a busy file

# Serialises the first connections to each file (by absolute path) within this process.
_OPENING: dict[str, threading.Lock] = {}

_Identity = tuple[int, int]  # a file's (st_dev, st_ino)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


def _set_up(conn: sqlite3.Connection) -> None:
    """WAL, ``synchronous=NORMAL`` and the schema; idempotent, so safe to retry."""
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    for statement in _SCHEMA:
        conn.execute(statement)


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


class SQLiteStore:
    """Sessions in one SQLite file; the schema is created on first use.

    ``purge_batch`` bounds how many rows one purge statement deletes, so a purge never holds
    the write lock for long.
    """

    def __init__(
        self, path: str | Path, *, timeout: float = 5.0, purge_batch: int = 1000, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = str(path)
        if self.path == ":memory:":
            raise ConfigurationError("an SQLite :memory: database is per connection; use memory:// instead")
        if not Path(self.path).parent.is_dir():
            raise ConfigurationError(f"SQLite store directory does not exist: {Path(self.path).parent}")
        self.timeout = timeout
        self.purge_batch = purge_batch
        self._clock = clock
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._opening = _OPENING.setdefault(os.path.abspath(self.path), threading.Lock())

    @classmethod
    def from_url(cls, url: str, *, clock: Callable[[], float] = time.time) -> SQLiteStore:
        """``sqlite:///relative.db`` or ``sqlite:////absolute/path.db``."""
        parts = urlsplit(url)
        path = unquote(parts.netloc + parts.path)
        if path.startswith("/") and not parts.netloc:
            path = path[1:]
        if not path:
            raise ConfigurationError("sqlite:// URL needs a file path, e.g. sqlite:///sessions.db")
        return cls(path, clock=clock)

    def _identity(self) -> _Identity | None:
        """The database file's (device, inode), or None when it is missing."""
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return stat.st_dev, stat.st_ino

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection, reopened if the file was deleted or replaced since it opened."""
        opened: tuple[sqlite3.Connection, _Identity | None] | None = getattr(self._local, "opened", None)
        if opened is not None:
            identity = self._identity()
            if identity is not None and identity == opened[1]:
                return opened[0]
            self._drop_connection()
        conn, identity = self._open()
        self._local.opened = conn, identity
        return conn

    def _open(self) -> tuple[sqlite3.Connection, _Identity | None]:
        """Connect and set up, waiting up to ``timeout`` for the file like any write.

        Setting WAL mode on a new file can fail at once with "database is locked" (SQLite does
        not call the busy handler there), so the first connections in this process take turns
        and each retries with a short backoff while another process holds the lock.
        """
        deadline = time.monotonic() + self.timeout
        if not self._opening.acquire(timeout=self.timeout):
            raise StoreUnavailableError(f"SQLite store {self.path!r} unavailable: other threads are still opening it")
        try:
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
            try:
                _retry_while_busy(lambda: _set_up(conn), deadline)
            except BaseException:
                conn.close()
                raise
            identity = self._identity()
        finally:
            self._opening.release()
        with self._connections_lock:
            self._connections.append(conn)
        return conn, identity

    def _drop_connection(self) -> None:
        """Close this thread's connection; its next operation opens a new one."""
        opened: tuple[sqlite3.Connection, _Identity | None] | None = getattr(self._local, "opened", None)
        if opened is None:
            return
        self._local.opened = None
        with self._connections_lock:
            if opened[0] in self._connections:
                self._connections.remove(opened[0])
        opened[0].close()

    def _run(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return operation(self._connection())
        except sqlite3.OperationalError as exc:
            if "readonly" in str(exc):  # opened while the file was read-only: reopen next time
                self._drop_connection()
            if _is_busy(exc) or "unable to open" in str(exc):
                raise StoreUnavailableError(f"SQLite store {self.path!r} unavailable: {exc}") from exc
            raise StoreError(f"SQLite store {self.path!r} failed: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite store {self.path!r} failed: {exc}") from exc

    def _execute(self, sql: str, *params: Any) -> int:
        return self._run(lambda conn: conn.execute(sql, params).rowcount)

    # -- Store -----------------------------------------------------------------------------------

    def load(self, key: str) -> Record | None:
        """The live record under ``key``, or None."""
        row = self._run(lambda conn: conn.execute(_LOAD, (key, self._clock())).fetchone())
        return None if row is None else Record(bytes(row[0]), row[1], row[2], row[3])

    def save(self, key: str, record: Record, *, expected_version: int | None) -> bool:
        """Create (``expected_version=None``) or compare-and-set, in one statement."""
        r = record
        if expected_version is None:
            return self._execute(_CREATE, key, r.data, r.expires_at, r.version, r.user_id, self._clock()) == 1
        return self._execute(_UPDATE, r.data, r.expires_at, r.version, r.user_id, key, expected_version, self._clock()) == 1

    def touch(self, key: str, expires_at: float) -> bool:
        """Move a live record's expiry forward (never backward); False if none moved."""
        return self._execute(_TOUCH, expires_at, key, self._clock(), expires_at) == 1

    def rotate(self, old_key: str, new_key: str, record: Record, *, expected_version: int) -> bool:
        """Atomically delete ``old_key`` at ``expected_version`` and create ``new_key``."""
        r = record

        def transaction(conn: sqlite3.Connection) -> bool:
            now = self._clock()
            conn.execute("BEGIN IMMEDIATE")
            try:
                ok = (
                    conn.execute(_DELETE_VERSION, (old_key, expected_version, now)).rowcount == 1
                    and conn.execute(_CREATE, (new_key, r.data, r.expires_at, r.version, r.user_id, now)).rowcount == 1
                )
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT" if ok else "ROLLBACK")
            return ok

        return self._run(transaction)

    def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        self._execute(_DELETE, key)

    def delete_expired(self, now: float) -> int:
        """Remove expired rows in batches of ``purge_batch`` (short write locks)."""
        total = 0
        while (deleted := self._execute(_PURGE, now, self.purge_batch)) > 0:
            total += deleted
            if deleted < self.purge_batch:
                break
        return total

    def delete_user(self, user_id: str) -> int:
        """Remove every session of ``user_id``; return how many were live."""
        live = self._execute(_DELETE_USER, user_id, self._clock())
        self._execute(_DELETE_USER_ALL, user_id)
        return live

    def list_user(self, user_id: str) -> list[tuple[str, Record]]:
        """The live ``(key, record)`` pairs of ``user_id``."""
        rows = self._run(lambda conn: conn.execute(_LIST_USER, (user_id, self._clock())).fetchall())
        return [(row[0], Record(bytes(row[1]), row[2], row[3], row[4])) for row in rows]

    def close(self) -> None:
        """Close every connection this store opened."""
        with self._connections_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    # -- AsyncStore: the same operations in a worker thread ----------------------------------------

    async def aload(self, key: str) -> Record | None:
        return await _aio.to_thread(self.load, key)

    async def asave(self, key: str, record: Record, *, expected_version: int | None) -> bool:
        return await _aio.to_thread(lambda: self.save(key, record, expected_version=expected_version))

    async def atouch(self, key: str, expires_at: float) -> bool:
        return await _aio.to_thread(self.touch, key, expires_at)

    async def arotate(self, old_key: str, new_key: str, record: Record, *, expected_version: int) -> bool:
        return await _aio.to_thread(lambda: self.rotate(old_key, new_key, record, expected_version=expected_version))

    async def adelete(self, key: str) -> None:
        await _aio.to_thread(self.delete, key)

    async def adelete_expired(self, now: float) -> int:
        return await _aio.to_thread(self.delete_expired, now)

    async def adelete_user(self, user_id: str) -> int:
        return await _aio.to_thread(self.delete_user, user_id)

    async def alist_user(self, user_id: str) -> list[tuple[str, Record]]:
        return await _aio.to_thread(self.list_user, user_id)

    async def aclose(self) -> None:
        self.close()

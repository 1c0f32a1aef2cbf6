"""MySQLStore: sessions in one MySQL or MariaDB table, over PyMySQL (sync) and aiomysql (async).

Schema (created by :meth:`MySQLStore.migrate`, or on first use with ``create_schema=True``)::

    CREATE TABLE coatcheck_sessions (
        `key`      CHAR(64) CHARACTER SET ascii COLLATE ascii_bin PRIMARY KEY,  -- sha256(session id), hex
        data       LONGBLOB NOT NULL,
        expires_at DOUBLE NOT NULL,                                          -- unix seconds
        version    BIGINT NOT NULL,
        user_id    VARBINARY(1020) NULL,      -- UTF-8; binary, so 'alice' never matches 'Alice' or 'alice '
        INDEX coatcheck_sessions_expires_at (expires_at),
        INDEX coatcheck_sessions_user_id (user_id)) ENGINE=InnoDB

Guarantees: create-only is one ``INSERT ... ON DUPLICATE KEY UPDATE`` whose every assignment is
``IF(expires_at <= now, new, old)`` (``expires_at`` assigned last, since MySQL applies them left
to right), read through affected rows: 1 inserted, 2 replaced an expired row, 0 a live row was
there. Connections never set ``CLIENT.FOUND_ROWS``, so affected rows mean *changed* rows; every
successful save bumps ``version``, so a compare-and-set that matched always changes its row.
``rotate`` and ``delete_user`` are one transaction each. "Now" is always the store's clock, sent
as a parameter. Purges delete at most ``purge_batch`` rows per statement.

"Log out everywhere" needs no extra lock against a rotation here: InnoDB's DELETE reads the
latest committed rows (a locking read), so a revoke that waited for a rotation's transaction
sees the row it inserted. A revoke can lose a deadlock against concurrent writers instead; the
store then runs it again (see ``_sql``).

Connect, statement (client read/write timeout, server lock-wait timeouts) and pool-acquire times
are bounded; running out of any of them, or losing the server, raises
:class:`~coatcheck.errors.StoreUnavailableError`. A connection that raised is closed, never
reused, and the idle ones are dropped when the server was lost, so the same store works again
once the server is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar
from urllib.parse import unquote, urlsplit

import aiomysql
import pymysql

from .._ops import adrive, drive
from ..errors import ConfigurationError, StoreError, StoreUnavailableError
from ._pools import AsyncPool, Pool, PooledStore
from ._protocol import Record
from ._sql import (
    BEGIN,
    COMMIT,
    SQL_URL_OPTIONS,
    Flow,
    Result,
    SQLFlows,
    SQLStoreMethods,
    Statement,
    connection_cause,
)
from ._urls import query_options

__all__ = ["MySQLStore"]

T = TypeVar("T")

_MIGRATE_LOCK = "SELECT GET_LOCK(%s, 10)"  # concurrent migrations wait instead of racing
_MIGRATE_UNLOCK = "SELECT RELEASE_LOCK(%s)"
_TABLE_EXISTS = "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND LOWER(table_name) = LOWER(%s)"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS `{t}` (`key` CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,"
    " data LONGBLOB NOT NULL, expires_at DOUBLE NOT NULL, version BIGINT NOT NULL,"
    " user_id VARBINARY(1020) NULL,"
    " INDEX `{t}_expires_at` (expires_at), INDEX `{t}_user_id` (user_id)) ENGINE=InnoDB"
)
_SQL = {
    "load": "SELECT data, expires_at, version, user_id FROM `{t}` WHERE `key` = %s AND expires_at > %s",
    # No VALUES(): deprecated in MySQL 8 (a warning, which aiomysql turns into a Python warning).
    "create": (
        "INSERT INTO `{t}` (`key`, data, expires_at, version, user_id) VALUES (%s, %s, %s, %s, %s)"
        " ON DUPLICATE KEY UPDATE data = IF(expires_at <= %s, %s, data), version = IF(expires_at <= %s, %s, version),"
        " user_id = IF(expires_at <= %s, %s, user_id), expires_at = IF(expires_at <= %s, %s, expires_at)"
    ),
    "update": (
        "UPDATE `{t}` SET data = %s, expires_at = GREATEST(expires_at, %s), version = %s, user_id = %s"
        " WHERE `key` = %s AND version = %s AND expires_at > %s"
    ),
    "touch": "UPDATE `{t}` SET expires_at = %s WHERE `key` = %s AND expires_at > %s AND expires_at < %s",
    "delete": "DELETE FROM `{t}` WHERE `key` = %s",
    "delete_version": "DELETE FROM `{t}` WHERE `key` = %s AND version = %s AND expires_at > %s",
    "purge": "DELETE FROM `{t}` WHERE expires_at <= %s LIMIT %s",
    "delete_user_live": "DELETE FROM `{t}` WHERE user_id = %s AND expires_at > %s",
    "delete_user_all": "DELETE FROM `{t}` WHERE user_id = %s",
    "list_user": "SELECT `key`, data, expires_at, version, user_id FROM `{t}` WHERE user_id = %s AND expires_at > %s",
    "scan": "SELECT `key`, data, expires_at, version, user_id FROM `{t}` WHERE `key` > %s ORDER BY `key` LIMIT %s",
}
# Refused, lost, gone, too many connections, server shutdown, lock wait / statement time exceeded.
_UNAVAILABLE = frozenset({1040, 1053, 1205, 1927, 1969, 2002, 2003, 2005, 2006, 2013, 2055, 3024, 4031})
_NO_SUCH_TABLE = 1146
_DEADLOCK = 1213


class _Flows(SQLFlows):
    """This database's statements and the operations whose SQL differs."""

    def __init__(self, table: str) -> None:
        super().__init__(table, _SQL)

    @staticmethod
    def record(row: tuple[Any, ...]) -> Record:
        return Record(bytes(row[0]), float(row[1]), int(row[2]), None if row[3] is None else bytes(row[3]).decode())

    def create(self, key: str, r: Record, now: float) -> Flow[bool]:
        replace = (now, r.data, now, r.version, now, r.user_id, now, r.expires_at)  # the IF()s, in order
        count, _ = yield Statement(self.sql["create"], (key, r.data, r.expires_at, r.version, r.user_id, *replace))
        return count in (1, 2)

    def delete_user(self, user_id: str, now: float) -> Flow[int]:
        yield BEGIN  # both deletes or neither: run again after a deadlock, it counts right
        live, _ = yield Statement(self.sql["delete_user_live"], (user_id, now))
        yield Statement(self.sql["delete_user_all"], (user_id,))
        yield COMMIT
        return live

    def migrate(self) -> Flow[None]:
        lock = f"coatcheck:{self.table}"
        yield Statement(_MIGRATE_LOCK, (lock,))
        _, rows = yield Statement(_TABLE_EXISTS, (self.table,))
        if not rows[0][0]:  # checked first: IF NOT EXISTS on an existing table raises a note (a warning)
            yield Statement(_SCHEMA.format(t=self.table))
        yield Statement(_MIGRATE_UNLOCK, (lock,))


def _why(exc: BaseException) -> str:
    """An error's message; an OS error's own words for its errno ("Connection refused") first,
    since asyncio's say only "Connect call failed"."""
    if isinstance(exc, OSError) and exc.errno and exc.strerror != os.strerror(exc.errno):
        return f"{os.strerror(exc.errno)} ({exc})"
    return str(exc) or type(exc).__name__


def _code(exc: Exception) -> int | None:
    """The server's or the client's error number (1213, 2003, ...), or None."""
    code = exc.args[0] if isinstance(exc, pymysql.err.Error) and exc.args else None
    return code if isinstance(code, int) else None


class _AioConnection(aiomysql.Connection):  # type: ignore[misc]
    """aiomysql's connection, escaping bytes itself: aiomysql 0.3 imports an escaper that recent
    PyMySQL releases replaced with a placeholder string (PyMySQL issue 1274): bytes would break.
    Closed after its event loop closed (a pool dropped with its loop), it shuts its socket down
    (the server ends the session at once) instead of raising: asyncio can no longer close it, so
    the garbage collector frees the file descriptor."""

    _loop: asyncio.AbstractEventLoop
    _writer: asyncio.StreamWriter | None
    _reader: asyncio.StreamReader | None

    def escape(self, obj: Any) -> str:
        if isinstance(obj, bytes):
            return pymysql.converters.escape_bytes(obj)
        return super().escape(obj)  # type: ignore[no-any-return]

    def close(self) -> None:
        if self._writer is not None and self._loop.is_closed():
            writer, self._writer, self._reader = self._writer, None, None
            sock = writer.get_extra_info("socket")  # None: a TLS transport already lost
            if sock is not None:
                with contextlib.suppress(OSError, TypeError):  # uvloop refuses: it closed the socket with its loop
                    sock.shutdown(socket.SHUT_RDWR)
            return
        super().close()


def _close(conn: pymysql.connections.Connection[Any]) -> None:
    if conn.open:
        conn.close()


async def _aclose(conn: _AioConnection) -> None:
    """Say goodbye to the server (within a second), then drop the socket, whatever happens."""
    try:
        with contextlib.suppress(Exception, asyncio.TimeoutError):
            await asyncio.wait_for(conn.ensure_closed(), 1.0)
    finally:
        conn.close()


def _lost(conn: pymysql.connections.Connection[Any] | _AioConnection) -> bool:
    """Whether the driver closed ``conn`` itself: the server went away (or a call was cut off)."""
    return not conn.open if isinstance(conn, pymysql.connections.Connection) else bool(conn.closed)


class _Cursor:
    """What a flow's statements run against: one cursor, sync (PyMySQL) or async (aiomysql,
    which has no read timeout of its own: each statement gets ``timeout`` seconds)."""

    __slots__ = ("cur", "timeout")

    def __init__(self, cur: Any, timeout: float | None = None) -> None:
        self.cur, self.timeout = cur, timeout

    def execute(self, sql: str, params: tuple[Any, ...]) -> Result:
        self.cur.execute(sql, params or None)
        return self.cur.rowcount, list(self.cur.fetchall())

    async def aexecute(self, sql: str, params: tuple[Any, ...]) -> Result:
        try:
            await asyncio.wait_for(self.cur.execute(sql, params or None), self.timeout)
        except asyncio.TimeoutError:  # what it says, not "TimeoutError: CancelledError"
            raise TimeoutError(f"no reply from the server within {self.timeout:g} s") from None
        return self.cur.rowcount, list(await self.cur.fetchall())


class MySQLStore(SQLStoreMethods, PooledStore["pymysql.connections.Connection[Any]", _AioConnection]):
    """Sessions in a MySQL or MariaDB table; one object serves sync and async code.

    Nothing connects until first use; each event loop that uses the store gets a pool of its
    own. ``close()`` releases the sync connections, ``aclose()`` the running loop's async ones.

    Timeouts (seconds): ``connect_timeout``, ``statement_timeout`` (client read/write timeout and
    the server's lock-wait timeouts), ``pool_timeout`` (waiting for a free connection).
    """

    database_name = "MySQL"
    expires_natively = False
    asyncio_only = True  # asyncio drivers: refused under trio
    _driver_errors: ClassVar[tuple[type[Exception], ...]] = (pymysql.err.Error, OSError, asyncio.TimeoutError)

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 3306,
        user: str = "root",
        password: str = "",
        database: str,
        table: str = "coatcheck_sessions",
        create_schema: bool = False,
        connect_timeout: float = 2.0,
        statement_timeout: float = 5.0,
        pool_timeout: float = 2.0,
        pool_size: int = 10,
        purge_batch: int = 1000,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._pool_settings(
            table,
            purge_batch,
            connect_timeout=connect_timeout,
            statement_timeout=statement_timeout,
            pool_timeout=pool_timeout,
            pool_size=pool_size,
        )
        if not database:
            raise ConfigurationError("the MySQL store needs a database name")
        lock_wait = max(1, math.ceil(statement_timeout))
        self._args: dict[str, Any] = {
            "host": host,
            "port": port,
            "user": user,
            "password": password,
            "charset": "utf8mb4",
            "autocommit": True,
            "connect_timeout": connect_timeout,
            "ssl": ssl_context,
            "init_command": f"SET SESSION innodb_lock_wait_timeout = {lock_wait}, lock_wait_timeout = {lock_wait}",
        }
        self.database = database
        self._setup(
            _Flows(table),
            where=f"{host}:{port}/{database}",
            table=table,
            create_schema=create_schema,
            purge_batch=purge_batch,
            clock=clock,
        )
        self._no_pools()

    @classmethod
    def from_url(cls, url: str, *, clock: Callable[[], float] = time.time) -> MySQLStore:
        """``mysql://user:password@host:3306/database?table=sessions&create_schema=1`` (or ``mariadb://``).

        Query parameters: ``table``, ``create_schema``, ``connect_timeout``, ``statement_timeout``,
        ``pool_timeout``, ``pool_size``, ``purge_batch``. For TLS pass ``ssl_context`` to the constructor.
        """
        parts = urlsplit(url)
        options = query_options(parts.query, SQL_URL_OPTIONS, "MySQL store")
        try:
            port = parts.port or 3306
        except ValueError as exc:
            raise ConfigurationError(f"bad port in the MySQL store URL: {exc}") from exc
        database = unquote(parts.path.lstrip("/"))
        if not database or "/" in database:
            raise ConfigurationError("a MySQL store URL names one database: mysql://user:password@host:3306/database")
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=port,
            user=unquote(parts.username or "root"),
            password=unquote(parts.password or ""),
            database=database,
            clock=clock,
            **options,
        )

    def __repr__(self) -> str:
        return f"<MySQLStore {self._where} table={self.table}>"

    # -- plumbing ----------------------------------------------------------------------------------

    def _connect(self) -> pymysql.connections.Connection[Any]:
        timeout = self.statement_timeout
        return pymysql.connect(**self._args, database=self.database, read_timeout=timeout, write_timeout=timeout)

    def _transient(self, exc: Exception) -> bool:
        return _code(exc) == _DEADLOCK

    def _unavailable(self, exc: Exception) -> bool:
        return _code(exc) in _UNAVAILABLE or isinstance(exc, (OSError, asyncio.TimeoutError))

    def _error(self, exc: Exception) -> StoreError:
        if _code(exc) == _NO_SUCH_TABLE:
            return self._missing_table()
        reason = _why(exc)
        if exc.__cause__ is not None:  # aiomysql says only "Can't connect"; what it wraps says why
            reason = f"{reason}: {_why(exc.__cause__)}"
        reason = connection_cause(reason, self._where.partition("/")[0]) or reason
        if self._unavailable(exc) or self._transient(exc):  # transient: the retries ran out
            return StoreUnavailableError(f"MySQL store {self._where} unavailable: {reason}")
        return StoreError(f"MySQL store {self._where} failed: {reason}")

    def _new_pool(self) -> Pool[pymysql.connections.Connection[Any]]:
        return Pool("MySQL", self._connect, _close, self.pool_size, self.pool_timeout, lost=_lost)

    async def _aconnect(self) -> _AioConnection:
        # Not aiomysql.connect(): cancelled mid-handshake it leaks the open socket (it cleans up on
        # Exception only), and the handshake has no timeout of its own. Here any failure closes it.
        conn = _AioConnection(**self._args, db=self.database)
        try:
            await asyncio.wait_for(conn._connect(), self.connect_timeout)
        except BaseException:
            conn.close()
            raise
        return conn

    def _abandon(self, conn: _AioConnection) -> None:
        conn.close()

    def _new_async_pool(self) -> AsyncPool[_AioConnection]:
        return AsyncPool("MySQL", self._aconnect, _aclose, self.pool_size, self.pool_timeout, lost=_lost)

    def _once(self, flow: Flow[T]) -> T:
        with self._sync_pool().connection() as conn, conn.cursor() as cur:
            return drive(flow, _Cursor(cur))

    async def _aonce(self, flow: Flow[T]) -> T:
        async with self._async_pool().connection() as conn:
            return await adrive(flow, _Cursor(await conn.cursor(), self.statement_timeout))

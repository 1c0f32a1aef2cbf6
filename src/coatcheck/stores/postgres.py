"""PostgresStore: sessions in one PostgreSQL table, over psycopg 3 (sync and async pools).

Schema (created by :meth:`PostgresStore.migrate`, or on first use with ``create_schema=True``)::

    CREATE TABLE coatcheck_sessions (
        key        varchar(64) PRIMARY KEY,      -- sha256(session id), hex; never the raw ID
        data       bytea NOT NULL,
        expires_at double precision NOT NULL,    -- unix seconds
        version    bigint NOT NULL,
        user_id    varchar(255));
    CREATE INDEX coatcheck_sessions_expires_at ON coatcheck_sessions (expires_at);
    CREATE INDEX coatcheck_sessions_user_id ON coatcheck_sessions (user_id) WHERE user_id IS NOT NULL;

Guarantees: every write is one statement (``INSERT ... ON CONFLICT DO UPDATE ... WHERE expired``
for create-only, ``UPDATE ... WHERE version = N AND live`` for compare-and-set) except
``rotate`` and ``delete_user``, which are one transaction each. "Now" is always the store's
clock, sent as a parameter. Purges delete at most ``purge_batch`` rows per statement.

"Log out everywhere" wins against any rotation. At READ COMMITTED a ``DELETE ... WHERE user_id``
that waits for a row a rotation deleted skips it once the rotation commits, and never sees the
row the rotation inserted: it was not in the statement's snapshot. So a rotation that writes a
row for a user first takes a shared transaction-level advisory lock on (table, user), and
``delete_user`` takes the exclusive one in its own transaction before its DELETE:

* rotation first: the revoke waits for the lock until the rotation has committed; its DELETE
  then starts with a snapshot that holds the new row, and deletes it;
* revoke first: the rotation waits for the lock until the revoke has committed; its DELETE of
  the old row at its version then finds the row gone, and the rotation rolls back (False).

Anything else that writes a user's row changes a row in place (compare-and-set, ``touch``), which
a waiting DELETE re-checks, or creates a new session, which is a login after the revoke. The
locks are transaction-level, so they end with the transaction however it ends (PgBouncer in
transaction mode included), and PostgreSQL queues a shared request behind a waiting exclusive
one, so a stream of rotations cannot starve a revoke. A hash collision only makes unrelated
users wait for each other.

Connect, statement and pool-acquire times are bounded, and so is every round trip on the client
side: libpq has no read timeout and ``statement_timeout`` acts on the server only, so a statement
whose reply has not come ``statement_timeout`` + 1 s after it was sent has its socket shut down
(see ``_watchdog``) and fails at once, however silent the server or the network. Running out of
any of them, or losing the server, raises :class:`~coatcheck.errors.StoreUnavailableError`
(a failed connect with its reason; a pool timeout with the reason of the last failed connect).
A connection whose use raised is closed, never reused, so no transaction it was in survives
it; when the server was lost the idle connections are closed too, and the pools (see
``_pools``) reconnect on demand.

SQL text and the statement sequences ("flows") are shared by the sync and async sides; each
public method is a one-line driver call.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar
from urllib.parse import quote, urlencode, urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq import ExecStatus, TransactionStatus

from .._ops import adrive, drive
from ..errors import ConfigurationError, StoreError, StoreUnavailableError
from ._pools import AsyncPool, Pool, PooledStore
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
from ._watchdog import WATCHDOG

__all__ = ["PostgresStore"]

T = TypeVar("T")

_SCHEMA = (
    'CREATE TABLE IF NOT EXISTS "{t}" (key varchar(64) PRIMARY KEY, data bytea NOT NULL,'
    " expires_at double precision NOT NULL, version bigint NOT NULL, user_id varchar(255))",
    'CREATE INDEX IF NOT EXISTS "{t}_expires_at" ON "{t}" (expires_at)',
    'CREATE INDEX IF NOT EXISTS "{t}_user_id" ON "{t}" (user_id) WHERE user_id IS NOT NULL',
)
_MIGRATE_LOCK = "SELECT pg_advisory_xact_lock(hashtext(%s))"
_USER_LOCKS = {  # (table, user): shared by rotations, exclusive for a revoke; see the module docstring
    False: "SELECT pg_advisory_xact_lock_shared(hashtextextended(%s, 0))",
    True: "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
}
_SQL = {
    "load": 'SELECT data, expires_at, version, user_id FROM "{t}" WHERE key = %s AND expires_at > %s',
    "create": (
        'INSERT INTO "{t}" AS t (key, data, expires_at, version, user_id) VALUES (%s, %s, %s, %s, %s)'
        " ON CONFLICT (key) DO UPDATE SET data = EXCLUDED.data, expires_at = EXCLUDED.expires_at,"
        " version = EXCLUDED.version, user_id = EXCLUDED.user_id WHERE t.expires_at <= %s"
    ),
    "update": (
        'UPDATE "{t}" SET data = %s, expires_at = GREATEST(expires_at, %s), version = %s, user_id = %s'
        " WHERE key = %s AND version = %s AND expires_at > %s"
    ),
    "touch": 'UPDATE "{t}" SET expires_at = %s WHERE key = %s AND expires_at > %s AND expires_at < %s',
    "delete": 'DELETE FROM "{t}" WHERE key = %s',
    "delete_version": 'DELETE FROM "{t}" WHERE key = %s AND version = %s AND expires_at > %s',
    "purge": 'DELETE FROM "{t}" WHERE ctid = ANY(ARRAY(SELECT ctid FROM "{t}" WHERE expires_at <= %s LIMIT %s))',
    "delete_user": (
        'WITH gone AS (DELETE FROM "{t}" WHERE user_id = %s RETURNING expires_at) SELECT count(*) FROM gone WHERE expires_at > %s'
    ),
    "list_user": 'SELECT key, data, expires_at, version, user_id FROM "{t}" WHERE user_id = %s AND expires_at > %s',
    "scan": 'SELECT key, data, expires_at, version, user_id FROM "{t}" WHERE key > %s ORDER BY key LIMIT %s',
}
# A dead peer is noticed by TCP keepalive within about a minute (libpq defaults: hours).
_KEEPALIVES = {"keepalives": "1", "keepalives_idle": "30", "keepalives_interval": "10", "keepalives_count": "3"}
_REPLY_MARGIN = 1.0  # seconds past statement_timeout before a silent server's socket is shut down
_TRANSIENT = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)
_UNAVAILABLE = (psycopg.OperationalError, TimeoutError)  # refused, lost, statement, reply or pool timeout


class _Flows(SQLFlows):
    """This database's statements and the operations whose SQL differs."""

    def __init__(self, table: str) -> None:
        super().__init__(table, _SQL)

    def lock_user(self, user_id: str | None, *, exclusive: bool) -> Flow[None]:
        if user_id is not None:
            yield Statement(_USER_LOCKS[exclusive], (f"coatcheck:{self.table}:user:{user_id}",))

    def delete_user(self, user_id: str, now: float) -> Flow[int]:
        yield BEGIN
        yield from self.lock_user(user_id, exclusive=True)  # the DELETE's snapshot comes after it
        _, rows = yield Statement(self.sql["delete_user"], (user_id, now))
        yield COMMIT
        return int(rows[0][0])

    def migrate(self) -> Flow[None]:
        yield BEGIN
        yield Statement(_MIGRATE_LOCK, (f"coatcheck:{self.table}",))  # concurrent migrations wait, not fail
        for statement in _SCHEMA:
            yield Statement(statement.format(t=self.table))
        yield COMMIT


class _Connection(psycopg.Connection[Any]):
    """The sync pool's connections, each keeping one cursor for every flow it runs (see :func:`_statements`)."""

    _statements: psycopg.Cursor[Any] | None = None


class _AsyncConnection(psycopg.AsyncConnection[Any]):
    """The async pool's connections: as :class:`_Connection`."""

    _statements: psycopg.AsyncCursor[Any] | None = None


C = TypeVar("C", psycopg.Cursor[Any], psycopg.AsyncCursor[Any])


def _statements(conn: _Connection | _AsyncConnection, make: Callable[[], C]) -> C:
    """The cursor ``conn`` runs flows on: made once per connection, not once per flow (a cursor
    costs more to build than a short statement costs to send). A pooled connection runs one
    flow at a time, and a cursor's ``execute`` starts from a clean state, so it can be shared
    by the flows one after another."""
    cur: C | None = conn._statements  # type: ignore[assignment]
    if cur is None or cur.closed:
        cur = conn._statements = make()
    return cur


def _has_rows(cur: psycopg.Cursor[Any] | psycopg.AsyncCursor[Any]) -> bool:
    """Whether the last statement returned rows (``cur.description`` says so too, but builds a
    column object per column to say it)."""
    result = cur.pgresult
    return result is not None and result.status == ExecStatus.TUPLES_OK


class _Cursor:
    """What a flow's statements run against: one cursor of a connection, each statement within
    ``limit`` seconds (the watchdog shuts the socket down past it)."""

    __slots__ = ("cur", "fd", "limit")

    def __init__(self, cur: Any, fd: int, limit: float) -> None:
        self.cur, self.fd, self.limit = cur, fd, limit

    def execute(self, sql: str, params: tuple[Any, ...]) -> Result:
        cur = self.cur
        with WATCHDOG.deadline(self.fd, self.limit):
            cur.execute(sql, params or None)
        return cur.rowcount, (cur.fetchall() if _has_rows(cur) else [])

    async def aexecute(self, sql: str, params: tuple[Any, ...]) -> Result:
        cur = self.cur
        with WATCHDOG.deadline(self.fd, self.limit):
            await cur.execute(sql, params or None)
        return cur.rowcount, (await cur.fetchall() if _has_rows(cur) else [])


def _idle(conn: _Connection | _AsyncConnection) -> bool:
    """Whether ``conn`` can serve another flow: open, and in no transaction."""
    return conn.pgconn.transaction_status == TransactionStatus.IDLE


def _lost(conn: _Connection | _AsyncConnection) -> bool:
    """Whether ``conn`` died: the server went away, or the watchdog shut its socket down."""
    return conn.closed


class PostgresStore(SQLStoreMethods, PooledStore[_Connection, _AsyncConnection]):
    """Sessions in a PostgreSQL table; one object serves sync and async code.

    ``conninfo`` is a libpq URL or ``key=value`` string. Nothing connects until first use; each
    event loop that uses the store gets a pool of its own. ``close()`` releases the sync
    connections, ``aclose()`` the running loop's async ones.

    Timeouts (seconds): ``connect_timeout`` (libpq; at least 2), ``statement_timeout`` (set on
    every connection; the client gives up on a reply 1 s later), ``pool_timeout`` (waiting for a
    free connection).
    """

    database_name = "PostgreSQL"
    expires_natively = False
    asyncio_only = True  # asyncio drivers: refused under trio
    _driver_errors: ClassVar[tuple[type[Exception], ...]] = (psycopg.Error, TimeoutError)

    def __init__(
        self,
        conninfo: str,
        *,
        table: str = "coatcheck_sessions",
        create_schema: bool = False,
        connect_timeout: float = 2.0,
        statement_timeout: float = 5.0,
        pool_timeout: float = 2.0,
        pool_size: int = 10,
        purge_batch: int = 1000,
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
        try:
            params = conninfo_to_dict(conninfo)
        except psycopg.Error as exc:
            raise ConfigurationError(f"bad PostgreSQL connection string: {exc}") from exc
        if not all(port.isdigit() and 0 < int(port) < 65536 for port in str(params.get("port") or "5432").split(",")):
            raise ConfigurationError(f"bad port in the PostgreSQL connection string: {params.get('port')!r}")
        options = f"{params.get('options') or ''} -c statement_timeout={round(statement_timeout * 1000)}".strip()
        keepalives = {name: params.get(name) or default for name, default in _KEEPALIVES.items()}
        self._conninfo = make_conninfo(
            conninfo,
            connect_timeout=max(2, math.ceil(connect_timeout)),
            options=options,
            application_name=params.get("application_name") or "coatcheck",
            **keepalives,
        )
        self._setup(
            _Flows(table),
            where=f"{params.get('host') or 'localhost'}:{params.get('port') or 5432}/{params.get('dbname') or ''}",
            table=table,
            create_schema=create_schema,
            purge_batch=purge_batch,
            clock=clock,
        )
        self._reply_timeout = statement_timeout + _REPLY_MARGIN
        self._no_pools()

    @classmethod
    def from_url(cls, url: str, *, clock: Callable[[], float] = time.time) -> PostgresStore:
        """``postgresql://user:password@host:5432/dbname?table=sessions&create_schema=1``.

        coatcheck takes ``table``, ``create_schema``, ``connect_timeout``, ``statement_timeout``,
        ``pool_timeout``, ``pool_size`` and ``purge_batch`` from the query; the rest go to libpq.
        """
        parts = urlsplit(url)
        theirs: list[tuple[str, str]] = []
        ours = query_options(parts.query, SQL_URL_OPTIONS, "PostgreSQL store", others=theirs)
        conninfo = parts._replace(query=urlencode(theirs, quote_via=quote)).geturl()
        return cls(conninfo, clock=clock, **ours)

    def __repr__(self) -> str:
        return f"<PostgresStore {self._where} table={self.table}>"

    # -- plumbing ----------------------------------------------------------------------------------

    def _transient(self, exc: Exception) -> bool:
        return isinstance(exc, _TRANSIENT)

    def _error(self, exc: Exception) -> StoreError:
        if isinstance(exc, psycopg.errors.UndefinedTable):
            return self._missing_table()
        server = self._where.partition("/")[0]
        if isinstance(exc, _UNAVAILABLE):
            said = connection_cause(str(exc), server)
            return StoreUnavailableError(f"PostgreSQL store {self._where} unavailable: {said or exc}")
        return StoreError(f"PostgreSQL store {self._where} failed: {exc}")

    _reusable_across_loops = True  # psycopg waits on whichever loop runs the call

    def _new_pool(self) -> Pool[_Connection]:
        connect = functools.partial(_Connection.connect, self._conninfo, autocommit=True)
        return Pool("PostgreSQL", connect, _Connection.close, **self._pool_options())

    def _abandon(self, conn: _AsyncConnection) -> None:
        conn.pgconn.finish()  # libpq's own close: says goodbye to the server, with no loop

    def _new_async_pool(self) -> AsyncPool[_AsyncConnection]:
        connect = functools.partial(_AsyncConnection.connect, self._conninfo, autocommit=True)
        return AsyncPool("PostgreSQL", connect, _AsyncConnection.close, **self._pool_options())

    def _pool_options(self) -> dict[str, Any]:
        return {"size": self.pool_size, "timeout": self.pool_timeout, "reusable": _idle, "lost": _lost}

    def _once(self, flow: Flow[T]) -> T:
        with self._sync_pool().connection() as conn:
            return drive(flow, _Cursor(_statements(conn, conn.cursor), conn.fileno(), self._reply_timeout))

    async def _aonce(self, flow: Flow[T]) -> T:
        async with self._async_pool().connection() as conn:
            return await adrive(flow, _Cursor(_statements(conn, conn.cursor), conn.fileno(), self._reply_timeout))

"""What the SQL stores share: their Store and AsyncStore methods, each one line over a flow.

A SQL store calls ``_setup`` with its flows (generators of :class:`Statement` operations, one
per store operation) and settings, names its ``database_name``, and provides ``_once`` and
``_aonce`` (run a flow once on a sync or async connection, with the drivers of
:mod:`coatcheck._ops`) and ``_transient`` and ``_error`` (what its driver's errors mean); this
class turns those into the public methods, so PostgreSQL, MySQL and SQLite cannot drift apart.
A store with no async driver (SQLite) overrides ``_arun`` instead of providing ``_aonce``: its
async side is its sync side, retries included, in a worker thread.

A flow that failed with a deadlock or a serialization failure was rolled back by the server and
is run again from its start (a generator cannot be rewound, so the methods pass a builder), at
most ``RETRIES`` times after short random pauses. Every flow is one statement or one transaction
(a purge: statements each complete in itself), so what the failure rolled back is all there is
to do again.
"""

from __future__ import annotations

import math
import random
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar, TypeVar

from .. import _aio
from ..errors import ConfigurationError, StoreError
from ._protocol import Record, ScanPage
from ._urls import flag

T = TypeVar("T")

# coatcheck's own URL query parameters for SQL stores (PostgreSQL passes the others to libpq).
SQL_URL_OPTIONS: dict[str, Callable[[str], Any]] = {
    "table": str,
    "create_schema": flag,
    "connect_timeout": float,
    "statement_timeout": float,
    "pool_timeout": float,
    "pool_size": int,
    "purge_batch": int,
}


Result = tuple[int, list[tuple[Any, ...]]]  # the rowcount and the rows a statement returned
Progress = Callable[[int], None]  # told the running total of a purge after each batch


@dataclass(slots=True)
class Statement:
    """One SQL statement with its parameters: the operation a SQL flow yields (see
    :mod:`coatcheck._ops`), run against a database's cursor by ``execute`` or ``aexecute``, which
    answer ``(rowcount, rows)``."""

    sql: str
    params: tuple[Any, ...] = ()

    def run(self, cursor: Any) -> Result:
        return cursor.execute(self.sql, self.params)  # type: ignore[no-any-return]

    def arun(self, cursor: Any) -> Awaitable[Result]:
        return cursor.aexecute(self.sql, self.params)  # type: ignore[no-any-return]


BEGIN, COMMIT, ROLLBACK = Statement("BEGIN"), Statement("COMMIT"), Statement("ROLLBACK")
Flow = Generator[Statement, Result, T]

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,47}")  # a table name both databases take unquoted


def check_options(table: str, purge_batch: int, **sizes_and_timeouts: float) -> None:
    """Raise :class:`ConfigurationError` for a bad option of a SQL store: ``table``,
    ``purge_batch``, and its other options by name (``pool_size`` a count, ``*timeout`` seconds)."""
    if not isinstance(table, str) or not IDENTIFIER.fullmatch(table):
        raise ConfigurationError(f"table {table!r} is not a valid name: letters, digits and '_', at most 48")
    for name, value in {"purge_batch": purge_batch, **sizes_and_timeouts}.items():
        if name.endswith("timeout"):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigurationError(f"{name} must be a positive, finite number of seconds, not {value!r}")
        elif not (isinstance(value, int) and value >= 1):
            raise ConfigurationError(f"{name} must be a whole number of at least 1, not {value!r}")


# What a driver's connection failure means, from PostgreSQL's (libpq) or MySQL's words, in the
# same words for both: (pattern, what it says, given the match and the server's host:port).
_CAUSES: tuple[tuple[re.Pattern[str], Callable[[re.Match[str], str], str]], ...] = (
    (
        re.compile(r"""database "([^"]+)" does not exist|Unknown database '([^']+)'"""),
        lambda m, server: f'database "{m[1] or m[2]}" does not exist',
    ),
    (
        re.compile(
            r"""authentication failed for user "([^"]+)"|role "([^"]+)" does not exist|Access denied for user '([^']*)'"""
        ),
        lambda m, server: f'authentication failed for user "{m[1] or m[2] or m[3]}"',
    ),
    (re.compile(r"(?i)connection refused"), lambda m, server: f"connection refused to {server}"),
    (
        re.compile(r"(?i)name or service not known|could not translate host name|nodename nor servname"),
        lambda m, server: f"unknown host in {server}",
    ),
    (re.compile(r"(?i)timeout expired|timed out"), lambda m, server: f"no answer from {server} in time"),
)


def connection_cause(text: str, server: str) -> str | None:
    """What a connection failure's message says went wrong, in a few words ("database "x" does
    not exist", "connection refused to host:port", "authentication failed for user "y""), or
    None when it says nothing this knows."""
    for pattern, say in _CAUSES:
        if (found := pattern.search(text)) is not None:
            return say(found, server)
    return None


RETRIES = 3  # runs of a flow after the first one that lost a deadlock or a serialization check
BACKOFF = 0.01  # seconds: the n-th retry waits between BACKOFF and 2 * BACKOFF times 2 ** (n - 1)


class SQLFlows(ABC):
    """The statement sequences of every operation on one table, shared by both flavours and
    every database; a database supplies its SQL texts and overrides what differs."""

    begin: ClassVar[Statement] = BEGIN  # what starts a transaction that will write

    def __init__(self, table: str, sql: dict[str, str]) -> None:
        self.table = table
        self.sql = {name: text.format(t=table) for name, text in sql.items()}

    @staticmethod
    def record(row: tuple[Any, ...]) -> Record:
        """A Record from ``(data, expires_at, version, user_id)``."""
        return Record(bytes(row[0]), float(row[1]), int(row[2]), row[3])

    def create(self, key: str, r: Record, now: float) -> Flow[bool]:
        """Insert ``r``, or replace an expired row; False if a live row holds ``key``."""
        count, _ = yield Statement(self.sql["create"], (key, r.data, r.expires_at, r.version, r.user_id, now))
        return count == 1

    @abstractmethod
    def delete_user(self, user_id: str, now: float) -> Flow[int]:
        """Delete the user's rows; return how many were live."""

    @abstractmethod
    def migrate(self) -> Flow[None]:
        """Create the table and its indexes if missing."""

    def lock_user(self, user_id: str | None, *, exclusive: bool) -> Flow[None]:
        """Inside a transaction: what keeps a revoke of ``user_id`` (``exclusive``) from missing
        a row that a rotation (shared) writes for that user. Nothing by default: a database whose
        deletes read the latest committed rows needs nothing."""
        yield from ()

    def load(self, key: str, now: float) -> Flow[Record | None]:
        _, rows = yield Statement(self.sql["load"], (key, now))
        return self.record(rows[0]) if rows else None

    def save(self, key: str, r: Record, expected_version: int | None, now: float) -> Flow[bool]:
        if expected_version is None:
            return (yield from self.create(key, r, now))
        count, _ = yield Statement(self.sql["update"], (r.data, r.expires_at, r.version, r.user_id, key, expected_version, now))
        return count == 1

    def touch(self, key: str, expires_at: float, now: float) -> Flow[bool]:
        count, _ = yield Statement(self.sql["touch"], (expires_at, key, now, expires_at))
        return count == 1

    def delete(self, key: str) -> Flow[None]:
        yield Statement(self.sql["delete"], (key,))

    def rotate(self, old_key: str, new_key: str, r: Record, expected_version: int, now: float) -> Flow[bool]:
        yield self.begin
        yield from self.lock_user(r.user_id, exclusive=False)
        deleted, _ = yield Statement(self.sql["delete_version"], (old_key, expected_version, now))
        ok = deleted == 1 and (yield from self.create(new_key, r, now))
        yield COMMIT if ok else ROLLBACK
        return ok

    def purge(self, now: float, batch: int, progress: Progress | None = None) -> Flow[int]:
        total = 0
        while True:
            deleted, _ = yield Statement(self.sql["purge"], (now, batch))
            total += deleted
            if progress is not None:
                progress(total)
            if deleted < batch:
                return total

    def scan(self, cursor: str | None, limit: int) -> Flow[ScanPage]:
        """Up to ``limit`` rows after ``cursor`` in key order (keyset paging: a row present for
        the whole scan is met once, whatever is written meanwhile); the last key is the cursor."""
        _, rows = yield Statement(self.sql["scan"], (cursor or "", limit))
        page = [(row[0], self.record(row[1:])) for row in rows]
        return page, (page[-1][0] if page and len(page) >= limit else None)

    def list_user(self, user_id: str, now: float) -> Flow[list[tuple[str, Record]]]:
        _, rows = yield Statement(self.sql["list_user"], (user_id, now))
        return [(row[0], self.record(row[1:])) for row in rows]


class SQLStoreMethods(ABC):
    """The public methods of a SQL store, written once over its flows and its run-once drivers."""

    _flows: SQLFlows
    _clock: Callable[[], float]
    _schema_pending: bool
    _where: str  # host:port/database, for messages
    table: str
    purge_batch: int
    _driver_errors: ClassVar[tuple[type[Exception], ...]]  # what ``_once`` and ``_aonce`` may raise
    database_name: ClassVar[str]  # "PostgreSQL", "MySQL": for messages

    def _setup(
        self, flows: SQLFlows, *, where: str, table: str, create_schema: bool, purge_batch: int, clock: Callable[[], float]
    ) -> None:
        """The settings every SQL store keeps, as its constructor was given them."""
        cls = type(self)
        if cls._aonce is SQLStoreMethods._aonce and cls._arun is SQLStoreMethods._arun:
            raise TypeError(f"{cls.__name__} must implement _aonce, or override _arun")
        self._flows, self._where, self.table, self.create_schema = flows, where, table, create_schema
        self.purge_batch, self._clock = purge_batch, clock
        self._schema_pending = create_schema

    def _pool_settings(
        self,
        table: str,
        purge_batch: int,
        *,
        connect_timeout: float,
        statement_timeout: float,
        pool_timeout: float,
        pool_size: int,
    ) -> None:
        """Check (with :func:`check_options`) and keep the settings of a store with a server and
        a pool of connections to it (PostgreSQL, MySQL)."""
        check_options(
            table,
            purge_batch,
            pool_size=pool_size,
            connect_timeout=connect_timeout,
            statement_timeout=statement_timeout,
            pool_timeout=pool_timeout,
        )
        self.connect_timeout, self.statement_timeout, self.pool_timeout = connect_timeout, statement_timeout, pool_timeout
        self.pool_size = pool_size

    def _missing_table(self) -> StoreError:
        return StoreError(
            f"the session table {self.table!r} does not exist in {self.database_name} {self._where}: run"
            " `coatcheck migrate --store URL` with this store's URL (or set create_schema=1)"
        )

    @abstractmethod
    def _once(self, flow: Flow[T]) -> T:
        """Run a flow on a sync connection; the driver's errors propagate."""

    async def _aonce(self, flow: Flow[T]) -> T:
        """Run a flow on an async connection; the driver's errors propagate. (A store without
        one overrides :meth:`_arun` instead; ``_setup`` checks that it did one or the other.)"""
        raise NotImplementedError

    @abstractmethod
    def _transient(self, exc: Exception) -> bool:
        """True for a deadlock or a serialization failure: the flow was rolled back."""

    @abstractmethod
    def _error(self, exc: Exception) -> StoreError:
        """The StoreError (StoreUnavailableError when it may pass) to raise for a driver error."""

    # -- drivers -----------------------------------------------------------------------------------

    def _schema_first(self, flow: Flow[T]) -> Flow[T]:
        if self._schema_pending:
            yield from self._flows.migrate()
            self._schema_pending = False
        return (yield from flow)

    def _retry_pause(self, exc: Exception, runs: int) -> float:
        """Seconds to wait before running a flow that failed ``runs`` times again; raises the
        StoreError instead when it should not run again."""
        if runs > RETRIES or not self._transient(exc):
            raise self._error(exc) from exc
        return BACKOFF * 2.0 ** (runs - 1) * random.uniform(1.0, 2.0)  # noqa: S311 (jitter, not a secret)

    def _run(self, build: Callable[[], Flow[T]]) -> T:
        """Run the flow ``build()`` makes on a sync connection, again after a transient failure."""
        runs = 0
        while True:
            try:
                flow = build()
                return self._once(self._schema_first(flow) if self._schema_pending else flow)
            except self._driver_errors as exc:
                runs += 1
                pause = self._retry_pause(exc, runs)
            time.sleep(pause)

    def _arun(self, build: Callable[[], Flow[T]]) -> Awaitable[T]:
        """Async :meth:`_run` (an awaitable, so that a store without an async driver may hand
        back its worker thread's)."""
        return self._aretrying(build)

    async def _aretrying(self, build: Callable[[], Flow[T]]) -> T:
        runs = 0
        while True:
            try:
                flow = build()
                return await self._aonce(self._schema_first(flow) if self._schema_pending else flow)
            except self._driver_errors as exc:
                runs += 1
                pause = self._retry_pause(exc, runs)
            await _aio.sleep(pause)

    # -- schema ------------------------------------------------------------------------------------

    def migrate(self) -> None:
        """Create the table and its indexes if missing (idempotent, safe to run concurrently)."""
        self._run(self._flows.migrate)

    async def amigrate(self) -> None:
        """Async :meth:`migrate`."""
        await self._arun(self._flows.migrate)

    # -- Store and AsyncStore --------------------------------------------------------------------

    def load(self, key: str) -> Record | None:
        """The live record under ``key``, or None."""
        return self._run(partial(self._flows.load, key, self._clock()))

    async def aload(self, key: str) -> Record | None:
        """Async :meth:`load`."""
        return await self._arun(partial(self._flows.load, key, self._clock()))

    def save(self, key: str, record: Record, *, expected_version: int | None) -> bool:
        """Create (``expected_version=None``, replacing only an expired row) or compare-and-set."""
        return self._run(partial(self._flows.save, key, record, expected_version, self._clock()))

    async def asave(self, key: str, record: Record, *, expected_version: int | None) -> bool:
        """Async :meth:`save`."""
        return await self._arun(partial(self._flows.save, key, record, expected_version, self._clock()))

    def touch(self, key: str, expires_at: float) -> bool:
        """Move a live record's expiry forward (never backward); False if none moved."""
        return self._run(partial(self._flows.touch, key, expires_at, self._clock()))

    async def atouch(self, key: str, expires_at: float) -> bool:
        """Async :meth:`touch`."""
        return await self._arun(partial(self._flows.touch, key, expires_at, self._clock()))

    def rotate(self, old_key: str, new_key: str, record: Record, *, expected_version: int) -> bool:
        """In one transaction: delete ``old_key`` at ``expected_version`` and create ``new_key``."""
        return self._run(partial(self._flows.rotate, old_key, new_key, record, expected_version, self._clock()))

    async def arotate(self, old_key: str, new_key: str, record: Record, *, expected_version: int) -> bool:
        """Async :meth:`rotate`."""
        return await self._arun(partial(self._flows.rotate, old_key, new_key, record, expected_version, self._clock()))

    def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        self._run(partial(self._flows.delete, key))

    async def adelete(self, key: str) -> None:
        """Async :meth:`delete`."""
        await self._arun(partial(self._flows.delete, key))

    def delete_expired(self, now: float, progress: Progress | None = None) -> int:
        """Remove rows expired at ``now``, ``purge_batch`` rows per statement; return how many.
        ``progress``, if given, is called with the running total after each statement."""
        return self._run(partial(self._flows.purge, now, self.purge_batch, progress))

    async def adelete_expired(self, now: float, progress: Progress | None = None) -> int:
        """Async :meth:`delete_expired`."""
        return await self._arun(partial(self._flows.purge, now, self.purge_batch, progress))

    def delete_user(self, user_id: str) -> int:
        """Remove every session of ``user_id``; return how many were live."""
        return self._run(partial(self._flows.delete_user, user_id, self._clock()))

    async def adelete_user(self, user_id: str) -> int:
        """Async :meth:`delete_user`."""
        return await self._arun(partial(self._flows.delete_user, user_id, self._clock()))

    def list_user(self, user_id: str) -> list[tuple[str, Record]]:
        """The live ``(key, record)`` pairs of ``user_id``."""
        return self._run(partial(self._flows.list_user, user_id, self._clock()))

    async def alist_user(self, user_id: str) -> list[tuple[str, Record]]:
        """Async :meth:`list_user`."""
        return await self._arun(partial(self._flows.list_user, user_id, self._clock()))

    def scan(self, cursor: str | None, limit: int) -> ScanPage:
        """Up to ``limit`` rows after ``cursor``, in key order, expired ones included, and the
        cursor of the next page (None after the last); see :class:`~coatcheck.stores.SupportsScan`."""
        return self._run(partial(self._flows.scan, cursor, limit))

    async def ascan(self, cursor: str | None, limit: int) -> ScanPage:
        """Async :meth:`scan`."""
        return await self._arun(partial(self._flows.scan, cursor, limit))

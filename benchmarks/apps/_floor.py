"""The floor: the least any server-side session layer does per request, hand-inlined.

Find the session cookie, check and hash the ID, read the record, decode it, note writes,
encode and save the record when it changed (a new one gets an ID and a Set-Cookie), and
answer with ``Vary: Cookie``. Nothing else: no merge or retry of a lost write, no timeouts beyond
the record's TTL, no size limit, no strict-mode logging, no error handling, no lifespan check.
No session library can cost less in the same harness, so its ratios (to the ceiling, to the
peers) bound what any library can reach; coatcheck's distance to it is the price of its features.

Stores: ``memory`` (a dict, called directly), ``redis`` (``GET``, then ``SET ... EX`` when the
session changed, over coatcheck's own RESP client: the leanest client at hand), ``postgres``,
``sqlite`` or ``mysql``.

On a SQL store the floor is the raw driver with nothing around it: one autocommit connection and
one cursor on it, held for the process (an async one opened by the first request, inside the
running loop), in the database of ``BENCH_STORE_URL`` (its query, coatcheck's options, dropped),
table ``bench_floor``. The requests in flight share the cursor, so a lock (``asyncio.Lock``; a
``threading.Lock`` for WSGI servers with threads) holds it from ``execute`` to ``fetchone``:
that is cheaper than a cursor per statement, and much cheaper than a pool, whose check-out and
check-in a real layer pays for throughput (here requests wait for each other's round trips),
not for correctness.

- Every SQL floor runs coatcheck's own table and statements, so the database does what it does
  for coatcheck: a load is its ``load`` SELECT, a save its compare-and-set ``update`` on the
  version read (its ``create`` for a new session), with the time sent as a parameter.
  PostgreSQL through psycopg 3 (``Connection``, or ``AsyncConnection``), statements prepared by
  psycopg after their fifth run, as it does by default. SQLite
  through ``sqlite3`` as coatcheck opens it (autocommit, WAL, ``synchronous=NORMAL``), called on
  the event loop too: SQLite has no asynchronous API, and the floor takes no thread hop. MySQL
  through PyMySQL, or aiomysql with coatcheck's bytes-escaping connection, with coatcheck's
  connection settings but no statement timeout.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import re
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from ._common import LIFETIME, env, redis_url, store_kind

if TYPE_CHECKING:
    from coatcheck.stores.mysql import MySQLStore
    from coatcheck.stores.postgres import PostgresStore
    from coatcheck.stores.sqlite import SQLiteStore

_ID = re.compile(r"[A-Za-z0-9_-]{43}")
_COOKIE = re.compile(r"(?:^|;)\s*sessionid=([^;]*)")
_SET_COOKIE = "sessionid={}; Max-Age=1800; Path=/; HttpOnly; SameSite=Lax"
_TABLE = "bench_floor"
Load = Callable[[str], Any]  # key -> the record (bytes, or a SQL row, data first) or None, or an awaitable of it
Save = Callable[[str, bytes, Any], Any]  # (key, data, the record loaded or None) -> None, or an awaitable
Statement = tuple[str, tuple[Any, ...]]
S = TypeVar("S", "SQLiteStore", "MySQLStore", "PostgresStore")


class FloorSession(dict[str, Any]):
    """A dict that notes whether it was written (values checked to be JSON, as every library must)."""

    changed = False

    def __setitem__(self, key: str, value: Any) -> None:
        orjson.dumps(value)
        self.changed = True
        super().__setitem__(key, value)


def store_key(cookie_header: str | None) -> str | None:
    """The store key of the request's well-formed session ID, or None."""
    match = _COOKIE.search(cookie_header) if cookie_header else None
    if match is None or _ID.fullmatch(value := match.group(1).strip()) is None:
        return None
    return hashlib.sha256(value.encode()).hexdigest()


def open_session(record: Any) -> FloorSession:
    """The session a loaded record (bytes, or a SQL row whose first column is the data) holds, or a new empty one."""
    if not record:
        return FloorSession()
    return FloorSession(orjson.loads(record if isinstance(record, bytes) else record[0])["d"])


def close_session(session: FloorSession, key: str | None) -> tuple[str, bytes, str | None]:
    """What to save (key, data) and the Set-Cookie value, if the session is new."""
    data = orjson.dumps({"v": 1, "c": time.time(), "d": session})
    if key is not None:
        return key, data, None
    session_id = secrets.token_urlsafe(32)
    return hashlib.sha256(session_id.encode()).hexdigest(), data, _SET_COOKIE.format(session_id)


# -- the SQL stores ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Statements:
    """What a SQL floor runs: the statement and parameters of a load of ``key``, and of a save
    of ``(key, data, the row loaded or None)``."""

    load: Callable[[str], Statement]
    save: Callable[[str, bytes, Any], Statement]


def _coatcheck_statements(sql: dict[str, str], create: Callable[[str, bytes, float, float], tuple[Any, ...]]) -> _Statements:
    """coatcheck's ``load``, and its save: ``create`` (whose parameters ``create(key, data,
    expires_at, now)`` gives) for a new session, else ``update`` on the version loaded."""
    load_sql, create_sql, update_sql = (sql[name].format(t=_TABLE) for name in ("load", "create", "update"))

    def load(key: str) -> Statement:
        return load_sql, (key, time.time())

    def save(key: str, data: bytes, row: Any) -> Statement:
        now = time.time()
        if row is None:
            return create_sql, create(key, data, now + LIFETIME, now)
        return update_sql, (data, now + LIFETIME, row[2] + 1, None, key, row[2], now)

    return _Statements(load, save)


def _sync(cur: Any, statements: _Statements) -> tuple[Load, Save]:
    """(load, save) on one DB-API cursor, a lock held from ``execute`` to ``fetchone``."""
    lock = threading.Lock()

    def load(key: str) -> Any:
        sql, params = statements.load(key)
        with lock:
            cur.execute(sql, params)
            return cur.fetchone()

    def save(key: str, data: bytes, row: Any) -> None:
        sql, params = statements.save(key, data, row)
        with lock:
            cur.execute(sql, params)

    return load, save


class _Async:
    """load and save on one cursor of one async connection, which ``connect()`` opens and
    returns the cursor of, called by the first request."""

    def __init__(self, connect: Callable[[], Awaitable[Any]], statements: _Statements) -> None:
        self._connect, self.statements = connect, statements
        self.cursor: Any = None
        self.lock = asyncio.Lock()

    async def connect(self) -> Any:
        self.cursor = await self._connect()
        return self.cursor

    async def load(self, key: str) -> Any:
        sql, params = self.statements.load(key)
        async with self.lock:
            cur = self.cursor if self.cursor is not None else await self.connect()
            await cur.execute(sql, params)
            return await cur.fetchone()

    async def save(self, key: str, data: bytes, row: Any) -> None:
        sql, params = self.statements.save(key, data, row)
        async with self.lock:
            cur = self.cursor if self.cursor is not None else await self.connect()
            await cur.execute(sql, params)


def _url() -> str:
    """``BENCH_STORE_URL`` without its query."""
    return env("BENCH_STORE_URL").partition("?")[0]


def _migrated(store: S) -> S:
    """``store``, once it has created its table and closed its connections."""
    store.migrate()
    store.close()
    return store


def _create_params(key: str, data: bytes, expires_at: float, now: float) -> tuple[Any, ...]:
    """The parameters of coatcheck's ``create`` on PostgreSQL and SQLite."""
    return key, data, expires_at, 1, None, now


def _postgres(*, asynchronous: bool) -> tuple[Load, Save]:
    """coatcheck's table and statements, on psycopg."""
    import psycopg

    from coatcheck.stores.postgres import _SQL, PostgresStore

    _migrated(PostgresStore.from_url(f"{_url()}?table={_TABLE}"))
    conninfo, statements = _url(), _coatcheck_statements(_SQL, _create_params)
    if asynchronous:

        async def connect() -> psycopg.AsyncCursor[Any]:
            return (await psycopg.AsyncConnection.connect(conninfo, autocommit=True)).cursor()

        client = _Async(connect, statements)
        return client.load, client.save
    return _sync(psycopg.connect(conninfo, autocommit=True).cursor(), statements)


def _sqlite() -> tuple[Load, Save]:
    """coatcheck's table and statements, on sqlite3 (for ASGI too: on the loop, no thread)."""
    import sqlite3

    from coatcheck.stores.sqlite import _SQL, SQLiteStore

    path = _migrated(SQLiteStore.from_url(f"{_url()}?table={_TABLE}")).path
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA synchronous=NORMAL")
    return _sync(conn.cursor(), _coatcheck_statements(_SQL, _create_params))


def _mysql(*, asynchronous: bool) -> tuple[Load, Save]:
    """coatcheck's table and statements, on PyMySQL or aiomysql."""
    from coatcheck.stores.mysql import _SQL, MySQLStore

    store = _migrated(MySQLStore.from_url(f"{_url()}?table={_TABLE}"))
    statements = _coatcheck_statements(  # the IF()s of ON DUPLICATE KEY UPDATE, in order, after the row
        _SQL, lambda key, data, e, now: (key, data, e, 1, None, now, data, now, 1, now, None, now, e)
    )
    if asynchronous:
        from coatcheck.stores.mysql import _AioConnection

        async def connect() -> Any:
            conn = _AioConnection(**store._args, db=store.database)
            await conn._connect()
            return await conn.cursor()

        client = _Async(connect, statements)
        return client.load, client.save
    import pymysql

    return _sync(pymysql.connect(**store._args, database=store.database).cursor(), statements)


def store(*, asynchronous: bool) -> tuple[Load, Save]:
    """(load, save) on ``BENCH_STORE``: a dict, or Redis or a SQL database through a sync or an async client."""
    kind = store_kind()
    if kind == "postgres":
        return _postgres(asynchronous=asynchronous)
    if kind == "sqlite":
        return _sqlite()
    if kind == "mysql":
        return _mysql(asynchronous=asynchronous)
    if kind != "redis":
        records: dict[str, bytes] = {}
        return records.get, lambda key, data, record: records.__setitem__(key, data)
    from coatcheck.stores.redis._resp import AsyncRespClient, RespClient

    host, port = redis_url().removeprefix("redis://").split("/")[0].split(":")
    client = (AsyncRespClient if asynchronous else RespClient)(host, int(port))

    def save(key: str, data: bytes, record: Any) -> Any:
        return client._command(b"SET", key, data, b"EX", LIFETIME)

    return client.get, save


class FloorWSGI:
    """The floor as WSGI middleware: the session at ``environ["floor.session"]``."""

    def __init__(self, app: Callable[..., Iterable[bytes]], load: Load, save: Save) -> None:
        self.app, self.load, self.save = app, load, save

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        key = store_key(environ.get("HTTP_COOKIE"))
        raw = self.load(key) if key else None
        session = environ["floor.session"] = open_session(raw)

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            extra = [("Vary", "Cookie")]
            if session.changed:
                save_key, data, set_cookie = close_session(session, key if raw else None)
                self.save(save_key, data, raw)
                if set_cookie:
                    extra.append(("Set-Cookie", set_cookie))
            return start_response(status, [*headers, *extra], exc_info)

        return self.app(environ, start)


class FloorASGI:
    """The floor as ASGI middleware: the session at ``scope["session"]``."""

    def __init__(self, app: Callable[..., Awaitable[None]], load: Load, save: Save) -> None:
        self.app, self.load, self.save = app, load, save

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Callable[..., Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cookie = next((value.decode("latin-1") for name, value in scope["headers"] if name == b"cookie"), None)
        key = store_key(cookie)
        raw = self.load(key) if key else None
        if inspect.isawaitable(raw):
            raw = await raw
        session = scope["session"] = open_session(raw)

        async def send_with_session(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                extra = [(b"vary", b"Cookie")]
                if session.changed:
                    save_key, data, set_cookie = close_session(session, key if raw else None)
                    saved = self.save(save_key, data, raw)
                    if inspect.isawaitable(saved):
                        await saved
                    if set_cookie:
                        extra.append((b"set-cookie", set_cookie.encode("latin-1")))
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_session)

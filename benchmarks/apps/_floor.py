"""The floor: the least any server-side session layer does per request, hand-inlined.

Find the session cookie, check and hash the ID, read the record, decode it, note writes,
encode and save the record when it changed (a new one gets an ID and a Set-Cookie), and
answer with ``Vary: Cookie``. Nothing else: no compare-and-set or merge, no timeouts beyond
the record's TTL, no size limit, no strict-mode logging, no error handling, no lifespan check.
No session library can cost less in the same harness, so its ratios (to the ceiling, to the
peers) bound what any library can reach; coatcheck's distance to it is the price of its features.

Stores: ``memory`` (a dict, called directly), ``redis`` (``GET``, then ``SET ... EX`` when the
session changed, over coatcheck's own RESP client: the leanest client at hand) or ``postgres``.

On ``postgres`` the floor is psycopg 3 with nothing around it: one autocommit connection and one
cursor on it, held for the process (``psycopg.Connection``, or ``psycopg.AsyncConnection`` opened
by the first request, inside the running loop), statements prepared by psycopg after their fifth
run, as it does by default, in the database of ``BENCH_STORE_URL`` (its query, coatcheck's
options, dropped), table ``bench_floor`` (created if missing). A load is ``SELECT data ... WHERE
key = %s AND expires_at > now()``, a save an ``INSERT ... ON CONFLICT (key) DO UPDATE`` (the last
write wins: no version, no compare-and-set); expiry is the server's clock, so neither sends a
timestamp. The requests in flight share the cursor, so a lock (``asyncio.Lock``; a
``threading.Lock`` for WSGI servers with threads) holds it from ``execute`` to ``fetchone``:
that is cheaper than a cursor per statement (psycopg builds one for each ``conn.execute`` and
serializes them on the connection with a lock of its own), and much cheaper than a pool, whose
check-out and check-in a real layer pays for throughput (here requests wait for each other's
round trips), not for correctness.
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
from typing import TYPE_CHECKING, Any

import orjson

from ._common import LIFETIME, env, redis_url, store_kind

if TYPE_CHECKING:
    import psycopg

_ID = re.compile(r"[A-Za-z0-9_-]{43}")
_COOKIE = re.compile(r"(?:^|;)\s*sessionid=([^;]*)")
_SET_COOKIE = "sessionid={}; Max-Age=1800; Path=/; HttpOnly; SameSite=Lax"
_PG_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS bench_floor (key varchar(64) PRIMARY KEY, data bytea NOT NULL, expires_at timestamptz NOT NULL)",
    "CREATE INDEX IF NOT EXISTS bench_floor_expires_at ON bench_floor (expires_at)",  # what a purge needs
)
_PG_LOAD = "SELECT data FROM bench_floor WHERE key = %s AND expires_at > now()"
_PG_SAVE = (  # LIFETIME, as the cookie's Max-Age
    "INSERT INTO bench_floor (key, data, expires_at) VALUES (%s, %s, now() + interval '1800 seconds')"
    " ON CONFLICT (key) DO UPDATE SET data = EXCLUDED.data, expires_at = EXCLUDED.expires_at"
)

Load = Callable[[str], Any]  # key -> bytes | None, or an awaitable of it
Save = Callable[[str, bytes], Any]  # (key, data) -> None, or an awaitable


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


def open_session(raw: bytes | None) -> FloorSession:
    """The session a stored record holds, or a new empty one."""
    return FloorSession(orjson.loads(raw)["d"] if raw else ())


def close_session(session: FloorSession, key: str | None) -> tuple[str, bytes, str | None]:
    """What to save (key, data) and the Set-Cookie value, if the session is new."""
    data = orjson.dumps({"v": 1, "c": time.time(), "d": session})
    if key is not None:
        return key, data, None
    session_id = secrets.token_urlsafe(32)
    return hashlib.sha256(session_id.encode()).hexdigest(), data, _SET_COOKIE.format(session_id)


class _AsyncPostgres:
    """load and save on one cursor of one ``psycopg.AsyncConnection``, opened by the first request."""

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self.cursor: psycopg.AsyncCursor[Any] | None = None
        self.lock = asyncio.Lock()

    async def connect(self) -> psycopg.AsyncCursor[Any]:
        import psycopg

        conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
        self.cursor = conn.cursor()
        return self.cursor

    async def load(self, key: str) -> bytes | None:
        async with self.lock:
            cur = self.cursor if self.cursor is not None else await self.connect()
            await cur.execute(_PG_LOAD, (key,))
            row = await cur.fetchone()
        return row[0] if row else None

    async def save(self, key: str, data: bytes) -> None:
        async with self.lock:
            cur = self.cursor if self.cursor is not None else await self.connect()
            await cur.execute(_PG_SAVE, (key, data))


def _postgres(*, asynchronous: bool) -> tuple[Load, Save]:
    """(load, save) on one cursor of one PostgreSQL connection (see the module docstring)."""
    import psycopg

    conninfo = env("BENCH_STORE_URL").partition("?")[0]
    with psycopg.connect(conninfo, autocommit=True) as setup:
        for statement in _PG_SCHEMA:
            setup.execute(statement)
    if asynchronous:
        client = _AsyncPostgres(conninfo)
        return client.load, client.save
    cur = psycopg.connect(conninfo, autocommit=True).cursor()
    lock = threading.Lock()

    def load(key: str) -> bytes | None:
        with lock:
            row = cur.execute(_PG_LOAD, (key,)).fetchone()
        return row[0] if row else None

    def save(key: str, data: bytes) -> None:
        with lock:
            cur.execute(_PG_SAVE, (key, data))

    return load, save


def store(*, asynchronous: bool) -> tuple[Load, Save]:
    """(load, save) on ``BENCH_STORE``: a dict, or Redis or PostgreSQL through a sync or an async client."""
    if store_kind() == "postgres":
        return _postgres(asynchronous=asynchronous)
    if store_kind() != "redis":
        records: dict[str, bytes] = {}
        return records.get, records.__setitem__
    from coatcheck.stores.redis._resp import AsyncRespClient, RespClient

    host, port = redis_url().removeprefix("redis://").split("/")[0].split(":")
    client = (AsyncRespClient if asynchronous else RespClient)(host, int(port))

    def save(key: str, data: bytes) -> Any:
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
                self.save(save_key, data)
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
                    saved = self.save(save_key, data)
                    if inspect.isawaitable(saved):
                        await saved
                    if set_cookie:
                        extra.append((b"set-cookie", set_cookie.encode("latin-1")))
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_session)

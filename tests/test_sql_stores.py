"""PostgresStore and MySQLStore beyond the conformance suite: URLs, schema, purge batches,
hashed keys, and behaviour when the server fails (through tests/faultproxy.py)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import importlib
import logging
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import anyio.to_thread
import httpx
import psycopg
import pytest

import coatcheck.stores
from coatcheck import _ids
from coatcheck.asgi import SessionMiddleware, get_session
from coatcheck.errors import ConfigurationError, StoreError, StoreUnavailableError
from coatcheck.manager import SessionManager
from coatcheck.stores import _sql, mysql, postgres
from coatcheck.stores._pools import AsyncPool
from coatcheck.stores._protocol import Record
from coatcheck.stores._sql import Statement
from coatcheck.stores.mysql import MySQLStore
from coatcheck.stores.postgres import PostgresStore
from coatcheck.testing import FakeClock, Ops, cookie_id
from tests.backends import ServerMissing, unreachable
from tests.backends import mysql as mysql_backend
from tests.backends import postgres as pg_backend
from tests.faultproxy import FaultProxy
from tests.waiting import eventually, within

pytestmark = pytest.mark.anyio

T = TypeVar("T")
SQLStore = PostgresStore | MySQLStore
FAST = "connect_timeout=1&statement_timeout=1&pool_timeout=1"  # PostgreSQL rounds connect_timeout up to 2 s


class Maker(Protocol):
    def __call__(self, query: str = "", *, url: str | None = None) -> Any: ...


@dataclass(frozen=True)
class Database:
    """One server under test and how to reach it directly."""

    name: str
    url: str
    store_class: type[PostgresStore] | type[MySQLStore]
    quote: str
    bound: float  # "about twice the configured timeouts" for FAST stores, in seconds

    def q(self, table: str) -> str:
        return f"{self.quote}{table}{self.quote}"

    def connect(self) -> Any:
        if self.name == "mysql":
            return mysql_backend.admin()
        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=2)
        except psycopg.OperationalError as exc:
            raise ServerMissing(str(exc)) from exc

    def query(self, sql: str, params: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
        with contextlib.closing(self.connect()) as conn:
            cur = conn.cursor()
            cur.execute(sql, params)
            return list(cur.fetchall()) if cur.description else []

    def insert(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        with contextlib.closing(self.connect()) as conn:
            key = "`key`" if self.name == "mysql" else "key"
            insert = f"INSERT INTO {self.q(table)} ({key}, data, expires_at, version, user_id) VALUES (%s, %s, %s, %s, %s)"  # noqa: S608
            conn.cursor().executemany(insert, rows)

    @property
    def address(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        return parts.hostname or "127.0.0.1", parts.port or (3306 if self.name == "mysql" else 5432)

    def via(self, port: int) -> str:
        """This database's URL, pointed at a proxy on 127.0.0.1:``port``."""
        parts = urlsplit(self.url)
        userinfo = parts.netloc.rpartition("@")[0]
        return parts._replace(netloc=f"{userinfo + '@' if userinfo else ''}127.0.0.1:{port}").geturl()


DATABASES = {
    "postgres": Database("postgres", pg_backend.URL, PostgresStore, '"', bound=2 * 2 + 0.5),
    "mysql": Database("mysql", mysql_backend.URL, MySQLStore, "`", bound=2 * 1 + 0.5),
}


def with_query(url: str, query: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{query}" if query else url


@pytest.fixture(params=[pytest.param(name, marks=pytest.mark.server) for name in DATABASES])
def db(request: pytest.FixtureRequest) -> Database:
    return reachable(DATABASES[request.param])


def reachable(database: Database) -> Database:
    """``database``, once it answers (else the test is skipped, or fails where servers are required)."""
    try:
        database.connect().close()
    except ServerMissing as exc:
        unreachable(database.name, exc)
    return database


@pytest.fixture
async def make(db: Database, clock: FakeClock) -> AsyncIterator[Maker]:
    """Build stores on fresh table names (not migrated); close them and drop their tables afterwards."""
    made: list[Any] = []

    def maker(query: str = "", *, url: str | None = None) -> Any:
        table = f"cc_{uuid.uuid4().hex[:16]}"
        store = db.store_class.from_url(with_query(url or db.url, f"table={table}&{query}".rstrip("&")), clock=clock)
        made.append(store)
        return store

    yield maker
    for store in made:
        store.close()
        await store.aclose()
        db.query(f"DROP TABLE IF EXISTS {db.q(store.table)}")


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def call(mode: str, store: Any, method: str, *args: Any, **kwargs: Any) -> Any:
    """``store.method(...)`` or ``await store.amethod(...)``."""
    if mode == "sync":
        return getattr(store, method)(*args, **kwargs)
    return await getattr(store, "a" + method)(*args, **kwargs)


def _record(expires_at: float, user_id: str | None = None) -> Record:
    return Record(b"d", expires_at, 1, user_id)


# -- URLs and configuration (no server needed) ---------------------------------------------------------


def test_postgres_url_forms() -> None:
    store = coatcheck.stores.from_url(
        "postgres://app:s3cret@db.example:6543/web?table=s1&create_schema=1"
        "&statement_timeout=2.5&pool_size=3&purge_batch=50&sslmode=require"
    )
    assert isinstance(store, PostgresStore)
    assert (store.table, store.create_schema, store.pool_size, store.purge_batch) == ("s1", True, 3, 50)
    conninfo = psycopg.conninfo.conninfo_to_dict(store._conninfo)
    assert conninfo["sslmode"] == "require" and conninfo["port"] == "6543" and conninfo["connect_timeout"] == "2"
    assert "statement_timeout=2500" in str(conninfo["options"])
    assert "s3cret" not in repr(store)
    default = coatcheck.stores.from_url("postgresql://localhost/web")
    assert (default.table, default.create_schema, default.purge_batch) == ("coatcheck_sessions", False, 1000)


def test_mysql_url_forms() -> None:
    for scheme in ("mysql", "mariadb"):
        store = coatcheck.stores.from_url(f"{scheme}://app:s%40cret@db.example:3307/web?table=s1&pool_timeout=0.5")
        assert isinstance(store, MySQLStore)
        assert (store.table, store.pool_timeout, store.database) == ("s1", 0.5, "web")
        assert store._args["password"] == "s@cret" and store._args["port"] == 3307
        assert "s@cret" not in repr(store)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://h/db?table=bad-name",
        "postgresql://h/db?table=1abc",
        "postgresql://h/db?table=a%3Bdrop",
        "postgresql://h/db?table=" + "x" * 49,
        "postgresql://h/db?pool_size=many",
        "postgresql://h/db?create_schema=maybe",
        "postgresql://h/db?statement_timeout=0",
        "postgresql://h/db?no_such_libpq_option=1",
        "postgresql://h:port/db",
        "mysql://h/db?table=bad-name",
        "mysql://h/db?table=",
        "mysql://h/",
        "mysql://h/db/extra",
        "mysql://h/db?charset=latin1",
        "mysql://h:99999/db",
        "mariadb://h/db?purge_batch=0",
    ],
)
def test_bad_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError):
        coatcheck.stores.from_url(url)


async def test_building_a_store_does_no_io() -> None:
    """Nothing listens on port 1: building and closing are instant, the first use fails in bounds."""
    urls = [("postgresql://postgres@127.0.0.1:1/x?pool_timeout=1", 2.5), ("mysql://root@127.0.0.1:1/x?pool_timeout=1", 1.5)]
    for url, bound in urls:
        with within(0.5):
            store = coatcheck.stores.from_url(url)
            store.close()
            await store.aclose()
        with within(bound), pytest.raises(StoreUnavailableError):
            store.load("k" * 64)
        with within(bound), pytest.raises(StoreUnavailableError):
            await store.aload("k" * 64)
        store.close()
        await store.aclose()


# -- schema ----------------------------------------------------------------------------------------


@pytest.mark.server
async def test_migrate_is_idempotent(db: Database, make: Maker, clock: FakeClock) -> None:
    store = make()
    store.migrate()
    store.migrate()
    await store.amigrate()
    assert store.save("a" * 64, _record(clock() + 60), expected_version=None)
    await store.amigrate()
    assert await store.aload("a" * 64) == _record(clock() + 60)


@pytest.mark.server
async def test_missing_table_says_run_coatcheck_migrate(db: Database, make: Maker, mode: str) -> None:
    store = make()
    with pytest.raises(StoreError, match="coatcheck migrate --store") as caught:
        await call(mode, store, "load", "a" * 64)
    assert not isinstance(caught.value, StoreUnavailableError)
    assert store.table in str(caught.value)


@pytest.mark.server
async def test_create_schema_on_first_use(db: Database, make: Maker, mode: str, clock: FakeClock) -> None:
    store = make("create_schema=1")
    assert await call(mode, store, "load", "a" * 64) is None
    assert await call(mode, store, "save", "a" * 64, _record(clock() + 60), expected_version=None)


@pytest.mark.server
async def test_schema_columns_and_indexes(db: Database, make: Maker) -> None:
    store = make()
    store.migrate()
    if db.name == "postgres":
        indexes = {name for (name,) in db.query("SELECT indexname FROM pg_indexes WHERE tablename = %s", (store.table,))}
        assert indexes == {f"{store.table}_pkey", f"{store.table}_expires_at", f"{store.table}_user_id"}
        columns = db.query("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s", (store.table,))
        assert dict(columns) == {
            "key": "character varying",
            "data": "bytea",
            "expires_at": "double precision",
            "version": "bigint",
            "user_id": "character varying",
        }
    else:
        rows = db.query(
            "SELECT index_name, column_name FROM information_schema.statistics"
            " WHERE table_schema = DATABASE() AND table_name = %s",
            (store.table,),
        )
        t = store.table
        assert set(rows) == {("PRIMARY", "key"), (f"{t}_expires_at", "expires_at"), (f"{t}_user_id", "user_id")}
        columns = db.query(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = %s",
            (store.table,),
        )
        assert dict(columns) == {
            "key": "char",
            "data": "longblob",
            "expires_at": "double",
            "version": "bigint",
            "user_id": "varbinary",
        }


# -- behaviour -------------------------------------------------------------------------------------


@pytest.mark.server
async def test_purge_deletes_in_batches(
    db: Database, make: Maker, mode: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make("purge_batch=1000")
    store.migrate()
    now = clock()
    db.insert(store.table, [(_ids.store_key(f"old{i}"), b"x", now - 1 - i % 7, 1, None) for i in range(2500)])
    db.insert(store.table, [(_ids.store_key(f"live{i}"), b"x", now + 60, 1, "u") for i in range(10)])
    statements: list[str] = []
    run, arun = Statement.run, Statement.arun  # every statement of every SQL flow passes through these

    def recorded(self: Statement, cursor: Any) -> Any:
        statements.append(self.sql)
        return run(self, cursor)

    def arecorded(self: Statement, cursor: Any) -> Any:
        statements.append(self.sql)
        return arun(self, cursor)

    monkeypatch.setattr(Statement, "run", recorded)
    monkeypatch.setattr(Statement, "arun", arecorded)
    assert await call(mode, store, "delete_expired", now) == 2500
    assert statements == [store._flows.sql["purge"]] * 3
    assert db.query(f"SELECT COUNT(*) FROM {db.q(store.table)}") == [(10,)]  # noqa: S608
    assert len(await call(mode, store, "list_user", "u")) == 10


@pytest.mark.server
async def test_only_hashed_session_ids_are_stored(db: Database, make: Maker, mode: str, clock: FakeClock) -> None:
    store = make()
    store.migrate()
    session_id = await Ops(mode, store, clock).new_saved(cart=[1, 2])
    [(key, data)] = db.query(f"SELECT {'`key`' if db.name == 'mysql' else 'key'}, data FROM {db.q(store.table)}")  # noqa: S608
    assert key == _ids.store_key(session_id) and len(key) == 64 and int(key, 16) >= 0
    assert session_id not in key and session_id.encode() not in bytes(data)


@pytest.mark.server
async def test_user_ids_match_exactly(db: Database, make: Maker, mode: str, clock: FakeClock) -> None:
    store = make()
    store.migrate()
    for name, user in [("a", "alice"), ("b", "Alice"), ("c", "alice ")]:
        assert await call(mode, store, "save", _ids.store_key(name), _record(clock() + 60, user), expected_version=None)
    assert await call(mode, store, "delete_user", "alice") == 1
    assert [key for key, _ in await call(mode, store, "list_user", "Alice")] == [_ids.store_key("b")]
    assert await call(mode, store, "load", _ids.store_key("c")) is not None


@pytest.mark.server
async def test_concurrent_first_async_uses_open_one_pool(db: Database, make: Maker, monkeypatch: pytest.MonkeyPatch) -> None:
    store = make("create_schema=1")
    built: list[object] = []
    real = AsyncPool

    def counting_pool(*args: Any, **kwargs: Any) -> AsyncPool[Any]:
        built.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(postgres if db.name == "postgres" else mysql, "AsyncPool", counting_pool)
    assert await asyncio.gather(*(store.aload(_ids.store_key(str(i))) for i in range(8))) == [None] * 8
    assert len(built) == 1


def idle_after_loads_in_a_loop(store: SQLStore, run: Callable[[Coroutine[Any, Any, Any]], Any] = asyncio.run) -> list[Any]:
    """Three loads at once on a new event loop, which ``run`` runs in this thread and closes
    without ``aclose()``: the connections its pool holds idle at the end."""

    async def loads() -> list[Any]:
        assert await asyncio.gather(*(store.aload(_ids.store_key("k")) for _ in range(3))) == [None] * 3
        return list(store._async_pool().idle)

    return list(run(loads()))


@pytest.mark.server
@pytest.mark.filterwarnings("ignore::ResourceWarning")  # the dropped connections' sockets: the GC closes them
@pytest.mark.parametrize("runner", ["asyncio", "uvloop"])
async def test_a_loop_closed_without_aclose_leaves_the_store_working(
    db: Database, make: Maker, runner: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A loop that ends without ``aclose()`` (a script's ``asyncio.run()``, or uvloop's): the
    next loop gets a pool of its own, and the first one's connections are dropped, without an
    error and without a warning logged."""
    store = make("create_schema=1")
    run = importlib.import_module(runner).run
    for _ in range(2):  # the first loop's pool is dropped when the second loop comes
        assert len(await anyio.to_thread.run_sync(idle_after_loads_in_a_loop, store, run)) == 3
    assert await store.aload(_ids.store_key("k")) is None  # and the second loop's here
    gc.collect()  # closing what was dropped raises nothing (aiomysql's close needed its loop)
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING] == []


def _server_id(conn: Any) -> int:
    """The server's ID of the session behind an async connection of either store."""
    return conn.info.backend_pid if isinstance(conn, psycopg.AsyncConnection) else conn.thread_id()


def _open_server_ids(db: Database, ids: set[int]) -> set[int]:
    if db.name == "postgres":
        return {pid for (pid,) in db.query("SELECT pid FROM pg_stat_activity") if pid in ids}
    return {pid for (pid,) in db.query("SELECT id FROM information_schema.processlist") if pid in ids}


@pytest.mark.server
@pytest.mark.filterwarnings("ignore::ResourceWarning")  # MySQL's sockets shut down: the GC frees their descriptors
async def test_aclose_on_another_loop_closes_what_closed_loops_left(db: Database, make: Maker) -> None:
    """Two loops in two threads each hold two connections at once and close without ``aclose()``;
    ``asyncio.run(store.aclose())`` then leaves none of the four open on the server (PostgreSQL
    keeps up to ``pool_size`` for the next loop until then; the rest, and MySQL's, are closed
    as soon as a loop next uses the store)."""
    store = make("create_schema=1&pool_size=2")
    store.migrate()
    key = _ids.store_key("k")
    both_hold = threading.Barrier(2)

    def in_a_loop() -> set[int]:
        async def hold_two() -> set[int]:
            async def hold() -> int:
                async with store._async_pool().connection() as conn:
                    await asyncio.to_thread(both_hold.wait, 10)  # both loops hold theirs at once
                    return _server_id(conn)

            assert await store.aload(key) is None
            return set(await asyncio.gather(hold(), hold()))

        return asyncio.run(hold_two())

    with ThreadPoolExecutor(2) as threads:
        opened = set().union(*threads.map(lambda _: in_a_loop(), range(2)))
    assert len(opened) == 4 and _open_server_ids(db, opened) == opened
    await anyio.to_thread.run_sync(asyncio.run, store.aclose())

    async def all_closed() -> None:
        assert _open_server_ids(db, opened) == set()

    await eventually(all_closed, deadline=10)
    assert await store.aload(key) is None  # and the store works on
    gc.collect()


@pytest.mark.server
async def test_a_cancelled_request_closes_its_own_connection_only(db: Database, make: Maker) -> None:
    """A request cut off by a deadline (or a client gone) while the table is locked: its
    connection is closed (aiomysql closes it itself), the idle ones stay; the store works on."""
    store = make("pool_size=4")
    store.migrate()
    key = _ids.store_key("k")
    await asyncio.gather(*(store.aload(key) for _ in range(3)))  # three connections, idle after
    pool = store._async_pool()
    assert len(pool.idle) == 3
    with contextlib.closing(db.connect()) as holder:
        cur = holder.cursor()
        locks = (
            ["BEGIN", f"LOCK TABLE {db.q(store.table)} IN ACCESS EXCLUSIVE MODE"]
            if db.name == "postgres"
            else [f"LOCK TABLES {db.q(store.table)} WRITE"]
        )
        for statement in locks:
            cur.execute(statement)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(store.adelete(key), 0.5)
        cur.execute("ROLLBACK" if db.name == "postgres" else "UNLOCK TABLES")
    assert len(pool.idle) == 2
    assert await store.aload(key) is None


@pytest.mark.server
async def test_mysql_async_statement_timeout_says_what_happened(clock: FakeClock) -> None:
    """aiomysql has no read timeout: the store's own one ends the wait and says so."""
    db = reachable(DATABASES["mysql"])
    table = f"cc_{uuid.uuid4().hex[:16]}"
    # the server's lock wait rounds up to 2 s: the client's bound comes first
    store = MySQLStore.from_url(with_query(db.url, f"table={table}&statement_timeout=1.5"), clock=clock)
    store.migrate()
    try:
        with contextlib.closing(db.connect()) as holder:
            holder.cursor().execute(f"LOCK TABLES {db.q(table)} WRITE")
            with pytest.raises(StoreUnavailableError, match=r"unavailable: no reply from the server within 1\.5 s$"):
                await store.aload(_ids.store_key("k"))
    finally:
        await store.aclose()
        store.close()
        db.query(f"DROP TABLE IF EXISTS {db.q(table)}")


# -- faults, through tests/faultproxy.py ---------------------------------------------------------------


async def counter_app(scope: Any, receive: Any, send: Any) -> None:
    """Count this session's requests."""
    session = get_session(scope)
    session["n"] = session.get("n", 0) + 1
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": str(session["n"]).encode()})


@pytest.mark.server
async def test_cut_connection_fails_fast_and_recovers(db: Database, make: Maker, clock: FakeClock) -> None:
    with FaultProxy(*db.address) as proxy:
        store = make(FAST, url=db.via(proxy.port))
        store.migrate()
        app = SessionMiddleware(counter_app, SessionManager(store, clock=clock), purge_interval=None)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:

            async def get(headers: dict[str, str]) -> httpx.Response:
                client.cookies.clear()  # only the cookie we pass: httpx would replay the last one
                return await client.get("/", headers=headers)

            first = await get({})
            assert first.status_code == 200 and first.text == "1"
            browser = {"cookie": f"sessionid={cookie_id(first.headers['set-cookie'])}"}
            sync_id = await Ops("sync", store, clock).new_saved(kept=True)

            proxy.cut()
            for _ in range(2):  # the first call finds dead pooled connections, the second must reconnect
                with within(db.bound), pytest.raises(StoreUnavailableError):
                    store.load(_ids.store_key(sync_id))
                with within(db.bound), pytest.raises(StoreUnavailableError):
                    await store.asave(_ids.store_key("new"), _record(clock() + 60), expected_version=None)
            for headers in (browser, {}):
                with within(db.bound):
                    refused = await get(headers)
                assert refused.status_code == 503 and "set-cookie" not in refused.headers

            proxy.restore()

            async def counted() -> httpx.Response:
                response = await get(browser)
                assert response.status_code == 200, response.status_code
                return response

            assert (await eventually(counted)).text == "2"  # the session from before the cut, same store object
            fresh = await get({})
            assert fresh.status_code == 200 and fresh.text == "1" and "set-cookie" in fresh.headers

            async def sync_load() -> Record | None:
                record: Record | None = store.load(_ids.store_key(sync_id))
                return record

            assert await eventually(sync_load) is not None
            assert await store.aload(_ids.store_key("new")) is None  # the failed save wrote nothing


@pytest.mark.server
async def test_blackholed_server_is_bounded_by_timeouts(db: Database, make: Maker, clock: FakeClock) -> None:
    """A server that accepts and never answers. For a fresh store the connect and pool timeouts
    bound the wait; an established pooled connection that stalls mid-conversation is bounded by
    the per-statement deadline (MySQL: the client read timeout, or a deadline around each async
    statement; PostgreSQL, whose driver has no read timeout: the store shuts the socket down).
    Both stores work again once the server answers."""
    key = _ids.store_key("kept")
    with FaultProxy(*db.address) as proxy:
        warm = make(FAST, url=db.via(proxy.port))
        warm.migrate()
        assert await warm.asave(key, _record(clock() + 60), expected_version=None)
        cold = make(FAST + f"&table={warm.table}", url=db.via(proxy.port))

        proxy.blackhole()
        stores = [cold, warm]
        for store in stores:
            for _ in range(2):
                with within(db.bound), pytest.raises(StoreUnavailableError):
                    store.load(key)
                with within(db.bound), pytest.raises(StoreUnavailableError):
                    await store.aload(key)

        proxy.restore()

        async def loaded(store: Any) -> None:
            assert store.load(key) == _record(clock() + 60)
            assert await store.aload(key) == _record(clock() + 60)

        for store in stores:
            await eventually(functools.partial(loaded, store))


@pytest.mark.server
async def test_connection_failures_say_why(db: Database, make: Maker, mode: str) -> None:
    """A database that does not exist, a user the server refuses and a port where nothing
    listens: the error names the cause in a few words, the same for both databases, not only
    that no connection came, and comes within the configured bounds."""
    parts = urlsplit(db.url)
    missing = parts._replace(path="/coatcheck_no_such_db").geturl()
    stranger = parts._replace(netloc=f"coatcheck_nobody:wrong@{parts.hostname}:{parts.port}").geturl()
    with socket.socket() as closed_port:  # bound, never listening: connections to it are refused
        closed_port.bind(("127.0.0.1", 0))
        port = closed_port.getsockname()[1]
        refused = db.via(port)
        reasons = {
            missing: '(unavailable|failed): database "coatcheck_no_such_db" does not exist$',
            stranger: '(unavailable|failed): authentication failed for user "coatcheck_nobody"$',
            refused: f"unavailable: connection refused to 127.0.0.1:{port}$",
        }
        for url, reason in reasons.items():
            store = make("connect_timeout=1&statement_timeout=1&pool_timeout=0.5", url=url)
            with within(db.bound), pytest.raises(StoreError, match=reason):
                await call(mode, store, "load", _ids.store_key("k"))


@pytest.mark.server
async def test_statement_timeout_bounds_a_lock_wait(db: Database, make: Maker, mode: str, clock: FakeClock) -> None:
    store = make(FAST)
    store.migrate()
    key = _ids.store_key("locked")
    assert await call(mode, store, "save", key, _record(clock() + 60), expected_version=None)
    with contextlib.closing(db.connect()) as locker:
        if db.name == "postgres":
            locker.autocommit = False
            locker.execute(f"LOCK TABLE {db.q(store.table)} IN ACCESS EXCLUSIVE MODE")
        else:
            locker.cursor().execute(f"LOCK TABLES {db.q(store.table)} WRITE")
        with within(db.bound), pytest.raises(StoreUnavailableError):
            await call(mode, store, "load", key)
        if db.name == "postgres":
            locker.rollback()
        else:
            locker.cursor().execute("UNLOCK TABLES")
    assert await call(mode, store, "load", key) == _record(clock() + 60)


@pytest.mark.parametrize(
    ("said", "cause"),
    [
        (
            'connection failed: connection to server at "10.0.0.5", port 5432 failed: FATAL:  database "app" does not exist',
            'database "app" does not exist',
        ),
        ("(1049, \"Unknown database 'app'\")", 'database "app" does not exist'),
        ('FATAL:  password authentication failed for user "web"', 'authentication failed for user "web"'),
        ('FATAL:  role "web" does not exist', 'authentication failed for user "web"'),
        ("(1045, \"Access denied for user 'web'@'10.0.0.9' (using password: YES)\")", 'authentication failed for user "web"'),
        ("port 5432 failed: Connection refused\n\tIs the server running on that host", "connection refused to 10.0.0.5:5432"),
        (
            "(2003, \"Can't connect to MySQL server on '10.0.0.5' ([Errno 111] Connection refused)\")",
            "connection refused to 10.0.0.5:5432",
        ),
        ('failed to resolve host "db.internal": [Errno -2] Name or service not known', "unknown host in 10.0.0.5:5432"),
        ('connection to server at "10.0.0.5", port 5432 failed: timeout expired', "no answer from 10.0.0.5:5432 in time"),
        ("server closed the connection unexpectedly", None),
    ],
)
def test_connection_causes_in_the_same_words_for_both_databases(said: str, cause: str | None) -> None:
    assert _sql.connection_cause(said, "10.0.0.5:5432") == cause

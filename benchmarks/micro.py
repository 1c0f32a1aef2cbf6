"""Store micro-benchmarks: µs per load / save / touch / rotate, next to the raw driver's floor.

In process, sync and async, timeit-style (a tight loop of ``--number`` calls, best of
``--repeat``). The floor does the same round trips with the bare driver on one connection:
a dict for memory, ``sqlite3``, redis-py ``GET``/``SET``/``PEXPIREAT``/``MULTI``, psycopg and
PyMySQL/aiomysql ``SELECT``/``UPDATE``/transactions. Two more rows time a whole request's
session work through the manager (load, then commit a read-modify-write or a read-only use).

    benchmarks/.venv/bin/python -m benchmarks.micro [--quick] [--json PATH] [--stores memory,redis]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from coatcheck import SessionManager
from coatcheck._codec import encode
from coatcheck._ids import new_session_id, store_key
from coatcheck.stores import Record, from_url

from . import _infra, report

SyncOp = Callable[[int], object]
AsyncOp = Callable[[int], Awaitable[object]]
LIFETIME = 1800.0
RAW = encode(time.time(), {"n": 1, "user": "someone", "cart": [1, 2, 3]})


def time_sync(op: SyncOp, number: int, repeat: int) -> float:
    """Best µs per call over ``repeat`` loops of ``number`` calls."""
    best = float("inf")
    offset = 0
    for _ in range(repeat):
        started = time.perf_counter()
        for i in range(offset, offset + number):
            op(i)
        best = min(best, time.perf_counter() - started)
        offset += number
    return best / number * 1e6


async def time_async(op: AsyncOp, number: int, repeat: int) -> float:
    """:func:`time_sync` for coroutines, awaited one after the other."""
    best = float("inf")
    offset = 0
    for _ in range(repeat):
        started = time.perf_counter()
        for i in range(offset, offset + number):
            await op(i)
        best = min(best, time.perf_counter() - started)
        offset += number
    return best / number * 1e6


class Keys:
    """A live record under ``key`` at ``version``, and fresh keys for a rotation chain."""

    def __init__(self, total: int) -> None:
        self.key = store_key(new_session_id())
        self.version = 1
        self.chain = [store_key(new_session_id()) for _ in range(total + 1)]
        self.chain_version = 1
        self.expires = time.time() + LIFETIME

    def record(self, version: int) -> Record:
        """The record a save at ``version`` writes."""
        return Record(RAW, self.expires, version, None)


# -- coatcheck's store -----------------------------------------------------------------------------


def coatcheck_sync(store: Any, k: Keys) -> dict[str, SyncOp]:
    """load / save / touch / rotate on a coatcheck store, sync."""
    assert store.save(k.key, k.record(1), expected_version=None)
    assert store.save(k.chain[0], k.record(1), expected_version=None)

    def save(i: int) -> object:
        ok = store.save(k.key, k.record(k.version + 1), expected_version=k.version)
        k.version += 1
        return ok

    def rotate(i: int) -> object:
        ok = store.rotate(k.chain[i], k.chain[i + 1], k.record(k.chain_version + 1), expected_version=k.chain_version)
        k.chain_version += 1
        return ok

    return {
        "load": lambda i: store.load(k.key),
        "save": save,
        "touch": lambda i: store.touch(k.key, k.expires + 1 + i * 1e-3),
        "rotate": rotate,
    }


def coatcheck_async(store: Any, k: Keys) -> tuple[Callable[[], Awaitable[None]], dict[str, AsyncOp]]:
    """load / save / touch / rotate on a coatcheck store, async (with its setup coroutine)."""

    async def setup() -> None:
        assert await store.asave(k.key, k.record(1), expected_version=None)
        assert await store.asave(k.chain[0], k.record(1), expected_version=None)

    async def save(i: int) -> object:
        ok = await store.asave(k.key, k.record(k.version + 1), expected_version=k.version)
        k.version += 1
        return ok

    async def rotate(i: int) -> object:
        ok = await store.arotate(k.chain[i], k.chain[i + 1], k.record(k.chain_version + 1), expected_version=k.chain_version)
        k.chain_version += 1
        return ok

    async def touch(i: int) -> object:
        return await store.atouch(k.key, k.expires + 1 + i * 1e-3)

    return setup, {"load": lambda i: store.aload(k.key), "save": save, "touch": touch, "rotate": rotate}


def manager_sync(manager: SessionManager) -> dict[str, SyncOp]:
    """A whole request's session work through the manager: read-modify-write and read-only."""
    session = manager.new_session()
    session["n"] = 0
    manager.commit(session)
    cookie = f"sessionid={session.id}"

    def rmw(i: int) -> object:
        s = manager.load(cookie)
        s["n"] = s.get("n", 0) + 1
        return manager.commit(s)

    def read(i: int) -> object:
        s = manager.load(cookie)
        s.get("n")
        return manager.commit(s)

    return {"request rmw": rmw, "request read": read}


def manager_async(manager: SessionManager) -> tuple[Callable[[], Awaitable[None]], dict[str, AsyncOp]]:
    """:func:`manager_sync`, async."""
    cookie: list[str] = []

    async def setup() -> None:
        session = manager.new_session()
        session["n"] = 0
        await manager.acommit(session)
        cookie.append(f"sessionid={session.id}")

    async def rmw(i: int) -> object:
        s = await manager.aload(cookie[0])
        s["n"] = s.get("n", 0) + 1
        return await manager.acommit(s)

    async def read(i: int) -> object:
        s = await manager.aload(cookie[0])
        s.get("n")
        return await manager.acommit(s)

    return setup, {"request rmw": rmw, "request read": read}


# -- the raw drivers: the floor ------------------------------------------------------------------


def _as_async(ops: dict[str, SyncOp], *, to_thread: bool) -> Callable[[], Awaitable[dict[str, AsyncOp]]]:
    """Coroutine versions of sync operations: called inline, or in a worker thread."""

    def make(op: SyncOp) -> AsyncOp:
        async def call(i: int) -> object:
            return await asyncio.to_thread(op, i) if to_thread else op(i)

        return call

    async def factory() -> dict[str, AsyncOp]:
        return {name: make(op) for name, op in ops.items()}

    return factory


def raw_memory() -> tuple[dict[str, SyncOp], Callable[[], Awaitable[dict[str, AsyncOp]]]]:
    """A dict."""
    data: dict[str, Record] = {}
    k = Keys(0)
    record = k.record(1)
    data[k.key] = record

    def rotate(i: int) -> object:
        data.pop(k.key, None)
        data[k.key] = record
        return True

    sync: dict[str, SyncOp] = {
        "load": lambda i: data.get(k.key),
        "save": lambda i: data.__setitem__(k.key, record),
        "touch": lambda i: data.__setitem__(k.key, record),
        "rotate": rotate,
    }
    return sync, _as_async(sync, to_thread=False)


def raw_sqlite(path: str) -> tuple[dict[str, SyncOp], Callable[[], Awaitable[dict[str, AsyncOp]]]]:
    """sqlite3 on coatcheck's table; async is ``asyncio.to_thread``, as the store does."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    k = Keys(0)
    insert = "INSERT INTO coatcheck_sessions VALUES (?, ?, ?, 1, NULL)"
    conn.execute(insert, (k.key, RAW, k.expires))

    def rotate(i: int) -> object:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("DELETE FROM coatcheck_sessions WHERE key = ?", (k.key,))
        conn.execute(insert, (k.key, RAW, k.expires))
        conn.execute("COMMIT")
        return True

    load = "SELECT data, expires_at, version, user_id FROM coatcheck_sessions WHERE key = ? AND expires_at > ?"
    save = "UPDATE coatcheck_sessions SET data = ?, version = ? WHERE key = ?"
    touch = "UPDATE coatcheck_sessions SET expires_at = ? WHERE key = ?"
    sync: dict[str, SyncOp] = {
        "load": lambda i: conn.execute(load, (k.key, 0.0)).fetchone(),
        "save": lambda i: conn.execute(save, (RAW, i, k.key)),
        "touch": lambda i: conn.execute(touch, (k.expires + i, k.key)),
        "rotate": rotate,
    }
    return sync, _as_async(sync, to_thread=True)


def raw_redis(url: str) -> tuple[dict[str, SyncOp], Callable[[], Awaitable[dict[str, AsyncOp]]]]:
    """redis-py: GET, SET, PEXPIREAT and a MULTI/EXEC of DEL + SET, each one round trip."""
    import redis
    import redis.asyncio

    client = redis.Redis.from_url(url)
    key = "raw:" + store_key(new_session_id())
    client.set(key, RAW)
    at = int((time.time() + LIFETIME) * 1000)

    def rotate(i: int) -> object:
        pipe = client.pipeline(transaction=True)
        pipe.delete(key)
        pipe.set(key, RAW, pxat=at)
        return pipe.execute()

    sync: dict[str, SyncOp] = {
        "load": lambda i: client.get(key),
        "save": lambda i: client.set(key, RAW, pxat=at),
        "touch": lambda i: client.pexpireat(key, at + i),
        "rotate": rotate,
    }

    async def make_async() -> dict[str, AsyncOp]:
        aclient = redis.asyncio.Redis.from_url(url)

        async def arotate(i: int) -> object:
            pipe = aclient.pipeline(transaction=True)
            pipe.delete(key)
            pipe.set(key, RAW, pxat=at)
            return await pipe.execute()

        return {
            "load": lambda i: aclient.get(key),
            "save": lambda i: aclient.set(key, RAW, pxat=at),
            "touch": lambda i: aclient.pexpireat(key, at + i),
            "rotate": arotate,
        }

    return sync, make_async


def raw_postgres() -> tuple[dict[str, SyncOp], Callable[[], Awaitable[dict[str, AsyncOp]]]]:
    """psycopg on one autocommit connection: SELECT, UPDATE, UPDATE, and a DELETE+INSERT transaction."""
    import psycopg

    conn = psycopg.connect(_infra.PG_URL, autocommit=True)
    k = Keys(0)
    load = "SELECT data, expires_at, version, user_id FROM bench_micro WHERE key = %s AND expires_at > %s"
    save = "UPDATE bench_micro SET data = %s, version = %s WHERE key = %s"
    touch = "UPDATE bench_micro SET expires_at = %s WHERE key = %s"
    delete = "DELETE FROM bench_micro WHERE key = %s"
    insert = "INSERT INTO bench_micro (key, data, expires_at, version) VALUES (%s, %s, %s, 1)"
    conn.execute(insert, (k.key, RAW, k.expires))

    def rotate(i: int) -> object:
        with conn.transaction():
            conn.execute(delete, (k.key,))
            conn.execute(insert, (k.key, RAW, k.expires))
        return True

    sync: dict[str, SyncOp] = {
        "load": lambda i: conn.execute(load, (k.key, 0.0)).fetchone(),
        "save": lambda i: conn.execute(save, (RAW, i, k.key)),
        "touch": lambda i: conn.execute(touch, (k.expires + i, k.key)),
        "rotate": rotate,
    }

    async def make_async() -> dict[str, AsyncOp]:
        aconn = await psycopg.AsyncConnection.connect(_infra.PG_URL, autocommit=True)

        async def aload(i: int) -> object:
            return await (await aconn.execute(load, (k.key, 0.0))).fetchone()

        async def arotate(i: int) -> object:
            async with aconn.transaction():
                await aconn.execute(delete, (k.key,))
                await aconn.execute(insert, (k.key, RAW, k.expires))
            return True

        return {
            "load": aload,
            "save": lambda i: aconn.execute(save, (RAW, i, k.key)),
            "touch": lambda i: aconn.execute(touch, (k.expires + i, k.key)),
            "rotate": arotate,
        }

    return sync, make_async


def raw_mysql() -> tuple[dict[str, SyncOp], Callable[[], Awaitable[dict[str, AsyncOp]]]]:
    """PyMySQL and aiomysql on one autocommit connection each, the same statements."""
    import pymysql

    conn = pymysql.connect(host=_infra.MYSQL_HOST, port=_infra.MYSQL_PORT, user="root", database=_infra.MYSQL_DB, autocommit=True)
    cur = conn.cursor()
    k = Keys(0)
    load = "SELECT data, expires_at, version, user_id FROM bench_micro WHERE `key` = %s AND expires_at > %s"
    save = "UPDATE bench_micro SET data = %s, version = %s WHERE `key` = %s"
    touch = "UPDATE bench_micro SET expires_at = %s WHERE `key` = %s"
    delete = "DELETE FROM bench_micro WHERE `key` = %s"
    insert = "INSERT INTO bench_micro (`key`, data, expires_at, version) VALUES (%s, %s, %s, 1)"
    cur.execute(insert, (k.key, RAW, k.expires))

    def one(sql: str, params: tuple[Any, ...]) -> object:
        cur.execute(sql, params)
        return cur.fetchone()

    def rotate(i: int) -> object:
        cur.execute("BEGIN")
        cur.execute(delete, (k.key,))
        cur.execute(insert, (k.key, RAW, k.expires))
        cur.execute("COMMIT")
        return True

    sync: dict[str, SyncOp] = {
        "load": lambda i: one(load, (k.key, 0.0)),
        "save": lambda i: one(save, (RAW, i, k.key)),
        "touch": lambda i: one(touch, (k.expires + i, k.key)),
        "rotate": rotate,
    }

    async def make_async() -> dict[str, AsyncOp]:
        import aiomysql

        text = RAW.decode()  # aiomysql 0.3 cannot escape bytes (coatcheck's store works around it)

        aconn = await aiomysql.connect(
            host=_infra.MYSQL_HOST, port=_infra.MYSQL_PORT, user="root", db=_infra.MYSQL_DB, autocommit=True
        )
        acur = await aconn.cursor()

        async def aone(sql: str, params: tuple[Any, ...]) -> object:
            await acur.execute(sql, params)
            return await acur.fetchone()

        async def arotate(i: int) -> object:
            for sql, params in (("BEGIN", ()), (delete, (k.key,)), (insert, (k.key, text, k.expires)), ("COMMIT", ())):
                await acur.execute(sql, params or None)
            return True

        return {
            "load": lambda i: aone(load, (k.key, 0.0)),
            "save": lambda i: aone(save, (text, i, k.key)),
            "touch": lambda i: aone(touch, (k.expires + i, k.key)),
            "rotate": arotate,
        }

    return sync, make_async


# -- the run -------------------------------------------------------------------------------------


def store_url(name: str, services: _infra.Services) -> str:
    """coatcheck's URL for store ``name``."""
    return {
        "memory": "memory://",
        "sqlite": f"sqlite:///{services.work_dir / 'micro.db'}",
        "redis": services.redis_url,
        "postgres": services.pg_url("bench_micro"),
        "mysql": services.mysql_url("bench_micro"),
    }[name]


def bench_store(name: str, services: _infra.Services, number: int, repeat: int) -> list[dict[str, Any]]:
    """Every operation of one store, coatcheck and floor, sync and async."""
    n = number * (20 if name == "memory" else 1)
    total = n * repeat
    rows: dict[str, dict[str, Any]] = {
        op: {"store": name, "op": op, "sync": {}, "async": {}}
        for op in ("load", "save", "touch", "rotate", "request rmw", "request read")
    }
    store = from_url(store_url(name, services))
    for op, fn in coatcheck_sync(store, Keys(total)).items():
        rows[op]["sync"]["coatcheck"] = time_sync(fn, n, repeat)
    for op, fn in manager_sync(SessionManager(store)).items():
        rows[op]["sync"]["coatcheck"] = time_sync(fn, n, repeat)
    store.close()
    if name == "memory":
        raw_sync, raw_async_factory = raw_memory()
    elif name == "sqlite":
        raw_sync, raw_async_factory = raw_sqlite(str(services.work_dir / "micro.db"))
    elif name == "redis":
        raw_sync, raw_async_factory = raw_redis(services.redis_url)
    elif name == "postgres":
        raw_sync, raw_async_factory = raw_postgres()
    else:
        raw_sync, raw_async_factory = raw_mysql()
    for op, fn in raw_sync.items():
        rows[op]["sync"]["raw"] = time_sync(fn, n, repeat)
    rows["request rmw"]["sync"]["raw"] = rows["load"]["sync"]["raw"] + rows["save"]["sync"]["raw"]
    rows["request read"]["sync"]["raw"] = rows["load"]["sync"]["raw"]

    async def run_async() -> None:
        astore = from_url(store_url(name, services))
        setup, ops = coatcheck_async(astore, Keys(total))
        await setup()
        for op, fn in ops.items():
            rows[op]["async"]["coatcheck"] = await time_async(fn, n, repeat)
        msetup, mops = manager_async(SessionManager(astore))
        await msetup()
        for op, fn in mops.items():
            rows[op]["async"]["coatcheck"] = await time_async(fn, n, repeat)
        await astore.aclose()
        for op, fn in (await raw_async_factory()).items():
            rows[op]["async"]["raw"] = await time_async(fn, n, repeat)
        rows["request rmw"]["async"]["raw"] = rows["load"]["async"]["raw"] + rows["save"]["async"]["raw"]
        rows["request read"]["async"]["raw"] = rows["load"]["async"]["raw"]

    asyncio.run(run_async())
    return list(rows.values())


def main(argv: list[str] | None = None) -> int:
    """Run the micro-benchmarks, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer calls (a smoke run)")
    parser.add_argument("--number", type=int, default=1000, help="calls per timing loop (x20 for memory)")
    parser.add_argument("--repeat", type=int, default=5, help="timing loops; the best one counts")
    parser.add_argument("--stores", default="memory,sqlite,redis,postgres,mysql")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.number, args.repeat = 200, 3
    rows = []
    with _infra.services() as services:
        for name in args.stores.split(","):
            if (name == "postgres" and not services.postgres) or (name == "mysql" and not services.mysql):
                continue
            _infra.log(f"micro: {name}")
            try:
                rows.extend(bench_store(name, services, args.number, args.repeat))
            except Exception as exc:
                _infra.log(f"micro: {name} failed: {type(exc).__name__}: {exc}")
    result = {"number": args.number, "repeat": args.repeat, "rows": rows}
    report.print_table("Store operations, µs per call (best of the repeats)", report.micro_table, result)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Scale checks: the memory store with 1M live sessions, a read's cost at 10k vs 1M sessions in
each store (memory, SQLite, Redis, PostgreSQL), and the latency of requests while 1M expired
sessions are purged (memory, SQLite, PostgreSQL; Redis expires records by their TTL).

    benchmarks/.venv/bin/python -m benchmarks.scale [--quick] [--sessions N] [--json PATH]

Each part is bounded (a few minutes at most with 1M sessions). The stores are filled straight
with records in coatcheck's format (pipelines for Redis, COPY for PostgreSQL, one transaction
for SQLite, direct writes for memory) and emptied afterwards; Redis keys carry a prefix of
their own. A read is a read-only request's session work through the manager (load a random
filled session, read a key, commit), timed in a process of its own (wall and CPU µs per read,
the median of the repeats) and, under callgrind, counted in machine instructions (only the
measured reads: ``callgrind_control -i on/off``). The purge part serves read-only requests from
a real server (uvicorn, pinned like the HTTP benchmark) and drives them with an asyncio client
of its own, which records every request's start and latency; the purge is triggered through
the app (``manager.apurge_expired()``, what the expirer runs) mid-load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil

from coatcheck import SessionManager
from coatcheck._codec import encode
from coatcheck._ids import store_key
from coatcheck.stores import Record, from_url
from coatcheck.stores.memory import MemoryStore

from . import _infra, report
from .concurrent import _callgrind

LIFETIME = 1800.0
STORES = ("memory", "sqlite", "redis", "postgres")
REDIS_PREFIX = "coatcheck-scale:"  # every Redis key this script writes starts with it
PG_TABLE = "bench_scale"


def session_id(i: int) -> str:
    """The ID of the ``i``-th filled session: well-formed, and stored under its SHA-256 like any other."""
    return f"{i:043d}"


def records(count: int, created: float) -> Iterator[tuple[str, bytes]]:
    """``count`` sessions as ``(store key, record data)`` in coatcheck's format, each with its own data."""
    for i in range(count):
        yield store_key(session_id(i)), encode(created, {"n": i})


def fill(store: MemoryStore, count: int, now: float | None = None) -> float:
    """Add ``count`` live sessions created at ``now`` (default: the time) through ``save``;
    return µs per session."""
    now = time.time() if now is None else now
    started = time.perf_counter()
    for key, data in records(count, now):
        store.save(key, Record(data, now + LIFETIME, 1, None), expected_version=None)
    return (time.perf_counter() - started) / max(1, count) * 1e6


def memory_footprint(sessions: int, sample: int) -> dict[str, Any]:
    """Bytes per live session by RSS delta (all of them) and by tracemalloc (a sample)."""
    gc.collect()
    process = psutil.Process()
    before = process.memory_info().rss
    store = MemoryStore(max_entries=sessions * 2)
    insert_us = fill(store, sessions)
    gc.collect()
    rss = (process.memory_info().rss - before) / sessions
    del store
    small = MemoryStore(max_entries=sample * 2)
    tracemalloc.start()
    fill(small, sample)
    traced = tracemalloc.get_traced_memory()[0] / sample
    tracemalloc.stop()
    del small
    gc.collect()
    return {
        "sessions": sessions,
        "rss_bytes_per_session": rss,
        "tracemalloc_bytes_per_session": traced,
        "tracemalloc_sample": sample,
        "insert_us": insert_us,
    }


def http_read(services: _infra.Services, live: int, duration: float) -> dict[str, Any]:
    """wrk's read-only mix on the ASGI memory store holding ``live`` sessions."""
    env = {"BENCH_STORE": "memory", "BENCH_STORE_URL": "memory://?max_entries=3000000", "BENCH_PREFILL_LIVE": str(live)}
    server = _infra.start_server("asgi", "benchmarks.apps.coatcheck_asgi:app", env, services.work_dir, ready_timeout=300)
    try:
        cookies = services.work_dir / "scale-cookies.txt"
        cookies.write_text("\n".join(_infra.make_sessions(server.port, 64)) + "\n")
        _infra.run_wrk(server.port, "/read", duration=1, connections=32, cookies_file=cookies, max_requests=1_000_000)
        cpu = server.cpu_seconds()
        wrk = _infra.run_wrk(
            server.port, "/read", duration=duration, connections=32, cookies_file=cookies, max_requests=2_000_000
        )
        cpu = server.cpu_seconds() - cpu
    finally:
        server.stop()
    return {
        "sessions": live,
        "rps": wrk["requests"] / (wrk["duration_us"] / 1e6),
        "p50_ms": wrk["p50_us"] / 1000,
        "p99_ms": wrk["p99_us"] / 1000,
        "cpu_us": cpu * 1e6 / max(1, wrk["requests"]),
    }


# -- filled stores ---------------------------------------------------------------------------------


def _fill_sqlite(url: str, count: int, created: float, expires_at: float) -> None:
    store = from_url(url)
    store.load("0" * 64)  # creates the schema
    store.close()
    conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO coatcheck_sessions VALUES (?, ?, ?, 1, NULL)",
            ((key, data, expires_at) for key, data in records(count, created)),
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


def _fill_postgres(url: str, count: int, created: float, expires_at: float) -> None:
    import psycopg

    store = from_url(url)
    store.migrate()
    store.close()
    with psycopg.connect(_infra.PG_URL, autocommit=True) as conn:
        with conn.cursor().copy(f"COPY {PG_TABLE} (key, data, expires_at, version) FROM STDIN") as copy:
            for key, data in records(count, created):
                copy.write_row((key, data, expires_at, 1))
        conn.execute(f"ANALYZE {PG_TABLE}")


def _fill_redis(url: str, count: int, created: float, expires_at: float) -> None:
    """Each session as the store's scripts write it: a hash (data, expiry, version, creation) with a TTL."""
    import redis

    expiry, born = repr(expires_at), repr(created)
    client = redis.Redis.from_url(url.split("?")[0])
    try:
        with client.pipeline(transaction=False) as pipe:
            for i, (key, data) in enumerate(records(count, created), 1):
                name = f"{REDIS_PREFIX}s:{key}"
                pipe.hset(name, mapping={"d": data, "e": expiry, "v": "1", "c": born})
                pipe.pexpireat(name, int(expires_at * 1000))
                if i % 5000 == 0:
                    pipe.execute()
            pipe.execute()
    finally:
        client.close()


def _clear_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url.split("?")[0])
    try:
        batch: list[bytes] = []
        for name in client.scan_iter(match=f"{REDIS_PREFIX}*", count=10_000):
            batch.append(name)
            if len(batch) == 10_000:
                client.unlink(*batch)
                batch.clear()
        if batch:
            client.unlink(*batch)
    finally:
        client.close()


@contextlib.contextmanager
def filled(store: str, services: _infra.Services, count: int, expires_at: float) -> Iterator[str]:
    """The URL of ``store`` holding ``count`` sessions that expire at ``expires_at``, emptied afterwards.

    The memory store lives in its user's process, which fills it (:func:`fill`).
    """
    sqlite_path = services.work_dir / "scale.db"
    url = {
        "memory": "memory://?max_entries=3000000",
        "sqlite": f"sqlite:///{sqlite_path}",
        "redis": f"{services.redis_url}?key_prefix={quote(REDIS_PREFIX)}",
        "postgres": services.pg_url(PG_TABLE),
    }[store]
    fillers = {"sqlite": _fill_sqlite, "redis": _fill_redis, "postgres": _fill_postgres}

    def empty() -> None:
        if store == "sqlite":
            for path in sqlite_path.parent.glob(f"{sqlite_path.name}*"):
                path.unlink()
        elif store == "redis":
            _clear_redis(url)
        elif store == "postgres":
            _infra.drop_postgres_tables([PG_TABLE])

    empty()  # what an interrupted run may have left
    try:
        if store in fillers:
            _infra.log(f"scale: filling {store} with {count:,} sessions")
            fillers[store](url, count, expires_at - LIFETIME, expires_at)
        yield url
    finally:
        empty()


# -- a read's cost ---------------------------------------------------------------------------------


def measure_reads(url: str, sessions: int, reads: int, repeats: int, callgrind: bool, created: float) -> dict[str, Any]:
    """In this process: ``repeats`` loops of ``reads`` read-only requests' session work (load a
    random one of the ``sessions`` filled sessions, read a key, commit), after a warm-up loop.

    The filled sessions are frozen out of the cyclic GC's reach, so that a full collection (a cost
    of the heap, not of a read) does not land in one size's window and not the other's. The
    clock stays at ``created``, the time the sessions were filled: no read finds its session's
    expiry due for a refresh (a write) because filling a million sessions took longer than the
    refresh interval (under callgrind, filling the memory store takes many minutes).
    """
    store = from_url(url, clock=lambda: created)
    if isinstance(store, MemoryStore):
        fill(store, sessions, created)
    manager = SessionManager(store, clock=lambda: created)
    pick = random.Random(sessions)
    cookies = [f"sessionid={session_id(pick.randrange(sessions))}" for _ in range(reads * (repeats + 1))]

    def read(cookie: str) -> None:
        session = manager.load(cookie)
        if session.get("n") is None:
            raise RuntimeError(f"{url}: a filled session was not found")
        manager.commit(session)

    for cookie in cookies[:reads]:
        read(cookie)
    gc.collect()
    gc.freeze()
    wall, cpu = [], []
    if callgrind:
        _callgrind("on")
    for r in range(1, repeats + 1):
        started, cpu_started = time.perf_counter(), time.process_time()
        for cookie in cookies[r * reads : (r + 1) * reads]:
            read(cookie)
        wall.append((time.perf_counter() - started) / reads * 1e6)
        cpu.append((time.process_time() - cpu_started) / reads * 1e6)
    if callgrind:
        _callgrind("off")
    store.close()
    return {"reads": reads * repeats, "wall_us": statistics.median(wall), "cpu_us": statistics.median(cpu)}


def read_child(
    url: str, sessions: int, reads: int, repeats: int, work_dir: Path, callgrind: bool, created: float
) -> dict[str, Any]:
    """:func:`measure_reads` in a process of its own on the server's core; under callgrind, its
    ``instructions`` per read too."""
    spec = json.dumps(
        {"url": url, "sessions": sessions, "reads": reads, "repeats": repeats, "callgrind": callgrind, "created": created}
    )
    argv = [sys.executable, "-m", "benchmarks.scale", "--read-child", spec]
    out = work_dir / "scale-callgrind.out"
    if callgrind:
        argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}", *argv]
    env = {**os.environ, "PYTHONPATH": str(_infra.ROOT)}
    done = subprocess.run(
        _infra.pinned(_infra.SERVER_CPU, argv),
        cwd=_infra.ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"reads on {url} failed ({done.returncode}): {done.stderr[-2000:]}")
    found: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    if callgrind:
        totals = re.search(r"^totals: (\d+)", out.read_text(), re.MULTILINE)
        out.unlink()
        if totals is None:
            raise RuntimeError(f"no callgrind totals for the reads on {url}")
        found["instructions"] = int(totals.group(1)) / found["reads"]
    return found


def read_cost(store: str, services: _infra.Services, sizes: tuple[int, ...], reads: int, callgrind: bool) -> dict[str, Any]:
    """Wall and CPU µs (and instructions) per read with each of ``sizes`` sessions in ``store``."""
    row: dict[str, Any] = {"store": store, "sessions": list(sizes), "wall_us": [], "cpu_us": [], "instructions": []}
    for size in sizes:
        created = time.time()
        with filled(store, services, size, created + LIFETIME) as url:
            _infra.log(f"scale: reads on {store}, {size:,} sessions")
            timed = read_child(url, size, reads, 7, services.work_dir, callgrind=False, created=created)
            row["wall_us"].append(timed["wall_us"])
            row["cpu_us"].append(timed["cpu_us"])
            if callgrind:
                counted = read_child(url, size, max(100, reads // 5), 1, services.work_dir, callgrind=True, created=created)
                row["instructions"].append(counted["instructions"])
    return row


# -- purge while serving -------------------------------------------------------------------------


async def _load(
    port: int, cookies: list[str], connections: int, purge_after: float, settle: float, limit: float
) -> tuple[list[tuple[float, float]], dict[str, Any]]:
    """Closed-loop keep-alive GET /read on ``connections`` connections; purge after ``purge_after`` s."""
    samples: list[tuple[float, float]] = []
    purge: dict[str, Any] = {}
    stop = asyncio.Event()
    requests = [f"GET /read HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {c}\r\n\r\n".encode() for c in cookies]

    async def client(n: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = n
        try:
            while not stop.is_set():
                started = time.perf_counter()
                writer.write(requests[i % len(requests)])
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")),
                    0,
                )
                await reader.readexactly(length)
                samples.append((started, time.perf_counter() - started))
                i += connections
        finally:
            writer.close()

    async def trigger() -> None:
        await asyncio.sleep(purge_after)
        purge["start"] = time.perf_counter()
        result = await asyncio.to_thread(_infra.get_json, port, "/__bench/purge", limit)
        purge["end"] = time.perf_counter()
        purge.update(result)
        await asyncio.sleep(settle)
        stop.set()

    tasks = [asyncio.create_task(client(n)) for n in range(connections)]
    try:
        await asyncio.wait_for(trigger(), timeout=limit)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    return samples, purge


def _window(samples: list[tuple[float, float]]) -> dict[str, Any]:
    latencies = sorted(latency for _, latency in samples)
    if not latencies:
        return {"requests": 0, "p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
    return {
        "requests": len(latencies),
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "max_ms": latencies[-1] * 1000,
    }


def purge_while_serving(store: str, services: _infra.Services, expired: int, before: float) -> dict[str, Any]:
    """p50/p99 of read-only requests before and during a purge of ``expired`` sessions."""
    if store == "redis":  # Redis drops expired keys itself (the store's ``expires_natively``): no purge to time
        return {"store": store, "native_ttl": True}
    with filled(store, services, expired, time.time() - 60) as url:
        env = {"BENCH_STORE": store, "BENCH_PURGE_INTERVAL": "0", "BENCH_STORE_URL": url}
        if store == "memory":
            env["BENCH_PREFILL_EXPIRED"] = str(expired)
        server = _infra.start_server("asgi", "benchmarks.apps.coatcheck_asgi:app", env, services.work_dir, ready_timeout=300)
        affinity = os.sched_getaffinity(0)
        try:
            cookies = _infra.make_sessions(server.port, 64)
            if len(os.sched_getaffinity(0)) > 1:
                os.sched_setaffinity(0, {int(_infra.LOAD_CPU)})
            samples, purge = asyncio.run(_load(server.port, cookies, 32, before, 1.0, 300.0))
        finally:
            os.sched_setaffinity(0, affinity)
            server.stop()
    t0 = samples[0][0] if samples else 0.0
    warm = [s for s in samples if s[0] >= t0 + 0.5 and s[0] + s[1] < purge["start"]]
    during = [s for s in samples if s[0] < purge["end"] and s[0] + s[1] > purge["start"]]
    return {
        "store": store,
        "expired": expired,
        "deleted": purge.get("deleted", 0),
        "purge_seconds": purge["end"] - purge["start"],
        "purge_server_seconds": purge.get("seconds"),
        "before": _window(warm),
        "during": _window(during),
    }


def each_store(names: str, services: _infra.Services, part: str, run: Callable[[str], dict[str, Any]]) -> list[dict[str, Any]]:
    """``run(store)`` for each store of ``names`` (PostgreSQL only when it is up); a failure becomes an error row."""
    rows = []
    for store in names.split(","):
        if store == "postgres" and not services.postgres:
            continue
        _infra.log(f"scale: {part} on {store}")
        try:
            rows.append(run(store))
        except Exception as exc:
            rows.append({"store": store, "error": f"{type(exc).__name__}: {exc}"})
            _infra.log(f"scale: {part} on {store} failed: {exc}")
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the scale checks, print the tables, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10k vs 50k sessions, fewer reads, shorter loads")
    parser.add_argument("--sessions", type=int, default=1_000_000, help="the large size (default 1M)")
    parser.add_argument("--small", type=int, default=10_000, help="the small size (default 10k)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of wrk per HTTP read run")
    parser.add_argument("--reads", type=int, default=5000, help="reads per timed loop (7 loops; a fifth as many under callgrind)")
    parser.add_argument("--read-stores", default=",".join(STORES))
    parser.add_argument("--purge-stores", default=",".join(STORES))
    parser.add_argument("--no-callgrind", action="store_true", help="time the reads without counting their instructions")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--read-child", help=argparse.SUPPRESS)  # JSON arguments of measure_reads
    args = parser.parse_args(argv)
    if args.read_child:
        print(json.dumps(measure_reads(**json.loads(args.read_child))))
        return 0
    if args.quick:
        args.sessions, args.duration, args.reads = 50_000, 3.0, 1000
    sizes = (args.small, args.sessions)
    callgrind = not args.no_callgrind and shutil.which("valgrind") is not None
    result: dict[str, Any] = {"sessions": args.sessions}
    with _infra.services() as services:
        _infra.log(f"scale: memory footprint of {args.sessions:,} sessions")
        result["memory"] = memory_footprint(args.sessions, min(100_000, args.sessions))
        _infra.log("scale: read-only HTTP requests on the memory store")
        result["http_read"] = [http_read(services, size, args.duration) for size in sizes]
        result["reads"] = each_store(
            args.read_stores, services, "reads", lambda store: read_cost(store, services, sizes, args.reads, callgrind)
        )
        result["purge"] = each_store(
            args.purge_stores,
            services,
            f"purge of {args.sessions:,} expired sessions while serving",
            lambda store: purge_while_serving(store, services, args.sessions, 3.0),
        )
    report.print_table("Scale", report.scale_tables, result)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

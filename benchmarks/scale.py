"""Scale checks: the memory store with 1M live sessions, a read's cost at 10k vs 1M sessions, and
the latency of requests while 1M expired sessions are purged (memory, SQLite, PostgreSQL).

    benchmarks/.venv/bin/python -m benchmarks.scale [--quick] [--sessions N] [--json PATH]

Each part is bounded (a few minutes at most with 1M sessions). The purge part serves read-only
requests from a real server (uvicorn, pinned like the HTTP benchmark) and drives them with an
asyncio client of its own, which records every request's start and latency; the purge is
triggered through the app (``manager.apurge_expired()``, what the expirer runs) mid-load.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sqlite3
import statistics
import sys
import time
import tracemalloc
from typing import Any

import psutil

from coatcheck import SessionManager
from coatcheck._codec import encode
from coatcheck._ids import new_session_id, store_key
from coatcheck.stores import Record, from_url
from coatcheck.stores.memory import MemoryStore

from . import _infra, report
from .micro import time_sync

LIFETIME = 1800.0


def fill(store: MemoryStore, count: int) -> float:
    """Add ``count`` live sessions, each with its own data; return µs per session."""
    now = time.time()
    started = time.perf_counter()
    for i in range(count):
        store.save(store_key(new_session_id()), Record(encode(now, {"n": i}), now + LIFETIME, 1, None), expected_version=None)
    return (time.perf_counter() - started) / max(1, count) * 1e6


def memory_footprint(sessions: int, sample: int) -> tuple[dict[str, Any], MemoryStore]:
    """Bytes per live session by RSS delta (all of them) and by tracemalloc (a sample)."""
    gc.collect()
    process = psutil.Process()
    before = process.memory_info().rss
    store = MemoryStore(max_entries=sessions * 2)
    insert_us = fill(store, sessions)
    gc.collect()
    rss = (process.memory_info().rss - before) / sessions
    small = MemoryStore(max_entries=sample * 2)
    tracemalloc.start()
    fill(small, sample)
    traced = tracemalloc.get_traced_memory()[0] / sample
    tracemalloc.stop()
    del small
    return {
        "sessions": sessions,
        "rss_bytes_per_session": rss,
        "tracemalloc_bytes_per_session": traced,
        "tracemalloc_sample": sample,
        "insert_us": insert_us,
    }, store


def inprocess_read_us(store: MemoryStore, number: int) -> float:
    """µs for a read-only request's session work (load, read a key, commit) on ``store``."""
    manager = SessionManager(store)
    session = manager.new_session()
    session["n"] = 1
    manager.commit(session)
    cookie = f"sessionid={session.id}"

    def read(i: int) -> object:
        s = manager.load(cookie)
        s.get("n")
        return manager.commit(s)

    return time_sync(read, number, 5)


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
        "rps": wrk["requests"] / (wrk["duration_us"] / 1e6),
        "p50_ms": wrk["p50_us"] / 1000,
        "p99_ms": wrk["p99_us"] / 1000,
        "cpu_us": cpu * 1e6 / max(1, wrk["requests"]),
    }


# -- purge while serving -------------------------------------------------------------------------


def prefill_sqlite(path: str, expired: int) -> str:
    """An SQLite store file with ``expired`` expired sessions; return its URL."""
    url = f"sqlite:///{path}"
    store = from_url(url)
    store.load("0" * 64)  # creates the schema
    store.close()
    conn = sqlite3.connect(path, isolation_level=None)
    past = time.time() - 60
    raw = encode(past - 60, {"n": 0})
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO coatcheck_sessions VALUES (?, ?, ?, 1, NULL)",
        ((store_key(new_session_id()), raw, past) for _ in range(expired)),
    )
    conn.execute("COMMIT")
    conn.close()
    return url


def prefill_postgres(services: _infra.Services, expired: int) -> str:
    """The PostgreSQL table ``bench_scale`` with ``expired`` expired sessions; return its URL."""
    import psycopg

    url = services.pg_url("bench_scale")
    with psycopg.connect(_infra.PG_URL, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_scale")
    store = from_url(url)
    store.migrate()
    store.close()
    past = time.time() - 60
    with psycopg.connect(_infra.PG_URL, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO bench_scale (key, data, expires_at, version) SELECT md5(i::text) || md5((-i)::text),"
            " %s, %s, 1 FROM generate_series(1, %s) AS i",
            (encode(past - 60, {"n": 0}), past, expired),
        )
        conn.execute("ANALYZE bench_scale")
    return url


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
    env = {"BENCH_STORE": store, "BENCH_PURGE_INTERVAL": "0"}
    if store == "memory":
        env.update(BENCH_STORE_URL="memory://?max_entries=3000000", BENCH_PREFILL_EXPIRED=str(expired))
    elif store == "sqlite":
        env["BENCH_STORE_URL"] = prefill_sqlite(str(services.work_dir / "scale.db"), expired)
    else:
        env["BENCH_STORE_URL"] = prefill_postgres(services, expired)
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


def main(argv: list[str] | None = None) -> int:
    """Run the scale checks, print the tables, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100k sessions instead of 1M, shorter loads")
    parser.add_argument("--sessions", type=int, default=1_000_000, help="the large size (default 1M)")
    parser.add_argument("--small", type=int, default=10_000, help="the small size (default 10k)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of wrk per read-cost run")
    parser.add_argument("--purge-stores", default="memory,sqlite,postgres")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.sessions, args.duration = 100_000, 3.0
    result: dict[str, Any] = {"sessions": args.sessions}
    with _infra.services() as services:
        _infra.log(f"scale: memory footprint of {args.sessions:,} sessions")
        small_store = MemoryStore()
        fill(small_store, args.small)
        small_us = inprocess_read_us(small_store, 20_000)
        del small_store
        result["memory"], big = memory_footprint(args.sessions, min(100_000, args.sessions))
        big_us = inprocess_read_us(big, 20_000)
        del big
        gc.collect()
        result["read_cost"] = []
        for size, inprocess in ((args.small, small_us), (args.sessions, big_us)):
            _infra.log(f"scale: read-only requests with {size:,} sessions in the store")
            result["read_cost"].append({"sessions": size, "inprocess_us": inprocess, **http_read(services, size, args.duration)})
        result["purge"] = []
        for store in args.purge_stores.split(","):
            if store == "postgres" and not services.postgres:
                continue
            _infra.log(f"scale: purge {args.sessions:,} expired sessions from {store} while serving")
            try:
                result["purge"].append(purge_while_serving(store, services, args.sessions, 3.0))
            except Exception as exc:
                result["purge"].append({"store": store, "error": f"{type(exc).__name__}: {exc}"})
                _infra.log(f"scale: purge on {store} failed: {exc}")
    report.print_table("Scale", report.scale_tables, result)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

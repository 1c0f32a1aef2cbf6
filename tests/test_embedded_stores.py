"""Memory and SQLite specifics: bounds, bucketed expiry, several threads and processes on one file."""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
import threading
from pathlib import Path

import pytest

from coatcheck import ConfigurationError, SessionManager
from coatcheck._ids import store_key
from coatcheck.stores import Record
from coatcheck.stores.memory import MemoryStore
from coatcheck.stores.sqlite import SQLiteStore
from coatcheck.testing import FakeClock


def test_memory_store_stays_within_max_entries_and_evicts_expired_first() -> None:
    clock = FakeClock()
    store = MemoryStore(max_entries=100, clock=clock)
    for i in range(50):
        assert store.save(f"short{i}", Record(b"x", clock() + 10, 1), expected_version=None)
    for i in range(50):
        assert store.save(f"long{i}", Record(b"x", clock() + 10_000, 1), expected_version=None)
    clock.advance(11)
    for i in range(50):
        assert store.save(f"new{i}", Record(b"x", clock() + 5_000, 1), expected_version=None)
    assert len(store) == 100
    assert all(store.load(f"long{i}") is not None for i in range(50))
    for i in range(1000):
        store.save(f"flood{i}", Record(b"x", clock() + 20_000, 1), expected_version=None)
        assert len(store) <= 100
    assert store.load("flood999") is not None


def test_memory_store_expiry_units_are_seconds() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    store.save("k", Record(b"x", clock() + 60, 1), expected_version=None)
    clock.advance(59)
    assert store.load("k") is not None
    clock.advance(2)
    assert store.load("k") is None


def test_memory_purge_visits_only_due_buckets() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    for i in range(1000):
        store.save(f"k{i}", Record(b"x", clock() + 3600 + i, 1), expected_version=None)
    store.save("soon", Record(b"x", clock() + 5, 1), expected_version=None)
    clock.advance(30)
    due_keys = sum(len(keys) for bucket, keys in store._buckets.items() if bucket * 10 <= clock())
    assert due_keys == 1
    assert store.delete_expired(clock()) == 1
    assert len(store) == 1000


def test_memory_store_from_url() -> None:
    assert MemoryStore.from_url("memory://?max_entries=5").max_entries == 5
    with pytest.raises(ConfigurationError):
        MemoryStore.from_url("memory://?max_entries=lots")


def test_sqlite_url_forms(tmp_path: Path) -> None:
    assert SQLiteStore.from_url("sqlite:///sessions.db").path == "sessions.db"
    assert SQLiteStore.from_url(f"sqlite:///{tmp_path}/s.db").path == f"{tmp_path}/s.db"
    for bad in ("sqlite://", "sqlite:///:memory:"):
        with pytest.raises(ConfigurationError):
            SQLiteStore.from_url(bad)


def test_sqlite_schema_wal_and_indexes(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    store.load("x")
    conn = sqlite3.connect(tmp_path / "s.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        indexes = {row[1] for row in conn.execute("PRAGMA index_list(coatcheck_sessions)")}
        assert {"coatcheck_sessions_expires_at", "coatcheck_sessions_user_id"} <= indexes
    finally:
        conn.close()
        store.close()


def test_sqlite_purge_runs_in_batches(tmp_path: Path) -> None:
    clock = FakeClock()
    store = SQLiteStore(tmp_path / "s.db", purge_batch=1000, clock=clock)
    statements: list[str] = []
    conn = store._connection()[0]
    conn.executemany(
        "INSERT INTO coatcheck_sessions VALUES (?, ?, ?, 1, NULL)",
        [(f"k{i}", b"x", clock() + (10 if i < 2500 else 10_000)) for i in range(2600)],
    )
    conn.set_trace_callback(statements.append)
    clock.advance(20)
    assert store.delete_expired(clock()) == 2500
    assert sum(s.startswith("DELETE") for s in statements) == 3
    assert conn.execute("SELECT count(*) FROM coatcheck_sessions").fetchone()[0] == 100
    store.close()


def _writer(path: str, session_id: str, worker: int, count: int) -> None:
    manager = SessionManager(f"sqlite:///{path}")
    for i in range(count):
        session = manager.load(f"sessionid={session_id}")
        assert not session.is_new
        session[f"w{worker}-{i}"] = i
        manager.commit(session)
    manager.close()


def _shared_session(path: Path) -> str:
    manager = SessionManager(f"sqlite:///{path}")
    session = manager.new_session()
    session["start"] = True
    manager.commit(session)
    manager.close()
    return session.id


def test_sqlite_several_processes_on_one_file_lose_no_update(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    session_id = _shared_session(path)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(str(path), session_id, w, 20)) for w in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=120)
        assert process.exitcode == 0
    data = dict(SessionManager(f"sqlite:///{path}").load(f"sessionid={session_id}"))
    assert len(data) == 1 + 4 * 20


def test_sqlite_several_threads_lose_no_update(tmp_path: Path) -> None:
    path = tmp_path / "threads.db"
    session_id = _shared_session(path)
    threads = [threading.Thread(target=_writer, args=(str(path), session_id, w, 25)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    data = dict(SessionManager(f"sqlite:///{path}").load(f"sessionid={session_id}"))
    assert len(data) == 1 + 4 * 25


def test_sqlite_store_key_column_holds_only_hashes(tmp_path: Path) -> None:
    manager = SessionManager(f"sqlite:///{tmp_path}/h.db")
    session = manager.new_session()
    session["a"] = 1
    manager.commit(session)
    conn = sqlite3.connect(tmp_path / "h.db")
    try:
        [(key,)] = conn.execute("SELECT key FROM coatcheck_sessions").fetchall()
    finally:
        conn.close()
        manager.close()
    assert key == store_key(session.id)


@pytest.mark.anyio
async def test_memory_async_purge_lets_the_event_loop_run() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    for i in range(5000):
        store.save(f"k{i}", Record(b"x", clock() + 5, 1), expected_version=None)
    clock.advance(10)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.get_running_loop().create_task(ticker())
    await asyncio.sleep(0)
    deleted = await SessionManager(store, clock=clock).apurge_expired()
    task.cancel()
    assert deleted == 5000
    assert len(store) == 0
    assert ticks >= 5  # the loop ran between purge steps of 1000 keys

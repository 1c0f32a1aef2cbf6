"""SQLiteStore regressions: it recovers from a file that was read-only, deleted or replaced while
the app ran, and first connections to a new file wait for one another instead of failing."""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from coatcheck import ConfigurationError, StoreError
from coatcheck.stores import Record
from coatcheck.stores.sqlite import SQLiteStore


def _record() -> Record:
    return Record(b"{}", time.time() + 3600, 1)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


@contextlib.contextmanager
def _file_modes_bind_this_thread() -> Iterator[None]:
    """Make file modes bind this thread even as root: shed CAP_DAC_OVERRIDE from its effective
    capabilities (Linux keeps them per thread), and take it back afterwards."""
    if os.geteuid() != 0:
        yield
        return
    libc = ctypes.CDLL(None, use_errno=True)
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, the calling thread
    data = (_CapData * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        pytest.skip("cannot read this thread's capabilities")
    effective = data[0].effective
    data[0].effective = effective & ~(1 << 1)  # CAP_DAC_OVERRIDE
    if libc.capset(ctypes.byref(header), data) != 0:
        pytest.skip("cannot drop CAP_DAC_OVERRIDE")
    try:
        yield
    finally:
        data[0].effective = effective
        if libc.capset(ctypes.byref(header), data) != 0:
            raise OSError(ctypes.get_errno(), "could not take CAP_DAC_OVERRIDE back")


def test_sqlite_connection_opened_on_a_read_only_file_recovers_once_it_is_writable(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    creator = SQLiteStore(path)
    assert creator.save("before", _record(), expected_version=None)
    creator.close()
    store = SQLiteStore(path)
    with _file_modes_bind_this_thread():
        path.chmod(0o444)
        try:
            with pytest.raises(PermissionError):
                path.open("r+b").close()
            assert store.load("before") is not None  # this thread's connection opens read-only
            with pytest.raises(StoreError, match="readonly"):
                store.save("during", _record(), expected_version=None)
        finally:  # writable again: the file, and the -wal and -shm the read-only connection made like it
            for file in tmp_path.glob("s.db*"):
                file.chmod(0o644)
        assert store.save("after", _record(), expected_version=None), "the store stays read-only"
        assert store.load("after") is not None
    store.close()


@pytest.mark.parametrize("change", ["deleted", "replaced"])
def test_sqlite_reopens_a_file_deleted_or_replaced_while_it_runs(tmp_path: Path, change: str) -> None:
    path = tmp_path / "s.db"
    store = SQLiteStore(path)
    assert store.save("before", _record(), expected_version=None)  # this thread's connection: the first file
    if change == "replaced":
        backup = SQLiteStore(tmp_path / "backup.db")
        assert backup.save("restored", _record(), expected_version=None)
        backup.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink()
    if change == "replaced":
        (tmp_path / "backup.db").replace(path)
    with ThreadPoolExecutor(max_workers=1) as other:  # a thread whose connection opens now
        assert other.submit(store.save, "login", _record(), expected_version=None).result(timeout=10)
        assert store.load("login") is not None, f"this thread still reads the {change} file"
        assert store.save("later", _record(), expected_version=None)
        assert other.submit(store.load, "later").result(timeout=10) is not None, "the threads see two files"
    assert store.load("before") is None
    assert (store.load("restored") is not None) == (change == "replaced")
    store.close()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT count(*) FROM coatcheck_sessions").fetchone()[0] == 2 + (change == "replaced")


_ROUNDS = 30
_THREADS = 3


def _first_operations(directory: str, process: int, start: Any, failures: Any) -> None:
    """In each round, every thread's first operation on a brand-new file, all at once."""
    stores = [SQLiteStore(Path(directory) / f"round{r}.db") for r in range(_ROUNDS)]
    errors: list[str] = []

    def run(thread: int) -> None:
        for r, store in enumerate(stores):
            start.wait(timeout=60)
            try:
                store.save(f"p{process}-t{thread}", _record(), expected_version=None)
            except StoreError as exc:
                errors.append(f"round {r}, process {process}, thread {thread}: {exc}")

    threads = [threading.Thread(target=run, args=(t,)) for t in range(_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for store in stores:
        store.close()
    failures.put(errors)


def test_sqlite_first_connections_to_a_new_file_wait_for_each_other(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    processes = 3  # this one and two children
    start, failures = context.Barrier(processes * _THREADS), context.Queue()
    children = [context.Process(target=_first_operations, args=(str(tmp_path), p, start, failures)) for p in range(1, processes)]
    for child in children:
        child.start()
    _first_operations(str(tmp_path), 0, start, failures)
    errors = [error for _ in range(processes) for error in failures.get(timeout=60)]
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0
    assert errors == []
    for r in range(_ROUNDS):
        with contextlib.closing(sqlite3.connect(tmp_path / f"round{r}.db")) as conn:
            assert conn.execute("SELECT count(*) FROM coatcheck_sessions").fetchone()[0] == processes * _THREADS


def test_sqlite_url_options_are_honoured_or_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/options.db"
    store = SQLiteStore.from_url(f"{url}?table=other_sessions&timeout=0.5&purge_batch=7")
    default = SQLiteStore.from_url(url)
    try:
        assert (store.table, store.timeout, store.purge_batch) == ("other_sessions", 0.5, 7)
        assert store.save("k", _record(), expected_version=None)
        assert store.load("k") is not None
        assert default.load("k") is None  # another table in the same file
    finally:
        store.close()
        default.close()
    for query, message in [
        ("pool_size=3", "unknown SQLite store URL option 'pool_size'"),
        ("timeout=soon", "bad value for SQLite store URL option 'timeout'"),
        ("table=no-dashes", "is not a valid name"),
        ("timeout=-1", "timeout must be a finite number of seconds"),
        ("timeout=inf", "timeout must be a finite number of seconds"),
        ("purge_batch=0", "purge_batch must be a whole number of at least 1"),
    ]:
        with pytest.raises(ConfigurationError, match=message):
            SQLiteStore.from_url(f"{url}?{query}")


def test_sqlite_revoke_that_fails_halfway_is_rolled_back(tmp_path: Path) -> None:
    """``delete_user`` is one transaction: when its second statement fails, the first is undone
    and the connection is left outside any transaction, ready for the next operation."""
    store = SQLiteStore(tmp_path / "revoke.db")
    try:
        expired = Record(b"{}", time.time() - 1, 1, "alice")
        store.save("live", Record(b"{}", time.time() + 3600, 1, "alice"), expected_version=None)
        store.save("expired", expired, expected_version=None)
        conn = store._connection()[0]
        deletes = 0

        def deny_second_delete(action: int, *_: Any) -> int:
            nonlocal deletes
            if action == sqlite3.SQLITE_DELETE:
                deletes += 1
                return sqlite3.SQLITE_DENY if deletes == 2 else sqlite3.SQLITE_OK
            return sqlite3.SQLITE_OK

        conn.set_authorizer(deny_second_delete)
        with pytest.raises(StoreError, match="not authorized"):
            store.delete_user("alice")
        conn.set_authorizer(None)
        assert not conn.in_transaction
        assert store.load("live") is not None  # the first DELETE was rolled back
        assert store.delete_user("alice") == 1
        assert store.list_user("alice") == []
    finally:
        store.close()

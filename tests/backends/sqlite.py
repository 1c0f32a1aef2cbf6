from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from coatcheck.stores.sqlite import SQLiteStore
from coatcheck.testing import FakeClock


async def open_store(clock: FakeClock, tmp_path: Path) -> SQLiteStore:
    return SQLiteStore(tmp_path / "sessions.db", clock=clock)


async def close_store(store: SQLiteStore) -> None:
    await store.aclose()


async def dump(store: SQLiteStore) -> bytes:
    with contextlib.closing(sqlite3.connect(store.path)) as conn:
        rows = conn.execute("SELECT * FROM coatcheck_sessions").fetchall()
    return b"".join(value if isinstance(value, bytes) else str(value).encode() for row in rows for value in row)

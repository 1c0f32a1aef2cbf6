from __future__ import annotations

from pathlib import Path

from coatcheck.stores.sqlite import SQLiteStore
from coatcheck.testing import FakeClock


async def open_store(clock: FakeClock, tmp_path: Path) -> SQLiteStore:
    return SQLiteStore(tmp_path / "sessions.db", clock=clock)


async def close_store(store: SQLiteStore) -> None:
    await store.aclose()

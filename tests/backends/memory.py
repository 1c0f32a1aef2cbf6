from __future__ import annotations

from pathlib import Path

from coatcheck.stores.memory import MemoryStore
from coatcheck.testing import FakeClock


async def open_store(clock: FakeClock, tmp_path: Path) -> MemoryStore:
    return MemoryStore(clock=clock)


async def close_store(store: MemoryStore) -> None:
    await store.aclose()


async def dump(store: MemoryStore) -> bytes:
    return b"".join(key.encode() + record.data + repr(record).encode() for key, record in store._records.items())

"""Stores with the five core methods and nothing else (no touch, no atomic rotate, no user
index), over a MemoryStore they do not expose: the manager's fallbacks for missing capabilities
run against them."""

from __future__ import annotations

from coatcheck import Record
from coatcheck.stores.memory import MemoryStore


class SyncCoreStore:
    """The five sync core methods, and no async side."""

    def __init__(self, records: MemoryStore) -> None:
        self._records = records

    def load(self, key: str) -> Record | None:
        return self._records.load(key)

    def save(self, key: str, record: Record, *, expected_version: int | None) -> bool:
        return self._records.save(key, record, expected_version=expected_version)

    def delete(self, key: str) -> None:
        self._records.delete(key)

    def delete_expired(self, now: float) -> int:
        return self._records.delete_expired(now)

    def close(self) -> None:
        self._records.close()


class CoreOnlyStore(SyncCoreStore):
    """The five core methods of each flavour."""

    async def aload(self, key: str) -> Record | None:
        return self.load(key)

    async def asave(self, key: str, record: Record, *, expected_version: int | None) -> bool:
        return self.save(key, record, expected_version=expected_version)

    async def adelete(self, key: str) -> None:
        self.delete(key)

    async def adelete_expired(self, now: float) -> int:
        return self.delete_expired(now)

    async def aclose(self) -> None:
        self.close()

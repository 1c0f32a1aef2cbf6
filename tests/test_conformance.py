"""The public conformance suite, run on every first-party store in both flavours, and on a store
that has only the five core methods (so the manager's fallbacks for missing capabilities run)."""

from __future__ import annotations

import pytest

from coatcheck import Record
from coatcheck.stores.memory import MemoryStore
from coatcheck.testing import FakeClock, StoreConformance


class TestStores(StoreConformance):
    pass


class CoreOnlyStore:
    """A store with the five core methods of each flavour and nothing else: no touch, no atomic
    rotate, no user index. It keeps its records in a MemoryStore it does not expose."""

    def __init__(self, clock: FakeClock) -> None:
        self._records = MemoryStore(clock=clock)

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


class TestCoreOnlyStore(StoreConformance):
    @pytest.fixture
    def store(self, clock: FakeClock) -> CoreOnlyStore:
        return CoreOnlyStore(clock)

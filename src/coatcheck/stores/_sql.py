"""What the SQL stores share: their Store and AsyncStore methods, each one line over a flow.

A SQL store provides ``_flows`` (generators of statements, one per operation), ``_run`` and
``_arun`` (its sync and async drivers), ``_clock`` and ``purge_batch``; this class turns those
into the public methods, so PostgreSQL and MySQL cannot drift apart.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Generator
from typing import Any, TypeVar, cast

from ._protocol import Record

T = TypeVar("T")


class SQLStoreMethods(ABC):
    """The public methods of a SQL store, written once over its flows and drivers."""

    _flows: Any
    _clock: Callable[[], float]
    purge_batch: int

    @abstractmethod
    def _run(self, flow: Generator[Any, Any, T]) -> T:
        """Run a flow on a sync connection."""

    @abstractmethod
    async def _arun(self, flow: Generator[Any, Any, T]) -> T:
        """Run a flow on an async connection."""

    # -- schema ------------------------------------------------------------------------------------

    def migrate(self) -> None:
        """Create the table and its indexes if missing (idempotent, safe to run concurrently)."""
        self._run(self._flows.migrate())

    async def amigrate(self) -> None:
        """Async :meth:`migrate`."""
        await self._arun(self._flows.migrate())

    # -- Store and AsyncStore --------------------------------------------------------------------

    def load(self, key: str) -> Record | None:
        """The live record under ``key``, or None."""
        return cast("Record | None", self._run(self._flows.load(key, self._clock())))

    async def aload(self, key: str) -> Record | None:
        """Async :meth:`load`."""
        return cast("Record | None", await self._arun(self._flows.load(key, self._clock())))

    def save(self, key: str, record: Record, *, expected_version: int | None) -> bool:
        """Create (``expected_version=None``, replacing only an expired row) or compare-and-set."""
        return bool(self._run(self._flows.save(key, record, expected_version, self._clock())))

    async def asave(self, key: str, record: Record, *, expected_version: int | None) -> bool:
        """Async :meth:`save`."""
        return bool(await self._arun(self._flows.save(key, record, expected_version, self._clock())))

    def touch(self, key: str, expires_at: float) -> None:
        """Move a live record's expiry forward (never backward)."""
        self._run(self._flows.rowcount("touch", expires_at, key, self._clock(), expires_at))

    async def atouch(self, key: str, expires_at: float) -> None:
        """Async :meth:`touch`."""
        await self._arun(self._flows.rowcount("touch", expires_at, key, self._clock(), expires_at))

    def rotate(self, old_key: str, new_key: str, record: Record, *, expected_version: int) -> bool:
        """In one transaction: delete ``old_key`` at ``expected_version`` and create ``new_key``."""
        return bool(self._run(self._flows.rotate(old_key, new_key, record, expected_version, self._clock())))

    async def arotate(self, old_key: str, new_key: str, record: Record, *, expected_version: int) -> bool:
        """Async :meth:`rotate`."""
        return bool(await self._arun(self._flows.rotate(old_key, new_key, record, expected_version, self._clock())))

    def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        self._run(self._flows.rowcount("delete", key))

    async def adelete(self, key: str) -> None:
        """Async :meth:`delete`."""
        await self._arun(self._flows.rowcount("delete", key))

    def delete_expired(self, now: float) -> int:
        """Remove rows expired at ``now``, ``purge_batch`` rows per statement; return how many."""
        return int(self._run(self._flows.purge(now, self.purge_batch)))

    async def adelete_expired(self, now: float) -> int:
        """Async :meth:`delete_expired`."""
        return int(await self._arun(self._flows.purge(now, self.purge_batch)))

    def delete_user(self, user_id: str) -> int:
        """Remove every session of ``user_id``; return how many were live."""
        return int(self._run(self._flows.delete_user(user_id, self._clock())))

    async def adelete_user(self, user_id: str) -> int:
        """Async :meth:`delete_user`."""
        return int(await self._arun(self._flows.delete_user(user_id, self._clock())))

    def list_user(self, user_id: str) -> list[tuple[str, Record]]:
        """The live ``(key, record)`` pairs of ``user_id``."""
        return self._run(self._flows.list_user(user_id, self._clock()))

    async def alist_user(self, user_id: str) -> list[tuple[str, Record]]:
        """Async :meth:`list_user`."""
        return await self._arun(self._flows.list_user(user_id, self._clock()))

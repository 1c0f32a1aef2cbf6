"""MemoryStore: sessions in this process's memory, sync and async, for tests and single processes.

Per process and volatile: every worker process has its own sessions, and a restart loses them.
Use SQLite, PostgreSQL, MySQL or Redis when more than one process serves the app.

No global lock: a CAS write takes one of 64 striped locks; expiry is kept in time buckets, so a
purge visits only expired sessions and a write never scans.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import ClassVar

from ..errors import ConfigurationError
from ._protocol import Record

__all__ = ["MemoryStore"]

_STRIPES = 64
_BUCKET_SECONDS = 10.0
_PURGE_STEP = 1000


class MemoryStore:
    """An in-process store with per-key CAS, a user index and bounded size (``max_entries``).

    ``nonblocking`` tells the manager that the sync methods never block, so async code may
    call them directly instead of awaiting the (equivalent) async twins.
    """

    nonblocking: ClassVar[bool] = True

    def __init__(self, *, max_entries: int = 1_000_000, clock: Callable[[], float] = time.time) -> None:
        if max_entries < 1:
            raise ConfigurationError("max_entries must be positive")
        self.max_entries = max_entries
        self._clock = clock
        self._records: dict[str, Record] = {}
        self._users: dict[str, set[str]] = {}
        self._buckets: dict[int, set[str]] = {}
        self._locks = [threading.Lock() for _ in range(_STRIPES)]

    @classmethod
    def from_url(cls, url: str, *, clock: Callable[[], float] = time.time) -> MemoryStore:
        """``memory://`` (optionally ``memory://?max_entries=N``)."""
        from urllib.parse import parse_qs, urlsplit

        query = parse_qs(urlsplit(url).query)
        try:
            max_entries = int(query.get("max_entries", ["1000000"])[0])
        except ValueError as exc:
            raise ConfigurationError("memory:// max_entries must be an integer") from exc
        return cls(max_entries=max_entries, clock=clock)

    def __len__(self) -> int:
        return len(self._records)

    def _lock(self, key: str) -> threading.Lock:
        return self._locks[hash(key) % _STRIPES]

    def _live(self, key: str) -> Record | None:
        record = self._records.get(key)
        return record if record is not None and record.expires_at > self._clock() else None

    def _put(self, key: str, record: Record, previous: Record | None) -> None:
        self._records[key] = record
        bucket = int(record.expires_at // _BUCKET_SECONDS)
        keys = self._buckets.get(bucket)
        if keys is None:
            keys = self._buckets[bucket] = set()
        keys.add(key)
        if previous is not None and previous.user_id and previous.user_id != record.user_id:
            self._users.get(previous.user_id, set()).discard(key)
        if record.user_id:
            self._users.setdefault(record.user_id, set()).add(key)

    def _drop(self, key: str) -> bool:
        record = self._records.pop(key, None)
        if record is not None and record.user_id:
            self._users.get(record.user_id, set()).discard(key)
        return record is not None

    # -- Store -----------------------------------------------------------------------------------

    def load(self, key: str) -> Record | None:
        """The live record under ``key``, or None."""
        return self._live(key)

    def save(self, key: str, record: Record, *, expected_version: int | None) -> bool:
        """Create (``expected_version=None``) or compare-and-set; False when the check fails."""
        if expected_version is None and len(self._records) >= self.max_entries:
            self._make_room()
        with self._lock(key):
            current = self._live(key)
            if (current.version if current is not None else None) != expected_version:
                return False
            self._put(key, record, current)
            return True

    def touch(self, key: str, expires_at: float) -> None:
        """Move a live record's expiry forward (never backward)."""
        with self._lock(key):
            current = self._live(key)
            if current is not None and expires_at > current.expires_at:
                self._put(key, Record(current.data, expires_at, current.version, current.user_id), current)

    def rotate(self, old_key: str, new_key: str, record: Record, *, expected_version: int) -> bool:
        """Atomically replace ``old_key`` (at ``expected_version``) by a new ``new_key``."""
        with contextlib.ExitStack() as stack:
            for lock in sorted({self._lock(old_key), self._lock(new_key)}, key=id):
                stack.enter_context(lock)
            current = self._live(old_key)
            if current is None or current.version != expected_version or self._live(new_key) is not None:
                return False
            self._drop(old_key)
            self._put(new_key, record, None)
            return True

    def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        with self._lock(key):
            self._drop(key)

    def delete_expired(self, now: float) -> int:
        """Remove every record expired at ``now``, visiting only the buckets that are due."""
        return sum(self._purge(now))

    def _purge(self, now: float) -> Iterator[int]:
        """Purge in steps of at most ``_PURGE_STEP`` keys, yielding how many each step deleted."""
        due = int(now // _BUCKET_SECONDS)
        for bucket in [b for b in list(self._buckets) if b <= due]:
            keys = list(self._buckets.pop(bucket, ()))
            for start in range(0, len(keys), _PURGE_STEP):
                deleted = 0
                for key in keys[start : start + _PURGE_STEP]:
                    with self._lock(key):
                        record = self._records.get(key)
                        if record is not None and record.expires_at <= now and self._drop(key):
                            deleted += 1
                        elif record is not None and int(record.expires_at // _BUCKET_SECONDS) == bucket:
                            self._buckets.setdefault(bucket, set()).add(key)  # not yet due within its bucket
                yield deleted

    def _make_room(self) -> None:
        """At capacity: purge expired records, then evict the soonest-expiring 1%."""
        if self.delete_expired(self._clock()) or len(self._records) < self.max_entries:
            return
        budget = max(1, self.max_entries // 100)
        for bucket in sorted(self._buckets):
            keys = self._buckets.get(bucket, set())
            for key in list(keys):
                keys.discard(key)
                with self._lock(key):
                    record = self._records.get(key)
                    if record is None or int(record.expires_at // _BUCKET_SECONDS) != bucket:
                        continue  # a stale entry: the key was deleted or moved to a later bucket
                    self._drop(key)
                budget -= 1
                if budget <= 0:
                    return

    def delete_user(self, user_id: str) -> int:
        """Remove every session of ``user_id``; return how many were live."""
        deleted = 0
        for key in list(self._users.pop(user_id, ())):
            with self._lock(key):
                record = self._records.get(key)
                if record is not None and record.user_id == user_id:
                    deleted += record.expires_at > self._clock()
                    self._drop(key)
        return deleted

    def list_user(self, user_id: str) -> list[tuple[str, Record]]:
        """The live ``(key, record)`` pairs of ``user_id``."""
        return [(key, record) for key in list(self._users.get(user_id, ())) if (record := self._live(key)) is not None]

    def close(self) -> None:
        """Nothing to release."""

    # -- AsyncStore: the same operations; none of them blocks --------------------------------------

    async def aload(self, key: str) -> Record | None:
        return self.load(key)

    async def asave(self, key: str, record: Record, *, expected_version: int | None) -> bool:
        return self.save(key, record, expected_version=expected_version)

    async def atouch(self, key: str, expires_at: float) -> None:
        self.touch(key, expires_at)

    async def arotate(self, old_key: str, new_key: str, record: Record, *, expected_version: int) -> bool:
        return self.rotate(old_key, new_key, record, expected_version=expected_version)

    async def adelete(self, key: str) -> None:
        self.delete(key)

    async def adelete_expired(self, now: float) -> int:
        """Purge step by step, letting the event loop serve requests between steps."""
        total = 0
        for deleted in self._purge(now):
            total += deleted
            await asyncio.sleep(0)
        return total

    async def adelete_user(self, user_id: str) -> int:
        return self.delete_user(user_id)

    async def alist_user(self, user_id: str) -> list[tuple[str, Record]]:
        return self.list_user(user_id)

    async def aclose(self) -> None:
        self.close()

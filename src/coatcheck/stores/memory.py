"""MemoryStore: sessions in this process's memory, sync and async, for tests and single processes.

Per process and volatile: every worker process has its own sessions, and a restart loses them.
Use SQLite, PostgreSQL, MySQL or Redis when more than one process serves the app.

No global lock: a CAS write takes one of 64 striped locks; expiry is kept in time buckets, so a
purge visits only expired sessions and a write never scans. Only ``delete_user`` (a revoke, not
a request) takes every stripe lock, which makes it atomic against rotations. A scan pages
through a sorted snapshot of the keys, taken when it starts, so a write never pays for it.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import ClassVar

from .. import _aio
from .._logs import log
from ..errors import ConfigurationError
from ._protocol import Record, ScanPage

__all__ = ["MemoryStore"]

_STRIPES = 64
_BUCKET_SECONDS = 10.0
_PURGE_STEP = 1000
_MAX_ENTRIES = 1_000_000
_MAX_BYTES = 256 * 1024 * 1024


def _stripe(key: str) -> int:
    return hash(key) % _STRIPES


def _size(key: str, record: Record) -> int:
    """What ``max_bytes`` counts for one record: its data plus its key."""
    return len(key) + len(record.data)


class MemoryStore:
    """An in-process store with per-key CAS, a user index and bounded size.

    ``max_entries`` bounds the number of records and ``max_bytes`` the sum of their data and key
    sizes; at either bound a write first purges expired records, then evicts the soonest-expiring.

    ``nonblocking`` tells the manager that the sync methods never block, so async code may
    call them directly instead of awaiting the (equivalent) async twins.

    Locks, always taken in this order: key stripe locks (by ascending stripe), then at most one
    user index lock. ``_bytes[i]`` is the size of stripe ``i``'s records, kept under its lock.
    """

    nonblocking: ClassVar[bool] = True

    def __init__(
        self, *, max_entries: int = _MAX_ENTRIES, max_bytes: int = _MAX_BYTES, clock: Callable[[], float] = time.time
    ) -> None:
        if max_entries < 1:
            raise ConfigurationError("max_entries must be positive")
        if max_bytes < 1:
            raise ConfigurationError("max_bytes must be positive")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        self._records: dict[str, Record] = {}
        self._users: dict[str, set[str]] = {}
        self._buckets: dict[int, set[str]] = {}
        self._locks = [threading.Lock() for _ in range(_STRIPES)]
        self._user_locks = [threading.Lock() for _ in range(_STRIPES)]
        self._bytes = [0] * _STRIPES
        self._scan_keys: list[str] | None = None  # the sorted keys the scans in progress page through
        workers = os.environ.get("WEB_CONCURRENCY", "")
        if workers.isdigit() and int(workers) > 1:
            log.warning(
                "the memory store keeps sessions in this process only, but WEB_CONCURRENCY=%s: each worker would"
                " see its own sessions; use sqlite://, redis:// or a database for more than one process",
                workers,
            )

    @classmethod
    def from_url(cls, url: str, *, clock: Callable[[], float] = time.time) -> MemoryStore:
        """``memory://``, optionally ``memory://?max_entries=N&max_bytes=N``."""
        from urllib.parse import parse_qs, urlsplit

        query = parse_qs(urlsplit(url).query)

        def limit(name: str, default: int) -> int:
            try:
                return int(query[name][0]) if name in query else default
            except ValueError as exc:
                raise ConfigurationError(f"memory:// {name} must be an integer") from exc

        return cls(max_entries=limit("max_entries", _MAX_ENTRIES), max_bytes=limit("max_bytes", _MAX_BYTES), clock=clock)

    def __len__(self) -> int:
        return len(self._records)

    def size_bytes(self) -> int:
        """The size ``max_bytes`` bounds: every record's data plus its key, summed over the stripes."""
        return sum(self._bytes)

    def _lock(self, key: str) -> threading.Lock:
        return self._locks[_stripe(key)]

    def _user_lock(self, user_id: str) -> threading.Lock:
        return self._user_locks[_stripe(user_id)]

    def _hold(self, stack: contextlib.ExitStack, stripes: Iterable[int]) -> None:
        """Take the key locks of ``stripes`` into ``stack`` in ascending order (the one order: no deadlock)."""
        for stripe in sorted(set(stripes)):
            stack.enter_context(self._locks[stripe])

    def _live(self, key: str) -> Record | None:
        record = self._records.get(key)
        return record if record is not None and record.expires_at > self._clock() else None

    # -- the user index: its own striped locks, always taken innermost ---------------------------

    def _index(self, user_id: str, key: str) -> None:
        with self._user_lock(user_id):
            self._users.setdefault(user_id, set()).add(key)

    def _unindex(self, user_id: str, key: str) -> None:
        """Remove ``key`` from the user's set, and the set itself once empty."""
        with self._user_lock(user_id):
            keys = self._users.get(user_id)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._users[user_id]

    # -- writes: the caller holds the key's stripe lock ------------------------------------------

    def _put(self, key: str, record: Record) -> None:
        previous = self._records.get(key)
        self._records[key] = record
        self._buckets.setdefault(int(record.expires_at // _BUCKET_SECONDS), set()).add(key)
        # What max_bytes counts (see _size): a new entry adds its key too, a replacement only data.
        self._bytes[_stripe(key)] += len(key) + len(record.data) if previous is None else len(record.data) - len(previous.data)
        old_user = None if previous is None else previous.user_id
        if old_user != record.user_id:
            if old_user:
                self._unindex(old_user, key)
            if record.user_id:
                self._index(record.user_id, key)

    def _drop(self, key: str) -> Record | None:
        record = self._records.pop(key, None)
        if record is not None:
            self._bytes[_stripe(key)] -= _size(key, record)
            if record.user_id:
                self._unindex(record.user_id, key)
        return record

    # -- Store -----------------------------------------------------------------------------------

    def load(self, key: str) -> Record | None:
        """The live record under ``key``, or None."""
        return self._live(key)

    def save(self, key: str, record: Record, *, expected_version: int | None) -> bool:
        """Create (``expected_version=None``) or compare-and-set; False when the check fails."""
        self._ensure_room(key, key, record)
        with self._lock(key):
            current = self._live(key)
            if (current.version if current is not None else None) != expected_version:
                return False
            if current is not None and record.expires_at < current.expires_at:  # never moves the expiry back
                record = record._replace(expires_at=current.expires_at)
            self._put(key, record)
            return True

    def touch(self, key: str, expires_at: float) -> bool:
        """Move a live record's expiry forward (never backward); False if none moved."""
        with self._lock(key):
            current = self._live(key)
            if current is None or expires_at <= current.expires_at:
                return False
            self._put(key, Record(current.data, expires_at, current.version, current.user_id))
            return True

    def rotate(self, old_key: str, new_key: str, record: Record, *, expected_version: int) -> bool:
        """Atomically replace ``old_key`` (at ``expected_version``) by a new ``new_key``."""
        self._ensure_room(old_key, new_key, record)
        with contextlib.ExitStack() as stack:
            self._hold(stack, (_stripe(old_key), _stripe(new_key)))
            current = self._live(old_key)
            if current is None or current.version != expected_version or self._live(new_key) is not None:
                return False
            self._drop(old_key)
            self._put(new_key, record)
            return True

    def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        with self._lock(key):
            self._drop(key)

    def delete_expired(self, now: float, progress: Callable[[int], None] | None = None) -> int:
        """Remove every record expired at ``now``, visiting only the buckets that are due.
        ``progress``, if given, is called with the running total after each step."""
        total = 0
        for total in self._purge(now, progress):  # noqa: B007 - the last running total is the result
            pass
        return total

    def _purge(self, now: float, progress: Callable[[int], None] | None = None) -> Iterator[int]:
        """Purge in steps of at most ``_PURGE_STEP`` keys, yielding (and telling ``progress``) the
        running total after each step."""
        due = int(now // _BUCKET_SECONDS)
        total = 0
        for bucket in [b for b in list(self._buckets) if b <= due]:
            keys = list(self._buckets.pop(bucket, ()))
            for start in range(0, len(keys), _PURGE_STEP):
                deleted = 0
                for key in keys[start : start + _PURGE_STEP]:
                    with self._lock(key):
                        record = self._records.get(key)
                        if record is not None and record.expires_at <= now:
                            self._drop(key)
                            deleted += 1
                        elif record is not None and int(record.expires_at // _BUCKET_SECONDS) == bucket:
                            self._buckets.setdefault(bucket, set()).add(key)  # not yet due within its bucket
                total += deleted
                if progress is not None:
                    progress(total)
                yield total

    # -- bounds ----------------------------------------------------------------------------------

    def _ensure_room(self, replaced: str, key: str, record: Record) -> None:
        """Before writing ``record`` under ``key`` in place of ``replaced``: make room if the write
        would pass ``max_entries`` or ``max_bytes``.

        The checks read without a lock (the byte count sums the stripes), so concurrent writes
        may pass a bound by what they write at the same moment.
        """
        previous = self._records.get(replaced)
        new_entry = previous is None
        grow = len(record.data) - (len(previous.data) if previous is not None else -len(key))
        if previous is not None and replaced != key:
            grow += len(key) - len(replaced)
        if (new_entry and len(self._records) >= self.max_entries) or (grow > 0 and self.size_bytes() + grow > self.max_bytes):
            self._make_room(int(new_entry), grow)

    def _make_room(self, entries: int, grow: int) -> None:
        """Purge expired records; if still short of room for ``entries`` more records and ``grow``
        more bytes, evict the soonest-expiring until 1% under each bound that was passed."""
        self.delete_expired(self._clock())
        over_entries = len(self._records) + entries - self.max_entries
        over_bytes = self.size_bytes() + grow - self.max_bytes
        if over_entries <= 0 and over_bytes <= 0:
            return
        over_entries += self.max_entries // 100 if over_entries > 0 else 0
        over_bytes += self.max_bytes // 100 if over_bytes > 0 else 0
        for bucket in sorted(self._buckets):
            keys = self._buckets.get(bucket)
            if not keys:
                continue  # an emptied bucket: listing it would walk the set's whole (unshrunk) table
            for key in list(keys):
                keys.discard(key)
                with self._lock(key):
                    record = self._records.get(key)
                    if record is None or int(record.expires_at // _BUCKET_SECONDS) != bucket:
                        continue  # a stale entry: the key was deleted or moved to a later bucket
                    self._drop(key)
                over_entries -= 1
                over_bytes -= _size(key, record)
                if over_entries <= 0 and over_bytes <= 0:
                    return

    # -- the user index --------------------------------------------------------------------------

    def delete_user(self, user_id: str) -> int:
        """Remove every session of ``user_id``; return how many were live.

        Holds every key stripe lock (a revoke is rare, not a request), so it runs between writes,
        never beside one: a rotation racing it either ran first (and its new session goes too) or
        finds the old session gone and fails.
        """
        with contextlib.ExitStack() as stack:
            self._hold(stack, range(_STRIPES))
            now = self._clock()
            with self._user_lock(user_id):
                keys = self._users.pop(user_id, set())
            dropped = [self._drop(key) for key in keys]
        return sum(record is not None and record.expires_at > now for record in dropped)

    def list_user(self, user_id: str) -> list[tuple[str, Record]]:
        """The live ``(key, record)`` pairs of ``user_id``."""
        with self._user_lock(user_id):
            keys = list(self._users.get(user_id, ()))
        return [(key, record) for key in keys if (record := self._live(key)) is not None and record.user_id == user_id]

    # -- the scan ------------------------------------------------------------------------------------

    def scan(self, cursor: str | None, limit: int) -> ScanPage:
        """Up to ``limit`` records after ``cursor`` in key order, expired ones not purged yet
        included, and the cursor of the next page (None after the last).

        The keys come from a sorted snapshot taken when a scan starts (``cursor`` None), which
        every scan in progress then shares: a key present since the oldest of them started is in
        it. A key deleted meanwhile is skipped; one written after the snapshot may be missed, as
        the contract allows. The last page drops the snapshot (a later page sorts the keys again).
        """
        keys = self._scan_keys
        if cursor is None or keys is None:
            keys = self._scan_keys = sorted(self._records)  # copies the keys in one step (under the GIL)
        start = bisect.bisect_right(keys, cursor) if cursor is not None else 0
        chosen = keys[start : start + limit]
        page = [(key, record) for key in chosen if (record := self._records.get(key)) is not None]
        if start + limit < len(keys):
            return page, chosen[-1]
        if self._scan_keys is keys:
            self._scan_keys = None
        return page, None

    def close(self) -> None:
        """Nothing to release."""

    # -- AsyncStore: the same operations; none of them blocks --------------------------------------

    async def aload(self, key: str) -> Record | None:
        return self.load(key)

    async def asave(self, key: str, record: Record, *, expected_version: int | None) -> bool:
        return self.save(key, record, expected_version=expected_version)

    async def atouch(self, key: str, expires_at: float) -> bool:
        return self.touch(key, expires_at)

    async def arotate(self, old_key: str, new_key: str, record: Record, *, expected_version: int) -> bool:
        return self.rotate(old_key, new_key, record, expected_version=expected_version)

    async def adelete(self, key: str) -> None:
        self.delete(key)

    async def adelete_expired(self, now: float, progress: Callable[[int], None] | None = None) -> int:
        """Purge step by step, letting the event loop serve requests between steps."""
        total = 0
        for total in self._purge(now, progress):  # noqa: B007 - the last running total is the result
            await _aio.sleep(0)
        return total

    async def adelete_user(self, user_id: str) -> int:
        return self.delete_user(user_id)

    async def alist_user(self, user_id: str) -> list[tuple[str, Record]]:
        return self.list_user(user_id)

    async def ascan(self, cursor: str | None, limit: int) -> ScanPage:
        return self.scan(cursor, limit)

    async def aclose(self) -> None:
        self.close()

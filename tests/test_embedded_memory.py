"""MemoryStore regressions: the user index forgets users with no session, revoke is atomic
against rotation, and the store is bounded in bytes as well as entries."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable

import pytest

from coatcheck import ConfigurationError
from coatcheck.stores import Record
from coatcheck.stores.memory import MemoryStore
from coatcheck.testing import FakeClock


def _record(clock: FakeClock, user: str | None = None, ttl: float = 3600, data: bytes = b"x", version: int = 1) -> Record:
    return Record(data, clock() + ttl, version, user)


def _end_by_delete(store: MemoryStore, clock: FakeClock, key: str) -> None:
    store.delete(key)


def _end_by_rotation_to_another_owner(store: MemoryStore, clock: FakeClock, key: str) -> None:
    assert store.rotate(key, key + "-bob", _record(clock, "bob"), expected_version=1)


def _end_by_logout_in_place(store: MemoryStore, clock: FakeClock, key: str) -> None:
    assert store.save(key, _record(clock, None, version=2), expected_version=1)


def _end_by_purge(store: MemoryStore, clock: FakeClock, key: str) -> None:
    clock.advance(3601)
    assert store.delete_expired(clock()) >= 1


def _end_by_revoke(store: MemoryStore, clock: FakeClock, key: str) -> None:
    assert store.delete_user("alice") >= 1


def _end_by_eviction(store: MemoryStore, clock: FakeClock, key: str) -> None:
    for i in range(store.max_entries):
        assert store.save(f"{key}-flood{i}", _record(clock, None, ttl=7200), expected_version=None)
    assert store.load(key) is None


@pytest.mark.parametrize(
    "end",
    [
        _end_by_delete,
        _end_by_rotation_to_another_owner,
        _end_by_logout_in_place,
        _end_by_purge,
        _end_by_revoke,
        _end_by_eviction,
    ],
)
def test_memory_user_index_drops_a_user_whose_last_session_ended(
    end: Callable[[MemoryStore, FakeClock, str], None],
) -> None:
    clock = FakeClock()
    store = MemoryStore(max_entries=10, clock=clock)
    for key in ("a1", "a2"):
        assert store.save(key, _record(clock, "alice"), expected_version=None)
    end(store, clock, "a1")
    if store.load("a2") is not None:
        assert [key for key, _ in store.list_user("alice")] == ["a2"]
        end(store, clock, "a2")
    assert store.list_user("alice") == []
    assert "alice" not in store._users, f"an emptied index entry is kept: {store._users}"


def test_memory_user_index_does_not_grow_with_users_who_logged_out() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    for i in range(20_000):
        store.save(f"k{i}", _record(clock, f"user{i}"), expected_version=None)
        store.delete(f"k{i}")
    assert len(store) == 0
    assert len(store._users) == 0, f"{len(store._users)} index entries for 0 sessions"


class _HookClock(FakeClock):
    """A fake clock that runs ``hook`` (once) the next time the store reads it."""

    def __init__(self) -> None:
        super().__init__()
        self.hook: Callable[[], None] | None = None

    def __call__(self) -> float:
        hook, self.hook = self.hook, None
        if hook is not None:
            hook()
        return self.now


def _keys_on_distinct_stripes(store: MemoryStore, count: int) -> list[str]:
    keys: dict[threading.Lock, str] = {}
    for i in itertools.count():
        keys.setdefault(store._lock(f"k{i}"), f"k{i}")
        if len(keys) == count:
            return list(keys.values())
    raise AssertionError("unreachable")


def test_memory_delete_user_is_atomic_against_rotations() -> None:
    """Two of alice's sessions rotate while ``delete_user("alice")`` runs: none survives it."""
    clock = _HookClock()
    store = MemoryStore(clock=clock)
    a, b, a_next, b_next = _keys_on_distinct_stripes(store, 4)
    for key in (a, b):
        assert store.save(key, _record(clock, "alice"), expected_version=None)
    rotated: dict[str, bool] = {}
    one_done = threading.Event()

    def rotate(old: str, new: str) -> None:
        rotated[new] = store.rotate(old, new, _record(clock, "alice", version=2), expected_version=1)
        one_done.set()

    threads = [threading.Thread(target=rotate, args=pair) for pair in ((a, a_next), (b, b_next))]

    def rotate_both_now() -> None:  # runs inside delete_user, when it first reads the clock
        for thread in threads:
            thread.start()
        one_done.wait(timeout=0.2)  # a rotation that can run beside delete_user ends well within this

    clock.hook = rotate_both_now
    deleted = store.delete_user("alice")
    for thread in threads:
        thread.join(timeout=10)
    live = {key: store.load(key) is not None for key in (a, b, a_next, b_next)}
    assert live == dict.fromkeys((a, b, a_next, b_next), False), f"alice still has a session: {live}, {rotated}"
    assert store.list_user("alice") == []
    assert deleted + sum(rotated.values()) == 2


def test_memory_store_from_url_reads_max_bytes() -> None:
    assert MemoryStore.from_url("memory://?max_bytes=4096&max_entries=7").max_bytes == 4096
    assert MemoryStore.from_url("memory://").max_bytes == 256 * 1024 * 1024
    with pytest.raises(ConfigurationError):
        MemoryStore.from_url("memory://?max_bytes=big")
    with pytest.raises(ConfigurationError):
        MemoryStore(max_bytes=0)


def test_memory_store_stays_within_max_bytes_and_evicts_expired_first() -> None:
    clock = FakeClock()
    size = 16  # every key here is 8 characters and every record 8 bytes of data
    store = MemoryStore(max_bytes=4000 * size, clock=clock)
    for i in range(1000):
        assert store.save(f"exp{i:05}", _record(clock, data=b"d" * 8, ttl=10), expected_version=None)
        assert store.save(f"old{i:05}", _record(clock, data=b"d" * 8, ttl=10**6), expected_version=None)
    clock.advance(11)
    for i in range(100_000):
        assert store.save(f"new{i:05}", _record(clock, data=b"d" * 8, ttl=1000 + i // 100), expected_version=None)
        assert len(store) * size <= store.max_bytes, f"{len(store) * size} bytes after {i + 1} writes"
        if i == 2999:  # room for 2000 more, then the 1000 expired records made room for 1000 more
            assert all(store.load(f"new{j:05}") is not None for j in range(3000)), "a live record went first"
    assert store.size_bytes() == len(store) * size
    assert len(store) * size >= store.max_bytes * 0.98
    assert all(store.load(f"old{i:05}") is not None for i in range(1000))
    assert store.load(f"new{99_999:05}") is not None


def test_memory_compare_and_set_that_grows_a_record_stays_within_max_bytes() -> None:
    clock = FakeClock()
    store = MemoryStore(max_bytes=10_000, clock=clock)
    for i in range(90):
        assert store.save(f"s{i:03}", _record(clock, data=b"d" * 100, ttl=60 + i), expected_version=None)
    assert store.save("grower", _record(clock, data=b"", ttl=10**6), expected_version=None)
    for version in range(1, 40):
        grown = _record(clock, data=b"g" * 100 * version, ttl=10**6, version=version + 1)
        assert store.save("grower", grown, expected_version=version)
        stored = sum(len(key) + len(record.data) for key, record in store._records.items())
        assert stored <= store.max_bytes, f"{stored} bytes stored after growing to {len(grown.data)}"
        assert store.size_bytes() == stored
    assert store.load("grower") is not None

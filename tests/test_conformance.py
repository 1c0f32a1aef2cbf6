"""The public conformance suite, run on every first-party store in both flavours, and on a store
that has only the five core methods (so the manager's fallbacks for missing capabilities run)."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from coatcheck import NotSupportedError, Record, SessionInterruptedError, SessionManager, _core
from coatcheck._ids import store_key
from coatcheck._ops import DeleteUser
from coatcheck.stores.memory import MemoryStore
from coatcheck.testing import FakeClock, Ops, StoreConformance, cookie_id

from .core_stores import CoreOnlyStore


class TestStores(StoreConformance):
    pass


class WithoutTouchOrRotate(StoreConformance):
    """What the suite skips on a store without ``touch`` or ``rotate`` is what the manager does
    without them: these replace the skipped tests."""

    async def test_touch_moves_expiry_forward_only(self, ops: Ops, clock: FakeClock) -> None:
        """Without ``touch``, a due refresh rewrites the record by compare-and-set."""
        sid = await ops.new_saved(a=1)
        before = await ops.load(store_key(sid))
        clock.advance(ops.config.touch_seconds + 1)
        assert (await ops.session(sid))["a"] == 1
        await ops.commit(await ops.session(sid))
        after = await ops.load(store_key(sid))
        assert before is not None and after is not None
        assert after.expires_at > before.expires_at and after.version == before.version + 1

    async def test_rotate_is_atomic_and_checked(self, ops: Ops, clock: FakeClock) -> None:
        """Without ``rotate``, a rotation leaves the new record and nothing (not even its tombstone)
        under the old key."""
        sid = await ops.new_saved(a=1)
        session = await ops.session(sid)
        session.rotate()
        new_id = cookie_id(await ops.commit(session))
        assert await ops.load(store_key(sid)) is None
        moved = await ops.load(store_key(new_id))
        assert moved is not None and moved.version == 2

    async def test_scan_lists_every_record_across_pages(self, ops: Ops, clock: FakeClock) -> None:
        """Without ``scan``, the manager refuses to list every session, and says which capability."""
        refused = pytest.raises(NotSupportedError, match="cannot list every session")
        if ops.mode == "sync":
            with refused:
                ops.manager.scan()
        else:
            with refused:
                await ops.manager.ascan()


class NoRotateStore(CoreOnlyStore):
    """A store with the core methods and a user index, but no ``rotate`` and no ``touch``."""

    def delete_user(self, user_id: str) -> int:
        return self._records.delete_user(user_id)

    def list_user(self, user_id: str) -> list[tuple[str, Record]]:
        return self._records.list_user(user_id)

    async def adelete_user(self, user_id: str) -> int:
        return self.delete_user(user_id)

    async def alist_user(self, user_id: str) -> list[tuple[str, Record]]:
        return self.list_user(user_id)


class TestNoRotateStore(WithoutTouchOrRotate):
    @pytest.fixture
    def store(self, clock: FakeClock) -> NoRotateStore:
        return NoRotateStore(MemoryStore(clock=clock))


@pytest.mark.parametrize("revoke_at", range(4))
def test_a_revoke_wins_at_every_step_of_a_rotation_without_rotate(revoke_at: int) -> None:
    """Rotation by parts (create the new record, claim the old one, delete it) on a store with a
    user index: "log out everywhere" run before any of its store calls, or after the last, leaves
    no session of the user live and the rotation's request is told so."""
    clock = FakeClock()
    store = NoRotateStore(MemoryStore(clock=clock))
    manager = SessionManager(store, clock=clock)
    alice = manager.new_session()
    alice.login("alice")
    manager.commit(alice)
    rotating = manager.load(f"sessionid={alice.id}")
    rotating.rotate()
    rotating["step"] = revoke_at
    flow = _core.commit_flow(
        rotating, manager.config, clock(), keep_changes=True, capabilities=frozenset({DeleteUser}), records=manager.records
    )
    assert flow is not None
    calls = 0
    try:
        call = next(flow)
        while True:
            if calls == revoke_at:
                store.delete_user("alice")
            calls += 1
            call = flow.send(call.run(store))
    except StopIteration:
        if calls <= revoke_at:
            store.delete_user("alice")
    except SessionInterruptedError:
        assert revoke_at < calls
    assert store.list_user("alice") == []
    assert manager.load(f"sessionid={alice.id}").is_new
    assert manager.load(f"sessionid={rotating.id}").is_new


class TestCoreOnlyStore(WithoutTouchOrRotate):
    @pytest.fixture
    def store(self, clock: FakeClock) -> CoreOnlyStore:
        return CoreOnlyStore(MemoryStore(clock=clock))

    async def _without_user_index(self, ops: Ops) -> None:
        with pytest.raises(NotSupportedError):
            await ops.revoke_user("alice")
        listing = ops.manager.list_sessions if ops.mode == "sync" else ops.manager.alist_sessions
        with pytest.raises(NotSupportedError):
            await _maybe(listing("alice"))

    async def test_user_index_follows_saves_and_deletes(self, ops: Ops, clock: FakeClock) -> None:
        await self._without_user_index(ops)

    async def test_revoke_is_not_undone_by_a_concurrent_commit(self, ops: Ops) -> None:
        await self._without_user_index(ops)

    async def test_revoke_user_ends_only_that_users_sessions(self, ops: Ops) -> None:
        await self._without_user_index(ops)


async def _maybe(value: Any) -> Any:
    """``value``, awaited if it is awaitable."""
    return await value if inspect.isawaitable(value) else value

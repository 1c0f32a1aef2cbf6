"""Test helpers, public: a fake clock and the store conformance suite.

Third-party store authors run the same suite coatcheck runs on its own stores::

    import pytest
    from coatcheck.testing import FakeClock, StoreConformance

    class TestMyStore(StoreConformance):
        @pytest.fixture
        def store(self, clock: FakeClock):
            return MyStore(..., clock=clock)   # sync, async, or both

Every test runs once per flavour the store implements (``[sync]`` and ``[async]``), on anyio's
asyncio backend. Needs ``pytest`` and ``anyio``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import anyio.to_thread
import pytest

from . import _ids
from .config import SessionConfig
from .errors import SessionInterruptedError
from .manager import SessionManager
from .session import Session
from .stores import Record, expires_natively

__all__ = ["FakeClock", "Ops", "SpyStore", "StoreConformance"]


class FakeClock:
    """A clock that moves only when told. Starts at the real time so server TTLs stay sane."""

    def __init__(self, start: float | None = None) -> None:
        self.now = float(int(time.time())) if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``."""
        self.now += seconds


class SpyStore:
    """Wraps a store and counts calls per method name (``load`` and ``aload`` both count as ``load``)."""

    def __init__(self, store: Any) -> None:
        self.wrapped = store
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.wrapped, name)
        if not callable(target):
            return target
        base = name[1:] if name.startswith("a") and callable(getattr(self.wrapped, name[1:], None)) else name

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[base] = self.calls.get(base, 0) + 1
            return target(*args, **kwargs)

        return counted

    @property
    def writes(self) -> int:
        """Calls that change the store."""
        return sum(n for name, n in self.calls.items() if name not in ("load", "list_user", "close"))

    def reset(self) -> None:
        """Forget the counts."""
        self.calls.clear()


class Ops:
    """One face over both flavours: ``await ops.load(...)`` calls ``load`` or awaits ``aload``."""

    def __init__(self, mode: str, store: Any, clock: Callable[[], float], config: SessionConfig | None = None) -> None:
        self.mode = mode
        self.store = store
        self.clock = clock
        self.config = config or SessionConfig()
        self.manager = SessionManager(store, config=self.config, clock=clock)

    def has(self, method: str) -> bool:
        """Whether the store offers ``method`` (an optional capability) in this flavour."""
        return callable(getattr(self.store, method if self.mode == "sync" else "a" + method, None))

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """``store.method(...)`` in sync mode, ``await store.amethod(...)`` in async mode."""
        if self.mode == "sync":
            return getattr(self.store, method)(*args, **kwargs)
        return await getattr(self.store, "a" + method)(*args, **kwargs)

    async def load(self, key: str) -> Record | None:
        return await self.call("load", key)  # type: ignore[no-any-return]

    async def save(self, key: str, record: Record, expected_version: int | None) -> bool:
        return await self.call("save", key, record, expected_version=expected_version)  # type: ignore[no-any-return]

    async def session(self, session_id: str | None = None) -> Session:
        """Load the session a browser holding ``session_id`` would get."""
        cookie = None if session_id is None else f"{self.config.cookie.name}={session_id}"
        if self.mode == "sync":
            return self.manager.load(cookie)
        return await self.manager.aload(cookie)

    async def commit(self, session: Session, status_code: int = 200) -> str | None:
        """Commit and return the ``Set-Cookie`` value."""
        if self.mode == "sync":
            return self.manager.commit(session, status_code=status_code)
        return await self.manager.acommit(session, status_code=status_code)

    async def revoke_user(self, user_id: str) -> int:
        if self.mode == "sync":
            return self.manager.revoke_user(user_id)
        return await self.manager.arevoke_user(user_id)

    async def purge(self) -> int:
        if self.mode == "sync":
            return self.manager.purge_expired()
        return await self.manager.apurge_expired()

    async def new_saved(self, **data: Any) -> str:
        """Create and store a session holding ``data``; return its ID."""
        session = await self.session()
        session.update(data)
        await self.commit(session)
        return session.id


def cookie_id(set_cookie: str | None) -> str:
    """The session ID in a ``Set-Cookie`` value ('' for a deletion)."""
    assert set_cookie is not None
    return set_cookie.split(";", 1)[0].split("=", 1)[1]


def _record(data: bytes = b"x", *, expires_at: float, version: int = 1, user_id: str | None = None) -> Record:
    return Record(data, expires_at, version, user_id)


_KEY = _ids.store_key


@pytest.mark.anyio
class StoreConformance:
    """The store contract and the session guarantees built on it, for one store.

    Provide a ``store`` fixture; a ``clock`` fixture (a :class:`FakeClock` given to the store)
    is provided and may be overridden.
    """

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture(params=["sync", "async"])
    def mode(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)

    @pytest.fixture
    def ops(self, mode: str, store: Any, clock: FakeClock) -> Ops:
        manager = SessionManager(store, clock=clock)
        if not (manager.supports_sync if mode == "sync" else manager.supports_async):
            pytest.skip(f"{type(store).__name__} has no {mode} API")
        return Ops(mode, store, clock)

    # -- the raw contract ------------------------------------------------------------------------

    async def test_missing_key_loads_none(self, ops: Ops) -> None:
        assert await ops.load(_KEY("nobody")) is None

    async def test_create_then_load_round_trips(self, ops: Ops, clock: FakeClock) -> None:
        record = _record(b'{"v":1}', expires_at=clock() + 60, version=1, user_id="u1")
        assert await ops.save(_KEY("a"), record, None) is True
        assert await ops.load(_KEY("a")) == record

    async def test_create_never_overwrites_a_live_record(self, ops: Ops, clock: FakeClock) -> None:
        first = _record(b"first", expires_at=clock() + 60)
        assert await ops.save(_KEY("a"), first, None)
        assert await ops.save(_KEY("a"), _record(b"second", expires_at=clock() + 60), None) is False
        assert await ops.load(_KEY("a")) == first

    async def test_compare_and_set_needs_the_current_version(self, ops: Ops, clock: FakeClock) -> None:
        await ops.save(_KEY("a"), _record(b"v1", expires_at=clock() + 60, version=1), None)
        assert await ops.save(_KEY("a"), _record(b"v2", expires_at=clock() + 60, version=2), 7) is False
        assert await ops.save(_KEY("a"), _record(b"v2", expires_at=clock() + 60, version=2), 1) is True
        loaded = await ops.load(_KEY("a"))
        assert loaded is not None and (loaded.data, loaded.version) == (b"v2", 2)

    async def test_compare_and_set_never_moves_the_expiry_back(self, ops: Ops, clock: FakeClock) -> None:
        await ops.save(_KEY("a"), _record(b"v1", expires_at=clock() + 600, version=1), None)
        assert await ops.save(_KEY("a"), _record(b"v2", expires_at=clock() + 300, version=2), 1) is True
        assert await ops.load(_KEY("a")) == _record(b"v2", expires_at=clock() + 600, version=2)
        assert await ops.save(_KEY("a"), _record(b"v3", expires_at=clock() + 900, version=3), 2) is True
        assert await ops.load(_KEY("a")) == _record(b"v3", expires_at=clock() + 900, version=3)

    async def test_compare_and_set_never_resurrects(self, ops: Ops, clock: FakeClock) -> None:
        await ops.save(_KEY("a"), _record(expires_at=clock() + 60), None)
        await ops.call("delete", _KEY("a"))
        assert await ops.save(_KEY("a"), _record(expires_at=clock() + 60, version=2), 1) is False
        assert await ops.load(_KEY("a")) is None

    async def test_expired_records_read_as_missing_and_can_be_recreated(self, ops: Ops, clock: FakeClock) -> None:
        await ops.save(_KEY("a"), _record(b"old", expires_at=clock() + 10), None)
        clock.advance(10)
        assert await ops.load(_KEY("a")) is None
        assert await ops.save(_KEY("a"), _record(b"old", expires_at=clock() + 60, version=2), 1) is False
        assert await ops.save(_KEY("a"), _record(b"new", expires_at=clock() + 60), None) is True
        loaded = await ops.load(_KEY("a"))
        assert loaded is not None and loaded.data == b"new"

    async def test_delete_is_idempotent(self, ops: Ops, clock: FakeClock) -> None:
        await ops.save(_KEY("a"), _record(expires_at=clock() + 60), None)
        await ops.save(_KEY("b"), _record(expires_at=clock() + 60), None)
        await ops.call("delete", _KEY("a"))
        await ops.call("delete", _KEY("a"))
        assert await ops.load(_KEY("a")) is None
        assert await ops.load(_KEY("b")) is not None

    async def test_delete_expired_removes_only_expired(self, ops: Ops, clock: FakeClock) -> None:
        await ops.save(_KEY("short"), _record(expires_at=clock() + 10), None)
        await ops.save(_KEY("long"), _record(expires_at=clock() + 1000), None)
        clock.advance(20)
        deleted = await ops.call("delete_expired", clock())
        if expires_natively(ops.store):
            assert deleted == 0
        else:
            assert deleted == 1
            assert await ops.call("delete_expired", clock()) == 0
        assert await ops.load(_KEY("short")) is None
        assert await ops.load(_KEY("long")) is not None

    async def test_touch_moves_expiry_forward_only(self, ops: Ops, clock: FakeClock) -> None:
        if not ops.has("touch"):
            pytest.skip("store has no touch")
        await ops.save(_KEY("a"), _record(b"d", expires_at=clock() + 100, version=3), None)
        await ops.call("touch", _KEY("a"), clock() + 500)
        await ops.call("touch", _KEY("a"), clock() + 200)
        assert await ops.load(_KEY("a")) == _record(b"d", expires_at=clock() + 500, version=3)
        assert await ops.call("touch", _KEY("ghost"), clock() + 500) is not True  # False (None: a store that cannot tell)
        assert await ops.load(_KEY("ghost")) is None

    async def test_rotate_is_atomic_and_checked(self, ops: Ops, clock: FakeClock) -> None:
        if not ops.has("rotate"):
            pytest.skip("store has no rotate")
        await ops.save(_KEY("old"), _record(b"o", expires_at=clock() + 60, version=4, user_id="u"), None)
        await ops.save(_KEY("taken"), _record(b"t", expires_at=clock() + 60), None)
        moved = _record(b"n", expires_at=clock() + 60, version=5, user_id="u")
        assert await ops.call("rotate", _KEY("old"), _KEY("new"), moved, expected_version=3) is False
        assert await ops.call("rotate", _KEY("old"), _KEY("taken"), moved, expected_version=4) is False
        assert await ops.load(_KEY("old")) is not None
        assert await ops.call("rotate", _KEY("old"), _KEY("new"), moved, expected_version=4) is True
        assert await ops.load(_KEY("old")) is None
        assert await ops.load(_KEY("new")) == moved
        if ops.has("list_user"):
            assert [key for key, _ in await ops.call("list_user", "u")] == [_KEY("new")]

    async def test_scan_lists_every_record_across_pages(self, ops: Ops, clock: FakeClock) -> None:
        if not ops.has("scan"):
            pytest.skip("store has no scan")
        keys = {_KEY(f"scanned{i}") for i in range(7)}
        for key in keys:
            assert await ops.save(key, _record(expires_at=clock() + 100), expected_version=None)
        seen: set[str] = set()
        cursor: str | None = None
        while True:  # a store shared with other data (a Redis database) may take many pages
            page, cursor = await ops.call("scan", cursor, 3)
            seen.update(key for key, record in page if key in keys and record.data == b"x")
            if cursor is None:
                break
        assert seen == keys  # each at least once, whatever the page size

    async def test_user_index_follows_saves_and_deletes(self, ops: Ops, clock: FakeClock) -> None:
        _need_user_index(ops)
        for name, user in [("a1", "alice"), ("a2", "alice"), ("a3", "alice"), ("b1", "bob")]:
            await ops.save(_KEY(name), _record(expires_at=clock() + 60, user_id=user), None)
        await ops.save(_KEY("a3"), _record(expires_at=clock() + 60, version=2, user_id="carol"), 1)
        await ops.call("delete", _KEY("a2"))
        assert sorted(key for key, _ in await ops.call("list_user", "alice")) == [_KEY("a1")]
        assert await ops.call("delete_user", "alice") == 1
        assert await ops.call("list_user", "alice") == []
        assert await ops.load(_KEY("a1")) is None
        assert await ops.load(_KEY("b1")) is not None
        assert await ops.load(_KEY("a3")) is not None

    async def test_serves_other_threads_and_event_loops(self, ops: Ops, clock: FakeClock) -> None:
        """The store serves every thread that uses it and, in async code, every event loop: loops
        in other threads while this test's loop still uses it, one after the other (a second
        ``asyncio.run()``, a test framework's loop per test: the first loop has closed when the
        second starts). ``aclose()`` on another loop leaves this one's use working."""
        record = _record(b"a", expires_at=clock() + 60)
        assert await ops.save(_KEY("a"), record, None) is True

        def elsewhere(name: str) -> Record | None:
            other = Ops(ops.mode, ops.store, clock)

            async def use() -> Record | None:
                try:
                    assert await other.save(_KEY(name), _record(name.encode(), expires_at=clock() + 60), None) is True
                    return await other.load(_KEY("a"))
                finally:
                    if ops.mode == "async":
                        await ops.store.aclose()

            return asyncio.run(use())

        for name in ("b", "c"):
            assert await anyio.to_thread.run_sync(elsewhere, name) == record
            assert await ops.load(_KEY(name)) == _record(name.encode(), expires_at=clock() + 60)
        assert await ops.load(_KEY("a")) == record

    # -- sessions on this store --------------------------------------------------------------------

    async def test_session_round_trip_stores_only_hashed_ids(self, ops: Ops) -> None:
        session = await ops.session()
        session["cart"] = [1, 2]
        session_id = cookie_id(await ops.commit(session))
        assert session_id == session.id
        assert await ops.load(session_id) is None  # the raw ID is not a key
        loaded = await ops.session(session_id)
        assert not loaded.is_new and dict(loaded) == {"cart": [1, 2]}

    async def test_unknown_id_is_never_adopted(self, ops: Ops) -> None:
        forged = _ids.new_session_id()
        session = await ops.session(forged)
        assert session.is_new
        session["x"] = 1
        issued = cookie_id(await ops.commit(session))
        assert issued != forged
        assert await ops.load(_KEY(forged)) is None

    async def test_concurrent_requests_on_different_keys_both_persist(self, ops: Ops) -> None:
        sid = await ops.new_saved(base=0)
        first, second = await ops.session(sid), await ops.session(sid)
        first["a"] = 1
        second["b"] = 2
        await ops.commit(first)
        await ops.commit(second)
        assert dict(await ops.session(sid)) == {"base": 0, "a": 1, "b": 2}

    async def test_concurrent_requests_on_one_key_later_commit_wins(self, ops: Ops) -> None:
        sid = await ops.new_saved(k="start")
        first, second = await ops.session(sid), await ops.session(sid)
        first["k"] = "first"
        second["k"] = "second"
        await ops.commit(first)
        await ops.commit(second)
        assert (await ops.session(sid))["k"] == "second"

    async def test_concurrent_delete_and_in_place_change_merge(self, ops: Ops) -> None:
        sid = await ops.new_saved(items=[1], gone=True)
        first, second = await ops.session(sid), await ops.session(sid)
        del first["gone"]
        second["items"].append(2)
        await ops.commit(first)
        await ops.commit(second)
        assert dict(await ops.session(sid)) == {"items": [1, 2]}

    async def test_logout_is_not_undone_by_a_concurrent_commit(self, ops: Ops) -> None:
        sid = await ops.new_saved(user="alice")
        slow, logout = await ops.session(sid), await ops.session(sid)
        logout.logout()
        cleared = await ops.commit(logout)
        assert cleared is not None and cookie_id(cleared) == ""
        slow["late"] = 1
        with pytest.raises(SessionInterruptedError):
            await ops.commit(slow)
        assert (await ops.session(sid)).is_new
        assert await ops.load(_KEY(sid)) is None

    async def test_read_only_request_after_a_logout_writes_nothing(self, ops: Ops, clock: FakeClock) -> None:
        sid = await ops.new_saved(user="alice")
        clock.advance(ops.config.touch_seconds + 1)  # a refresh of the expiry is due
        slow, logout = await ops.session(sid), await ops.session(sid)
        logout.logout()
        await ops.commit(logout)
        assert slow["user"] == "alice"
        cookie = await ops.commit(slow)  # nothing was changed, so nothing is lost: no error
        touch_tells = not ops.has("touch") or await ops.call("touch", _KEY("ghost"), clock() + 1) is not None
        if touch_tells:
            assert cookie is None  # no cookie for the ended session
        assert await ops.load(_KEY(sid)) is None

    async def test_revoke_is_not_undone_by_a_concurrent_commit(self, ops: Ops) -> None:
        _need_user_index(ops)
        alice = await ops.session()
        alice.login("alice")
        sid = cookie_id(await ops.commit(alice))
        slow = await ops.session(sid)
        assert await ops.revoke_user("alice") == 1
        slow["late"] = 1
        with pytest.raises(SessionInterruptedError):
            await ops.commit(slow)
        assert (await ops.session(sid)).is_new

    async def test_login_racing_a_logout_never_resurrects(self, ops: Ops) -> None:
        sid = await ops.new_saved(cart=[1])
        login, logout = await ops.session(sid), await ops.session(sid)
        logout.logout()
        await ops.commit(logout)
        login.login("alice")
        with pytest.raises(SessionInterruptedError):
            await ops.commit(login)
        assert await ops.load(_KEY(sid)) is None
        assert await ops.load(_KEY(login.id)) is None

    async def test_a_write_after_a_concurrent_rotation_is_refused_not_merged(self, ops: Ops) -> None:
        sid = await ops.new_saved(a=1)
        rotating, writer = await ops.session(sid), await ops.session(sid)
        rotating.login("alice")
        new_id = cookie_id(await ops.commit(rotating))
        writer["planted"] = "by the old ID"
        with pytest.raises(SessionInterruptedError):
            await ops.commit(writer)
        assert dict(await ops.session(new_id)) == {"a": 1}
        assert (await ops.session(sid)).is_new

    async def test_concurrent_rotations_have_one_winner(self, ops: Ops) -> None:
        sid = await ops.new_saved(a=1)
        first, second = await ops.session(sid), await ops.session(sid)
        first.rotate()
        first["x"] = 1
        second.rotate()
        second["y"] = 2
        winner = cookie_id(await ops.commit(first))
        with pytest.raises(SessionInterruptedError):
            await ops.commit(second)
        assert dict(await ops.session(winner)) == {"a": 1, "x": 1}
        assert (await ops.session(sid)).is_new

    async def test_revoke_user_ends_only_that_users_sessions(self, ops: Ops) -> None:
        _need_user_index(ops)
        ids: dict[str, list[str]] = {"alice": [], "bob": []}
        for user in ["alice", "alice", "alice", "bob"]:
            session = await ops.session()
            session.login(user)
            ids[user].append(cookie_id(await ops.commit(session)))
        assert await ops.revoke_user("alice") == 3
        for sid in ids["alice"]:
            assert (await ops.session(sid)).is_new
        assert (await ops.session(ids["bob"][0])).user_id == "bob"

    async def test_login_rotates_and_kills_the_old_id(self, ops: Ops) -> None:
        attacker_id = await ops.new_saved(cart=[9])
        victim = await ops.session(attacker_id)
        victim.login("victim")
        new_id = cookie_id(await ops.commit(victim))
        assert new_id != attacker_id
        attacker_view = await ops.session(attacker_id)
        assert attacker_view.is_new and attacker_view.user_id is None
        victim_view = await ops.session(new_id)
        assert victim_view.user_id == "victim" and victim_view["cart"] == [9]

    async def test_rotation_merges_a_concurrent_change(self, ops: Ops) -> None:
        sid = await ops.new_saved(a=1)
        rotating, writer = await ops.session(sid), await ops.session(sid)
        writer["b"] = 2
        await ops.commit(writer)
        rotating.rotate()
        rotating["c"] = 3
        new_id = cookie_id(await ops.commit(rotating))
        assert dict(await ops.session(new_id)) == {"a": 1, "b": 2, "c": 3}
        assert (await ops.session(sid)).is_new

    async def test_idle_timeout_is_enforced_on_read(self, ops: Ops, clock: FakeClock) -> None:
        sid = await ops.new_saved(a=1)
        clock.advance(ops.config.idle_seconds - 1)
        assert not (await ops.session(sid)).is_new
        clock.advance(2)
        assert (await ops.session(sid)).is_new

    async def test_absolute_timeout_holds_however_active(self, ops: Ops, clock: FakeClock) -> None:
        start = clock()
        sid = await ops.new_saved(a=1)
        step = ops.config.idle_seconds / 2
        last_alive = start
        while clock() - start < ops.config.absolute_seconds + step:
            clock.advance(step)
            session = await ops.session(sid)
            if session.is_new:
                break
            last_alive = clock()
            session["tick"] = clock()
            await ops.commit(session)
        assert start + ops.config.absolute_seconds - step <= last_alive < start + ops.config.absolute_seconds
        assert (await ops.session(sid)).is_new

    async def test_purge_removes_expired_sessions(self, ops: Ops, clock: FakeClock) -> None:
        old = await ops.new_saved(a=1)
        clock.advance(ops.config.idle_seconds + 1)
        fresh = await ops.new_saved(b=2)
        purged = await ops.purge()
        assert purged == (0 if expires_natively(ops.store) else 1)
        assert (await ops.session(old)).is_new
        assert not (await ops.session(fresh)).is_new


def _need_user_index(ops: Ops) -> None:
    if not (ops.has("delete_user") and ops.has("list_user")):
        pytest.skip("store has no user index (delete_user, list_user)")

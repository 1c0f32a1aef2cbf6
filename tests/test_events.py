"""Events for audit trails: each lifecycle change, conflict and store failure is announced once,
after the fact, with the session's handle and never its ID; a failing subscriber breaks nothing."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from coatcheck import ConcurrentUpdateError, Record, Session, SessionConfig, SessionManager, StoreUnavailableError
from coatcheck._ids import new_session_id, store_key
from coatcheck.events import SessionEvent
from coatcheck.stores.memory import MemoryStore
from coatcheck.stores.sqlite import SQLiteStore
from coatcheck.testing import FakeClock

from .apps import FlakyStore

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["memory", "sqlite"])
def manager(request: pytest.FixtureRequest, tmp_path: Path) -> SessionManager:
    clock = FakeClock()
    store = MemoryStore(clock=clock) if request.param == "memory" else SQLiteStore(tmp_path / "s.db", clock=clock)
    return SessionManager(store, clock=clock)


def _recording(manager: SessionManager) -> list[SessionEvent]:
    seen: list[SessionEvent] = []
    events = manager.events
    for subscribe in (
        events.on_login,
        events.on_logout,
        events.on_rotate,
        events.on_revoke,
        events.on_conflict,
        events.on_store_error,
    ):
        subscribe(seen.append)
    return seen


def _cookie(session_id: str) -> str:
    return f"sessionid={session_id}"


async def test_login_rotate_logout_and_revoke_are_announced_with_handles(manager: SessionManager, anyio_backend: str) -> None:
    seen = _recording(manager)
    session = manager.new_session()
    session.login("alice")
    await manager.acommit(session)
    first = manager.handle(session)
    assert seen == [SessionEvent("login", first, "alice")]

    session = await manager.aload(_cookie(session.id))
    session.rotate()
    manager.commit(session)
    second = manager.handle(session)
    assert seen[1:] == [SessionEvent("rotate", second, "alice", first)]

    session = manager.load(_cookie(session.id))
    session.logout()
    await manager.acommit(session)
    assert seen[2:] == [SessionEvent("logout", second, "alice")]

    for _ in range(2):
        other = manager.new_session()
        other.login("bob")
        manager.commit(other)
    seen.clear()
    assert await manager.arevoke_user("bob") == 2
    assert seen == [SessionEvent("revoke", None, "bob", 2)]
    assert all(session.id not in str(event) and other.id not in str(event) for event in seen)


def _overtaken(manager: SessionManager, key: str) -> Session:
    """A stored session, loaded, then changed and committed (``key`` set to 1) by another request."""
    session = manager.new_session()
    session["n"] = 0
    manager.commit(session)
    mine, theirs = manager.load(_cookie(session.id)), manager.load(_cookie(session.id))
    theirs[key] = 1
    manager.commit(theirs)
    return mine


async def test_a_merged_conflict_is_announced_with_its_count(manager: SessionManager, anyio_backend: str) -> None:
    seen = _recording(manager)
    mine = _overtaken(manager, "a")
    session = mine
    mine["b"] = 2
    await manager.acommit(mine)
    assert seen == [SessionEvent("conflict", manager.handle(mine), None, 1)]
    assert manager.load(_cookie(session.id)) == {"n": 0, "a": 1, "b": 2}


def test_a_commit_that_gives_up_is_announced_as_a_conflict() -> None:
    clock = FakeClock()
    manager = SessionManager(MemoryStore(clock=clock), config=SessionConfig(max_commit_attempts=1), clock=clock)
    seen = _recording(manager)
    mine = _overtaken(manager, "n")
    mine["n"] = 2
    with pytest.raises(ConcurrentUpdateError) as raised:
        manager.commit(mine)
    assert seen == [SessionEvent("conflict", manager.handle(mine), None, str(raised.value))]


async def test_store_failures_are_announced_and_still_raised(anyio_backend: str) -> None:
    clock = FakeClock()
    store = FlakyStore(MemoryStore(clock=clock))
    manager = SessionManager(store, clock=clock)
    seen = _recording(manager)
    session = manager.new_session()
    session["a"] = 1
    manager.commit(session)
    store.down = True
    with pytest.raises(StoreUnavailableError):
        await manager.aload(_cookie(session.id))
    session["b"] = 2
    with pytest.raises(StoreUnavailableError):
        manager.commit(session)
    with pytest.raises(StoreUnavailableError):
        manager.revoke_user("alice")
    assert [(event.kind, event.handle, event.detail) for event in seen] == [
        ("store_error", None, "store is down (test)"),
        ("store_error", manager.handle(session), "store is down (test)"),
        ("store_error", None, "store is down (test)"),
    ]


def test_a_subscriber_that_raises_is_logged_and_breaks_nothing(caplog: pytest.LogCaptureFixture) -> None:
    manager = SessionManager(MemoryStore())
    later: list[SessionEvent] = []

    @manager.events.on_login
    def broken(event: SessionEvent) -> None:
        raise RuntimeError("audit log is full")

    manager.events.on_login(later.append)
    session = manager.new_session()
    session.login("alice")
    with caplog.at_level(logging.ERROR, logger="coatcheck"):
        assert manager.commit(session) is not None
    assert "a login event subscriber failed" in caplog.text and "audit log is full" in caplog.text
    assert [event.user_id for event in later] == ["alice"]
    assert manager.load(_cookie(session.id)).user_id == "alice"


def test_a_subscriber_must_be_callable() -> None:
    with pytest.raises(TypeError, match="must be callable"):
        SessionManager(MemoryStore()).events.on_logout("audit.log")  # type: ignore[arg-type]


async def test_a_request_s_session_is_announced_created_loaded_and_committed(manager: SessionManager, anyio_backend: str) -> None:
    seen: list[SessionEvent] = []
    for subscribe in (manager.events.on_create, manager.events.on_load, manager.events.on_commit):
        subscribe(seen.append)
    session = manager.new_session()
    session["a"] = "x" * 100
    await manager.acommit(session)
    handle = manager.handle(session)
    (created, saved) = seen
    assert created == SessionEvent("create", handle, None)
    assert saved.kind == "commit" and saved.detail == "saved" and saved.size is not None and 100 < saved.size < 200
    seen.clear()
    again = await manager.aload(_cookie(session.id))
    await manager.acommit(again)
    assert seen == [SessionEvent("load", handle, None), SessionEvent("commit", handle, None, "unchanged")]
    seen.clear()
    again["b"] = 1
    await manager.acommit(again, status_code=503)
    again.logout()
    await manager.acommit(again)
    assert seen == [SessionEvent("commit", handle, None, "dropped"), SessionEvent("commit", handle, None, "deleted")]


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (None, "unknown"),
        (b"not json", "corrupt"),
        (b'{"v":1,"c":%d,"d":{}}', "future"),
        (b'{"v":1,"c":%d,"d":{}}', "expired"),
    ],
)
def test_a_refused_session_id_is_announced_with_its_reason(record: bytes | None, reason: str) -> None:
    """The store's own clock lags, so it still hands out what the manager must refuse."""
    clock = FakeClock()
    store = MemoryStore(clock=FakeClock(clock.now - 10 * 86400))
    manager = SessionManager(store, clock=clock)
    rejected: list[SessionEvent] = []
    manager.events.on_reject(rejected.append)
    session_id = new_session_id()
    if record is not None:
        created = clock.now + 3600 if reason == "future" else clock.now - 86400
        store.save(
            store_key(session_id),
            Record(record % int(created) if b"%d" in record else record, clock.now + 60, 1),
            expected_version=None,
        )
    assert manager.load(_cookie(session_id)).is_new
    assert rejected == [SessionEvent("reject", manager.handle(manager._session(session_id)), None, reason)]
    manager.load("sessionid=" + "!" * 43)
    assert rejected[1:] == [SessionEvent("reject", None, None, "malformed")]

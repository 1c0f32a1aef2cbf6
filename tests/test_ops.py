"""The operation vocabulary and its one pair of drivers (coatcheck._ops), through the manager:
how a store's capabilities are found, what runs inline for a store that never blocks, what the
observer sees and cannot break, and that a StopIteration is never taken for a result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from coatcheck import NotSupportedError, Record, SessionManager
from coatcheck._ops import Load, Operation, Pause, Save, adrive, drive, one
from coatcheck.stores.memory import MemoryStore
from coatcheck.testing import FakeClock, SpyStore, cookie_id

from .core_stores import SyncCoreStore

pytestmark = pytest.mark.anyio


def test_a_proxy_store_is_a_store() -> None:
    """Capabilities are found on the object, as it answers: a proxy's ``__getattr__`` counts."""
    spy = SpyStore(MemoryStore())
    manager = SessionManager(spy)
    session = manager.new_session()
    session["a"] = 1
    manager.commit(session)
    assert spy.calls["save"] == 1 and manager.supports_async


def test_a_capability_turned_off_is_not_used() -> None:
    """A store that sets ``rotate = None`` on itself rotates by parts, as one without it."""
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    store.rotate = None  # type: ignore[assignment, method-assign]
    manager = SessionManager(store, clock=clock)
    session = manager.new_session()
    session.login("alice")
    first = cookie_id(manager.commit(session))
    again = manager.load(f"sessionid={first}")
    again.rotate()
    second = cookie_id(manager.commit(again))
    assert second != first and manager.load(f"sessionid={second}").user_id == "alice"
    assert manager.load(f"sessionid={first}").is_new


class AsyncIndexOnly(MemoryStore):
    """A store that never blocks, whose user index has only async methods."""

    delete_user = None  # type: ignore[assignment]
    list_user = None  # type: ignore[assignment]

    async def adelete_user(self, user_id: str) -> int:
        return MemoryStore.delete_user(self, user_id)

    async def alist_user(self, user_id: str) -> list[tuple[str, Record]]:
        return MemoryStore.list_user(self, user_id)


async def test_inline_runs_only_what_the_sync_side_has() -> None:
    clock = FakeClock()
    manager = SessionManager(AsyncIndexOnly(clock=clock), clock=clock)
    session = manager.new_session()
    session.login("bob")
    await manager.acommit(session)
    assert [info.handle for info in await manager.alist_sessions("bob")] == [SessionManager.handle(session)]
    assert await manager.arevoke_user("bob") == 1
    with pytest.raises(NotSupportedError):
        manager.revoke_user("bob")


async def test_the_observer_sees_each_operation_and_cannot_break_one(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[tuple[str, bool]] = []

    def observe(op: Operation[Any], seconds: float, error: BaseException | None) -> None:
        seen.append((type(op).__name__, error is None))
        raise RuntimeError("a broken metrics exporter")

    manager = SessionManager(MemoryStore())
    manager.observe = observe
    session = manager.new_session()
    session["a"] = 1
    set_cookie = await manager.acommit(session)  # the write happened: the observer cannot undo it
    assert set_cookie is not None and seen == [("Save", True)]
    assert manager.load(f"sessionid={cookie_id(set_cookie)}")["a"] == 1
    assert "observer failed" in caplog.text


class LeakyStore(MemoryStore):
    """A store whose ``load`` lets a StopIteration escape (a bug of its own)."""

    def load(self, key: str) -> Record | None:
        raise StopIteration


async def test_a_stopiteration_from_an_operation_is_not_a_result() -> None:
    store = LeakyStore()
    with pytest.raises(RuntimeError, match="generator raised StopIteration"):  # thrown into the flow: PEP 479
        drive(one(Load("k")), store)
    with pytest.raises(RuntimeError, match="generator raised StopIteration"):
        await adrive(one(Load("k")), store, inline=frozenset({Load}))


def test_only_store_operations_run_inline(tmp_path: Path) -> None:
    """For a store that never blocks, what async code runs through its sync methods: the store's
    own operations, never a pause (a sleep) or a legacy reader's I/O."""
    from coatcheck.legacy import Forget, Read

    inline = SessionManager(MemoryStore())._inline
    assert {Load, Save} <= inline and not inline & {Pause, Read, Forget}
    assert not SessionManager(f"sqlite:///{tmp_path / 's.db'}")._inline  # SQLite's sync side does I/O


async def test_an_async_call_on_a_sync_only_store_raises_when_awaited() -> None:
    manager = SessionManager(SyncCoreStore(MemoryStore()))
    pending = manager.aload("sessionid=" + "A" * 43)  # no error yet: async methods raise when awaited
    with pytest.raises(NotSupportedError, match="no asynchronous API"):
        await pending


def test_a_sql_store_with_no_async_driver_is_refused_when_built() -> None:
    """A SQL store that neither implements ``_aonce`` nor overrides ``_arun`` fails when it is
    built, not at its first async call."""
    from coatcheck.stores import _sql

    class Incomplete(_sql.SQLStoreMethods):
        database_name = "Incomplete"
        _driver_errors = (OSError,)

        def __init__(self) -> None:
            flows: Any = None  # never reached: the check comes first
            self._setup(flows, where="", table="t", create_schema=False, purge_batch=1, clock=FakeClock())

        def _once(self, flow: Any) -> Any:
            return drive(flow, None)

        def _transient(self, exc: Exception) -> bool:
            return False

        def _error(self, exc: Exception) -> Any:
            return exc

    with pytest.raises(TypeError, match="Incomplete must implement _aonce, or override _arun"):
        Incomplete()


async def test_an_operation_s_exception_is_raised_inside_the_flow() -> None:
    """Where the flow yielded the operation, so a flow (or one wrapping it) may catch it; the
    flow goes on with what it yields next."""

    class Failing(MemoryStore):
        def load(self, key: str) -> Record | None:
            raise OSError(f"cannot read {key}")

    def flow() -> Any:
        try:
            yield Load("k")
        except OSError as exc:
            return (yield Save("k", Record(str(exc).encode(), 9e9, 1), None))
        return False

    store = Failing()
    assert drive(flow(), store) is True
    assert await adrive(flow(), Failing()) is True
    assert MemoryStore.load(store, "k") == Record(b"cannot read k", 9e9, 1)  # what the flow saved on failing

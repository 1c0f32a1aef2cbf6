"""Commits of one session take turns in a process, and a turn is never waited for long."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from coatcheck import SessionManager, StoreUnavailableError, _turns
from coatcheck.stores.sqlite import SQLiteStore


def test_a_stalled_store_costs_each_commit_its_own_timeout_not_the_sum(tmp_path: Path) -> None:
    """Eight commits of one session while the store is locked: each fails within the store's
    timeout plus at most one wait for its turn, however many came before it."""
    store = SQLiteStore(tmp_path / "sessions.db", timeout=0.5)
    manager = SessionManager(store)
    session = manager.new_session()
    session["n"] = 0
    manager.commit(session)
    outcomes: list[tuple[str, float]] = []
    barrier = threading.Barrier(8)

    def commit() -> None:
        mine = manager.load(f"sessionid={session.id}")
        mine["n"] = 1
        barrier.wait(timeout=10)
        start = time.monotonic()
        try:
            manager.commit(mine)
            outcomes.append(("saved", time.monotonic() - start))
        except StoreUnavailableError:
            outcomes.append(("503", time.monotonic() - start))

    with contextlib.closing(sqlite3.connect(store.path, isolation_level=None)) as locker:
        locker.execute("BEGIN EXCLUSIVE")  # every write waits for the lock, then gives up
        threads = [threading.Thread(target=commit) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        locker.execute("ROLLBACK")
    assert [kind for kind, _ in outcomes] == ["503"] * 8
    bound = 0.5 + _turns.TURN_WAIT + 1.0  # one store timeout, one turn, and scheduling slack
    assert max(seconds for _, seconds in outcomes) < bound, outcomes  # in turn, the last would take 8 x 0.5 s


@pytest.mark.anyio
async def test_turns_are_taken_in_order_and_a_late_waiter_goes_ahead() -> None:
    turns = _turns.AsyncKeyTurns()
    order: list[str] = []

    async def commit(name: str, hold: float) -> None:
        held = turns.take("k") or await turns.wait("k")
        order.append(f"{name} in")
        await asyncio.sleep(hold)
        order.append(f"{name} out")
        if held:
            turns.release("k")

    first = asyncio.ensure_future(commit("first", _turns.TURN_WAIT * 1.5))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(commit("second", 0))
    await asyncio.gather(first, second)
    # The second waited TURN_WAIT, then went ahead while the first still held the turn.
    assert order == ["first in", "second in", "second out", "first out"]
    assert turns.take("k")  # and the turn is free again afterwards
    turns.release("k")
    assert turns._lines.get() == {}


@pytest.mark.anyio
async def test_a_failed_commit_breaks_the_line_up() -> None:
    """When the commit holding the turn fails, the ones waiting go ahead together at once
    instead of failing one after the other."""
    turns = _turns.AsyncKeyTurns()
    assert turns.take("k")
    waiting = [asyncio.ensure_future(turns.wait("k")) for _ in range(3)]
    await asyncio.sleep(0)
    turns.release("k", failed=True)
    assert await asyncio.gather(*waiting) == [False, False, False]
    assert turns._lines.get() == {}
    assert turns.take("k")  # a new line starts


def _users(turns: _turns.KeyTurns, key: str) -> int:
    """How many threads hold or wait for ``key``'s turn."""
    _, keys = turns._stripes[hash(key) % _turns._STRIPES]
    turn = keys.get(key)
    return 0 if turn is None else turn.users


def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_threads_take_a_keys_turn_one_after_another_and_leave_nothing_behind() -> None:
    turns = _turns.KeyTurns()
    order: list[str] = []
    second_waits = threading.Event()

    def commit(name: str) -> None:
        held = turns.acquire("k")
        order.append(f"{name} in")
        if name == "first":
            assert second_waits.wait(10)
        order.append(f"{name} out")
        turns.release("k", held)

    first = threading.Thread(target=commit, args=("first",))
    first.start()
    _until(lambda: order == ["first in"])
    second = threading.Thread(target=commit, args=("second",))
    second.start()
    _until(lambda: _users(turns, "k") == 2)  # the second is in line
    second_waits.set()
    for thread in (first, second):
        thread.join(10)
    assert order == ["first in", "first out", "second in", "second out"]
    assert _users(turns, "k") == 0  # no lock is kept for a key no one holds
    assert turns.acquire("k")  # and the turn is free again
    turns.release("k", True)


def test_a_failed_threaded_commit_breaks_the_line_up() -> None:
    turns = _turns.KeyTurns()
    assert turns.acquire("k")
    outcomes: list[bool] = []
    waiters = [threading.Thread(target=lambda: outcomes.append(turns.acquire("k"))) for _ in range(3)]
    for waiter in waiters:
        waiter.start()
    _until(lambda: _users(turns, "k") == 4)
    turns.release("k", True, failed=True)
    for waiter in waiters:
        waiter.join(10)
    assert outcomes == [False, False, False]  # each went ahead without the turn, at once
    for held in outcomes:
        turns.release("k", held)
    assert _users(turns, "k") == 0

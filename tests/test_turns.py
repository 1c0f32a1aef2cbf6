"""Commits of one session take turns in a process, and a turn is never waited for long."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
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

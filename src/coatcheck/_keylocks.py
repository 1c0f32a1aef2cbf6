"""Per-key turns: commits of one session within this process run one at a time.

A browser's burst of requests on one session (a page's parallel XHRs) would otherwise collide in
the store's compare-and-set, each collision costing a reload and a retry, and under a burst of
hundreds some would run out of attempts. Taking turns per store key in the process leaves
compare-and-set conflicts to writers in other processes. Different keys never wait for each
other: there is no lock shared by every request.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque

__all__ = ["AsyncKeyTurns", "KeyTurns"]

_STRIPES = 64


class _Turn:
    """One key's lock and how many threads hold or wait for it."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users = 0


class KeyTurns:
    """Per-key mutual exclusion for threads.

    A key's lock exists only while some thread holds or waits for it; the small dict of held
    keys is striped, and each stripe's guard is held for a dict operation, never across I/O.
    """

    __slots__ = ("_stripes",)

    def __init__(self) -> None:
        self._stripes: list[tuple[threading.Lock, dict[str, _Turn]]] = [(threading.Lock(), {}) for _ in range(_STRIPES)]

    def acquire(self, key: str) -> None:
        """Wait for ``key``'s turn."""
        guard, held = self._stripes[hash(key) % _STRIPES]
        with guard:
            turn = held.get(key)
            if turn is None:
                turn = held[key] = _Turn()
            turn.users += 1
        turn.lock.acquire()

    def release(self, key: str) -> None:
        """End ``key``'s turn (the caller holds it)."""
        guard, held = self._stripes[hash(key) % _STRIPES]
        with guard:
            turn = held[key]
            turn.lock.release()
            turn.users -= 1
            if not turn.users:
                del held[key]


class AsyncKeyTurns:
    """Per-key mutual exclusion for coroutines, per event loop (no lock object per commit).

    A key that no coroutine of this loop holds costs a dict insertion and a deletion; waiters
    queue in FIFO order. Coroutines on different loops (threads) do not wait for each other.
    """

    __slots__ = ("_guard", "_loops")

    def __init__(self) -> None:
        self._loops: dict[asyncio.AbstractEventLoop, dict[str, deque[asyncio.Future[None]]]] = {}
        self._guard = threading.Lock()

    def _held(self) -> dict[str, deque[asyncio.Future[None]]]:
        loop = asyncio.get_running_loop()
        held = self._loops.get(loop)
        if held is None:
            with self._guard:  # a new loop: forget the closed ones
                self._loops = {other: keys for other, keys in self._loops.items() if not other.is_closed()}
                held = self._loops.setdefault(loop, {})
        return held

    async def acquire(self, key: str) -> None:
        """Wait for ``key``'s turn."""
        held = self._held()
        waiters = held.get(key)
        if waiters is None:
            held[key] = deque()
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():  # the turn was handed over just as we were cancelled
                self.release(key)
            raise

    def release(self, key: str) -> None:
        """End ``key``'s turn, handing it to the next waiter (the caller holds it)."""
        held = self._held()
        waiters = held[key]
        while waiters:
            turn = waiters.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        del held[key]

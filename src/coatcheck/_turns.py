"""Per-key turns: commits of one session within this process run one at a time.

A browser's burst of requests on one session (a page's parallel XHRs) would otherwise collide in
the store's compare-and-set, each collision costing a reload and a retry, and under a burst of
hundreds some would run out of attempts. Taking turns per store key in the process leaves
compare-and-set conflicts to writers in other processes. Different keys never wait for each
other: there is no lock shared by every request.

A turn is an optimisation, not what keeps data safe (compare-and-set does that), so a commit
waits for its turn at most :data:`TURN_WAIT` seconds and then goes ahead anyway: a stalled store
costs each request its own timeout, not the sum of the timeouts of the requests before it.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Generic, TypeVar

__all__ = ["TURN_WAIT", "AsyncKeyTurns", "KeyTurns", "PerLoop"]

T = TypeVar("T")
TURN_WAIT = 1.0  # seconds a commit waits for its session's turn before it goes ahead without it
_STRIPES = 64


class PerLoop(Generic[T]):
    """One ``T`` per running event loop, made by ``factory`` on the loop's first use (loops on
    other threads get their own); values of loops that closed are dropped when a new loop comes."""

    __slots__ = ("_factory", "_guard", "_values")

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._values: dict[asyncio.AbstractEventLoop, T] = {}
        self._guard = threading.Lock()

    def get(self) -> T:
        """The running loop's value."""
        loop = asyncio.get_running_loop()
        value = self._values.get(loop)
        if value is None:
            with self._guard:
                self._values = {other: kept for other, kept in self._values.items() if not other.is_closed()}
                value = self._values.setdefault(loop, self._factory())
        return value


class _Turn:
    """One key's lock and how many threads hold or wait for it."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users = 0


class _Held:
    """``with turns.hold(key):`` the thread's turn for ``key`` (no turn at all for key None)."""

    __slots__ = ("_held", "_key", "_turns")

    def __init__(self, turns: KeyTurns, key: str | None) -> None:
        self._turns, self._key, self._held = turns, key, False

    def __enter__(self) -> None:
        if self._key is not None:
            self._held = self._turns._acquire(self._key)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._key is not None:
            self._turns._release(self._key, self._held)


class KeyTurns:
    """Per-key turns for threads. A key's lock exists only while some thread holds or waits for
    it; the dict of those keys is striped, each stripe's guard held for a dict operation only."""

    __slots__ = ("_stripes",)

    def __init__(self) -> None:
        self._stripes: list[tuple[threading.Lock, dict[str, _Turn]]] = [(threading.Lock(), {}) for _ in range(_STRIPES)]

    def hold(self, key: str | None) -> _Held:
        """A context manager: ``key``'s turn, waited for at most :data:`TURN_WAIT` seconds."""
        return _Held(self, key)

    def _acquire(self, key: str) -> bool:
        guard, held = self._stripes[hash(key) % _STRIPES]
        with guard:
            turn = held.get(key)
            if turn is None:
                turn = held[key] = _Turn()
            turn.users += 1
        return turn.lock.acquire(timeout=TURN_WAIT)

    def _release(self, key: str, held_it: bool) -> None:
        guard, held = self._stripes[hash(key) % _STRIPES]
        with guard:
            turn = held[key]
            if held_it:
                turn.lock.release()
            turn.users -= 1
            if not turn.users:
                del held[key]


class AsyncKeyTurns:
    """Per-key turns for coroutines, per event loop (no lock object per commit): a key no one
    holds costs a dict insertion and a deletion, with no coroutine; waiters queue in FIFO order.
    Coroutines on different loops (threads) do not wait for each other.

    ``take(key)`` takes a free turn at once; if it returns False, ``await wait(key)`` (with no
    await in between) queues for it. Either way, whoever got the turn calls ``release(key)``.
    """

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held: PerLoop[dict[str, deque[asyncio.Future[None]]]] = PerLoop(dict)

    def take(self, key: str) -> bool:
        """Take ``key``'s turn if no one holds it; False if someone does."""
        held = self._held.get()
        if key in held:
            return False
        held[key] = deque()
        return True

    async def wait(self, key: str) -> bool:
        """Queue for ``key``'s turn (held by someone); False if it did not come within
        :data:`TURN_WAIT` seconds (then go ahead without it, and do not release)."""
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._held.get()[key].append(turn)
        try:
            await asyncio.wait_for(turn, TURN_WAIT)
        except asyncio.TimeoutError:
            return False  # the turn (cancelled by the timeout) is skipped when it comes
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():  # the turn was handed over just as we were cancelled
                self.release(key)
            raise
        return True

    def release(self, key: str) -> None:
        """End ``key``'s turn, handing it to the next waiter (the caller holds it)."""
        held = self._held.get()
        waiters = held[key]
        while waiters:
            turn = waiters.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        del held[key]

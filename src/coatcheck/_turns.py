"""Per-key turns: commits of one session within this process run one at a time.

A browser's burst of requests on one session (a page's parallel XHRs) would otherwise collide in
the store's compare-and-set, each collision costing a reload and a retry, and under a burst of
hundreds some would run out of attempts. Taking turns per store key in the process leaves
compare-and-set conflicts to writers in other processes. Different keys never wait for each
other: there is no lock shared by every request.

A turn is an optimisation, not what keeps data safe (compare-and-set does that). A commit waits
in line as long as the line moves; the line breaks up (everyone in it goes ahead without a turn)
when the commit holding the turn fails (a store error: the others would only fail one after the
other) or has held it :data:`TURN_WAIT` seconds. So a burst of hundreds on a healthy store takes
turns to the last, and a failing or stalled store costs each request about its own timeout, not
the sum of the timeouts of the requests before it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque

from ._aio import PerLoop

__all__ = ["TURN_WAIT", "AsyncKeyTurns", "KeyTurns"]

TURN_WAIT = 1.0  # seconds a turn may be held before the commits waiting for it go ahead without it
_STRIPES = 64


class _Turn:
    """One key's lock, when its current holder took it, whether the line broke up, and how many
    threads hold or wait for it."""

    __slots__ = ("broken", "lock", "since", "users")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.since = time.monotonic()  # the first holder takes it now
        self.broken = False
        self.users = 0


class KeyTurns:
    """Per-key turns for threads. A key's lock exists only while some thread holds or waits for
    it; the dict of those keys is striped, each stripe's guard held for a dict operation only.

    ``held = acquire(key)`` takes ``key``'s turn (False: go ahead without it); whatever it
    returned, ``release(key, held)`` follows, with ``failed=True`` when the commit raised.
    """

    __slots__ = ("_stripes",)

    def __init__(self) -> None:
        self._stripes: list[tuple[threading.Lock, dict[str, _Turn]]] = [(threading.Lock(), {}) for _ in range(_STRIPES)]

    def acquire(self, key: str) -> bool:
        """``key``'s turn, once it comes; False, to go ahead without it, once its holder has held it
        :data:`TURN_WAIT` seconds or the line broke up."""
        guard, held = self._stripes[hash(key) % _STRIPES]
        with guard:
            turn = held.get(key)
            if turn is None:  # no one holds it or waits: take it at once
                turn = held[key] = _Turn()
                turn.lock.acquire()
                turn.users = 1
                return True
            turn.users += 1
        while True:
            if turn.lock.acquire(timeout=max(0.0, turn.since + TURN_WAIT - time.monotonic())):
                if turn.broken:  # the line broke up: pass the lock on at once and go ahead
                    turn.lock.release()
                    return False
                turn.since = time.monotonic()
                return True
            if time.monotonic() - turn.since >= TURN_WAIT:  # the holder is stuck: go ahead without the turn
                return False

    def release(self, key: str, held_it: bool, *, failed: bool = False) -> None:
        """Leave ``key``'s line; ``held_it``: what :meth:`acquire` returned."""
        guard, held = self._stripes[hash(key) % _STRIPES]
        with guard:
            turn = held[key]
            if held_it:
                turn.broken = turn.broken or failed
                turn.lock.release()
            turn.users -= 1
            if not turn.users:
                del held[key]


class _Line:
    """One key's line on an event loop: when the current holder took the turn, and the waiters."""

    __slots__ = ("since", "waiters")

    def __init__(self, since: float) -> None:
        self.since = since
        self.waiters: deque[asyncio.Future[bool]] = deque()  # True: your turn; False: the line broke up


class AsyncKeyTurns:
    """Per-key turns for coroutines, per event loop (no lock object per commit): a key no one
    holds costs a dict insertion and a deletion, with no coroutine; waiters queue in FIFO order.
    Coroutines on different loops (threads) do not wait for each other.

    ``take(key)`` takes a free turn at once; if it returns False, ``await wait(key)`` (with no
    await in between) queues for it. Either way, whoever got the turn calls ``release(key)``, with
    ``failed=True`` when its commit raised. Under an event loop other than asyncio (trio) there
    are no turns: ``take`` always succeeds and compare-and-set alone keeps commits correct.
    """

    __slots__ = ("_lines",)

    def __init__(self) -> None:
        self._lines: PerLoop[dict[str, _Line]] = PerLoop(dict)

    def take(self, key: str) -> bool:
        """Take ``key``'s turn if no one holds it; False if someone does."""
        lines = self._lines.current()
        if lines is None:
            return True
        if key in lines:
            return False
        lines[key] = _Line(asyncio.get_running_loop().time())
        return True

    async def wait(self, key: str) -> bool:
        """Queue for ``key``'s turn (held by someone). True once it comes; False, to go ahead
        without it, once its holder has held it :data:`TURN_WAIT` seconds (then do not release)."""
        loop = asyncio.get_running_loop()
        line = self._lines.get()[key]
        turn: asyncio.Future[bool] = loop.create_future()
        line.waiters.append(turn)
        try:
            while not turn.done():
                stuck_at = line.since + TURN_WAIT
                if loop.time() >= stuck_at:
                    turn.cancel()  # skipped when the line reaches it
                    return False
                await asyncio.wait([turn], timeout=stuck_at - loop.time())
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled() and turn.result():  # handed over as we were cancelled
                self.release(key)
            else:
                turn.cancel()
            raise
        return turn.result()

    def release(self, key: str, *, failed: bool = False) -> None:
        """End ``key``'s turn (the caller holds it): hand it to the next waiter, or, when the
        holder's commit ``failed``, break the line up and let every waiter go ahead."""
        lines = self._lines.current()
        if lines is None:
            return
        line = lines[key]
        while line.waiters:
            turn = line.waiters.popleft()
            if turn.done():
                continue
            if failed:
                turn.set_result(False)
                continue
            line.since = asyncio.get_running_loop().time()
            turn.set_result(True)
            return
        del lines[key]

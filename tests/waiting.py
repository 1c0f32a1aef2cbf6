"""Time bounds for tests that wait on real servers: no fixed sleeps, only deadlines."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

from coatcheck import StoreError

T = TypeVar("T")


@contextlib.contextmanager
def within(seconds: float) -> Iterator[None]:
    """Assert the block finishes (raising or not) within ``seconds``."""
    start = time.monotonic()
    try:
        yield
    finally:
        elapsed = time.monotonic() - start
        assert elapsed < seconds, f"took {elapsed:.2f} s, bound {seconds} s"


async def eventually(attempt: Callable[[], Awaitable[T]], *, deadline: float = 20.0) -> T:
    """Retry ``attempt`` until it stops raising StoreError or AssertionError, or the deadline passes."""
    give_up = time.monotonic() + deadline
    while True:
        try:
            return await attempt()
        except (StoreError, AssertionError):
            if time.monotonic() > give_up:
                raise
        await asyncio.sleep(0.05)

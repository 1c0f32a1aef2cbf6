"""The few event-loop services coatcheck needs, on asyncio or on trio.

Starlette and FastAPI run on anyio, so an app may run under trio. The stores that only do their
I/O in threads or not at all (memory, SQLite) work there through these functions; the ones built
on asyncio drivers say so (``asyncio_only``) and refuse to start elsewhere.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["running_asyncio_loop", "sleep", "to_thread"]

T = TypeVar("T")


def running_asyncio_loop() -> asyncio.AbstractEventLoop | None:
    """The running asyncio loop, or None under another event loop (trio)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _trio() -> Any:
    trio = sys.modules.get("trio")
    if trio is None:
        raise RuntimeError("coatcheck's async API needs a running asyncio or trio event loop")
    return trio


async def sleep(seconds: float) -> None:
    """Sleep on whichever event loop runs."""
    if running_asyncio_loop() is not None:
        await asyncio.sleep(seconds)
    else:
        await _trio().sleep(seconds)


def to_thread(function: Callable[..., T], *args: Any) -> Coroutine[Any, Any, T]:
    """Run ``function(*args)`` in a worker thread of whichever event loop runs: the loop's own
    awaitable, not wrapped in a coroutine of ours (this is on every request of a store that
    works in threads)."""
    if running_asyncio_loop() is not None:
        return asyncio.to_thread(function, *args)
    result: Coroutine[Any, Any, T] = _trio().to_thread.run_sync(function, *args)
    return result

"""The background expirer: purges expired sessions from stores without native TTL.

Started and stopped explicitly (the middlewares do it: ASGI at lifespan, WSGI on the first
request), never in a constructor. A failed purge is logged and retried next round.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import threading
from typing import TYPE_CHECKING

from . import _aio
from .stores import expires_natively

if TYPE_CHECKING:
    from .manager import SessionManager

log = logging.getLogger("coatcheck")

__all__ = ["Expirer"]


def needs_purge(manager: SessionManager) -> bool:
    """False for stores whose backend expires records by itself (Redis)."""
    return not expires_natively(manager.store)


class Expirer:
    """Calls ``manager.purge_expired()`` every ``interval`` seconds in a thread or a task."""

    def __init__(self, manager: SessionManager, interval: float = 60.0) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.manager = manager
        self.interval = interval
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None
        self._started_by: int | None = None  # the process that started the thread

    @property
    def running(self) -> bool:
        """True while a purge thread or task is alive."""
        return (self._thread is not None and self._thread.is_alive()) or (self._task is not None and not self._task.done())

    def start(self) -> None:
        """Start a daemon purge thread (idempotent); it is stopped at interpreter exit."""
        with self._lock:
            if not self.running:
                self._stop.clear()
                self._thread = threading.Thread(target=self._loop, name="coatcheck-expirer", daemon=True)
                self._thread.start()
                atexit.register(self.stop)
            self._started_by = os.getpid()

    def ensure_started(self) -> None:
        """Start the purge thread unless this process has started it: what a WSGI app calls on
        every request (a process forked after the start has no thread, and starts its own)."""
        if self._started_by != os.getpid():
            self.start()

    def stop(self) -> None:
        """Stop the purge thread and wait for it."""
        self._stop.set()
        thread, self._thread, self._started_by = self._thread, None, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self.interval + 5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.manager.purge_expired()
            except Exception:
                log.exception("purging expired sessions failed; retrying in %.0f s", self.interval)

    async def astart(self) -> None:
        """Start a purge task on the running asyncio loop (idempotent); under another event loop
        (trio, whose stores all have a sync side), the purge thread of :meth:`start`."""
        loop = _aio.running_asyncio_loop()
        if loop is None:
            self.start()
        elif not self.running:
            self._task = loop.create_task(self._aloop(), name="coatcheck-expirer")

    async def astop(self) -> None:
        """Cancel the purge task (or stop the purge thread) and wait for it."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._thread is not None:
            await _aio.to_thread(self.stop)

    async def _aloop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.manager.apurge_expired()
            except Exception:
                log.exception("purging expired sessions failed; retrying in %.0f s", self.interval)

"""coatcheck's loggers, and the rate limit on the lines a client can cause.

``coatcheck`` gets operational lines (store failures, purges, dropped changes);
``coatcheck.security`` gets security events (malformed, unknown or duplicate session cookies,
corrupt records) at WARNING and INFO, and the sessions' lifecycle (created, rotated, ended) at
INFO. A client decides how many security events it causes, so those lines pass
through :class:`RateLimitedLog`: at most ``burst`` lines per ``window`` seconds per process, then
one line saying how many were suppressed. No line ever holds a raw session ID.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["RateLimitedLog", "log", "security_log"]

log = logging.getLogger("coatcheck")


class RateLimitedLog:
    """A logger wrapper that lets ``burst`` lines through per ``window`` seconds, then counts.

    The first line of the next window reports how many were suppressed. Logging is skipped
    entirely (no formatting, no counting) when the logger would not emit the level.
    """

    def __init__(
        self, logger: logging.Logger, *, burst: int = 100, window: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.logger = logger
        self.burst = burst
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()  # held for a few integer operations, never for I/O
        self._window_start = -window
        self._sent = 0
        self._suppressed = 0

    def __call__(self, level: int, message: str, *args: Any) -> None:
        if not self.logger.isEnabledFor(level):
            return
        now = self._clock()
        with self._lock:
            if now - self._window_start >= self.window:
                suppressed, self._suppressed = self._suppressed, 0
                self._window_start, self._sent = now, 0
            else:
                suppressed = 0
            if self._sent >= self.burst:
                self._suppressed += 1
                return
            self._sent += 1
        if suppressed:
            self.logger.warning("%d security log lines suppressed in the last %.0f s (rate limit)", suppressed, self.window)
        self.logger.log(level, message, *args)


security_log = RateLimitedLog(logging.getLogger("coatcheck.security"))

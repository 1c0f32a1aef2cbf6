"""coatcheck's loggers, and the rate limit on the lines a client can cause.

``coatcheck`` gets operational lines (store failures, purges, dropped changes);
``coatcheck.security`` gets security events (malformed, unknown or duplicate session cookies,
corrupt records) at WARNING and INFO, and the sessions' lifecycle (created, rotated, ended) at
INFO. A client decides how many security events it causes, so those lines pass
through :class:`RateLimitedLog`: at most ``burst`` lines of each kind per ``window`` seconds per
process, then one line saying how many of that kind were suppressed. No line ever holds a raw session ID.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["RateLimitedLog", "log", "security_log"]

log = logging.getLogger("coatcheck")


class _Budget:
    """One kind of line's window: when it started, lines sent in it, lines suppressed."""

    __slots__ = ("sent", "started", "suppressed")

    def __init__(self, started: float) -> None:
        self.started, self.sent, self.suppressed = started, 0, 0


class RateLimitedLog:
    """A logger wrapper that lets ``burst`` lines of each kind (each message template) through
    per ``window`` seconds, then counts, so a flood of one kind (malformed cookies from a bot, or
    busy INFO traffic) never hides another (two live cookies, a corrupt record).

    The next line of a kind after its window reports how many of that kind were suppressed.
    Logging is skipped entirely (no formatting, no counting) when the logger would not emit the
    level.
    """

    def __init__(
        self, logger: logging.Logger, *, burst: int = 100, window: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.logger = logger
        self.burst = burst
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()  # held for a few integer operations, never for I/O
        self._budgets: dict[str, _Budget] = {}  # by message template: a fixed set in the code

    def __call__(self, level: int, message: str, *args: Any) -> None:
        if not self.logger.isEnabledFor(level):
            return
        now = self._clock()
        with self._lock:
            budget = self._budgets.get(message)
            if budget is None:
                budget = self._budgets[message] = _Budget(now)
            suppressed = 0
            if now - budget.started >= self.window:
                suppressed = budget.suppressed
                budget.started, budget.sent, budget.suppressed = now, 0, 0
            if budget.sent >= self.burst:
                budget.suppressed += 1
                return
            budget.sent += 1
        if suppressed:
            self.logger.warning(
                "%d lines like %r were suppressed (at most %d every %.0f s)", suppressed, message, self.burst, self.window
            )
        self.logger.log(level, message, *args)


security_log = RateLimitedLog(logging.getLogger("coatcheck.security"))

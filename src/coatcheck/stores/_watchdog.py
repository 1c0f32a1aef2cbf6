"""A client-side deadline for database round trips whose driver has none (libpq).

``with WATCHDOG.deadline(conn.fileno(), seconds): ...`` watches one blocking call, sync or async.
One daemon thread per process (started on first use, again in a forked child) sleeps until the
earliest deadline; when a call is still waiting then, it shuts its socket down, so the driver's
wait ends at once with a connection error, and the ``with`` block raises :class:`TimeoutError`.

The watchdog shuts down a duplicate of the socket made when the call began, never the caller's
file descriptor number: the driver may close that number (on a lost connection) and the process
reuse it while the call is still watched. The decision "shut down" or "finished first" is taken
under one lock, so a call that left its block is never shut down afterwards.

Cost per call: a dup and a close, and two short lock holds. While calls keep coming the thread
wakes by itself (at the earliest deadline, or a second after it last saw none watched), so a call
rarely needs to wake it; a second after the last call it sleeps until the next one.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
import time
from types import TracebackType

__all__ = ["WATCHDOG", "Watchdog"]

_LINGER = 1.0  # seconds the thread keeps waking by itself after the last watched call ended


class Watchdog:
    """Shuts down the socket of a watched call that outlives its deadline."""

    def __init__(self) -> None:
        self._start_over()

    def _start_over(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._watched: dict[int, tuple[int, float]] = {}  # token -> (duplicated fd, deadline)
        self._calls = 0  # also the next token
        self._wake_at = math.inf
        self._thread: threading.Thread | None = None

    def deadline(self, fd: int, seconds: float) -> _Deadline:
        """A context manager: the block must end within ``seconds`` or its socket is shut down."""
        return _Deadline(self, fd, seconds)

    def _watch(self, fd: int, seconds: float) -> int:
        dup = socket.dup(fd)  # socket.dup and socket.close, unlike os.*, also work on Windows
        deadline = time.monotonic() + seconds
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="coatcheck-watchdog", daemon=True)
                self._thread.start()
            token = self._calls = self._calls + 1
            self._watched[token] = (dup, deadline)
            if deadline < self._wake_at:
                self._wake.notify()
        return token

    def _unwatch(self, token: int) -> bool:
        """Stop watching; True if the deadline passed and the socket was shut down."""
        with self._lock:
            entry = self._watched.pop(token, None)
        if entry is None:
            return True
        socket.close(entry[0])
        return False

    def _loop(self) -> None:
        seen = 0
        with self._lock:
            while True:
                now = time.monotonic()
                for token, (dup, deadline) in list(self._watched.items()):
                    if deadline <= now:
                        del self._watched[token]
                        _shut_down(dup)
                self._wake_at = min((deadline for _, deadline in self._watched.values()), default=math.inf)
                if self._wake_at == math.inf and self._calls != seen:  # calls keep coming: look again
                    self._wake_at = now + _LINGER  # soon rather than be woken by each new call
                seen = self._calls
                self._wake.wait(None if self._wake_at == math.inf else self._wake_at - now)

    def _forked(self) -> None:
        """In a child process: the parent's thread did not come along, and its lock may be held."""
        for dup, _ in self._watched.values():
            socket.close(dup)
        self._start_over()


class _Deadline:
    """One watched call (a class, not a generator: this is on every statement's path)."""

    __slots__ = ("_fd", "_seconds", "_token", "_watchdog")

    def __init__(self, watchdog: Watchdog, fd: int, seconds: float) -> None:
        self._watchdog = watchdog
        self._fd = fd
        self._seconds = seconds
        self._token = -1

    def __enter__(self) -> None:
        self._token = self._watchdog._watch(self._fd, self._seconds)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._watchdog._unwatch(self._token) and (exc is None or isinstance(exc, Exception)):
            # a cancellation (or an exit) that came at the same moment goes on as it is
            raise TimeoutError(f"no reply from the server within {self._seconds:g} s") from exc


def _shut_down(dup: int) -> None:
    """Shut the socket down through ``dup``, and close ``dup``: the caller's fd stays open."""
    try:
        sock = socket.socket(fileno=dup)
    except OSError:  # not a socket after all
        socket.close(dup)
        return
    with sock, contextlib.suppress(OSError):  # OSError: already disconnected
        sock.shutdown(socket.SHUT_RDWR)


WATCHDOG = Watchdog()
if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=WATCHDOG._forked)

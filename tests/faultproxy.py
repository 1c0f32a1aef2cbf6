"""A TCP proxy for fault tests: it sits on 127.0.0.1 between a store and its real server.

* ``cut()``: close every proxied connection and refuse new ones (the listening socket closes).
* ``blackhole()``: accept new connections and never answer; open connections stall.
* ``drop_next_reply()``: forward the next request a client sends, then drop the server's reply
  and close that connection at both ends: the server ran the command, the client never hears of
  it. ``replies_dropped`` counts the replies dropped so far.
* ``restore()``: drop whatever the fault left behind and forward again, on the same port.

One daemon thread runs the proxy. It is bounded: it stops itself after ``lifetime`` seconds, on
``stop()`` or when its ``with`` block ends, and it closes every socket it opened.
"""

from __future__ import annotations

import contextlib
import queue
import selectors
import socket
import threading
import time
from types import TracebackType

__all__ = ["FaultProxy"]


class FaultProxy:
    """Forward ``127.0.0.1:<port>`` to ``target``; break the line on demand."""

    def __init__(self, host: str, port: int, *, lifetime: float = 120.0) -> None:
        self.target = (host, port)
        self.lifetime = lifetime
        self._listener: socket.socket | None = self._listen(0)
        self.port: int = self._listener.getsockname()[1]
        self._mode = "forward"
        self._selector = selectors.DefaultSelector()
        self._peers: dict[socket.socket, socket.socket] = {}  # both directions of each proxied connection
        self._held: list[socket.socket] = []  # accepted while blackholed, never answered
        self._clients: set[socket.socket] = set()  # the client end of each proxied connection
        self._doomed: set[socket.socket] = set()  # server ends whose next reply is dropped
        self._drop_armed = False
        self.replies_dropped = 0
        self._commands: queue.Queue[tuple[str, threading.Event]] = queue.Queue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(target=self._loop, name=f"faultproxy-{self.port}", daemon=True)

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # -- control, from the test's thread -------------------------------------------------------------

    def start(self) -> None:
        """Start forwarding."""
        self._thread.start()

    def cut(self) -> None:
        """Close every connection and refuse new ones."""
        self._command("cut")

    def blackhole(self) -> None:
        """Accept new connections but never answer; stall the open ones."""
        self._command("blackhole")

    def drop_next_reply(self) -> None:
        """Forward the next request, then drop its reply and close its connection."""
        self._command("drop_next_reply")

    def restore(self) -> None:
        """Forward again (connections the fault left behind are closed)."""
        self._command("restore")

    def stop(self) -> None:
        """Stop the proxy and close every socket (idempotent)."""
        if self._thread.is_alive():
            self._command("stop")
            self._thread.join(5.0)
        elif self._thread.ident is None:  # never started: the thread's cleanup never ran
            self._close_listener()
            self._selector.close()
            self._wake_r.close()
        self._wake_w.close()

    def _command(self, name: str) -> None:
        if not self._thread.is_alive():
            raise RuntimeError("the fault proxy is not running (never started, stopped, or past its lifetime)")
        done = threading.Event()
        self._commands.put((name, done))
        self._wake_w.send(b"!")
        if not done.wait(5.0):
            raise RuntimeError(f"the fault proxy did not {name} within 5 s")

    # -- the proxy thread ----------------------------------------------------------------------------

    def _listen(self, port: int) -> socket.socket:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(64)
        listener.setblocking(False)
        return listener

    def _loop(self) -> None:
        deadline = time.monotonic() + self.lifetime
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        assert self._listener is not None
        self._selector.register(self._listener, selectors.EVENT_READ)
        try:
            while (remaining := deadline - time.monotonic()) > 0:
                for key, _ in self._selector.select(min(remaining, 0.5)):
                    if key.fileobj is self._wake_r:
                        if not self._apply_commands():
                            return
                    elif key.fileobj is self._listener:
                        self._accept()
                    else:
                        self._pump(key.fileobj)  # type: ignore[arg-type]
        finally:
            self._drop_connections()
            self._close_listener()
            self._selector.close()
            self._wake_r.close()

    def _apply_commands(self) -> bool:
        with contextlib.suppress(BlockingIOError):
            self._wake_r.recv(1024)
        while not self._commands.empty():
            name, done = self._commands.get_nowait()
            if name == "stop":
                done.set()
                return False
            if name == "drop_next_reply":  # arms a fault; the mode stays
                self._drop_armed = True
                done.set()
                continue
            if name == "cut":
                self._drop_connections()
                self._close_listener()
            elif name == "blackhole":
                for sock in self._peers:
                    self._unregister(sock)
                self._open_listener()
            else:  # restore
                self._drop_armed = False
                self._drop_connections()
                self._open_listener()
            self._mode = "blackhole" if name == "blackhole" else "forward"
            done.set()
        return True

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        if self._mode == "blackhole":
            self._held.append(client)
            return
        try:
            upstream = socket.create_connection(self.target, timeout=2.0)
        except OSError:
            client.close()
            return
        self._clients.add(client)
        for sock, peer in ((client, upstream), (upstream, client)):
            sock.settimeout(5.0)  # bounds sendall below
            self._peers[sock] = peer
            self._selector.register(sock, selectors.EVENT_READ)

    def _pump(self, sock: socket.socket) -> None:
        peer = self._peers.get(sock)
        try:
            data = sock.recv(65536)
            if data and peer is not None and sock not in self._doomed:
                if self._drop_armed and sock in self._clients:
                    self._drop_armed = False
                    self._doomed.add(peer)
                peer.sendall(data)
                return
            if data and sock in self._doomed:  # the reply to drop: close both ends instead
                self.replies_dropped += 1
        except OSError:
            pass
        for end in (sock, peer):
            if end is not None:
                self._peers.pop(end, None)
                self._clients.discard(end)
                self._doomed.discard(end)
                self._unregister(end)
                end.close()

    def _unregister(self, sock: socket.socket) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(sock)

    def _drop_connections(self) -> None:
        for sock in [*self._peers, *self._held]:
            self._unregister(sock)
            sock.close()
        self._peers.clear()
        self._held.clear()
        self._clients.clear()
        self._doomed.clear()

    def _open_listener(self) -> None:
        if self._listener is None:
            self._listener = self._listen(self.port)
            self._selector.register(self._listener, selectors.EVENT_READ)

    def _close_listener(self) -> None:
        if self._listener is not None:
            self._unregister(self._listener)
            self._listener.close()
            self._listener = None

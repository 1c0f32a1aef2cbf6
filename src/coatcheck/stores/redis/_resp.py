"""A lean RESP2 client for one Redis server: the few commands RedisStore sends, sync and async.

Replies have redis-py's shapes (``decode_responses=False``): bulk strings as bytes, integers as
int, arrays as lists, nil as None; hiredis parses them. It needs no redis-py: failures raise its
own :class:`RespError` subclasses, :class:`RespUnavailableError` (a connection error or a
timeout) when the server cannot be used now, :class:`RespReplyError` for an error reply.

* :class:`RespClient` keeps one blocking socket per thread. A command that fails with a
  connection error on a reused socket (a server restart) reconnects and runs once more.
* :class:`AsyncRespClient` keeps one connection per event loop and pipelines every coroutine's
  commands on it. A reply overdue by ``socket_timeout`` fails every pending command and drops
  the connection; the next command reconnects. A lost connection does the same, except that a
  pending command that found it already open runs once more, on a new connection.

The server may have run a command whose reply was lost, so a retried command must be safe to
run twice: RedisStore sends only such commands (its scripts are idempotent).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import socket
import ssl
import threading
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, cast

import hiredis

__all__ = [
    "AsyncRespClient",
    "RespArgumentError",
    "RespClient",
    "RespConnectionError",
    "RespError",
    "RespNoScriptError",
    "RespProtocolError",
    "RespReplyError",
    "RespTimeoutError",
    "RespUnavailableError",
]

Arg = bytes | str | int | float
MAX_PENDING = 10_000  # async round trips (a command or a pipeline) in flight on one connection; more fail at once


class RespError(Exception):
    """Base of the lean client's errors."""


class RespUnavailableError(RespError):
    """Redis cannot be used now (the store raises ``StoreUnavailableError`` from it)."""


class RespConnectionError(RespUnavailableError):
    """Refused, lost or unusable connection; also a server that is loading (``LOADING``), read-only
    (``READONLY``, a failover), down (``MASTERDOWN``), refusing the credentials or full of clients."""


class RespTimeoutError(RespUnavailableError):
    """No connection within ``socket_connect_timeout`` or no reply within ``socket_timeout``."""


class RespProtocolError(RespError):
    """The server's bytes are not RESP (the async client then drops the connection)."""


class RespReplyError(RespError):
    """An error reply (``WRONGTYPE``, ``ERR``, ``NOPERM``, ``OOM``, ...)."""


class RespNoScriptError(RespReplyError):
    """``EVALSHA`` of a script the server does not hold (the client then sends ``EVAL``)."""


class RespArgumentError(RespError, TypeError):
    """An argument that is not a Redis argument (bool, None, a container)."""


_UNAVAILABLE_CODES = frozenset({"LOADING", "READONLY", "MASTERDOWN", "NOAUTH", "WRONGPASS"})


_forks = 0  # bumped in a forked child: the sockets it inherited are its parent's


def _forked() -> None:
    global _forks
    _forks += 1


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_forked)


def _error(message: str) -> Exception:
    code = message.split(" ", 1)[0]
    if code in _UNAVAILABLE_CODES or message.startswith("ERR max number of clients reached"):
        return RespConnectionError(message)
    return RespNoScriptError(message) if code == "NOSCRIPT" else RespReplyError(message)


def _reader() -> hiredis.Reader:
    return hiredis.Reader(protocolError=RespProtocolError, replyError=_error)


def pack(*args: Arg) -> bytes:
    """One command as a RESP array of bulk strings (str as UTF-8, numbers as their decimal text).

    hiredis packs in C, about 2.5x faster than building the bytes in Python.
    """
    try:
        return hiredis.pack_command(args)  # type: ignore[arg-type,no-any-return]  # its stub: a 1-tuple
    except TypeError as exc:  # bool, None, containers: not a Redis argument
        raise RespArgumentError(f"invalid Redis argument: {exc}") from None


def _raise_errors(replies: list[Any]) -> list[Any]:
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


class _Commands:
    """The commands, over ``_command`` (run it, return its coroutine, or queue it)."""

    def _command(self, *args: Arg) -> Any:
        raise NotImplementedError

    def hmget(self, key: Arg, fields: Sequence[Arg]) -> Any:
        return self._command(b"HMGET", key, *fields)

    def get(self, key: Arg) -> Any:
        return self._command(b"GET", key)

    def delete(self, *keys: Arg) -> Any:
        return self._command(b"DEL", *keys)

    def zrem(self, key: Arg, *members: Arg) -> Any:
        return self._command(b"ZREM", key, *members)

    def zrange(self, key: Arg, start: int, stop: int) -> Any:
        return self._command(b"ZRANGE", key, start, stop)

    def scan(self, cursor: int, *, match: Arg, count: int) -> Any:
        return self._command(b"SCAN", cursor, b"MATCH", match, b"COUNT", count)


class Pipeline(_Commands):
    """Commands queued, then sent at once by ``execute()`` (not a transaction)."""

    def __init__(self, execute: Callable[[bytes, int], Any]) -> None:
        self._execute = execute
        self._commands: list[bytes] = []

    def _command(self, *args: Arg) -> Pipeline:
        self._commands.append(pack(*args))
        return self

    def execute(self) -> Any:
        """The replies in order (awaitable on the async client); raises the first error reply."""
        return self._execute(b"".join(self._commands), len(self._commands))


class Script:
    """``script(keys=[...], args=[...])``: EVALSHA, or EVAL when the server lacks the script."""

    def __init__(self, run: Callable[[Script, Sequence[Arg], Sequence[Arg]], Any], text: str) -> None:
        self.text, self.sha, self._run = text, hashlib.sha1(text.encode()).hexdigest(), run  # noqa: S324 (Redis's script ID)

    def __call__(self, keys: Sequence[Arg] = (), args: Sequence[Arg] = ()) -> Any:
        return self._run(self, keys, args)


class _Client(_Commands):
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 6379,
        *,
        path: str | None = None,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        client_name: str | None = None,
        socket_timeout: float = 1.0,
        socket_connect_timeout: float = 1.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host, self.port, self.path, self.db, self.ssl_context = host, port, path, db, ssl_context
        self.socket_timeout, self.socket_connect_timeout = socket_timeout, socket_connect_timeout
        self.where = path or f"{host}:{port}"  # for error messages: never the password
        setup: list[tuple[Arg, ...]] = [("AUTH", *([username] if username else []), password)] if password is not None else []
        setup += [("CLIENT", "SETNAME", client_name)] if client_name else []
        setup += [("SELECT", db)] if db else []
        self._setup, self._setup_count = b"".join(pack(*command) for command in setup), len(setup)

    def _execute(self, payload: bytes, count: int) -> Any:
        raise NotImplementedError

    def _script(self, script: Script, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        raise NotImplementedError

    def register_script(self, text: str) -> Script:
        return Script(self._script, text)

    def pipeline(self, transaction: bool = False) -> Pipeline:
        return Pipeline(self._execute)


class _Connection:
    """One thread's blocking socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.reader, self.thread, self.closed, self.forks = sock, _reader(), threading.current_thread(), False, _forks

    def roundtrip(self, payload: bytes, count: int) -> list[Any]:
        """Send ``payload``, read ``count`` replies (error replies among them, as exceptions)."""
        try:
            self.sock.sendall(payload)
            replies: list[Any] = []
            while len(replies) < count:
                reply = self.reader.gets()
                if reply is not False:
                    replies.append(reply)
                elif data := self.sock.recv(65536):
                    self.reader.feed(data)
                else:
                    raise RespConnectionError("Connection closed by server.")
            return replies
        except TimeoutError:
            raise RespTimeoutError("Timeout reading from Redis") from None
        except OSError as exc:
            raise RespConnectionError(f"Error talking to Redis: {exc}") from exc

    def close(self) -> None:
        self.closed = True
        self.sock.close()


class RespClient(_Client):
    """Sync client: one socket per thread, opened on first use; ``close()`` closes them all."""

    def __init__(self, host: str = "127.0.0.1", port: int = 6379, **options: Any) -> None:
        super().__init__(host, port, **options)
        self._local, self._lock = threading.local(), threading.Lock()
        self._connections: list[_Connection] = []  # every thread's, for close()

    def _connect(self) -> _Connection:
        sock: socket.socket | None = None
        try:
            if self.path is None:
                sock = socket.create_connection((self.host, self.port), self.socket_connect_timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            else:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(self.socket_connect_timeout)
                sock.connect(self.path)
            if self.ssl_context is not None:
                sock = self.ssl_context.wrap_socket(sock, server_hostname=self.host)
        except OSError as exc:
            if sock is not None:
                sock.close()
            kind = RespTimeoutError if isinstance(exc, TimeoutError) else RespConnectionError
            raise kind(f"Error connecting to {self.where}: {exc}") from exc
        sock.settimeout(self.socket_timeout)
        connection = _Connection(sock)
        try:
            _raise_errors(connection.roundtrip(self._setup, self._setup_count) if self._setup_count else [])
        except BaseException:
            connection.close()
            raise
        with self._lock:  # forget the sockets of threads that ended (or of the parent process)
            for old in [c for c in self._connections if not c.thread.is_alive() or c.forks != _forks]:
                old.close()
                self._connections.remove(old)
            self._connections.append(connection)
        self._local.connection = connection
        return connection

    def _attempt(self, connection: _Connection, payload: bytes, count: int) -> list[Any]:
        try:
            return connection.roundtrip(payload, count)
        except BaseException:
            connection.close()
            with self._lock:
                if connection in self._connections:
                    self._connections.remove(connection)
            raise

    def _roundtrip(self, payload: bytes, count: int) -> list[Any]:
        connection: _Connection | None = getattr(self._local, "connection", None)
        if connection is None or connection.closed or connection.forks != _forks:
            return self._attempt(self._connect(), payload, count)
        try:
            return self._attempt(connection, payload, count)
        except RespConnectionError:  # a stale socket (the server restarted): once more, on a new one
            return self._attempt(self._connect(), payload, count)

    def _execute(self, payload: bytes, count: int) -> list[Any]:
        return _raise_errors(self._roundtrip(payload, count))

    def _command(self, *args: Arg) -> Any:
        return self._execute(pack(*args), 1)[0]

    def _script(self, script: Script, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        try:
            return self._command(b"EVALSHA", script.sha, len(keys), *keys, *args)
        except RespNoScriptError:
            return self._command(b"EVAL", script.text, len(keys), *keys, *args)

    def ping(self) -> bool:
        return bool(self._command(b"PING") == b"PONG")

    def close(self) -> None:
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()


class _Protocol(asyncio.Protocol):
    """One multiplexed connection: replies resolve the pending futures in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.loop, self.timeout, self.broken = loop, timeout, False
        self.transport: asyncio.Transport | None = None
        self._reader = _reader()
        # (reply future, deadline, replies it gathers or None for one), one per round trip, in order
        self._pending: deque[tuple[asyncio.Future[Any], float, int | None]] = deque()
        self._gathered: list[Any] = []  # the replies so far of the pipeline at the head of _pending
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._outgoing: list[bytes] = []  # commands written together at the end of this loop pass

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RespConnectionError, "Connection to Redis lost.")

    def send(self, payload: bytes, replies: int | None = None) -> asyncio.Future[Any]:
        """Queue ``payload``: one command (its reply) or ``replies`` commands (the list of theirs).

        The future fails ``timeout`` from now. Commands queued in one pass of the event loop
        leave in one write (one system call for many concurrent requests).
        """
        if self.broken or self.transport is None or self.transport.is_closing():
            raise RespConnectionError("Connection to Redis lost.")
        if len(self._pending) >= MAX_PENDING:
            raise RespConnectionError(f"more than {MAX_PENDING} Redis round trips pending")
        if not self._outgoing:
            self.loop.call_soon(self._flush)
        self._outgoing.append(payload)
        future = self.loop.create_future()
        self._pending.append((future, self.loop.time() + self.timeout, replies))
        if self._timer is None:
            self._arm()
        return future

    def _flush(self) -> None:
        outgoing, self._outgoing = self._outgoing, []
        if outgoing and not self.broken and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(outgoing))

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while self._pending:
            try:
                reply = self._reader.gets()
            except RespProtocolError as exc:
                self.fail(RespConnectionError, f"Protocol error: {exc}")
                return
            if reply is False:
                return
            future, _, replies = self._pending[0]
            if replies is not None:  # a pipeline: its replies come together
                self._gathered.append(reply)
                if len(self._gathered) < replies:
                    continue
                reply, self._gathered = self._gathered, []
            self._pending.popleft()
            if not future.done():  # else cancelled: its reply is dropped
                future.set_result(reply)

    def _arm(self) -> None:
        """One timer at a time, at the oldest pending command's deadline."""
        self._timer_at = self._pending[0][1]
        self._timer = self.loop.call_at(self._timer_at, self._expire)

    def _expire(self) -> None:
        self._timer = None
        if self._pending and self._pending[0][1] <= self._timer_at:
            self.fail(RespTimeoutError, "Timeout reading from Redis")
        elif self._pending:
            self._arm()

    def fail(self, kind: type[Exception], message: str) -> None:
        """Fail every pending command with ``kind`` and close the connection."""
        self.broken = True
        self._outgoing = []
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.transport is not None:
            self.transport.abort()
        pending, self._pending, self._gathered = self._pending, deque(), []
        for future, _, _ in pending:
            if not future.done():
                future.set_exception(kind(message))


@dataclass
class _Link:
    """One event loop's connection, and its connect in flight."""

    protocol: _Protocol | None = None
    connecting: asyncio.Task[_Protocol] | None = None


class AsyncRespClient(_Client):
    """Async client: one pipelined connection per event loop, opened on first use."""

    def __init__(self, host: str = "127.0.0.1", port: int = 6379, **options: Any) -> None:
        super().__init__(host, port, **options)
        self._links: dict[asyncio.AbstractEventLoop, _Link] = {}
        self._lock = threading.Lock()

    async def _connect(self) -> _Protocol:
        """This loop's connection, opened once however many commands wait for it."""
        loop = asyncio.get_running_loop()
        link = self._links.get(loop)
        if link is None:
            with self._lock:  # forget the links of closed loops
                self._links = {other: old for other, old in self._links.items() if not other.is_closed()}
                link = self._links.setdefault(loop, _Link())
        if link.protocol is not None and not link.protocol.broken:
            return link.protocol
        if link.connecting is None:
            link.connecting = loop.create_task(self._open(loop))
            link.connecting.add_done_callback(functools.partial(self._opened, link))
        return await asyncio.shield(link.connecting)

    @staticmethod
    def _opened(link: _Link, task: asyncio.Task[_Protocol]) -> None:
        link.connecting = None
        if not task.cancelled() and task.exception() is None:
            link.protocol = task.result()

    async def _open(self, loop: asyncio.AbstractEventLoop) -> _Protocol:
        def factory() -> _Protocol:
            return _Protocol(loop, self.socket_timeout)

        tls: dict[str, Any] = {"ssl": self.ssl_context, "server_hostname": self.host} if self.ssl_context is not None else {}
        try:
            if self.path is None:
                opening = loop.create_connection(factory, self.host, self.port, **tls)
            else:
                opening = loop.create_unix_connection(factory, self.path, **tls)
            _, protocol = await asyncio.wait_for(opening, self.socket_connect_timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            kind = RespTimeoutError if isinstance(exc, asyncio.TimeoutError) else RespConnectionError
            raise kind(f"Error connecting to {self.where}: {exc or 'timed out'}") from exc
        try:
            _raise_errors(await protocol.send(self._setup, self._setup_count) if self._setup_count else [])
        except BaseException:
            protocol.fail(RespConnectionError, "Redis connection setup failed.")
            raise
        return protocol

    async def _roundtrip(self, payload: bytes, replies: int | None) -> Any:
        """Send ``payload``: one command's reply (an error reply raised) or, for ``replies``
        commands, the list of theirs (error replies in it as exceptions)."""
        link = self._links.get(asyncio.get_running_loop())
        protocol = None if link is None else link.protocol
        if protocol is None or protocol.broken:
            reply = await (await self._connect()).send(payload, replies)
        else:
            try:
                reply = await protocol.send(payload, replies)
            except RespConnectionError:  # lost before this command's reply: once more, on a new connection
                reply = await (await self._connect()).send(payload, replies)
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def _execute(self, payload: bytes, count: int) -> list[Any]:
        return _raise_errors(await self._roundtrip(payload, count)) if count else []

    def _command(self, *args: Arg) -> Coroutine[Any, Any, Any]:
        return self._roundtrip(pack(*args), None)  # the coroutine itself: one less per command

    async def _script(self, script: Script, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        try:
            return await self._roundtrip(pack(b"EVALSHA", script.sha, len(keys), *keys, *args), None)
        except RespNoScriptError:
            return await self._roundtrip(pack(b"EVAL", script.text, len(keys), *keys, *args), None)

    async def ping(self) -> bool:
        return bool(await self._command(b"PING") == b"PONG")

    async def aclose(self) -> None:
        """Close this event loop's connection (each loop closes its own before it ends)."""
        link = self._links.pop(asyncio.get_running_loop(), None)
        if link is not None and link.connecting is not None:
            await asyncio.wait([link.connecting])
        if link is not None and link.protocol is not None:
            link.protocol.fail(RespConnectionError, "Redis client closed.")
            await asyncio.sleep(0)  # let the transport finish closing

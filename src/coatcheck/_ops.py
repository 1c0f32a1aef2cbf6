"""The operations a flow yields, and the one pair of drivers that runs any flow.

A flow is a generator: it yields one operation at a time and receives its result, so its logic
(what to read, what to write, how to merge a conflict) exists once and runs unchanged against a
sync target (:func:`drive`) or an async one (:func:`adrive`). An operation is a small typed value
that knows how to run itself against its target: ``op.run(target)`` in sync code,
``await op.arun(target)`` in async code, so the drivers dispatch by type, never by a method name
held in a string, and mypy checks each operation's arguments where it is built.

The store operations here (:class:`Load`, :class:`Save`, ...) run against a store; a store's
own I/O steps (SQL statements, Redis commands) are operations of the same kind that run against
a connection or a client, driven by the same two functions. :class:`Pause` (the backoff between
compare-and-set retries) runs against any target.

Every operation passes through one place, the driver, where an ``observe`` hook (None by
default, at no cost) sees each operation's kind, duration and outcome: the seam for metrics and
tracing.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from . import _aio
from ._logs import log
from ._record import Record

__all__ = [
    "Capabilities",
    "Close",
    "Delete",
    "DeleteExpired",
    "DeleteUser",
    "ListUser",
    "Load",
    "Observer",
    "Operation",
    "Pause",
    "Rotate",
    "Save",
    "Scan",
    "Touch",
    "adrive",
    "drive",
    "one",
]

T = TypeVar("T")
R_co = TypeVar("R_co", covariant=True)


class Operation(Protocol[R_co]):
    """What a flow yields: run against a target, sync or async, it gives a result of type ``R``."""

    def run(self, target: Any) -> R_co: ...

    def arun(self, target: Any) -> Awaitable[R_co]: ...


Capabilities = frozenset[type]
"""The optional operations a store offers in one flavour (:class:`Touch`, :class:`Rotate`,
:class:`DeleteUser`, :class:`ListUser`, :class:`Scan`): flows use the store's own ones where it has them."""

Observer = Callable[[Operation[Any], float, BaseException | None], None]
"""Called after each operation with the operation, its duration in seconds and the exception
it raised, if any (never for :class:`Pause`)."""


# -- store operations: the store contract, one class per method -----------------------------------


@dataclass(slots=True)
class Load:
    """``store.load(key)``: the live record, or None."""

    key: str

    def run(self, store: Any) -> Record | None:
        return store.load(self.key)  # type: ignore[no-any-return]

    def arun(self, store: Any) -> Awaitable[Record | None]:
        return store.aload(self.key)  # type: ignore[no-any-return]


@dataclass(slots=True)
class Save:
    """``store.save(key, record, expected_version=...)``: create (None) or compare-and-set."""

    key: str
    record: Record
    expected_version: int | None

    def run(self, store: Any) -> bool:
        return store.save(self.key, self.record, expected_version=self.expected_version)  # type: ignore[no-any-return]

    def arun(self, store: Any) -> Awaitable[bool]:
        return store.asave(self.key, self.record, expected_version=self.expected_version)  # type: ignore[no-any-return]


@dataclass(slots=True)
class Delete:
    """``store.delete(key)``."""

    key: str

    def run(self, store: Any) -> None:
        store.delete(self.key)

    def arun(self, store: Any) -> Awaitable[None]:
        return store.adelete(self.key)  # type: ignore[no-any-return]


@dataclass(slots=True)
class DeleteExpired:
    """``store.delete_expired(now)``: how many records were deleted."""

    now: float

    def run(self, store: Any) -> int:
        return int(store.delete_expired(self.now))

    def arun(self, store: Any) -> Awaitable[int]:
        return store.adelete_expired(self.now)  # type: ignore[no-any-return]


@dataclass(slots=True)
class Close:
    """``store.close()``."""

    def run(self, store: Any) -> None:
        store.close()

    def arun(self, store: Any) -> Awaitable[None]:
        return store.aclose()  # type: ignore[no-any-return]


@dataclass(slots=True)
class Touch:
    """``store.touch(key, expires_at)`` (capability :class:`~coatcheck.stores.SupportsTouch`)."""

    key: str
    expires_at: float

    def run(self, store: Any) -> bool | None:
        return store.touch(self.key, self.expires_at)  # type: ignore[no-any-return]

    def arun(self, store: Any) -> Awaitable[bool | None]:
        return store.atouch(self.key, self.expires_at)  # type: ignore[no-any-return]


@dataclass(slots=True)
class Rotate:
    """``store.rotate(old_key, new_key, record, expected_version=...)`` (capability
    :class:`~coatcheck.stores.SupportsRotate`)."""

    old_key: str
    new_key: str
    record: Record
    expected_version: int

    def run(self, store: Any) -> bool:
        return store.rotate(self.old_key, self.new_key, self.record, expected_version=self.expected_version)  # type: ignore[no-any-return]

    def arun(self, store: Any) -> Awaitable[bool]:
        return store.arotate(self.old_key, self.new_key, self.record, expected_version=self.expected_version)  # type: ignore[no-any-return]


@dataclass(slots=True)
class DeleteUser:
    """``store.delete_user(user_id)`` (capability :class:`~coatcheck.stores.SupportsUserIndex`)."""

    user_id: str

    def run(self, store: Any) -> int:
        return int(store.delete_user(self.user_id))

    def arun(self, store: Any) -> Awaitable[int]:
        return store.adelete_user(self.user_id)  # type: ignore[no-any-return]


@dataclass(slots=True)
class ListUser:
    """``store.list_user(user_id)`` (capability :class:`~coatcheck.stores.SupportsUserIndex`)."""

    user_id: str

    def run(self, store: Any) -> list[tuple[str, Record]]:
        return store.list_user(self.user_id)  # type: ignore[no-any-return]

    def arun(self, store: Any) -> Awaitable[list[tuple[str, Record]]]:
        return store.alist_user(self.user_id)  # type: ignore[no-any-return]


@dataclass(slots=True)
class Scan:
    """``store.scan(cursor, limit)`` (capability :class:`~coatcheck.stores.SupportsScan`): a page
    of ``(key, record)`` pairs and the cursor of the next one (None after the last)."""

    cursor: str | None
    limit: int

    def run(self, store: Any) -> tuple[list[tuple[str, Record]], str | None]:
        return store.scan(self.cursor, self.limit)  # type: ignore[no-any-return]

    def arun(self, store: Any) -> Awaitable[tuple[list[tuple[str, Record]], str | None]]:
        return store.ascan(self.cursor, self.limit)  # type: ignore[no-any-return]


@dataclass(slots=True)
class Pause:
    """Wait ``seconds`` (a backoff): ``time.sleep`` in sync code, the event loop's sleep in async."""

    seconds: float

    def run(self, target: Any) -> None:
        time.sleep(self.seconds)

    def arun(self, target: Any) -> Awaitable[None]:
        return _aio.sleep(self.seconds)


CORE_OPERATIONS: Capabilities = frozenset({Load, Save, Delete, DeleteExpired, Close})
"""The operations every store has (the five core methods)."""

NOTHING_INLINE: Capabilities = frozenset()


def one(op: Operation[T]) -> Generator[Operation[T], Any, T]:
    """A flow of the one operation ``op`` that returns its result."""
    result: T = yield op
    return result


# -- the drivers: the only places that differ between sync and async ---------------------------------
#
# Only ``next(flow)``, ``flow.send(...)`` and ``flow.throw(...)`` sit inside the ``try`` that takes
# StopIteration as the flow's return: a StopIteration that escapes an operation is thrown into the
# flow, where it becomes a RuntimeError (PEP 479), never a result. An operation's exception is
# raised inside the flow, at its ``yield``, so a flow (or a flow wrapping it) may catch it.


def drive(flow: Generator[Operation[Any], Any, T], target: Any, observe: Observer | None = None) -> T:
    """Run ``flow`` against a sync ``target`` (a store, a cursor, a client)."""
    try:
        op = next(flow)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    while True:
        try:
            result, error = (op.run(target) if observe is None else _observed(op, target, observe)), None
        except Exception as exc:  # raised inside the flow, where it yielded the operation
            result, error = None, exc
        try:
            op = flow.send(result) if error is None else flow.throw(error)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]


async def adrive(
    flow: Generator[Operation[Any], Any, T],
    target: Any,
    observe: Observer | None = None,
    *,
    inline: Capabilities = NOTHING_INLINE,
) -> T:
    """Run ``flow`` against an async ``target``. The operations whose type is in ``inline`` (for
    a store whose sync methods never block: the ones it has sync methods for) run through the
    sync side, without a coroutine each; every other operation (a pause, a legacy reader's I/O)
    is awaited."""
    try:
        op = next(flow)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    while True:
        error = None
        try:
            if observe is not None:
                result = await _aobserved(op, target, observe, inline)
            elif type(op) in inline:
                result = op.run(target)
            else:
                result = await op.arun(target)
        except Exception as exc:  # raised inside the flow, where it yielded the operation
            result, error = None, exc
        try:
            op = flow.send(result) if error is None else flow.throw(error)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]


def _observed(op: Operation[Any], target: Any, observe: Observer) -> Any:
    if type(op) is Pause:
        return op.run(target)
    started = time.perf_counter()
    try:
        result = op.run(target)
    except BaseException as exc:
        _tell(observe, op, time.perf_counter() - started, exc)
        raise
    _tell(observe, op, time.perf_counter() - started, None)
    return result


async def _aobserved(op: Operation[Any], target: Any, observe: Observer, inline: Capabilities) -> Any:
    if type(op) is Pause:
        return await op.arun(target)
    started = time.perf_counter()
    try:
        result = op.run(target) if type(op) in inline else await op.arun(target)
    except BaseException as exc:
        _tell(observe, op, time.perf_counter() - started, exc)
        raise
    _tell(observe, op, time.perf_counter() - started, None)
    return result


def _tell(observe: Observer, op: Operation[Any], seconds: float, error: BaseException | None) -> None:
    """Call the observer; its own failure is logged and changes nothing for the request."""
    try:
        observe(op, seconds, error)
    except Exception:
        log.exception("the store operation observer failed on %s", type(op).__name__)

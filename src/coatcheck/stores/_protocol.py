"""The store contract: a store maps a key to a :class:`Record` and knows nothing else.

The key is ``sha256(session_id)`` in hex, never the cookie value. A store never decodes
``Record.data``. Missing and expired records read as ``None``; only system failures raise, as
:class:`~coatcheck.errors.StoreError`.

``save(key, record, expected_version=None)`` creates the record only if no live record has that
key; ``expected_version=N`` replaces the record only if the stored version is ``N``, keeping the
later of the stored and the new expiry (an out-of-order refresh, or servers whose clocks differ,
never shortens a session). Both return ``False`` when the condition fails: that is normal
control flow, not an error.

Optional capabilities, each a Protocol below that the manager checks when it is built:
:class:`SupportsTouch` (refresh an expiry without rewriting the data), :class:`SupportsRotate`
(an atomic new ID), :class:`SupportsUserIndex` (``revoke_user`` and session listings) and
:class:`SupportsScan` (every record, a page at a time: ``SessionManager.scan`` and the operator's
``coatcheck stats``), with their async twins. A store without the first three still works: the
manager does the same with the core methods; without a scan, only what needs one is refused.

Async stores implement the same methods with an ``a`` prefix (``aload``, ``asave``, ...). One
class may implement both flavours. Three flags (class attributes, read by :func:`nonblocking`,
:func:`expires_natively` and :func:`asyncio_only` below) say more about a store.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .._record import Record

__all__ = [
    "AsyncStore",
    "Record",
    "Store",
    "SupportsAsyncRotate",
    "SupportsAsyncScan",
    "SupportsAsyncTouch",
    "SupportsAsyncUserIndex",
    "SupportsRotate",
    "SupportsScan",
    "SupportsTouch",
    "SupportsUserIndex",
    "asyncio_only",
    "expires_natively",
    "implements",
    "nonblocking",
]


@runtime_checkable
class Store(Protocol):
    """The synchronous store contract."""

    def load(self, key: str) -> Record | None: ...
    def save(self, key: str, record: Record, *, expected_version: int | None) -> bool: ...
    def delete(self, key: str) -> None: ...
    def delete_expired(self, now: float) -> int: ...
    def close(self) -> None: ...


@runtime_checkable
class AsyncStore(Protocol):
    """The asynchronous store contract: :class:`Store` with ``a``-prefixed coroutines."""

    async def aload(self, key: str) -> Record | None: ...
    async def asave(self, key: str, record: Record, *, expected_version: int | None) -> bool: ...
    async def adelete(self, key: str) -> None: ...
    async def adelete_expired(self, now: float) -> int: ...
    async def aclose(self) -> None: ...


@runtime_checkable
class SupportsTouch(Protocol):
    """Moves a live record's expiry forward without rewriting its data: False when no live
    record moved (deleted meanwhile, or refreshed further already); None counts as moved."""

    def touch(self, key: str, expires_at: float) -> bool | None: ...


@runtime_checkable
class SupportsAsyncTouch(Protocol):
    """:class:`SupportsTouch` for async stores."""

    async def atouch(self, key: str, expires_at: float) -> bool | None: ...


@runtime_checkable
class SupportsRotate(Protocol):
    """Atomically deletes ``old_key`` (only at version ``expected_version``) and creates
    ``new_key`` (only if absent); False if either check fails."""

    def rotate(self, old_key: str, new_key: str, record: Record, *, expected_version: int) -> bool: ...


@runtime_checkable
class SupportsAsyncRotate(Protocol):
    """:class:`SupportsRotate` for async stores."""

    async def arotate(self, old_key: str, new_key: str, record: Record, *, expected_version: int) -> bool: ...


@runtime_checkable
class SupportsUserIndex(Protocol):
    """The per-user index behind ``revoke_user`` ("log out everywhere") and session listings."""

    def delete_user(self, user_id: str) -> int: ...
    def list_user(self, user_id: str) -> list[tuple[str, Record]]: ...


@runtime_checkable
class SupportsAsyncUserIndex(Protocol):
    """:class:`SupportsUserIndex` for async stores."""

    async def adelete_user(self, user_id: str) -> int: ...
    async def alist_user(self, user_id: str) -> list[tuple[str, Record]]: ...


ScanPage = tuple[list[tuple[str, Record]], str | None]
"""What a scan returns: up to about ``limit`` ``(key, record)`` pairs, and the cursor of the next
page (None after the last)."""


@runtime_checkable
class SupportsScan(Protocol):
    """Every record the store holds, a page at a time: ``scan(None, limit)`` starts, and each
    page's cursor continues, until it is None. A page holds up to about ``limit`` records, maybe
    none while the cursor is not None. A key present for the whole scan is returned at least
    once, whatever is written or deleted meanwhile; one written or deleted meanwhile may or may
    not be. The records are raw, as ``load`` would return them but unfiltered: a store that
    purges by itself (Redis TTLs) returns only live ones; the others include the expired records
    not purged yet, and a store returns whatever it holds (the tombstones and legacy claims the
    manager writes too): the manager judges what is a live session. A cursor is an opaque string
    that only the store that made it understands."""

    def scan(self, cursor: str | None, limit: int) -> ScanPage: ...


@runtime_checkable
class SupportsAsyncScan(Protocol):
    """:class:`SupportsScan` for async stores."""

    async def ascan(self, cursor: str | None, limit: int) -> ScanPage: ...


_MEMBERS: dict[type, tuple[str, ...]] = {
    Store: ("load", "save", "delete", "delete_expired", "close"),
    AsyncStore: ("aload", "asave", "adelete", "adelete_expired", "aclose"),
    SupportsTouch: ("touch",),
    SupportsAsyncTouch: ("atouch",),
    SupportsRotate: ("rotate",),
    SupportsAsyncRotate: ("arotate",),
    SupportsUserIndex: ("delete_user", "list_user"),
    SupportsAsyncUserIndex: ("adelete_user", "alist_user"),
    SupportsScan: ("scan",),
    SupportsAsyncScan: ("ascan",),
}


def implements(store: object, protocol: type) -> bool:
    """Whether ``store`` has every method of ``protocol`` (one of the protocols above), each
    callable on the object itself: what ``isinstance`` would say, except that a method set to
    None (a capability turned off) counts as missing and a proxy's ``__getattr__`` is honoured."""
    return all(callable(getattr(store, name, None)) for name in _MEMBERS[protocol])


# -- flags: class attributes a store may set (each False when absent) -----------------------------


def nonblocking(store: object) -> bool:
    """``nonblocking = True``: the sync methods never block (no I/O, no waiting lock), so the
    manager's async side calls them without a coroutine each (the memory store)."""
    return getattr(store, "nonblocking", False) is True


def expires_natively(store: object) -> bool:
    """``expires_natively = True``: the backend drops expired records itself (Redis TTLs), so no
    purge needs to run."""
    return getattr(store, "expires_natively", False) is True


def asyncio_only(store: object) -> bool:
    """``asyncio_only = True``: the async side needs asyncio's event loop (its drivers are
    asyncio's); under another loop (trio) the store refuses to start, with a clear error."""
    return getattr(store, "asyncio_only", False) is True

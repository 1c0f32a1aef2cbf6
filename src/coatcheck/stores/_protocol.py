"""The store contract: a store maps a key to a :class:`Record` and knows nothing else.

The key is ``sha256(session_id)`` in hex, never the cookie value. A store never decodes
``Record.data``. Missing and expired records read as ``None``; only system failures raise, as
:class:`~coatcheck.errors.StoreError`.

``save(key, record, expected_version=None)`` creates the record only if no live record has that
key; ``expected_version=N`` replaces the record only if the stored version is ``N``, keeping the
later of the stored and the new expiry (an out-of-order refresh, or servers whose clocks differ,
never shortens a session). Both return ``False`` when the condition fails: that is normal
control flow, not an error.

Optional capabilities (the manager detects them when it is built):

* ``touch(key, expires_at)``: move a live record's expiry forward without rewriting its data;
  return False when no live record moved (deleted meanwhile, or already refreshed further), so
  no cookie is sent for it (None, from a store that cannot tell, counts as moved).
* ``rotate(old_key, new_key, record, expected_version=N)``: atomically delete ``old_key`` (only
  at version ``N``) and create ``new_key`` (only if absent); ``False`` if either check fails.
* ``delete_user(user_id)`` / ``list_user(user_id)``: the per-user index behind
  ``revoke_user`` and "your devices" pages.

Async stores implement the same methods with an ``a`` prefix (``aload``, ``asave``, ...). One
class may implement both flavours; one whose sync methods never block (no I/O, no waiting lock)
may set ``nonblocking = True`` so the manager's async side calls them without a coroutine.
A store whose async side needs asyncio (its drivers are asyncio's) sets ``asyncio_only = True``:
under another event loop (trio, which Starlette can run on) it then refuses to start, with a
clear error, instead of failing on a request.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol, runtime_checkable

__all__ = ["AsyncStore", "Record", "Store"]


class Record(NamedTuple):
    """One stored session: opaque encoded data, expiry (unix seconds), CAS version, owner.

    Immutable (a named tuple: it is built on every request, and a tuple is the cheapest
    immutable object Python builds).
    """

    data: bytes
    expires_at: float
    version: int
    user_id: str | None = None


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

"""What the core and the stores both speak of: one stored session, a :class:`Record`."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Record"]


class Record(NamedTuple):
    """One stored session: opaque encoded data, expiry (unix seconds), CAS version, owner.

    Immutable (a named tuple: it is built on every request, and a tuple is the cheapest
    immutable object Python builds).
    """

    data: bytes
    expires_at: float
    version: int
    user_id: str | None = None

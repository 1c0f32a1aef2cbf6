"""Ablations: coatcheck with one of its guarantees taken out of the hot path, to measure what
that guarantee costs a request (``benchmarks.ablation``). Each entry of :data:`ABLATIONS`
replaces the few lines that do the work by what a session layer without the guarantee would
run, in this process only (``BENCH_ABLATE``, comma-separated, applied by the apps before they
build their manager). Nothing here is safe to run for real: an ablated app accepts any cookie
value as an ID, never expires a session, lets a write overwrite a concurrent one, or stores
any size.

- ``strict``: strict mode's ID check. A cookie value is used as an ID without checking that it
  is 43 characters of base64url (coatcheck never adopts an ID it did not issue: the check is
  what refuses a forged or truncated value before it costs a store read).
- ``timeouts``: the idle and absolute timeouts. No deadline is computed, no refresh is ever
  due, and the memory store does not compare a record's expiry with its clock on a read (the
  SQL and Redis stores still compare on the server, which the client's count does not see).
- ``size``: the size limit. A value set in the session is not added to the running estimate
  of the session's size (the record's final ``len`` check, one comparison, stays).
- ``cas``: compare-and-set with per-key merge. The memory store writes without comparing the
  record's version, and the session does not keep what it needs to merge a conflicting write
  key by key (snapshots of the lists and dicts read). On Redis and SQL the version is compared
  by the server, inside the one script or statement a write sends either way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from coatcheck import _cookies, _core
from coatcheck.session import Session
from coatcheck.stores import Record
from coatcheck.stores.memory import MemoryStore

_FOREVER = 2.0**40  # a deadline no request reaches


def _strict() -> None:
    _cookies.is_valid_id = bool  # type: ignore[attr-defined,assignment]


def _timeouts() -> None:
    _core.deadline = lambda config, created_at, now: _FOREVER
    _core._touch_due = lambda stored, config, now: False
    MemoryStore._live = lambda self, key: self._records.get(key)  # type: ignore[method-assign]


def _set_unbounded(self: Session, key: str, value: Any) -> None:
    self._accessed = True
    if not isinstance(key, str):
        raise TypeError(f"session keys must be str, not {type(key).__name__}")
    self._check(key, value)
    dict.__setitem__(self, key, value)
    self._dirty.add(key)
    if self._snapshots:
        self._snapshots.pop(key, None)


def _size() -> None:
    Session.__setitem__ = _set_unbounded  # type: ignore[method-assign]


def _save_unchecked(self: MemoryStore, key: str, record: Record, *, expected_version: int | None) -> bool:
    with self._lock(key):
        self._put(key, record)
    return True


def _get_untracked(self: Session, key: str) -> Any:
    self._accessed = True
    return dict.__getitem__(self, key)


def _cas() -> None:
    MemoryStore.save = _save_unchecked  # type: ignore[method-assign]
    Session.__getitem__ = _get_untracked  # type: ignore[method-assign]
    Session._changed_keys = lambda self: set(self._dirty)  # type: ignore[method-assign]


ABLATIONS: dict[str, Callable[[], None]] = {"strict": _strict, "timeouts": _timeouts, "size": _size, "cas": _cas}


def apply(names: list[str]) -> None:
    """Take the guarantees ``names`` (keys of :data:`ABLATIONS`) out of this process's coatcheck."""
    unknown = set(names) - set(ABLATIONS)
    if unknown:
        raise SystemExit(f"unknown BENCH_ABLATE {sorted(unknown)}; known: {', '.join(ABLATIONS)}")
    for name in names:
        ABLATIONS[name]()

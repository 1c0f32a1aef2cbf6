"""What a session manager measures, once, for every exporter (:mod:`coatcheck.prometheus`,
:mod:`coatcheck.otel`): the metrics, and how the manager's timing hook and events feed them.

An exporter builds one instrument per :class:`Metric` and hands :func:`attach` a function that
records a value on one of them. No label ever holds a session ID, a store key or a user ID.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

from ._ops import Operation
from .events import EventKind, SessionEvent

if TYPE_CHECKING:
    from .manager import SessionManager

__all__ = ["METRICS", "Metric", "Record", "attach"]


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric: ``name`` (an exporter adds its conventions: a ``coatcheck_`` prefix, a unit
    suffix), a counter or a histogram, its unit, what it counts, and its labels."""

    name: str
    kind: Literal["counter", "histogram"]
    unit: Literal["", "seconds", "bytes"]
    description: str
    labels: tuple[str, ...] = ()


OPERATION_SECONDS = Metric(
    "store_operation_duration",
    "histogram",
    "seconds",
    "Time of one store operation run by a session manager.",
    ("store", "operation"),
)
OPERATION_ERRORS = Metric(
    "store_operation_errors",
    "counter",
    "",
    "Store operations that raised, by the exception's class.",
    ("store", "operation", "error"),
)
CREATED = Metric("sessions_created", "counter", "", "New sessions stored for the first time.")
LOADED = Metric("sessions_loaded", "counter", "", "Requests that found their live session in the store.")
REJECTED = Metric(
    "sessions_rejected",
    "counter",
    "",
    "Session cookies that named no live session: unknown (or expired and dropped by the store), expired, corrupt,"
    " unknown_key, unsealed, future or malformed.",
    ("reason",),
)
COMMITS = Metric(
    "commits", "counter", "", "Commits by outcome: saved, touched, deleted, unchanged or dropped (a 5xx).", ("outcome",)
)
EVENTS = Metric(
    "session_events",
    "counter",
    "",
    "Session lifecycle events: login, logout, rotate, revoke, conflict (a commit that gave up), store_error.",
    ("event",),
)
REVOKED = Metric("sessions_revoked", "counter", "", "Sessions ended by revocations (log out everywhere, or one device).")
CONFLICTS = Metric("commit_conflicts", "counter", "", "Compare-and-set conflicts that commits met, merged and retried.")
SIZE = Metric("session_size", "histogram", "bytes", "Encoded size of each session record a commit saved.")

METRICS = (OPERATION_SECONDS, OPERATION_ERRORS, CREATED, LOADED, REJECTED, COMMITS, EVENTS, REVOKED, CONFLICTS, SIZE)

# Store operations take from tens of microseconds (memory) to seconds (a database at its timeout).
SECONDS_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BYTES_BUCKETS = (64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072)

Record = Callable[[Metric, float, tuple[str, ...]], None]
"""An exporter's side: record ``value`` on the instrument of a metric, with these label values."""

_BY_EVENT: dict[str, Metric] = {"create": CREATED, "load": LOADED, "reject": REJECTED, "commit": COMMITS}


@functools.cache
def operation_name(kind: type) -> str:
    """``DeleteExpired`` -> ``delete_expired``: an operation's class named as the store method it
    runs (worked out once per class: it is asked on every store operation)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", kind.__name__).lower()


def attach(manager: SessionManager, record: Record) -> None:
    """Feed :data:`METRICS` from ``manager``: its ``observe`` hook (an observer already there is
    called after this one) and its events."""
    store = type(manager.store).__name__
    earlier = manager.observe

    def observe(op: Operation[Any], seconds: float, error: BaseException | None) -> None:
        name = operation_name(type(op))
        record(OPERATION_SECONDS, seconds, (store, name))
        if error is not None:
            record(OPERATION_ERRORS, 1, (store, name, type(error).__name__))
        if earlier is not None:
            earlier(op, seconds, error)

    def counted(event: SessionEvent) -> None:
        kind = event.kind
        metric = _BY_EVENT.get(kind)
        if metric is not None:
            record(metric, 1, (str(event.detail),) if metric.labels else ())
            if event.size is not None:
                record(SIZE, event.size, ())
        elif kind == "conflict" and isinstance(event.detail, int):
            record(CONFLICTS, event.detail, ())  # merged: the commit went through
        else:
            record(EVENTS, 1, (kind,))
            if kind == "revoke" and isinstance(event.detail, int):
                record(REVOKED, event.detail, ())

    manager.observe = observe
    for kind in get_args(EventKind):  # every kind there is: one added later is counted too
        manager.events._subscribe(kind, counted)

"""Prometheus metrics for a :class:`~coatcheck.SessionManager` (extra ``coatcheck[prometheus]``).

    from coatcheck.prometheus import instrument
    instrument(manager)          # into prometheus_client's default registry

What is counted, named by Prometheus' conventions; no label ever holds a session ID, a store key
or a user ID:

- ``coatcheck_store_operation_duration_seconds{store, operation}``: a histogram of every store
  operation the manager runs (``load``, ``save``, ``touch``, ``rotate``, ...), through the
  drivers' timing hook (:attr:`SessionManager.observe`);
- ``coatcheck_store_operation_errors_total{store, operation, error}``: those that failed, by the
  exception's class;
- ``coatcheck_session_events_total{event}``: logins, logouts, rotations, revocations ("log out
  everywhere") and commits that gave up on concurrent writes, from :mod:`coatcheck.events`;
- ``coatcheck_sessions_revoked_total``: the sessions revocations ended;
- ``coatcheck_commit_conflicts_total``: compare-and-set conflicts that commits met and merged.
"""

from __future__ import annotations

import re
from typing import Any

from ._ops import Operation
from .events import SessionEvent
from .manager import SessionManager

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
except ImportError as exc:  # pragma: no cover - the message is the point
    raise ImportError("coatcheck.prometheus needs prometheus_client: pip install 'coatcheck[prometheus]'") from exc

__all__ = ["Metrics", "instrument"]

# Store operations take from tens of microseconds (memory) to seconds (a database at its timeout).
BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _snake(name: str) -> str:
    """``DeleteExpired`` -> ``delete_expired``: an operation's name as the store method it runs."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Metrics:
    """The collectors, registered in one registry; :func:`instrument` feeds them."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.duration = Histogram(
            "coatcheck_store_operation_duration_seconds",
            "Time of one store operation run by a session manager.",
            ["store", "operation"],
            buckets=BUCKETS,
            registry=registry,
        )
        self.errors = Counter(
            "coatcheck_store_operation_errors_total",
            "Store operations that raised, by the exception's class.",
            ["store", "operation", "error"],
            registry=registry,
        )
        self.events = Counter(
            "coatcheck_session_events_total",
            "Session lifecycle events: login, logout, rotate, revoke, conflict (a commit that gave up).",
            ["event"],
            registry=registry,
        )
        self.revoked = Counter("coatcheck_sessions_revoked_total", "Sessions ended by revocations.", registry=registry)
        self.conflicts = Counter(
            "coatcheck_commit_conflicts_total", "Compare-and-set conflicts commits met and merged.", registry=registry
        )


def instrument(manager: SessionManager, registry: CollectorRegistry = REGISTRY) -> Metrics:
    """Count ``manager``'s store operations and session events into ``registry`` (Prometheus'
    default one unless given). Takes the manager's ``observe`` hook; an observer already there
    is called after this one."""
    metrics = Metrics(registry)
    store = type(manager.store).__name__
    earlier = manager.observe
    histograms: dict[type, Any] = {}  # an operation's labelled histogram, looked up once

    def observe(op: Operation[Any], seconds: float, error: BaseException | None) -> None:
        kind = type(op)
        histogram = histograms.get(kind)
        if histogram is None:
            histogram = histograms[kind] = metrics.duration.labels(store, _snake(kind.__name__))
        histogram.observe(seconds)
        if error is not None:
            metrics.errors.labels(store, _snake(kind.__name__), type(error).__name__).inc()
        if earlier is not None:
            earlier(op, seconds, error)

    def counted(event: SessionEvent) -> None:
        if event.kind == "conflict" and isinstance(event.detail, int):
            metrics.conflicts.inc(event.detail)  # merged: the commit went through
            return
        metrics.events.labels(event.kind).inc()
        if event.kind == "revoke" and isinstance(event.detail, int):
            metrics.revoked.inc(event.detail)

    manager.observe = observe
    events = manager.events
    for subscribe in (events.on_login, events.on_logout, events.on_rotate, events.on_revoke, events.on_conflict):
        subscribe(counted)
    return metrics

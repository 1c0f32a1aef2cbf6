"""Prometheus metrics for a :class:`~coatcheck.SessionManager` (extra ``coatcheck[prometheus]``).

    from coatcheck.prometheus import instrument
    instrument(manager)          # into prometheus_client's default registry

What is measured (see ``docs/operations.md``), named by Prometheus' conventions; no label ever
holds a session ID, a store key or a user ID:

- ``coatcheck_store_operation_duration_seconds{store, operation}``: every store operation the
  manager runs (``load``, ``save``, ``touch``, ``rotate``, ...), through the drivers' timing hook;
- ``coatcheck_store_operation_errors_total{store, operation, error}``: those that raised;
- ``coatcheck_sessions_created_total``, ``coatcheck_sessions_loaded_total``,
  ``coatcheck_sessions_rejected_total{reason}`` (unknown, expired, corrupt, future, malformed);
- ``coatcheck_commits_total{outcome}`` (saved, touched, deleted, unchanged, dropped);
- ``coatcheck_session_events_total{event}``: logins, logouts, rotations, revocations, commits that
  gave up on concurrent writes, store errors;
- ``coatcheck_sessions_revoked_total``, ``coatcheck_commit_conflicts_total``;
- ``coatcheck_session_size_bytes``: the encoded size of each session record written.
"""

from __future__ import annotations

from typing import Any

from . import _metrics
from .manager import SessionManager

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
except ImportError as exc:  # pragma: no cover - the message is the point
    raise ImportError("coatcheck.prometheus needs prometheus_client: pip install 'coatcheck[prometheus]'") from exc

__all__ = ["Metrics", "instrument"]


class Metrics:
    """The collectors, one per metric of :data:`coatcheck._metrics.METRICS`, registered in one
    registry; ``metrics["sessions_created"]`` is one of them. :func:`instrument` feeds them."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.collectors: dict[str, Counter | Histogram] = {}
        for metric in _metrics.METRICS:
            name = f"coatcheck_{metric.name}" + (f"_{metric.unit}" if metric.unit else "")
            if metric.kind == "counter":
                self.collectors[metric.name] = Counter(name, metric.description, metric.labels, registry=registry)
            else:
                buckets = _metrics.SECONDS_BUCKETS if metric.unit == "seconds" else _metrics.BYTES_BUCKETS
                self.collectors[metric.name] = Histogram(
                    name, metric.description, metric.labels, buckets=buckets, registry=registry
                )

    def __getitem__(self, name: str) -> Counter | Histogram:
        return self.collectors[name]


def instrument(manager: SessionManager, registry: CollectorRegistry = REGISTRY) -> Metrics:
    """Measure ``manager`` into ``registry`` (Prometheus' default one unless given). Takes the
    manager's ``observe`` hook; an observer already there is called after this one."""
    metrics = Metrics(registry)
    bound: dict[tuple[str, tuple[str, ...]], Any] = {}  # a labelled child, looked up once

    def record(metric: _metrics.Metric, value: float, labels: tuple[str, ...]) -> None:
        child: Any = bound.get((metric.name, labels))
        if child is None:
            collector = metrics.collectors[metric.name]
            child = bound[metric.name, labels] = collector.labels(*labels) if labels else collector
        if metric.kind == "counter":
            child.inc(value)
        else:
            child.observe(value)

    _metrics.attach(manager, record)
    return metrics

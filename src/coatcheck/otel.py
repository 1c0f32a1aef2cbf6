"""OpenTelemetry metrics, and optionally spans, for a :class:`~coatcheck.SessionManager`
(extra ``coatcheck[otel]``, on ``opentelemetry-api``; the app configures the SDK and exporters).

    from coatcheck.otel import instrument
    instrument(manager)                     # metrics through the global MeterProvider
    instrument(manager, spans=True)         # and a span for each store operation

The same metrics as :mod:`coatcheck.prometheus`, named by OpenTelemetry's conventions: dotted
names under ``coatcheck.`` (``coatcheck.sessions.created``, ``coatcheck.store.operation.duration``
in ``s``, ``coatcheck.session.size`` in ``By``), no ``_total``, the same attributes. No attribute
ever holds a session ID, a store key or a user ID.
"""

from __future__ import annotations

import time
from typing import Any

from . import _metrics
from ._ops import Operation
from .manager import SessionManager

try:
    from opentelemetry import metrics, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError as exc:  # pragma: no cover - the message is the point
    raise ImportError("coatcheck.otel needs opentelemetry-api: pip install 'coatcheck[otel]'") from exc

__all__ = ["instrument"]

_UNITS = {"": "1", "seconds": "s", "bytes": "By"}


def _name(metric: _metrics.Metric) -> str:
    return "coatcheck." + metric.name.replace("_", ".")


def instrument(
    manager: SessionManager,
    *,
    meter_provider: metrics.MeterProvider | None = None,
    tracer_provider: trace.TracerProvider | None = None,
    spans: bool = False,
) -> None:
    """Measure ``manager`` with a meter from ``meter_provider`` (the global one unless given);
    with ``spans``, also record each store operation as a client span (named
    ``coatcheck.<operation>``) under whatever span is current, from ``tracer_provider``. Takes the
    manager's ``observe`` hook; an observer already there is called after these."""
    meter = metrics.get_meter("coatcheck", meter_provider=meter_provider)
    instruments: dict[str, Any] = {}
    for metric in _metrics.METRICS:
        unit, description = _UNITS[metric.unit], metric.description
        if metric.kind == "counter":
            instruments[metric.name] = meter.create_counter(_name(metric), unit=unit, description=description)
        else:
            buckets = _metrics.SECONDS_BUCKETS if metric.unit == "seconds" else _metrics.BYTES_BUCKETS
            instruments[metric.name] = meter.create_histogram(
                _name(metric), unit=unit, description=description, explicit_bucket_boundaries_advisory=list(buckets)
            )
    attributes: dict[tuple[str, tuple[str, ...]], dict[str, str]] = {}

    def record(metric: _metrics.Metric, value: float, labels: tuple[str, ...]) -> None:
        found = attributes.get((metric.name, labels))
        if found is None:
            found = attributes[metric.name, labels] = dict(zip(metric.labels, labels, strict=True))
        if metric.kind == "counter":
            instruments[metric.name].add(value, found)
        else:
            instruments[metric.name].record(value, found)

    _metrics.attach(manager, record)
    if spans:
        _trace(manager, trace.get_tracer("coatcheck", tracer_provider=tracer_provider))


def _trace(manager: SessionManager, tracer: trace.Tracer) -> None:
    """Wrap ``manager.observe`` to record each operation as a span, after the fact: it started
    ``seconds`` before the observer is called."""
    store = type(manager.store).__name__
    earlier = manager.observe

    def observe(op: Operation[Any], seconds: float, error: BaseException | None) -> None:
        end = time.time_ns()
        name = _metrics.operation_name(type(op))
        span = tracer.start_span(
            f"coatcheck.{name}",
            kind=SpanKind.CLIENT,
            start_time=end - int(seconds * 1e9),
            attributes={"coatcheck.store": store, "coatcheck.operation": name},
        )
        if error is not None:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        span.end(end_time=end)
        if earlier is not None:
            earlier(op, seconds, error)

    manager.observe = observe

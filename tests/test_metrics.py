"""Metrics on every store, read from a real Prometheus registry and a real OpenTelemetry SDK
in-memory reader: one scenario (create, load, reject, every commit outcome, a merged conflict,
login, logout, revoke) counted the same way by both exporters, and no ID, key or user in either."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, generate_latest

from coatcheck import SessionManager, StoreUnavailableError, otel, prometheus
from coatcheck._ids import new_session_id
from coatcheck.stores.memory import MemoryStore
from coatcheck.testing import FakeClock

from .apps import FlakyStore

pytestmark = pytest.mark.anyio

# (metric, labels) -> how many, for the scenario below
EXPECTED: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {
    ("sessions_created", ()): 3,
    ("sessions_loaded", ()): 6,
    ("sessions_rejected", (("reason", "unknown"),)): 2,  # one expired: a store drops an expired record
    ("sessions_rejected", (("reason", "malformed"),)): 1,
    ("commits", (("outcome", "saved"),)): 6,
    ("commits", (("outcome", "touched"),)): 1,
    ("commits", (("outcome", "unchanged"),)): 3,
    ("commits", (("outcome", "dropped"),)): 1,
    ("commits", (("outcome", "deleted"),)): 1,
    ("commit_conflicts", ()): 1,
    ("session_events", (("event", "login"),)): 2,
    ("session_events", (("event", "logout"),)): 1,
    ("session_events", (("event", "revoke"),)): 1,
    ("sessions_revoked", ()): 1,
    ("session_size", ()): 6,  # one per commit that saved
}


def _cookie(session_id: str) -> str:
    return f"sessionid={session_id}"


async def _scenario(manager: SessionManager, clock: FakeClock) -> list[str]:
    """Exercise every counted path; return what must never appear in a metric."""
    first = manager.new_session()
    first["a"] = 1
    await manager.acommit(first)  # created, saved
    loaded = await manager.aload(_cookie(first.id))
    loaded["b"] = 2
    await manager.acommit(loaded)  # loaded, saved
    await manager.acommit(await manager.aload(_cookie(first.id)))  # loaded, unchanged
    clock.advance(120)
    await manager.acommit(await manager.aload(_cookie(first.id)))  # loaded, touched
    dropped = await manager.aload(_cookie(first.id))
    dropped["c"] = 3
    await manager.acommit(dropped, status_code=500)  # loaded, dropped
    mine, theirs = await manager.aload(_cookie(first.id)), await manager.aload(_cookie(first.id))
    theirs["d"] = 4
    await manager.acommit(theirs)  # loaded, saved
    mine["e"] = 5
    await manager.acommit(mine)  # loaded, one conflict merged, saved
    await manager.acommit(await manager.aload(_cookie(new_session_id())))  # rejected: unknown; unchanged
    await manager.acommit(await manager.aload(_cookie("not-a-session-id")))  # rejected: malformed; unchanged
    alice = manager.new_session()
    alice.login("alice")
    await manager.acommit(alice)  # created, login, saved
    alice.logout()
    await manager.acommit(alice)  # logout, deleted
    bob = manager.new_session()
    bob.login("bob")
    await manager.acommit(bob)  # created, login, saved
    assert await manager.arevoke_user("bob") == 1
    clock.advance(manager.config.idle_seconds + 1)
    assert (await manager.aload(_cookie(first.id))).is_new  # rejected: unknown, as the store dropped it
    return [first.id, alice.id, bob.id, "alice", "bob", manager.handle(first)]


async def test_prometheus_counts_every_path_without_ids(store: Any, clock: FakeClock) -> None:
    registry = CollectorRegistry()
    manager = SessionManager(store, clock=clock)
    prometheus.instrument(manager, registry)
    secrets = await _scenario(manager, clock)

    def value(name: str, labels: tuple[tuple[str, str], ...]) -> float | None:
        suffix = "_bytes_count" if name == "session_size" else "_total"
        return registry.get_sample_value(f"coatcheck_{name}{suffix}", dict(labels))

    assert {key: value(*key) for key in EXPECTED} == EXPECTED
    store_name = type(store).__name__
    loads = registry.get_sample_value(
        "coatcheck_store_operation_duration_seconds_count", {"store": store_name, "operation": "load"}
    )
    assert loads == 9  # 7 requests that sent a session ID, 1 merge after a conflict, 1 expired
    exposition = generate_latest(registry).decode()
    for secret in secrets:
        assert secret not in exposition


def _otel_points(reader: InMemoryMetricReader) -> dict[tuple[str, tuple[tuple[str, str], ...]], Any]:
    data = reader.get_metrics_data()
    assert data is not None
    points: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    points[metric.name, tuple(sorted((str(k), str(v)) for k, v in (point.attributes or {}).items()))] = point
    return points


async def test_opentelemetry_counts_the_same_with_its_names(store: Any, clock: FakeClock) -> None:
    reader = InMemoryMetricReader()
    spans = InMemorySpanExporter()
    tracing = TracerProvider()
    tracing.add_span_processor(SimpleSpanProcessor(spans))
    manager = SessionManager(store, clock=clock)
    otel.instrument(manager, meter_provider=MeterProvider(metric_readers=[reader]), tracer_provider=tracing, spans=True)
    secrets = await _scenario(manager, clock)
    points = _otel_points(reader)

    def value(name: str, labels: tuple[tuple[str, str], ...]) -> float | None:
        point = points.get(("coatcheck." + name.replace("_", "."), labels))
        if isinstance(point, HistogramDataPoint):
            return point.count
        return point.value if isinstance(point, NumberDataPoint) else None

    assert {key: value(*key) for key in EXPECTED} == EXPECTED
    size = points["coatcheck.session.size", ()]
    assert size.min > 0 and size.max < manager.config.max_size
    finished = spans.get_finished_spans()
    names = {span.name for span in finished}
    assert {"coatcheck.load", "coatcheck.delete_user"} <= names
    assert all(
        span.end_time is not None and span.start_time is not None and span.start_time <= span.end_time for span in finished
    )
    dumped = repr(points) + "".join(span.to_json() for span in finished)
    for secret in secrets:
        assert secret not in dumped


def test_a_failing_operation_is_a_span_with_an_error_status() -> None:
    spans = InMemorySpanExporter()
    tracing = TracerProvider()
    tracing.add_span_processor(SimpleSpanProcessor(spans))
    store = FlakyStore(MemoryStore())
    manager = SessionManager(store)
    reader = InMemoryMetricReader()
    otel.instrument(manager, meter_provider=MeterProvider(metric_readers=[reader]), tracer_provider=tracing, spans=True)
    store.down = True
    with pytest.raises(StoreUnavailableError):
        manager.load(_cookie(new_session_id()))
    (span,) = spans.get_finished_spans()
    assert span.name == "coatcheck.load"
    assert not span.status.is_ok
    assert span.attributes == {"coatcheck.store": "FlakyStore", "coatcheck.operation": "load"}
    errors = _otel_points(reader)[
        "coatcheck.store.operation.errors",
        (("error", "StoreUnavailableError"), ("operation", "load"), ("store", "FlakyStore")),
    ]
    assert errors.value == 1
    events = _otel_points(reader)["coatcheck.session.events", (("event", "store_error"),)]
    assert events.value == 1


@pytest.mark.parametrize("instrument", [prometheus.instrument, otel.instrument], ids=["prometheus", "otel"])
def test_an_earlier_observer_still_runs(instrument: Callable[..., object]) -> None:
    manager = SessionManager(MemoryStore())
    seen: list[str] = []
    manager.observe = lambda op, seconds, error: seen.append(type(op).__name__)
    if instrument is prometheus.instrument:
        instrument(manager, CollectorRegistry())
    else:
        instrument(manager, meter_provider=MeterProvider(metric_readers=[InMemoryMetricReader()]))
    session = manager.new_session()
    session["a"] = 1
    manager.commit(session)
    assert seen == ["Save"]

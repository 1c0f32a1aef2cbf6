"""Prometheus metrics, read from a real prometheus_client registry: store operations timed and
their failures counted by store and operation, session events counted, and no label that holds a
session ID, a store key or a user ID."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from coatcheck import SessionConfig, SessionManager, StoreUnavailableError
from coatcheck.prometheus import instrument
from coatcheck.stores.memory import MemoryStore
from coatcheck.testing import FakeClock

from .apps import FlakyStore


def _cookie(session_id: str) -> str:
    return f"sessionid={session_id}"


def test_operations_and_events_are_counted_without_ids() -> None:
    registry = CollectorRegistry()
    clock = FakeClock()
    manager = SessionManager(MemoryStore(clock=clock), config=SessionConfig(max_commit_attempts=3), clock=clock)
    seen: list[float] = []
    manager.observe = lambda op, seconds, error: seen.append(seconds)  # an earlier observer still runs
    instrument(manager, registry)
    session = manager.new_session()
    session.login("alice")
    manager.commit(session)
    mine, theirs = manager.load(_cookie(session.id)), manager.load(_cookie(session.id))
    theirs["a"] = 1
    manager.commit(theirs)
    mine["b"] = 2
    manager.commit(mine)  # one conflict, merged
    mine.logout()
    manager.commit(mine)
    other = manager.new_session()
    other.login("alice")
    manager.commit(other)
    assert manager.revoke_user("alice") == 1

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("coatcheck_store_operation_duration_seconds_count", store="MemoryStore", operation="load") == 3
    assert value("coatcheck_store_operation_duration_seconds_count", store="MemoryStore", operation="save") == 5
    assert value("coatcheck_store_operation_duration_seconds_count", store="MemoryStore", operation="delete_user") == 1
    assert value("coatcheck_session_events_total", event="login") == 2
    assert value("coatcheck_session_events_total", event="logout") == 1
    assert value("coatcheck_session_events_total", event="revoke") == 1
    assert value("coatcheck_sessions_revoked_total") == 1
    assert value("coatcheck_commit_conflicts_total") == 1
    assert len(seen) == 10  # every operation: 3 loads, 5 saves, 1 delete, 1 revoke
    exposition = generate_latest(registry).decode()
    for secret in (session.id, other.id, "alice", manager.handle(session)):
        assert secret not in exposition


def test_store_failures_are_counted_by_error_class() -> None:
    registry = CollectorRegistry()
    store = FlakyStore(MemoryStore())
    manager = SessionManager(store)
    instrument(manager, registry)
    session = manager.new_session()
    session["a"] = 1
    manager.commit(session)
    store.down = True
    with pytest.raises(StoreUnavailableError):
        manager.load(_cookie(session.id))
    labels = {"store": "FlakyStore", "operation": "load", "error": "StoreUnavailableError"}
    assert registry.get_sample_value("coatcheck_store_operation_errors_total", labels) == 1
    assert registry.get_sample_value("coatcheck_store_operation_errors_total", {**labels, "operation": "save"}) is None

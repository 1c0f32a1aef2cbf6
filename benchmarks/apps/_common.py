"""What the benchmark apps share: settings from the environment, a store-call counter, prefill.

Every app serves the same three routes: ``/rmw`` (read a counter, increment it, save),
``/read`` (read the counter only) and ``/__bench/stats`` (JSON counters for the harness).
"""

from __future__ import annotations

import collections
import gc
import os
import re
import time
from collections.abc import Callable
from typing import Any, get_args

from coatcheck import SessionConfig, SessionManager
from coatcheck._codec import encode
from coatcheck._ids import new_session_id, store_key
from coatcheck.events import EventKind
from coatcheck.legacy import LegacyCookie, LegacySession
from coatcheck.stores import Record, from_url

from ._ablate import apply as apply_ablations

SIGNING_KEY = "coatcheck-benchmark-signing-key-not-for-production"
LIFETIME = 1800  # seconds: every library gets coatcheck's default idle timeout
_METHODS = ("load", "save", "touch", "rotate", "delete", "delete_expired", "delete_user", "list_user", "close")


def env(name: str, default: str = "") -> str:
    """A ``BENCH_*`` setting."""
    return os.environ.get(name, default)


def store_kind() -> str:
    """Which store the app uses: memory, sqlite, redis, postgres or mysql."""
    return env("BENCH_STORE", "memory")


def redis_url() -> str:
    """The benchmark's own Redis server."""
    return env("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def library() -> str:
    """Which session layer an app that serves several uses (``BENCH_LIBRARY``: the scenario's library)."""
    return env("BENCH_LIBRARY", "coatcheck")


def client_counters() -> bool:
    """Whether the apps count store calls and Redis round trips in the client (``BENCH_CLIENT_COUNTERS``,
    default on). The HTTP benchmark reports them; in-process measurements turn them off, so that
    machine instructions per request are the libraries' own."""
    return env("BENCH_CLIENT_COUNTERS", "1") != "0"


class CountingStore:
    """Forwards to a coatcheck store and counts each call (the client-side round trips).

    Only the methods the wrapped store has are exposed, so the manager sees the same
    capabilities; other attributes (``expires_natively``) are forwarded.
    """

    def __init__(self, store: Any) -> None:
        self._store = store
        self.counts: collections.Counter[str] = collections.Counter()
        for name in _METHODS:
            for method in (name, "a" + name):
                target = getattr(store, method, None)
                if callable(target):
                    wrapper = self._async_wrapper(method, target) if method == "a" + name else self._wrapper(method, target)
                    setattr(self, method, wrapper)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def _wrapper(self, method: str, target: Callable[..., Any]) -> Callable[..., Any]:
        counts = self.counts

        def call(*args: Any, **kwargs: Any) -> Any:
            counts[method] += 1
            return target(*args, **kwargs)

        return call

    def _async_wrapper(self, method: str, target: Callable[..., Any]) -> Callable[..., Any]:
        counts = self.counts
        name = method[1:]

        async def call(*args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return await target(*args, **kwargs)

        return call


def prefill(store: Any, live: int, expired: int) -> None:
    """Put ``live`` sessions and ``expired`` already-expired sessions straight into ``store``."""
    now = time.time()
    raw = encode(now - 60, {"n": 0})
    for count, expires_at in ((live, now + LIFETIME), (expired, now - 60)):
        for _ in range(count):
            store.save(store_key(new_session_id()), Record(raw, expires_at, 1, None), expected_version=None)


def coatcheck_store() -> tuple[Any, CountingStore | None]:
    """The store for ``BENCH_STORE_URL``; SQL stores are wrapped in a :class:`CountingStore`
    (returned too) unless :func:`client_counters` is off.

    Redis round trips are counted on the server (``INFO commandstats``) and the memory store
    makes none, so only SQLite, PostgreSQL and MySQL pay for the (sub-microsecond) counter.
    """
    store = from_url(env("BENCH_STORE_URL", "memory://?max_entries=3000000"))
    if store_kind() == "memory":
        prefill(store, int(env("BENCH_PREFILL_LIVE", "0")), int(env("BENCH_PREFILL_EXPIRED", "0")))
    counter = CountingStore(store) if store_kind() in ("sqlite", "postgres", "mysql") and client_counters() else None
    return (counter if counter is not None else store), counter


class UncalledReader:
    """A legacy reader for a cookie the benchmark's browsers never send, that fails the request
    if it is ever called: with ``BENCH_LEGACY=1`` the figures show what configuring a reader
    costs requests that have a live session or no cookie (the harness stops on a non-200)."""

    name = "never-called"
    cookie = LegacyCookie("legacy_session")

    def read(self, value: str) -> LegacySession | None:
        raise AssertionError("a legacy reader was called by a request without a legacy cookie")

    def forget(self, value: str) -> None:
        raise AssertionError("a legacy reader was called by a request without a legacy cookie")

    async def aread(self, value: str) -> LegacySession | None:
        return self.read(value)

    async def aforget(self, value: str) -> None:
        self.forget(value)


_FROZEN_AT = time.time()


def bench_clock() -> Callable[[], float]:
    """coatcheck's clock in the apps: frozen at the process's start with ``BENCH_FROZEN_CLOCK=1``
    (so an expiry refresh, due once a minute, never falls inside a run that callgrind slows
    down 50 times), else the real one."""
    if env("BENCH_FROZEN_CLOCK", "0") == "1":
        return lambda: _FROZEN_AT
    return time.time


FEATURES = ("prometheus", "otel", "spans", "events", "devices", "encryption")
"""What ``BENCH_FEATURES`` (comma-separated) may turn on, each measured as a row of its own."""


def coatcheck_manager() -> tuple[SessionManager, CountingStore | None]:
    """The manager on :func:`coatcheck_store`, with the default :class:`SessionConfig` (and a
    legacy reader that must never be called, with ``BENCH_LEGACY=1``), plus the features
    ``BENCH_FEATURES`` names: Prometheus metrics, OpenTelemetry metrics (an SDK with an
    in-memory reader), and with ``spans`` its spans too (an SDK tracer with no exporter), a
    subscriber to every event, device metadata, encryption at rest
    (``BENCH_PROMETHEUS=1`` still means ``prometheus``)."""
    apply_ablations([name for name in env("BENCH_ABLATE").split(",") if name])
    store, counter = coatcheck_store()
    legacy = [UncalledReader()] if env("BENCH_LEGACY", "0") == "1" else []
    features = {name for name in env("BENCH_FEATURES", "").split(",") if name}
    if env("BENCH_PROMETHEUS", "0") == "1":
        features.add("prometheus")
    unknown = features - set(FEATURES)
    if unknown:
        raise SystemExit(f"unknown BENCH_FEATURES {sorted(unknown)}; known: {', '.join(FEATURES)}")
    config = SessionConfig(devices="devices" in features, encryption_keys=[b"k" * 32] if "encryption" in features else [])
    manager = SessionManager(store, config=config, legacy=legacy, clock=bench_clock())
    if "prometheus" in features:
        from prometheus_client import CollectorRegistry

        from coatcheck.prometheus import instrument

        instrument(manager, CollectorRegistry())
    if "otel" in features or "spans" in features:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider

        from coatcheck import otel

        otel.instrument(
            manager,
            meter_provider=MeterProvider(metric_readers=[InMemoryMetricReader()]),
            tracer_provider=TracerProvider(),
            spans="spans" in features,
        )
    if "events" in features:
        for kind in get_args(EventKind):
            getattr(manager.events, f"on_{kind}")(lambda event: None)
    return manager, counter


def purge_interval() -> float | None:
    """The middleware's purge interval: ``BENCH_PURGE_INTERVAL`` seconds, 0 for never."""
    seconds = float(env("BENCH_PURGE_INTERVAL", "60"))
    return seconds or None


_redis_round_trips = [0, 0]  # all, and those carrying a command that may write
_COMMAND = re.compile(rb"\*\d+\r\n\$\d+\r\n([A-Za-z_]+)")
_READS = frozenset(
    b"GET MGET HGET HMGET HGETALL HEXISTS EXISTS TTL PTTL TYPE ZRANGE ZRANGEBYSCORE ZSCORE ZCARD SMEMBERS SCARD SCAN "
    b"HELLO PING CLIENT INFO SELECT AUTH ECHO COMMAND SCRIPT MULTI EXEC WATCH UNWATCH EVALSHA_RO EVAL_RO".split()
)


def _count(command: Any) -> None:
    _redis_round_trips[0] += 1
    for chunk in (command,) if isinstance(command, (bytes, str)) else command:
        for name in _COMMAND.findall(chunk.encode() if isinstance(chunk, str) else chunk):
            if name.upper() not in _READS:
                _redis_round_trips[1] += 1
                return


def count_redis_round_trips() -> None:
    """Count every request redis-py writes to a socket (a pipeline is one), sync and async,
    and those that carry a command that may write (anything but a known read; scripts count).
    Called by the apps whose library talks to Redis through redis-py (the others never import it).

    Redis's own ``INFO commandstats`` also counts the commands a Lua script runs, so round
    trips are counted here, in the client, the same way for every library. Nothing is counted
    when :func:`client_counters` is off.
    """
    if not client_counters():
        return
    import redis.asyncio.connection
    import redis.connection

    sync_send: Callable[..., Any] = redis.connection.AbstractConnection.send_packed_command
    async_send: Callable[..., Any] = redis.asyncio.connection.AbstractConnection.send_packed_command

    def send(self: Any, command: Any, *args: Any, **kwargs: Any) -> Any:
        _count(command)
        return sync_send(self, command, *args, **kwargs)

    async def asend(self: Any, command: Any, *args: Any, **kwargs: Any) -> Any:
        _count(command)
        return await async_send(self, command, *args, **kwargs)

    redis.connection.AbstractConnection.send_packed_command = send  # type: ignore[method-assign]
    redis.asyncio.connection.AbstractConnection.send_packed_command = asend  # type: ignore[method-assign]


class GCMeter:
    """Cyclic-GC collections and the time spent in them, by generation (a ``gc.callbacks`` entry)."""

    def __init__(self) -> None:
        self.count = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.count[info["generation"]] += 1
            self.seconds[info["generation"]] += time.perf_counter() - self._started


gc_meter = GCMeter()  # every app's process: GC time per request is in the report
gc.callbacks.append(gc_meter)


def stats(counter: CountingStore | None) -> dict[str, Any]:
    """The JSON body of ``/__bench/stats``."""
    return {
        "gc_seconds": sum(gc_meter.seconds),
        "gc_collections": sum(gc_meter.count),
        "store_calls": dict(counter.counts) if counter is not None else {},
        "redis_round_trips": _redis_round_trips[0],
        "redis_write_round_trips": _redis_round_trips[1],
        "pid": os.getpid(),
    }

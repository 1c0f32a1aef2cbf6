"""What one request costs in process: CPU, cyclic GC and (under callgrind) machine instructions
per request, for an app of ``benchmarks/apps`` against the real store.

ASGI apps (Starlette's, Django's ASGI handler): ``workers`` coroutines each send ``requests``
requests on a session of their own through the app, called in process with uvicorn's messages
(the body once, then ``http.disconnect`` once the response is sent, for apps that listen for
it), so every request suspends on the store the way it does under uvicorn, with the others in
flight. WSGI apps (Flask's, Django's WSGI handler): the same requests one after another through
the WSGI callable (a WSGI server's thread serves one at a time), cycling through the ``workers``
sessions. No HTTP server and no load generator share the measurement. CPU time moves with this
machine's noise; instructions do not::

    benchmarks/.venv/bin/python -m benchmarks.concurrent --app coatcheck_asgi --store redis
    benchmarks/.venv/bin/python -m benchmarks.concurrent --app django_wsgi --library django --store postgres --mix read
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=/tmp/cg.out \\
        benchmarks/.venv/bin/python -m benchmarks.concurrent --app floor_asgi --store redis --callgrind

With ``--callgrind`` only the measured requests are counted (``callgrind_control -i on/off``);
the instructions per request are callgrind's ``Collected`` total divided by the requests printed.

``--frameworks`` measures the framework integrations side by side: every app of
:data:`FRAMEWORKS` (Flask and Django, each with no session, with coatcheck and with its rivals)
on every mix, each in a process of its own, one at a time, and prints a table of the session
layer's cost per request (the app minus the same framework with no session). With
``--instructions`` each process runs under callgrind as above and the table counts machine
instructions; without, CPU µs per request (``--rounds`` interleaved rounds, the median)::

    benchmarks/.venv/bin/python -m benchmarks.concurrent --frameworks --instructions --requests 50

The apps count no store calls or Redis round trips in the client here (``BENCH_CLIENT_COUNTERS=0``),
so the instructions are the libraries' own. A PostgreSQL or MySQL store uses the ``coatcheck_bench``
database (created if missing); the tables made in it are dropped when the process ends.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from . import _infra
from ._inprocess import asgi_cookie, asgi_request, is_asgi, wsgi_cookie, wsgi_request
from .apps._common import GCMeter
from .run import MIXES

T = TypeVar("T")
STORE_URLS = {
    "memory": "memory://",
    "redis": "redis://127.0.0.1:6379/0",
    "postgres": f"{_infra.PG_URL}?table=bench_concurrent&create_schema=1",
    "mysql": f"mysql://root@{_infra.MYSQL_HOST}:{_infra.MYSQL_PORT}/{_infra.MYSQL_DB}?table=bench_concurrent&create_schema=1",
}
STORES = (*STORE_URLS, "sqlite", "cookie", "none")
SQL_STORES = ("postgres", "sqlite", "mysql")
TABLES = ("bench_concurrent", "bench_floor", "django_session")  # what the apps may create in the benchmark database
CEILING_COOKIE = f"sessionid={'x' * 43}"  # apps without a session get a cookie of the usual size, ignored


def _callgrind(switch: str) -> None:
    subprocess.run(["callgrind_control", "-i", switch, str(os.getpid())], capture_output=True, check=False)


# -- measuring ----------------------------------------------------------------------------------------


class _Measured:
    """CPU, wall and GC time over the measured requests; callgrind counts only them. ``steady``
    keeps the cyclic GC out of the window (everything alive is collected and frozen first, and
    no collection runs during it: what collections cost is what a run without it reports)."""

    def __init__(self, callgrind: bool) -> None:
        self.callgrind = callgrind
        self.steady = os.environ.get("BENCH_STEADY") == "1"
        self.meter = GCMeter()
        self.cpu = self.wall = 0.0

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        gc.collect()
        if self.steady:
            gc.freeze()
            gc.disable()
        gc.callbacks.append(self.meter)
        if self.callgrind:
            _callgrind("on")
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall, self.cpu = time.perf_counter() - wall, time.process_time() - cpu
            if self.callgrind:
                _callgrind("off")
            gc.callbacks.remove(self.meter)
            if self.steady:
                gc.enable()
                gc.unfreeze()

    def result(self, total: int) -> dict[str, Any]:
        return {
            "requests": total,
            "cpu_us": self.cpu * 1e6 / total,
            "wall_us": self.wall * 1e6 / total,
            "gc_us": [seconds * 1e6 / total for seconds in self.meter.seconds],
            "collections_per_1000": [count * 1000 / total for count in self.meter.count],
        }


async def measure(app: Any, mix: str, workers: int, requests: int, callgrind: bool) -> dict[str, Any]:
    """An ASGI app: CPU and GC per request over ``workers`` x ``requests`` requests, ``workers``
    in flight (after a warm-up of 20 each)."""
    path, with_cookie = MIXES[mix]
    cookies = [
        asgi_cookie(await asgi_request(app, "/rmw", None)) or CEILING_COOKIE if with_cookie else None for _ in range(workers)
    ]

    async def worker(cookie: str | None, count: int) -> None:
        for _ in range(count):
            await asgi_request(app, path, cookie)

    await asyncio.gather(*(worker(cookie, 20) for cookie in cookies))
    measured = _Measured(callgrind)
    with measured.running():
        await asyncio.gather(*(worker(cookie, requests) for cookie in cookies))
    return measured.result(workers * requests)


def measure_wsgi(app: Callable[..., Iterable[bytes]], mix: str, workers: int, requests: int, callgrind: bool) -> dict[str, Any]:
    """A WSGI app: CPU and GC per request over ``workers`` x ``requests`` requests, one at a time,
    cycling through ``workers`` sessions (after a warm-up of 20 rounds)."""
    path, with_cookie = MIXES[mix]
    cookies = [wsgi_cookie(wsgi_request(app, "/rmw", None)) or CEILING_COOKIE if with_cookie else None for _ in range(workers)]

    def rounds(count: int) -> None:
        for _ in range(count):
            for cookie in cookies:
                wsgi_request(app, path, cookie)

    rounds(20)
    measured = _Measured(callgrind)
    with measured.running():
        rounds(requests)
    return measured.result(workers * requests)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` on uvloop, as uvicorn does (asyncio's loop where uvloop is missing)."""
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return asyncio.run(coroutine)
    result: T = uvloop.run(coroutine)
    return result


@contextlib.contextmanager
def scratch_database(store: str) -> Iterator[None]:
    """For the PostgreSQL and MySQL stores: the benchmark database, and its tables dropped
    afterwards; for SQLite: a file in a directory of its own, removed afterwards."""
    if store == "sqlite":
        with tempfile.TemporaryDirectory(prefix="coatcheck-concurrent-") as scratch:
            os.environ["BENCH_STORE_URL"] = f"sqlite:///{scratch}/sessions.db"
            yield
        return
    if store not in ("postgres", "mysql"):
        yield
        return
    prepare, drop = (
        (_infra.prepare_postgres, _infra.drop_postgres_tables)
        if store == "postgres"
        else (_infra.prepare_mysql, _infra.drop_mysql_tables)
    )
    if not prepare():
        raise SystemExit(f"{store} is not reachable on 127.0.0.1")
    try:
        yield
    finally:
        drop(TABLES)


def measure_app(module: str, mix: str, workers: int, requests: int, callgrind: bool) -> dict[str, Any]:
    """Import ``benchmarks.apps.<module>`` (configured by the ``BENCH_*`` environment) and measure its ``app``."""
    app = importlib.import_module(f"benchmarks.apps.{module}").app
    if is_asgi(app):
        return {"interface": "asgi", **run(measure(app, mix, workers, requests, callgrind))}
    return {"interface": "wsgi", **measure_wsgi(app, mix, workers, requests, callgrind)}


# -- the framework integrations, side by side --------------------------------------------------------


@dataclass(frozen=True)
class FrameworkApp:
    """One row of the framework comparison: an app of ``benchmarks/apps`` with its session layer."""

    framework: str  # Starlette | Flask | Django
    views: str  # sync (WSGI) | async (ASGI)
    layer: str  # the session layer, "none" for the framework alone
    app: str
    library: str
    store: str
    ablate: tuple[str, ...] = ()  # guarantees taken out of coatcheck (apps/_ablate.py)

    def argv(self, mix: str) -> list[str]:
        ablate = [f"--ablate={name}" for name in self.ablate]
        return ["--app", self.app, "--library", self.library, "--store", self.store, "--mix", mix, *ablate]


def _django(views: str, app: str) -> list[FrameworkApp]:
    return [
        FrameworkApp("Django", views, "none", app, "plain", "none"),
        FrameworkApp("Django", views, "coatcheck.django", app, "coatcheck", "redis"),
        FrameworkApp("Django", views, "Django cache backend (RedisCache)", app, "django", "redis"),
        FrameworkApp("Django", views, "coatcheck.django", app, "coatcheck", "postgres"),
        FrameworkApp("Django", views, "Django db backend", app, "django", "postgres"),
    ]


def _with_floor(framework: str, views: str, layer: str, app: str, floor_app: str) -> list[FrameworkApp]:
    """coatcheck and the floor side by side on each SQL store."""
    return [
        FrameworkApp(framework, views, *row, store)
        for store in SQL_STORES
        for row in ((layer, app, "coatcheck"), ("floor", floor_app, "floor"))
    ]


FRAMEWORKS = [
    FrameworkApp("Starlette", "async", "none", "plain_starlette", "plain", "none"),
    FrameworkApp("Starlette", "async", "coatcheck.asgi", "coatcheck_asgi", "coatcheck", "memory"),
    FrameworkApp("Starlette", "async", "floor", "floor_asgi", "floor", "memory"),
    FrameworkApp("Starlette", "async", "starsessions", "starsessions_app", "starsessions", "memory"),
    FrameworkApp("Starlette", "async", "coatcheck.asgi", "coatcheck_asgi", "coatcheck", "redis"),
    FrameworkApp("Starlette", "async", "floor", "floor_asgi", "floor", "redis"),
    FrameworkApp("Starlette", "async", "starsessions", "starsessions_app", "starsessions", "redis"),
    *_with_floor("Starlette", "async", "coatcheck.asgi", "coatcheck_asgi", "floor_asgi"),
    FrameworkApp("Flask", "sync", "none", "plain_flask", "plain", "none"),
    FrameworkApp("Flask", "sync", "coatcheck.flask", "coatcheck_flask", "coatcheck", "memory"),
    FrameworkApp("Flask", "sync", "floor", "floor_wsgi", "floor", "memory"),
    FrameworkApp("Flask", "sync", "floor on flask.session", "floor_flask", "floor-seam", "memory"),
    FrameworkApp("Flask", "sync", "coatcheck.flask", "coatcheck_flask", "coatcheck", "redis"),
    FrameworkApp("Flask", "sync", "floor", "floor_wsgi", "floor", "redis"),
    *_with_floor("Flask", "sync", "coatcheck.flask", "coatcheck_flask", "floor_wsgi"),
    FrameworkApp("Flask", "sync", "Flask-Session", "flask_session_app", "flask-session", "redis"),
    FrameworkApp("Flask", "sync", "Flask cookie session", "flask_cookie", "flask-cookie", "cookie"),
    *_django("sync", "django_wsgi"),
    *_django("async", "django_asgi"),
]


@dataclass(frozen=True)
class Target:
    """The most coatcheck's session-layer cost may be, as a share of another layer's on the same
    framework, views and store (issue: "performance, restated")."""

    framework: str
    views: str
    library: str  # the other layer: floor, a rival, or coatcheck on another store
    store: str
    at_most: float
    ours_store: str | None = None  # coatcheck on this store (default: the same store)

    def label(self) -> str:
        other = "the floor" if self.library == "floor" else f"{self.library} on {self.store}"
        ours = self.ours_store or self.store
        return f"{self.framework} {self.views}, {ours}: coatcheck ≤ {self.at_most:g}x {other}"


TARGETS = [
    *(
        Target(framework, views, "floor", store, 1.5)
        for framework, views in (("Starlette", "async"), ("Flask", "sync"))
        for store in ("memory", "redis", *SQL_STORES)
    ),
    Target("Starlette", "async", "starsessions", "memory", 0.5),
    Target("Starlette", "async", "starsessions", "redis", 0.3),
    Target("Flask", "sync", "flask-session", "redis", 0.3),
    *(Target("Django", views, "django", store, 0.3) for views in ("sync", "async") for store in ("redis", "postgres")),
    Target("Starlette", "async", "coatcheck", "redis", 2.0, ours_store="postgres"),
]


def target_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each target on each mix that has a session to read or write: the ratio, and whether it is met."""
    cost = {(r["entry"].framework, r["entry"].views, r["entry"].library, r["entry"].store, r["mix"]): r["cost"] for r in rows}
    found = []
    for target in TARGETS:
        for mix in MIXES:
            ours = cost.get((target.framework, target.views, "coatcheck", target.ours_store or target.store, mix))
            theirs = cost.get((target.framework, target.views, target.library, target.store, mix))
            if ours is None or theirs is None or theirs <= 0:
                continue
            ratio = ours / theirs
            floor = cost.get((target.framework, target.views, "floor", target.ours_store or target.store, mix))
            allowed = target.at_most * theirs / floor if floor else None  # the target, in multiples of the floor
            found.append({"target": target, "mix": mix, "ratio": ratio, "met": ratio <= target.at_most, "allowed": allowed})
    return found


def targets_table(result: dict[str, Any]) -> str:
    """The targets, met or not, as a markdown table, with the most each lets coatcheck cost in
    multiples of the floor's cost on the same framework, store and mix (below 1: under the floor)."""
    lines = ["| target | mix | ratio | met | coatcheck's cost allowed, in floors | coatcheck's, in floors |"]
    lines.append("|---|---|---:|:---:|---:|---:|")
    for row in target_rows(result["rows"]):
        allowed, target = row["allowed"], row["target"]
        ours = "—" if allowed is None else f"{allowed * row['ratio'] / target.at_most:.2f}"
        lines.append(
            f"| {target.label()} | {row['mix']} | {row['ratio']:.2f}x | {'yes' if row['met'] else '**no**'} "
            f"| {'—' if allowed is None else f'{allowed:.2f}'} | {ours} |"
        )
    return "\n".join(lines)


def _child(entry: FrameworkApp, mix: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Measure one app and mix in a process of its own (under callgrind with ``--instructions``)."""
    out = work / "result.json"
    out.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "benchmarks.concurrent", *entry.argv(mix)]
    argv += ["--workers", str(args.workers), "--requests", str(args.requests), "--json", str(out)]
    cg_out = work / "callgrind.out"
    if args.instructions:
        cg_out.unlink(missing_ok=True)
        valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={cg_out}"]
        argv = [*valgrind, *argv, "--callgrind", "--steady"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(_infra.ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(argv, cwd=_infra.ROOT, env=env, capture_output=True, text=True, timeout=3600, check=False)
    if done.returncode != 0 or not out.exists():
        raise RuntimeError(f"{' '.join(entry.argv(mix))} failed ({done.returncode}): {done.stderr[-2000:]}")
    found: dict[str, Any] = json.loads(out.read_text())
    if args.instructions:
        totals = re.search(r"^totals: (\d+)", cg_out.read_text(), re.MULTILINE)
        if totals is None:
            raise RuntimeError(f"no callgrind totals for {' '.join(entry.argv(mix))}")
        found["instructions"] = int(totals.group(1)) / found["requests"]
    return found


def compare(args: argparse.Namespace) -> dict[str, Any]:
    """Every app of :data:`FRAMEWORKS` on every mix, one process at a time; rows with the session
    layer's cost over the same framework's no-session app and the ratios coatcheck / rival."""
    metric = "instructions" if args.instructions else "cpu_us"
    values: dict[tuple[FrameworkApp, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="coatcheck-frameworks-") as work:
        for round_ in range(args.rounds):
            for entry in FRAMEWORKS if round_ % 2 == 0 else FRAMEWORKS[::-1]:
                for mix in MIXES:
                    found = _child(entry, mix, args, Path(work))
                    values.setdefault((entry, mix), []).append(found[metric])
                    _infra.log(f"{entry.framework} {entry.views} {entry.layer} {entry.store} {mix}: {found[metric]:,.1f}")
    median = {key: statistics.median(found) for key, found in values.items()}
    rows: list[dict[str, Any]] = []
    for (entry, mix), value in median.items():
        same = [e for e in FRAMEWORKS if e.framework == entry.framework and e.views == entry.views]
        base = next(median[e, mix] for e in same if e.layer == "none")
        # A rival (or the floor) is compared with coatcheck on its own store; a cookie session with coatcheck on Redis.
        ours = {e.store: e for e in same if e.library == "coatcheck"}
        against = ours.get(entry.store, ours.get("redis")) if entry.library not in ("coatcheck", "plain") else None
        rows.append({"entry": entry, "mix": mix, "value": value, "spread": (min(values[entry, mix]), max(values[entry, mix])),
                     "base": base, "cost": value - base, "against": against})  # fmt: skip
    for row in rows:
        theirs = next((r for r in rows if r["entry"] == row["against"] and r["mix"] == row["mix"]), None)
        row["x_cost"] = theirs["cost"] / row["cost"] if theirs is not None and row["cost"] > 0 else None
        row["x_total"] = theirs["value"] / row["value"] if theirs is not None else None
    return {"metric": metric, "workers": args.workers, "requests": args.requests, "rounds": args.rounds, "rows": rows}


def framework_table(result: dict[str, Any]) -> str:
    """The comparison as a markdown table."""
    instructions = result["metric"] == "instructions"
    unit = "instructions/request" if instructions else "CPU µs/request"

    def num(value: float) -> str:
        return f"{value / 1000:,.1f}k" if instructions else f"{value:,.0f}"

    head = (
        "| framework | views | mix | session layer | store | {} | no session | session layer's cost | coatcheck / this (cost) |"
    )
    lines = [head.format(unit) + " coatcheck / this (whole request) |", "|---|---|---|---|---|---:|---:|---:|---:|---:|"]
    order = {(e.framework, e.views): i for i, e in enumerate(FRAMEWORKS)}
    mixes = list(MIXES)
    for row in sorted(result["rows"], key=lambda r: (order[r["entry"].framework, r["entry"].views], mixes.index(r["mix"]))):
        entry = row["entry"]
        if entry.layer == "none":
            continue
        name = f"**{entry.layer}**" if entry.library == "coatcheck" else entry.layer
        x_cost = "—" if row["x_cost"] is None else f"{row['x_cost']:.2f}"
        x_total = "—" if row["x_total"] is None else f"{row['x_total']:.2f}"
        views = "sync (WSGI)" if entry.views == "sync" else "async (ASGI)"
        lines.append(
            f"| {entry.framework} | {views} | {row['mix']} | {name} | {entry.store} | {num(row['value'])} | {num(row['base'])} "
            f"| {num(row['cost'])} | {x_cost} | {x_total} |"
        )
    return "\n".join(lines)


def result_from_json(data: dict[str, Any]) -> dict[str, Any]:
    """A :func:`compare` result back from its ``--json`` file (which holds the entries as dicts)."""
    rows = [
        {**row, "entry": FrameworkApp(**row["entry"]), "against": row["against"] and FrameworkApp(**row["against"])}
        for row in data["rows"]
    ]
    return {**data, "rows": rows}


# -- the command line ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n", 1)[0])
    parser.add_argument("--app", default="coatcheck_asgi", help="a module of benchmarks/apps (default coatcheck_asgi)")
    parser.add_argument("--library", default="coatcheck", help="BENCH_LIBRARY, for apps that serve several (django_*)")
    parser.add_argument("--store", choices=STORES, default="redis")
    parser.add_argument("--mix", choices=sorted(MIXES), default="rmw")
    parser.add_argument(
        "--workers", type=int, default=32, help="requests in flight, or sessions for WSGI (default 32, as wrk -c32)"
    )
    parser.add_argument("--requests", type=int, default=300, help="requests per worker (default 300)")
    parser.add_argument("--callgrind", action="store_true", help="count instructions of the measured part only")
    parser.add_argument("--legacy", action="store_true", help="BENCH_LEGACY=1: a legacy reader that must never be called")
    parser.add_argument("--prometheus", action="store_true", help="BENCH_PROMETHEUS=1: coatcheck's Prometheus metrics on")
    parser.add_argument(
        "--feature",
        action="append",
        default=[],
        help="BENCH_FEATURES: turn on prometheus, otel, spans, events, devices or encryption (repeatable)",
    )
    parser.add_argument(
        "--ablate",
        action="append",
        default=[],
        help="BENCH_ABLATE: take strict, timeouts, size or cas out of coatcheck (repeatable; see apps/_ablate.py)",
    )
    parser.add_argument(
        "--steady",
        action="store_true",
        help="the cyclic GC out of the measured window and coatcheck's clock frozen (--frameworks --instructions sets it)",
    )
    parser.add_argument("--json", help="also write the result here")
    parser.add_argument("--frameworks", action="store_true", help="compare the framework integrations (see above)")
    parser.add_argument("--instructions", action="store_true", help="with --frameworks: each app under callgrind")
    parser.add_argument("--rounds", type=int, default=1, help="with --frameworks: interleaved rounds (default 1)")
    args = parser.parse_args(argv)
    if args.frameworks:
        result = compare(args)
        print(framework_table(result))
        print()
        print(targets_table(result))
        if args.json:
            rows = [
                {**row, "entry": vars(row["entry"]), "against": row["against"] and vars(row["against"])} for row in result["rows"]
            ]
            Path(args.json).write_text(json.dumps({**result, "rows": rows}, indent=1) + "\n")
        return 0
    os.environ.update(BENCH_STORE=args.store, BENCH_LIBRARY=args.library, BENCH_REDIS_URL=STORE_URLS["redis"])
    os.environ.update(BENCH_CLIENT_COUNTERS="0", BENCH_LEGACY="1" if args.legacy else "0")
    os.environ["BENCH_PROMETHEUS"] = "1" if args.prometheus else "0"
    os.environ["BENCH_FEATURES"] = ",".join(args.feature)
    os.environ["BENCH_ABLATE"] = ",".join(args.ablate)
    os.environ["BENCH_STEADY"] = os.environ["BENCH_FROZEN_CLOCK"] = "1" if args.steady else "0"
    if args.store in STORE_URLS:
        os.environ["BENCH_STORE_URL"] = STORE_URLS[args.store]
    with scratch_database(args.store):
        found = measure_app(args.app, args.mix, args.workers, args.requests, args.callgrind)
    gc_us = ", ".join(f"gen{g} {us:.1f}" for g, us in enumerate(found["gc_us"]))
    rates = ", ".join(f"gen{g} {rate:.2f}" for g, rate in enumerate(found["collections_per_1000"]))
    in_flight = f"{args.workers} in flight" if found["interface"] == "asgi" else f"one at a time on {args.workers} sessions"
    print(
        f"{args.app} {args.library} {args.store} {args.mix}: {found['requests']} requests, {in_flight}; "
        f"per request: CPU {found['cpu_us']:.0f} µs, wall {found['wall_us']:.0f} µs, GC µs {gc_us}; "
        f"collections per 1000 requests: {rates}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(found) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

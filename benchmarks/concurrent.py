"""What one request costs under concurrency, in process: CPU, cyclic GC and (under callgrind)
machine instructions per request, for an ASGI app against the real store.

``workers`` coroutines each send ``requests`` requests on a session of their own through the app,
called in process as :mod:`benchmarks.bytecodes` does, so every request suspends on the store the
way it does under uvicorn, with the others in flight; no HTTP server and no load generator share
the measurement. CPU time moves with this machine's noise; instructions do not::

    benchmarks/.venv/bin/python -m benchmarks.concurrent --app coatcheck_asgi --store redis
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=/tmp/cg.out \\
        benchmarks/.venv/bin/python -m benchmarks.concurrent --app floor_asgi --store redis --callgrind

With ``--callgrind`` only the measured requests are counted (``callgrind_control -i on/off``);
the instructions per request are callgrind's ``Collected`` total divided by the requests printed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import os
import subprocess
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from .apps._common import GCMeter
from .bytecodes import request, session_cookie
from .run import MIXES

T = TypeVar("T")
STORE_URLS = {"memory": "memory://", "redis": "redis://127.0.0.1:6379/0"}


def _callgrind(switch: str) -> None:
    subprocess.run(["callgrind_control", "-i", switch, str(os.getpid())], capture_output=True, check=False)


async def measure(app: Any, mix: str, workers: int, requests: int, callgrind: bool) -> dict[str, Any]:
    """CPU and GC per request over ``workers`` x ``requests`` requests (after a warm-up)."""
    path, with_cookie = MIXES[mix]
    cookies = [session_cookie(await request(app, "/rmw", None)) if with_cookie else None for _ in range(workers)]

    async def worker(cookie: str | None, count: int) -> None:
        for _ in range(count):
            await request(app, path, cookie)

    await asyncio.gather(*(worker(cookie, 20) for cookie in cookies))
    gc.collect()
    meter = GCMeter()
    gc.callbacks.append(meter)
    if callgrind:
        _callgrind("on")
    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker(cookie, requests) for cookie in cookies))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if callgrind:
        _callgrind("off")
    gc.callbacks.remove(meter)
    total = workers * requests
    return {
        "requests": total,
        "cpu_us": cpu * 1e6 / total,
        "wall_us": wall * 1e6 / total,
        "gc_us": [seconds * 1e6 / total for seconds in meter.seconds],
        "collections_per_1000": [count * 1000 / total for count in meter.count],
    }


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` on uvloop, as uvicorn does (asyncio's loop where uvloop is missing)."""
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return asyncio.run(coroutine)
    result: T = uvloop.run(coroutine)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--app", default="coatcheck_asgi", help="a module of benchmarks/apps (default coatcheck_asgi)")
    parser.add_argument("--store", choices=sorted(STORE_URLS), default="redis")
    parser.add_argument("--mix", choices=sorted(MIXES), default="rmw")
    parser.add_argument("--workers", type=int, default=32, help="requests in flight (default 32, as wrk -c32)")
    parser.add_argument("--requests", type=int, default=300, help="requests per worker (default 300)")
    parser.add_argument("--callgrind", action="store_true", help="count instructions of the measured part only")
    args = parser.parse_args(argv)
    os.environ.update(BENCH_STORE=args.store, BENCH_STORE_URL=STORE_URLS[args.store], BENCH_REDIS_URL=STORE_URLS["redis"])
    app = importlib.import_module(f"benchmarks.apps.{args.app}").app
    found = run(measure(app, args.mix, args.workers, args.requests, args.callgrind))
    gc_us = ", ".join(f"gen{g} {us:.1f}" for g, us in enumerate(found["gc_us"]))
    rates = ", ".join(f"gen{g} {rate:.2f}" for g, rate in enumerate(found["collections_per_1000"]))
    print(
        f"{args.app} {args.store} {args.mix}: {found['requests']} requests, {args.workers} in flight; "
        f"per request: CPU {found['cpu_us']:.0f} µs, wall {found['wall_us']:.0f} µs, GC µs {gc_us}; "
        f"collections per 1000 requests: {rates}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

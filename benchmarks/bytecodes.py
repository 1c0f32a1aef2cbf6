"""Python bytecodes per request, counted in process: a measure that machine noise cannot move.

    benchmarks/.venv/bin/python -m benchmarks.bytecodes [--requests 20]

Calls each ASGI app of the HTTP benchmark on the memory store (the ceiling, the floor,
coatcheck, starsessions, Starlette's signed cookie) directly, without a server, and counts the
bytecodes the interpreter runs per request (``sys.settrace`` with opcode events), by package.
The count is the same on every run and every machine for the same code and versions, so it
shows what a change to the hot path saves even where req/s swings by 20% between runs. It
leaves out the server (uvicorn) and the C code a bytecode calls (hashing, JSON, regex).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import importlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from . import report
from ._inprocess import asgi_cookie, asgi_request
from .run import MIXES

APPS = {  # label -> (module, store)
    "ceiling (Starlette, no session)": ("plain_starlette", "none"),
    "floor (least possible session)": ("floor_asgi", "memory"),
    "coatcheck": ("coatcheck_asgi", "memory"),
    "starsessions": ("starsessions_app", "memory"),
    "Starlette signed cookie": ("starlette_cookie", "cookie"),
}


class Counter:
    """Counts opcode events by the top-level package of the running code."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()

    def trace(self, frame: FrameType, event: str, arg: Any) -> Callable[..., Any]:
        frame.f_trace_opcodes = True
        if event == "opcode":
            self.counts[package(frame.f_code.co_filename)] += 1
        return self.trace


def package(filename: str) -> str:
    """``coatcheck``, ``starlette``, ... for a code object's file; ``stdlib`` or ``app`` otherwise."""
    parts = filename.replace("\\", "/").split("/")
    for marker in ("site-packages", "src"):
        if marker in parts and parts.index(marker) + 1 < len(parts):
            return parts[parts.index(marker) + 1].removesuffix(".py")
    if "benchmarks" in parts:
        return "app"
    return "stdlib"


async def count(app: Any, path: str, cookie: str | None, requests: int) -> collections.Counter[str]:
    """Bytecodes per package over ``requests`` requests (after two unrecorded ones)."""
    for _ in range(2):
        await asgi_request(app, path, cookie)
    counter = Counter()
    sys.settrace(counter.trace)
    try:
        for _ in range(requests):
            await asgi_request(app, path, cookie)
    finally:
        sys.settrace(None)
    return counter.counts


async def measure(requests: int) -> list[tuple[str, str, collections.Counter[str]]]:
    """(app label, mix, counts) for every app and mix."""
    found = []
    for label, (module, store) in APPS.items():
        os.environ["BENCH_STORE"] = store
        os.environ["BENCH_STORE_URL"] = "memory://"
        app = importlib.import_module(f"benchmarks.apps.{module}").app
        cookie = asgi_cookie(await asgi_request(app, "/rmw", None))
        for mix, (path, with_cookie) in MIXES.items():
            found.append((label, mix, await count(app, path, cookie if with_cookie else None, requests)))
    return found


def rows(found: list[tuple[str, str, collections.Counter[str]]], requests: int) -> list[dict[str, Any]]:
    """Per app and mix: bytecodes per request, what they add to the ceiling, the top packages."""
    ceiling = {mix: sum(c.values()) for label, mix, c in found if label.startswith("ceiling")}
    return [
        {
            "app": label,
            "mix": mix,
            "bytecodes": sum(counts.values()) / requests,
            "x_ceiling": sum(counts.values()) / ceiling[mix],
            "added": (sum(counts.values()) - ceiling[mix]) / requests,
            "where": {name: n / requests for name, n in counts.most_common(4)},
        }
        for label, mix, counts in found
    ]


def main(argv: list[str] | None = None) -> int:
    """Count, print the table, and write the JSON the benchmark report reads."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20, help="requests counted per app and mix (default 20)")
    parser.add_argument("--quick", action="store_true", help="count 5 requests per app and mix")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    requests = 5 if args.quick else args.requests
    result = {"requests": requests, "rows": rows(asyncio.run(measure(requests)), requests)}
    report.print_table("Python bytecodes per request (in process, memory store)", report.bytecode_table, result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

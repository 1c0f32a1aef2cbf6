"""What each of coatcheck's guarantees costs a request, by ablation, and what is left between
coatcheck and the floor: machine instructions per request under callgrind, Starlette (ASGI, 32
requests in flight, 25 each, steady mode, as the headline table), one process at a time.

    benchmarks/.venv/bin/python -m benchmarks.ablation [--stores memory redis] [--mixes rmw read] [--json PATH]

For each store and mix it measures Starlette with no session, the floor, coatcheck, coatcheck
with each guarantee of :data:`benchmarks.apps._ablate.ABLATIONS` taken out alone, and with all
of them out. A guarantee's cost is coatcheck's figure minus the figure without it; what is left
is coatcheck with every guarantee out, minus the floor: the price of everything else (the flows
and their driver, the cookie and header handling, rotation, login, logout, events and the
other features a request does not use, kept ready).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from ._infra import log
from .apps._ablate import ABLATIONS
from .concurrent import FrameworkApp, _child

STORES = ("memory", "redis", "postgres", "sqlite", "mysql")
ALL = "all"


def _entries(store: str) -> dict[str, FrameworkApp]:
    """The apps measured on ``store``, by column name."""
    coatcheck = FrameworkApp("Starlette", "async", "coatcheck.asgi", "coatcheck_asgi", "coatcheck", store)
    return {
        "none": FrameworkApp("Starlette", "async", "none", "plain_starlette", "plain", "none"),
        "floor": FrameworkApp("Starlette", "async", "floor", "floor_asgi", "floor", store),
        "coatcheck": coatcheck,
        **{name: FrameworkApp(**{**vars(coatcheck), "ablate": (name,)}) for name in ABLATIONS},
        ALL: FrameworkApp(**{**vars(coatcheck), "ablate": tuple(ABLATIONS)}),
    }


def measure(stores: list[str], mixes: list[str], workers: int, requests: int) -> dict[str, dict[str, float]]:
    """Instructions per request of every app of :func:`_entries`, by ``"store mix"`` and column."""
    args = argparse.Namespace(workers=workers, requests=requests, instructions=True)
    found: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="coatcheck-ablation-") as work:
        for store in stores:
            for mix in mixes:
                figures = found[f"{store} {mix}"] = {}
                for column, entry in _entries(store).items():
                    figures[column] = _child(entry, mix, args, Path(work))["instructions"]
                    log(f"{store} {mix} {column}: {figures[column] / 1000:,.1f}k")
    return found


def table(found: dict[str, dict[str, float]]) -> str:
    """The ablation as a markdown table (thousands of instructions per request)."""
    names = list(ABLATIONS)
    head = ["store, mix", "floor's cost", "coatcheck's cost", *(f"{name}" for name in names), "all four"]
    head += ["coatcheck without them", "left over the floor", "coatcheck / floor", "without them / floor"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for row, figures in found.items():
        base = figures["none"]
        floor, ours, bare = figures["floor"] - base, figures["coatcheck"] - base, figures[ALL] - base
        costs = [figures["coatcheck"] - figures[name] for name in names] + [ours - bare]
        cells = [f"{floor / 1000:,.1f}k", f"{ours / 1000:,.1f}k", *(f"{cost / 1000:,.1f}k" for cost in costs)]
        cells += [f"{bare / 1000:,.1f}k", f"{(bare - floor) / 1000:,.1f}k", f"{ours / floor:.2f}x", f"{bare / floor:.2f}x"]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stores", nargs="+", default=["memory", "redis"], choices=STORES)
    parser.add_argument("--mixes", nargs="+", default=["rmw", "read"], choices=("rmw", "read", "nocookie"))
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--requests", type=int, default=25)
    parser.add_argument("--json", help="also write every figure here")
    args = parser.parse_args(argv)
    found = measure(args.stores, args.mixes, args.workers, args.requests)
    print(table(found))
    if args.json:
        Path(args.json).write_text(json.dumps(found, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Two commits side by side, in the figures noise cannot move: machine instructions per request
under callgrind, and Python bytecodes per request.

    benchmarks/.venv/bin/python -m benchmarks.commits BASE [HEAD] [--stores memory redis] [--repeats 3]

Each commit is exported with ``git archive`` into a scratch directory, and its own
``benchmarks.concurrent`` (the ASGI app, ``--workers 8 --requests 50``) runs there under
callgrind for every store and mix, one process at a time, then its own ``benchmarks.bytecodes``.
The table gives both figures and the change; a change over 3% is marked.

What still moves (measured on a 2-core machine): SQLite's read-modify-write by about 2% between
runs (its WAL checkpoint falls differently with the threads' interleaving), PostgreSQL's by up to
5% (the pool starts empty and, in some runs, opens one more connection while requests are
measured). Those pairs run ``--repeats`` times, and the table compares their lowest figure: the
run that opened no connection.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from . import _infra

STORES = ("memory", "sqlite", "redis", "postgres")
MIXES = ("rmw", "read", "nocookie")
NOISY = {("sqlite", "rmw"), ("postgres", "rmw"), ("postgres", "read")}
THRESHOLD = 0.03  # a change over this is marked


def export(commit: str, into: Path) -> Path:
    """The tree of ``commit`` in ``into``, from ``git archive``."""
    archive = subprocess.run(["git", "archive", "--format=tar", commit], cwd=_infra.ROOT, capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into


def _environment(tree: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{tree / 'src'}{os.pathsep}{tree}", "PYTHONHASHSEED": "0"}


def instructions(tree: Path, store: str, mix: str, work: Path, features: tuple[str, ...] = ()) -> float:
    """Machine instructions per request of the tree's ASGI app on ``store`` with ``mix`` (and
    coatcheck's optional ``features`` on: see ``benchmarks/apps/_common.FEATURES``)."""
    result, trace = work / "result.json", work / "callgrind.out"
    argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={trace}"]
    argv += [sys.executable, "-m", "benchmarks.concurrent", "--app", "coatcheck_asgi", "--store", store, "--mix", mix]
    argv += ["--callgrind", "--workers", "8", "--requests", "50", "--json", str(result)]
    argv += [f"--feature={feature}" for feature in features]
    done = subprocess.run(argv, cwd=tree, env=_environment(tree), capture_output=True, text=True, timeout=1800, check=False)
    totals = re.search(r"^totals: (\d+)", trace.read_text(), re.MULTILINE) if trace.exists() else None
    if done.returncode != 0 or totals is None:
        raise RuntimeError(f"{store} {mix} failed in {tree}: {done.stderr[-2000:]}")
    requests: int = json.loads(result.read_text())["requests"]
    return int(totals.group(1)) / requests


def bytecodes(tree: Path, work: Path) -> dict[str, float]:
    """coatcheck's Python bytecodes per request, by mix (memory store)."""
    out = work / "bytecodes.json"
    argv = [sys.executable, "-m", "benchmarks.bytecodes", "--json", str(out)]
    subprocess.run(argv, cwd=tree, env=_environment(tree), capture_output=True, timeout=600, check=True)
    return {row["mix"]: row["bytecodes"] for row in json.loads(out.read_text())["rows"] if row["app"] == "coatcheck"}


def measure(commit: str, stores: list[str], mixes: list[str], repeats: int) -> dict[str, Any]:
    """Every figure of one commit: {"instructions": {"store mix": [runs]}, "bytecodes": {mix: n}}."""
    with tempfile.TemporaryDirectory(prefix="coatcheck-commit-") as scratch:
        tree = export(commit, Path(scratch) / "tree")
        work = Path(scratch)
        runs: dict[str, list[float]] = {}
        for store in stores:
            for mix in mixes:
                count = repeats if (store, mix) in NOISY else 1
                runs[f"{store} {mix}"] = [instructions(tree, store, mix, work) for _ in range(count)]
                print(
                    f"{commit} {store} {mix}: {', '.join(f'{run / 1000:,.1f}k' for run in runs[f'{store} {mix}'])}",
                    file=sys.stderr,
                )
        return {"instructions": runs, "bytecodes": bytecodes(tree, work)}


def table(base: str, head: str, before: dict[str, Any], after: dict[str, Any]) -> str:
    """The Markdown table of both commits' figures and the change."""

    def row(name: str, old: float, new: float, unit: float) -> str:
        change = new / old - 1
        mark = " (over 3%)" if change > THRESHOLD else ""
        return f"| {name} | {old / unit:,.1f} | {new / unit:,.1f} | {change:+.1%}{mark} |"

    lines = [f"| figure | {base} | {head} | change |", "|---|---:|---:|---:|"]
    for name, runs in before["instructions"].items():
        lines.append(row(f"{name}, k instructions/request", min(runs), min(after["instructions"][name]), 1000))
    for mix, count in before["bytecodes"].items():
        lines.append(row(f"{mix}, bytecodes/request (memory)", count, after["bytecodes"][mix], 1))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure both commits and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base", help="the commit to compare against")
    parser.add_argument("head", nargs="?", default="HEAD", help="the commit measured (default HEAD)")
    parser.add_argument("--stores", nargs="+", default=list(STORES), choices=STORES)
    parser.add_argument("--mixes", nargs="+", default=list(MIXES), choices=MIXES)
    parser.add_argument("--repeats", type=int, default=5, help="runs of the noisy pairs; the lowest is compared (default 5)")
    parser.add_argument("--json", help="also write every figure here")
    args = parser.parse_args(argv)
    before = measure(args.base, args.stores, args.mixes, args.repeats)
    after = measure(args.head, args.stores, args.mixes, args.repeats)
    print(table(args.base, args.head, before, after))
    if args.json:
        Path(args.json).write_text(json.dumps({args.base: before, args.head: after}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

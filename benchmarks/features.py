"""What each optional feature costs a request, in machine instructions under callgrind: the
ASGI app (8 requests in flight, 50 each) with nothing on, then with each feature on alone, on the
same tree in one run.

    benchmarks/.venv/bin/python -m benchmarks.features [COMMIT] [--stores memory redis] [--mixes rmw read nocookie]

The commit (HEAD unless given) is exported with ``git archive`` and measured there, so edits
to the work tree during the run change nothing.

The features (``benchmarks/apps/_common.FEATURES``): Prometheus metrics, OpenTelemetry metrics
(the SDK with an in-memory reader: what the app's own exporter adds is not counted), the same
with spans, one subscriber to every event, device metadata, encryption at rest.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from .apps._common import FEATURES
from .commits import MIXES, export, instructions

STORES = ("memory", "sqlite", "redis", "postgres")


def table(rows: dict[str, dict[str, float]]) -> str:
    """The figures as a markdown table: nothing on, then each feature with its change."""
    features = [name for name in next(iter(rows.values())) if name != "none"]
    lines = ["| store, mix | nothing on | " + " | ".join(features) + " |", "|---|" + "---:|" * (len(features) + 1)]
    for name, figures in rows.items():
        base = figures["none"]
        cells = [f"{base / 1000:,.1f}k"] + [f"{figures[f] / 1000:,.1f}k ({figures[f] / base - 1:+.1%})" for f in features]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure the tree as it is and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("commit", nargs="?", default="HEAD", help="the commit measured (default HEAD)")
    parser.add_argument("--stores", nargs="+", default=["memory", "redis"], choices=STORES)
    parser.add_argument("--mixes", nargs="+", default=list(MIXES), choices=MIXES)
    parser.add_argument("--features", nargs="+", default=list(FEATURES), choices=FEATURES)
    parser.add_argument("--json", help="also write every figure here")
    args = parser.parse_args(argv)
    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="coatcheck-features-") as scratch:
        tree = export(args.commit, Path(scratch) / "tree")
        for store in args.stores:
            for mix in args.mixes:
                figures = rows[f"{store} {mix}"] = {}
                for feature in ("", *args.features):
                    figures[feature or "none"] = instructions(tree, store, mix, Path(scratch), (feature,) if feature else ())
                    print(f"{store} {mix} {feature or 'none'}: {figures[feature or 'none'] / 1000:,.1f}k", file=sys.stderr)
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

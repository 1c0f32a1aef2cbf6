"""The WSGI ceiling: the same Flask endpoints with no session at all."""

from __future__ import annotations

from typing import Any

import flask

from ._common import stats

app = flask.Flask(__name__)


@app.get("/rmw")
def rmw() -> str:
    """What the session endpoints answer, minus the session."""
    return "1"


@app.get("/read")
def read() -> str:
    """What the session endpoints answer, minus the session."""
    return "0"


@app.get("/__bench/stats")
def bench_stats() -> dict[str, Any]:
    """Counters for the harness."""
    return stats(None)

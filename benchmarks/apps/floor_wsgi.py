"""The floor (``_floor.FloorWSGI``) around the Flask endpoints, on ``BENCH_STORE``."""

from __future__ import annotations

from typing import Any

import flask

from ._common import stats
from ._floor import FloorWSGI, store

load, save = store(asynchronous=False)
app = flask.Flask(__name__)
app.wsgi_app = FloorWSGI(app.wsgi_app, load, save)  # type: ignore[method-assign]


@app.get("/rmw")
def rmw() -> str:
    """Read the counter, increment it, save."""
    session = flask.request.environ["floor.session"]
    n: int = session.get("n", 0) + 1
    session["n"] = n
    return str(n)


@app.get("/read")
def read() -> str:
    """Read the counter only."""
    return str(flask.request.environ["floor.session"].get("n", 0))


@app.get("/__bench/stats")
def bench_stats() -> dict[str, Any]:
    """Counters for the harness."""
    return stats(None)

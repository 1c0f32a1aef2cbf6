"""Flask's own signed-cookie session (no server-side store)."""

from __future__ import annotations

from typing import Any

import flask

from ._common import LIFETIME, SIGNING_KEY, stats

app = flask.Flask(__name__)
app.config.update(SECRET_KEY=SIGNING_KEY, PERMANENT_SESSION_LIFETIME=LIFETIME)


@app.get("/rmw")
def rmw() -> str:
    """Read the counter, increment it, save."""
    n: int = flask.session.get("n", 0) + 1
    flask.session["n"] = n
    return str(n)


@app.get("/read")
def read() -> str:
    """Read the counter only."""
    return str(flask.session.get("n", 0))


@app.get("/__bench/stats")
def bench_stats() -> dict[str, Any]:
    """Counters for the harness."""
    return stats(None)

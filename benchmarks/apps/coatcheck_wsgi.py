"""coatcheck's WSGI middleware around the Flask endpoints, on the store ``BENCH_STORE_URL``."""

from __future__ import annotations

from typing import Any

import flask

from coatcheck.wsgi import SessionMiddleware, get_session

from ._common import coatcheck_manager, purge_interval, stats

manager, counter = coatcheck_manager()
app = flask.Flask(__name__)
app.wsgi_app = SessionMiddleware(app.wsgi_app, manager, purge_interval=purge_interval())  # type: ignore[method-assign]


@app.get("/rmw")
def rmw() -> str:
    """Read the counter, increment it, save."""
    session = get_session(flask.request.environ)
    n: int = session.get("n", 0) + 1
    session["n"] = n
    return str(n)


@app.get("/read")
def read() -> str:
    """Read the counter only."""
    return str(get_session(flask.request.environ).get("n", 0))


@app.get("/__bench/stats")
def bench_stats() -> dict[str, Any]:
    """Counters for the harness."""
    return stats(counter)

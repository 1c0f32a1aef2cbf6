"""coatcheck's Flask integration (``coatcheck.flask.Sessions``) with the endpoints on ``flask.session``,
on the store ``BENCH_STORE_URL``: the same views as Flask's cookie session and Flask-Session."""

from __future__ import annotations

from typing import Any

import flask

from coatcheck.flask import Sessions

from ._common import LIFETIME, coatcheck_store, purge_interval, stats

store, counter = coatcheck_store()
app = flask.Flask(__name__)
# Plain http, as the other apps: no Secure attribute (Flask's cookie and Flask-Session send none either).
app.config.update(COATCHECK_STORE=store, COATCHECK_COOKIE_SECURE=False, PERMANENT_SESSION_LIFETIME=LIFETIME)
sessions = Sessions(app, purge_interval=purge_interval())


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
    return stats(counter)

"""The Flask endpoints every Flask app of the benchmark serves, on ``flask.session``, whatever
session layer the app installs."""

from __future__ import annotations

from typing import Any

import flask

from ._common import CountingStore, stats


def add_session_endpoints(app: flask.Flask, counter: CountingStore | None = None) -> None:
    """``/rmw`` (read the counter, add one, save), ``/read`` (read it) and ``/__bench/stats``."""

    @app.get("/rmw")
    def rmw() -> str:
        n: int = flask.session.get("n", 0) + 1
        flask.session["n"] = n
        return str(n)

    @app.get("/read")
    def read() -> str:
        return str(flask.session.get("n", 0))

    @app.get("/__bench/stats")
    def bench_stats() -> dict[str, Any]:
        return stats(counter)

"""Flask-Session on Redis or on SQLAlchemy over SQLite (``BENCH_SQLITE_PATH``), with its defaults."""

from __future__ import annotations

from typing import Any

import flask
import redis
from flask_session import Session
from flask_sqlalchemy import SQLAlchemy

from ._common import LIFETIME, SIGNING_KEY, count_redis_round_trips, env, redis_url, stats, store_kind

app = flask.Flask(__name__)
app.config.update(SECRET_KEY=SIGNING_KEY, PERMANENT_SESSION_LIFETIME=LIFETIME)
if store_kind() == "redis":
    count_redis_round_trips()
    app.config.update(SESSION_TYPE="redis", SESSION_REDIS=redis.Redis.from_url(redis_url()))
else:
    app.config.update(SQLALCHEMY_DATABASE_URI=f"sqlite:///{env('BENCH_SQLITE_PATH')}")
    app.config.update(SESSION_TYPE="sqlalchemy", SESSION_SQLALCHEMY=SQLAlchemy(app))
Session(app)


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

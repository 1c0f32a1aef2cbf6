"""Flask-Session on Redis or on SQLAlchemy over SQLite (``BENCH_SQLITE_PATH``), with its defaults."""

from __future__ import annotations

import flask
import redis
from flask_session import Session
from flask_sqlalchemy import SQLAlchemy

from ._common import LIFETIME, SIGNING_KEY, count_redis_round_trips, env, redis_url, store_kind
from ._flask import add_session_endpoints

app = flask.Flask(__name__)
app.config.update(SECRET_KEY=SIGNING_KEY, PERMANENT_SESSION_LIFETIME=LIFETIME)
if store_kind() == "redis":
    count_redis_round_trips()
    app.config.update(SESSION_TYPE="redis", SESSION_REDIS=redis.Redis.from_url(redis_url()))
else:
    app.config.update(SQLALCHEMY_DATABASE_URI=f"sqlite:///{env('BENCH_SQLITE_PATH')}")
    app.config.update(SESSION_TYPE="sqlalchemy", SESSION_SQLALCHEMY=SQLAlchemy(app))
Session(app)

add_session_endpoints(app)

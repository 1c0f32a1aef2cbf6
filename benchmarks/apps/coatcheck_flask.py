"""coatcheck's Flask integration (``coatcheck.flask.Sessions``) with the endpoints on ``flask.session``,
on the store ``BENCH_STORE_URL``: the same views as Flask's cookie session and Flask-Session."""

from __future__ import annotations

import flask

from coatcheck.flask import Sessions

from ._common import LIFETIME, bench_clock, coatcheck_store, purge_interval
from ._flask import add_session_endpoints

store, counter = coatcheck_store()
app = flask.Flask(__name__)
# Plain http, as the other apps: no Secure attribute (Flask's cookie and Flask-Session send none either).
app.config.update(COATCHECK_STORE=store, COATCHECK_COOKIE_SECURE=False, PERMANENT_SESSION_LIFETIME=LIFETIME)
sessions = Sessions(app, purge_interval=purge_interval(), clock=bench_clock())

add_session_endpoints(app, counter)

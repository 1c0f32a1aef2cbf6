"""Flask's own signed-cookie session (no server-side store)."""

from __future__ import annotations

import flask

from ._common import LIFETIME, SIGNING_KEY
from ._flask import add_session_endpoints

app = flask.Flask(__name__)
app.config.update(SECRET_KEY=SIGNING_KEY, PERMANENT_SESSION_LIFETIME=LIFETIME)

add_session_endpoints(app)

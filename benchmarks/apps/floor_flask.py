"""The floor behind Flask's own session seam: the least a session layer that serves
``flask.session`` can cost, on ``BENCH_STORE``.

``floor_wsgi`` keeps its session in the WSGI environ, which the views read instead of
``flask.session``: it costs what the floor's own work costs, and none of what Flask does around a
session interface (``open_session``, ``is_null_session``, ``save_session``, the request context's
session). This app runs the same hand-inlined work (``_floor``) as a
:class:`flask.sessions.SessionInterface`, for the same views as coatcheck.flask, Flask-Session and
Flask's cookie session; the difference between the two floors is what any integration on
``flask.session`` pays before it does anything of its own.
"""

from __future__ import annotations

from typing import Any

import flask
from flask.sessions import SessionInterface, SessionMixin

from ._flask import add_session_endpoints
from ._floor import FloorSession, close_session, open_session, store, store_key


class _Session(FloorSession, SessionMixin):
    """The floor's session, as Flask's session mixin (``permanent``, ``modified``, ``accessed``)."""

    key: str | None = None
    raw: Any = None


class FloorInterface(SessionInterface):
    """Load in ``open_session``; save in ``save_session`` when the session changed."""

    def __init__(self) -> None:
        self.load, self.save = store(asynchronous=False)

    def open_session(self, app: flask.Flask, request: flask.Request) -> _Session:
        key = store_key(request.headers.get("Cookie"))
        raw = self.load(key) if key else None
        session = _Session(open_session(raw))
        session.key, session.raw = key, raw
        return session

    def save_session(self, app: flask.Flask, session: SessionMixin, response: flask.Response) -> None:
        assert isinstance(session, _Session)
        response.headers.add("Vary", "Cookie")
        if session.changed:
            save_key, data, set_cookie = close_session(session, session.key if session.raw else None)
            self.save(save_key, data, session.raw)
            if set_cookie:
                response.headers.add("Set-Cookie", set_cookie)


app = flask.Flask(__name__)
app.session_interface = FloorInterface()
add_session_endpoints(app)

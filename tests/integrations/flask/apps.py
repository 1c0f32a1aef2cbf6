"""One small Flask app that uses ``flask.session`` the Flask way, with ``Sessions(app)`` installed:

/public     never touches the session          /peek     the session data and user as JSON
/set        POST ?k=&v= writes one key          /login    POST ?user= ``get_session().login`` (new ID)
/logout     POST ``get_session().logout()``     /clear    POST ``session.clear()``, Flask's way out
/whoami     the user or "anon"                  /flash    POST ?m= ``flash()``es a message
/page       a Jinja template that reads ``session`` and the flashed messages
/permanent  POST ?on=1|0 sets ``session.permanent`` and writes a key
/tagged     POST stores one value of each tagged type; GET says which came back equal, type included
/hold       POST ?k=&v= writes one key, then waits until every held request has loaded and written
/revoke     POST ?user= ``sessions.manager.revoke_user``
/fail       writes, then answers 500            /cached   writes, with the app's own Cache-Control (?cc=)
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import flask
from markupsafe import Markup

from coatcheck.flask import Sessions, get_session

TAGGED: dict[str, Any] = {
    "tuple": (1, "two", (3.5, None), [True]),
    "bytes": b"\xff\x00binary",
    "markup": Markup("<em>safe</em>"),
    "uuid": UUID("12345678-1234-5678-1234-567812345678"),
    "naive": datetime(2024, 2, 29, 13, 14, 15, 123456),
    "utc": datetime(2024, 2, 29, 13, 14, 15, tzinfo=timezone.utc),
    "offset": datetime(2024, 2, 29, 13, 14, 15, 1, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    "nested": {"pairs": [(1, b"a"), (2, Markup("<b>"))], "when": [datetime(2000, 1, 1)]},
    "lookalikes": {" t": "not a tuple", " t__": "not a tag", " di": {" b": "not bytes"}},
}


def same(a: Any, b: Any) -> bool:
    """Equal, with the same type at every level (and, for datetimes, the same UTC offset)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[key], b[key]) for key in a)
    if isinstance(a, datetime):
        return bool(a == b) and a.utcoffset() == b.utcoffset()
    return bool(a == b)


class Gate:
    """Holds each ``/hold`` request after its write until ``parties`` of them are in: all of them
    loaded the session before any commits (the interleaving load A, load B, commit A, commit B)."""

    def __init__(self, parties: int = 2) -> None:
        self.barrier = threading.Barrier(parties, timeout=10)


PAGE = """{% for message in get_flashed_messages() %}<p class="flash">{{ message }}</p>{% endfor %}
<p>name: {{ session.get("name", "nobody") }}, user: {{ session.user_id or "anon" }}</p>"""


def build(store: object, clock: Any, gate: Gate | None = None, **settings: Any) -> tuple[flask.Flask, Sessions]:
    """The app over ``store`` (a URL or a store object) with ``settings`` in its config."""
    app = flask.Flask(__name__)
    app.config.update(TESTING=True, COATCHECK_STORE=store, **settings)
    sessions = Sessions(app, clock=clock, purge_interval=None)
    session = flask.session  # the proxy, as views use it

    def arg(name: str, default: str | None = None) -> str:
        value = flask.request.args.get(name, default)
        assert value is not None, f"?{name}= is missing"
        return value

    @app.get("/public")
    def public() -> str:
        return "public"

    @app.get("/peek")
    def peek() -> Any:
        return flask.jsonify({"data": dict(session), "user": get_session().user_id})

    @app.post("/set")
    def set_value() -> str:
        session[arg("k")] = arg("v")
        return "ok"

    @app.post("/login")
    def login() -> str:
        get_session().login(arg("user"))
        return "ok"

    @app.post("/logout")
    def logout() -> str:
        get_session().logout()
        return "ok"

    @app.post("/clear")
    def clear() -> str:
        session.clear()
        if "m" in flask.request.args:
            flask.flash(arg("m"))  # written after the end: goes into a new session
        return "ok"

    @app.get("/whoami")
    def whoami() -> str:
        return get_session().user_id or "anon"

    @app.post("/flash")
    def flash() -> str:
        flask.flash(arg("m"))
        if "name" in flask.request.args:
            session["name"] = arg("name")
        return "ok"

    @app.get("/page")
    def page() -> str:
        return flask.render_template_string(PAGE)

    @app.post("/permanent")
    def permanent() -> str:
        session.permanent = arg("on") == "1"
        session["seen"] = True
        return "ok"

    @app.post("/tagged")
    def store_tagged() -> str:
        session.update(TAGGED)
        return "ok"

    @app.get("/tagged")
    def read_tagged() -> Any:
        return flask.jsonify({key: same(session.get(key), value) for key, value in TAGGED.items()})

    @app.post("/hold")
    def hold() -> str:
        session[arg("k")] = arg("v")
        assert gate is not None
        gate.barrier.wait()
        return "ok"

    @app.post("/revoke")
    def revoke() -> str:
        return str(sessions.manager.revoke_user(arg("user")))

    @app.get("/fail")
    def fail() -> tuple[str, int]:
        session["during_error"] = True
        return "boom", 500

    @app.get("/cached")
    def cached() -> flask.Response:
        session["seen"] = True
        return flask.Response("cached", headers={"Cache-Control": arg("cc", "private, max-age=60")})

    return app, sessions

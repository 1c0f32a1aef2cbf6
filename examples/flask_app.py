"""Flask with coatcheck's WSGI middleware: ``flask --app examples.flask_app run``."""

from __future__ import annotations

import flask

from coatcheck import CookieConfig, SessionConfig, SessionManager
from coatcheck.wsgi import SessionMiddleware, get_session

manager = SessionManager("sqlite:///sessions.db", config=SessionConfig(cookie=CookieConfig(secure="auto")))
app = flask.Flask(__name__)
app.wsgi_app = SessionMiddleware(app.wsgi_app, manager)  # type: ignore[method-assign]


@app.get("/")
def home() -> str:
    session = get_session(flask.request.environ)
    session["visits"] = session.get("visits", 0) + 1
    return f"visit {session['visits']}"


@app.post("/login/<name>")
def login(name: str) -> str:
    get_session(flask.request.environ).login(name)  # new session ID, user bound
    return f"hello {name}"

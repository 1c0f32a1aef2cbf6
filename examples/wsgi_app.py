"""A plain WSGI app with coatcheck: ``python examples/wsgi_app.py`` serves http://127.0.0.1:8000."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from wsgiref.simple_server import make_server

from coatcheck import CookieConfig, SessionConfig, SessionManager
from coatcheck.wsgi import SessionMiddleware, StartResponse, get_session

manager = SessionManager("sqlite:///sessions.db", config=SessionConfig(cookie=CookieConfig(secure="auto")))


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    session = get_session(environ)
    session["visits"] = session.get("visits", 0) + 1
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"visit {session['visits']}\n".encode()]


application = SessionMiddleware(app, manager)

if __name__ == "__main__":
    make_server("127.0.0.1", 8000, application).serve_forever()

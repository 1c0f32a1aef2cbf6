"""The demo: a login page and a "Welcome, NAME" page, served by a real HTTP server.

Run it with ``coatcheck demo`` (``--store URL``, ``--host``, ``--port``). It is a plain WSGI app
on the standard library's server, so it needs nothing but coatcheck.
"""

from __future__ import annotations

import html
import socketserver
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIServer, make_server

from .config import CookieConfig, SessionConfig
from .manager import SessionManager
from .session import Session
from .wsgi import SessionMiddleware, StartResponse, get_session

__all__ = ["DemoApp", "make_demo_server"]

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>coatcheck demo</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 42rem; margin: 3rem auto; padding: 0 1rem; color: #222; }}
h1 {{ font-size: 1.6rem; }} table {{ border-collapse: collapse; }} td, th {{ padding: .25rem .75rem; text-align: left; }}
form {{ display: inline-block; margin: .5rem .5rem 0 0; }} .note {{ color: #666; font-size: .9rem; }}
</style></head><body>
{body}
<p class="note">Your browser holds only a random session ID; everything shown here is kept server-side by coatcheck.</p>
</body></html>
"""

_LOGIN = """<h1>coatcheck demo</h1>
<p>Sign in with any name: no password, this only shows the session.</p>
<form method="post" action="/login">
  <label>Name <input type="text" name="username" required maxlength="64" autofocus></label>
  <button type="submit">Log in</button>
</form>"""

_WELCOME = """<h1>Welcome, {name}</h1>
<p>You have visited this page <strong id="visits">{visits}</strong> time{plural} in this session.</p>
<table>
  <tr><th>Session started</th><td id="started">{started}</td></tr>
  <tr><th>Session expires</th><td id="expires">{expires}</td></tr>
</table>
<h2>Your active sessions</h2>
<table id="sessions"><tr><th>Session</th><th>Started</th><th>Expires</th><th></th></tr>
{rows}
</table>
<form method="post" action="/logout"><button type="submit">Log out</button></form>
<form method="post" action="/logout-everywhere"><button type="submit">Log out everywhere</button></form>"""


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


class DemoApp:
    """The demo's WSGI app (without the session middleware)."""

    def __init__(self, manager: SessionManager) -> None:
        self.manager = manager

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        session = get_session(environ)
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "/")
        if (method, path) == ("GET", "/"):
            body = self._welcome(session) if session.user_id else _LOGIN
            return self._respond(start_response, "200 OK", _PAGE.format(body=body))
        if (method, path) == ("POST", "/login"):
            name = self._form(environ).get("username", [""])[0].strip()
            if not 0 < len(name) <= 64:
                return self._respond(
                    start_response, "400 Bad Request", _PAGE.format(body="<p>A name of 1 to 64 characters, please.</p>" + _LOGIN)
                )
            session.login(name)
            session["visits"] = 0
        elif (method, path) == ("POST", "/logout"):
            session.logout()
        elif (method, path) == ("POST", "/logout-everywhere"):
            if session.user_id:
                self.manager.revoke_user(session.user_id)
            session.logout()
        else:
            return self._respond(start_response, "404 Not Found", _PAGE.format(body="<p>Not found. <a href='/'>Home</a></p>"))
        start_response("303 See Other", [("Location", "/"), ("Content-Length", "0")])
        return [b""]

    def _welcome(self, session: Session) -> str:
        assert session.user_id is not None
        session["visits"] = session.get("visits", 0) + 1
        here = self.manager.handle(session)
        rows = "\n".join(
            f"<tr><td><code>{info.handle[:8]}</code></td><td>{_when(info.created_at)}</td><td>{_when(info.expires_at)}</td>"
            f"<td>{'this browser' if info.handle == here else ''}</td></tr>"
            for info in self.manager.list_sessions(session.user_id)
        )
        visits = session["visits"]
        return _WELCOME.format(
            name=html.escape(session.user_id),
            visits=visits,
            plural="" if visits == 1 else "s",
            started=_when(session.created_at),
            expires=_when(session.expires_at),
            rows=rows,
        )

    @staticmethod
    def _form(environ: dict[str, Any]) -> dict[str, list[str]]:
        try:
            length = min(int(environ.get("CONTENT_LENGTH") or 0), 4096)
        except ValueError:
            length = 0
        return parse_qs(environ["wsgi.input"].read(length).decode("utf-8", "replace"))

    @staticmethod
    def _respond(start_response: StartResponse, status: str, page: str) -> list[bytes]:
        body = page.encode()
        start_response(status, [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))])
        return [body]


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


def make_demo_server(store: str, host: str = "127.0.0.1", port: int = 8000) -> WSGIServer:
    """Build the demo's HTTP server (call ``serve_forever()`` on it).

    The store is checked first: an unreachable store raises before the server listens.
    """
    config = SessionConfig(cookie=CookieConfig(secure="auto"))
    manager = SessionManager(store, config=config)
    app = SessionMiddleware(DemoApp(manager), manager)
    return make_server(host, port, app, server_class=_ThreadingWSGIServer)

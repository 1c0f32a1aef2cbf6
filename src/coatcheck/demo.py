"""The demo: a login page and a "your devices" page, served by a real HTTP server.

Run it with ``coatcheck demo`` (``--store URL``, ``--host``, ``--port``). It is a plain WSGI app
on the standard library's server, so it needs nothing but coatcheck.

The devices page lists the user's live sessions (``SessionConfig(devices=True)`` keeps each
one's browser, network and login time), marks the one in use, and ends any other one, or all of
them. Every form posts a per-session CSRF token, checked with the request's ``Origin`` on each
POST; the session cookie is ``SameSite=Lax`` too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import secrets
import socketserver
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs, urlsplit
from wsgiref.simple_server import WSGIServer, make_server

from .config import CookieConfig, SessionConfig
from .manager import SessionInfo, SessionManager
from .session import Session
from .wsgi import SessionMiddleware, StartResponse, get_session

__all__ = ["DemoApp", "make_demo_server"]

CSRF_KEY = "csrf"  # the session key (and form field) of the CSRF token
FLASH_KEY = "flash"  # a one-time message for the next page

_CSS = """
:root { color-scheme: light dark; --bg: #f4f6f9; --card: #fff; --text: #18202b; --muted: #5b6574; --line: #e1e5eb;
  --accent: #2457d6; --accent-soft: #e7eefc; --danger: #b93815; --danger-soft: #fdeee8; }
@media (prefers-color-scheme: dark) {
  :root { --bg: #0e1217; --card: #171c23; --text: #e7eaef; --muted: #9aa4b2; --line: #2a323d;
    --accent: #7ea6ff; --accent-soft: #1b2740; --danger: #ff9470; --danger-soft: #3a1f17; }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--text);
  font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Liberation Sans", sans-serif; }
.bar { display: flex; flex-wrap: wrap; justify-content: space-between; align-items: center; gap: .25rem 1rem;
  padding: .8rem 1.25rem; background: var(--card); border-bottom: 1px solid var(--line); }
.brand { font-weight: 700; letter-spacing: -.01em; } .brand b { color: var(--accent); }
.hello { color: var(--muted); font-size: .95rem; }
main { max-width: 46rem; margin: 0 auto; padding: 1.75rem 1rem 3rem; }
h1 { font-size: 1.75rem; line-height: 1.2; margin: 0 0 .35rem; letter-spacing: -.02em; }
h2 { font-size: 1rem; margin: 0 0 .5rem; }
p { margin: 0 0 1rem; } .lead, .note { color: var(--muted); } .note { font-size: .85rem; margin-top: 2rem; }
.flash { padding: .65rem .9rem; border-radius: .6rem; background: var(--accent-soft); }
.error { background: var(--danger-soft); color: var(--danger); }
.card, .device { background: var(--card); border: 1px solid var(--line); border-radius: .9rem;
  box-shadow: 0 1px 2px rgb(16 24 40 / 6%); }
.card { padding: 1.25rem; }
.devices { list-style: none; margin: 1.25rem 0; padding: 0; display: grid; gap: .75rem; }
.device { display: grid; grid-template-columns: auto 1fr auto; align-items: center; gap: .75rem 1rem; padding: 1rem 1.1rem; }
.device.current { border-color: var(--accent); box-shadow: 0 0 0 1px var(--accent); }
.icon { display: grid; place-items: center; width: 2.75rem; height: 2.75rem; border-radius: .75rem;
  background: var(--accent-soft); color: var(--accent); }
.icon svg { width: 1.6rem; height: 1.6rem; }
.name { font-weight: 650; }
.badge { display: inline-block; margin-left: .4rem; padding: .05rem .55rem; border-radius: 999px; vertical-align: .1em;
  background: var(--accent); color: var(--card); font-size: .72rem; font-weight: 700; text-transform: uppercase;
  letter-spacing: .04em; }
.facts { display: flex; flex-wrap: wrap; gap: .1rem 1.25rem; margin: .2rem 0 0; font-size: .875rem; color: var(--muted); }
.facts div { display: flex; gap: .35rem; } .facts dt::after { content: ":"; } .facts dd { margin: 0; color: var(--text); }
form { margin: 0; }
.actions { display: flex; flex-wrap: wrap; gap: .6rem; }
button { font: inherit; font-size: .9rem; font-weight: 600; padding: .5rem 1rem; border-radius: .6rem; cursor: pointer;
  border: 1px solid var(--line); background: var(--card); color: var(--text); }
button:hover { border-color: var(--muted); }
button.primary { background: var(--accent); border-color: var(--accent); color: var(--card); }
button.danger { color: var(--danger); border-color: var(--danger); }
button.danger:hover { background: var(--danger-soft); }
label { display: block; font-weight: 600; margin-bottom: .35rem; }
input[type=text] { font: inherit; width: 100%; padding: .55rem .75rem; margin-bottom: .9rem; border-radius: .6rem;
  border: 1px solid var(--line); background: var(--bg); color: var(--text); }
.session { margin-top: 2rem; padding-top: 1.25rem; border-top: 1px solid var(--line); color: var(--muted); font-size: .9rem; }
.session table { border-collapse: collapse; } .session th, .session td { padding: .15rem 1rem .15rem 0; text-align: left; }
.session th { font-weight: 500; } .session td, .session strong { color: var(--text); }
@media (max-width: 36rem) {
  main { padding-top: 1.25rem; } h1 { font-size: 1.5rem; }
  .device { grid-template-columns: auto 1fr; }
  .device form { grid-column: 1 / -1; } .device form button { width: 100%; }
}
"""
# The page's one stylesheet, allowed by its hash: the policy allows no other style, script or resource.
_CSS_HASH = base64.b64encode(hashlib.sha256(_CSS.encode()).digest()).decode()
_CSP = f"default-src 'none'; style-src 'sha256-{_CSS_HASH}'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
_HEADERS = [
    ("Content-Security-Policy", _CSP),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
    ("Cache-Control", "no-store"),
]

_SVG = (
    '<svg viewBox="0 0 24 24" aria-hidden="true" fill="none" stroke="currentColor" stroke-width="1.6" '
    'stroke-linecap="round" stroke-linejoin="round">{}</svg>'
)
_ICONS = {
    "phone": _SVG.format('<rect x="7" y="2.5" width="10" height="19" rx="2"/><path d="M11 18.5h2"/>'),
    "tablet": _SVG.format('<rect x="4.5" y="2.5" width="15" height="19" rx="2"/><path d="M11 18.5h2"/>'),
    "computer": _SVG.format('<rect x="4" y="4.5" width="16" height="11" rx="1.5"/><path d="M2 19.5h20"/>'),
}
_ICON_OF_OS = {"iOS": "phone", "Android": "phone", "iPadOS": "tablet"}


def _page(title: str, body: str, user: str | None = None) -> str:
    hello = f'<span class="hello">Welcome, {html.escape(user)}</span>' if user is not None else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · coatcheck demo</title><style>{_CSS}</style></head><body>
<header class="bar"><span class="brand">coat<b>check</b> demo</span>{hello}</header>
<main>
{body}
<p class="note">Your browser holds only a random session ID in an HttpOnly cookie;
everything on this page is kept server-side by coatcheck. Times are in UTC.</p>
</main>
</body></html>
"""


def _login(error: str = "") -> str:
    message = f'<p class="flash error" role="alert">{html.escape(error)}</p>' if error else ""
    return f"""<h1>Sign in</h1>
<p class="lead">Any name will do: there is no password, this only shows the session.</p>
{message}<form class="card" method="post" action="/login">
  <label for="username">Name</label>
  <input type="text" id="username" name="username" required maxlength="64" autocomplete="username" autofocus>
  <button class="primary" type="submit">Log in</button>
</form>"""


def _when(timestamp: float | None) -> str:
    """``timestamp`` in UTC, in a ``<time>`` element."""
    if timestamp is None:
        return "-"
    moment = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    return f'<time datetime="{moment:%Y-%m-%dT%H:%M:%SZ}">{moment:%Y-%m-%d %H:%M} UTC</time>'


def _ago(then: float | None, now: float) -> str:
    """How long ago ``then`` was, in words: "just now", "5 minutes ago"."""
    if then is None:
        return "unknown"
    seconds = max(0.0, now - then)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'' if count == 1 else 's'} ago"
    return "just now"


def _device_name(info: SessionInfo) -> str:
    """What a person calls the device of ``info``: "Firefox on Linux", "Safari on iOS"."""
    browser = info.browser if info.browser != "Unknown" else None
    system = info.os if info.os != "Unknown" else None
    if browser and system:
        return f"{browser} on {system}"
    if system:
        return f"A browser on {system}"
    return browser or "Unknown device"


def _hidden(**fields: str) -> str:
    return "".join(f'<input type="hidden" name="{name}" value="{html.escape(value)}">' for name, value in fields.items())


def _action(path: str, token: str, label: str, *, style: str = "", disabled: bool = False) -> str:
    """A form of one button that posts to ``path`` with the CSRF token."""
    attributes = (f' class="{style}"' if style else "") + (" disabled" if disabled else "")
    return f'<form method="post" action="{path}">{_hidden(csrf=token)}<button type="submit"{attributes}>{label}</button></form>'


class DemoApp:
    """The demo's WSGI app (without the session middleware)."""

    def __init__(self, manager: SessionManager) -> None:
        self.manager = manager
        self._actions: dict[str, Callable[[Session, str, dict[str, list[str]]], None]] = {
            "/logout": self._logout,
            "/logout-everywhere": self._logout_everywhere,
            "/logout-others": self._logout_others,
            "/revoke": self._revoke,
        }

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        session = get_session(environ)
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "/")
        if (method, path) == ("GET", "/"):
            user = session.user_id
            if user is None:
                return self._respond(start_response, "200 OK", _page("Sign in", _login()))
            return self._respond(start_response, "200 OK", _page("Your devices", self._devices(session, user), user))
        if path not in ("/", "/login", *self._actions):
            return self._respond(
                start_response, "404 Not Found", _page("Not found", "<h1>Not found</h1><p><a href='/'>Home</a></p>")
            )
        if method != "POST":
            return self._respond(
                start_response, "405 Method Not Allowed", _page("Not allowed", "<h1>Use the page's buttons</h1>")
            )
        if not _same_origin(environ):  # a cross-site form: refused before anything else
            return self._refuse(start_response)
        form = self._form(environ)
        if path == "/login":
            name = form.get("username", [""])[0].strip()
            if not 0 < len(name) <= 64:
                return self._respond(
                    start_response, "400 Bad Request", _page("Sign in", _login("A name of 1 to 64 characters, please."))
                )
            session.login(name)
            session[CSRF_KEY] = secrets.token_urlsafe(32)  # a new token for the new session
            session["visits"] = 0
        else:
            user = session.user_id
            if user is not None:  # None: signed out meanwhile (on another device), so back to the login page
                if not _token_matches(session, form):
                    return self._refuse(start_response)
                try:
                    self._actions[path](session, user, form)
                except ValueError:  # a handle that is not one
                    return self._respond(start_response, "400 Bad Request", _page("Bad request", "<h1>Bad request</h1>"))
        start_response("303 See Other", [("Location", "/"), ("Content-Length", "0"), *_HEADERS])
        return [b""]

    # -- the actions, for a signed-in user whose form carried the session's token -------------------

    def _logout(self, session: Session, user: str, form: dict[str, list[str]]) -> None:
        session.logout()

    def _logout_everywhere(self, session: Session, user: str, form: dict[str, list[str]]) -> None:
        self.manager.revoke_user(user)
        session.logout()

    def _logout_others(self, session: Session, user: str, form: dict[str, list[str]]) -> None:
        ended = self.manager.revoke_user(user, keep=session)
        session[FLASH_KEY] = f"Signed out {ended} other device{'' if ended == 1 else 's'}."

    def _revoke(self, session: Session, user: str, form: dict[str, list[str]]) -> None:
        handle = form.get("handle", [""])[0]
        if handle == self.manager.handle(session):
            session.logout()  # this device's own button: the same as logging out
            return
        names = {info.handle: _device_name(info) for info in self.manager.list_sessions(user)}
        # user_id: only this user's sessions can be ended, whatever handle the form sends.
        if self.manager.revoke(handle, user_id=user):
            session[FLASH_KEY] = f"Signed out {names.get(handle, 'the device')}."
        else:
            session[FLASH_KEY] = "That device was already signed out."

    # -- pages ----------------------------------------------------------------------------------

    def _devices(self, session: Session, user: str) -> str:
        session["visits"] = visits = session.get("visits", 0) + 1
        token = session.get(CSRF_KEY)
        if not isinstance(token, str):  # a session from before tokens
            session[CSRF_KEY] = token = secrets.token_urlsafe(32)
        flash = session.pop(FLASH_KEY, None)
        here, now = self.manager.handle(session), self.manager.clock()
        infos = self.manager.list_sessions(user)
        infos.sort(key=lambda info: (info.handle != here, -(info.last_seen or 0)))  # this device first, then by activity
        rows = "\n".join(self._device(info, info.handle == here, now, token) for info in infos)
        others = len(infos) - 1
        count = f"{len(infos)} device{'' if len(infos) == 1 else 's'}"
        return f"""<h1>Your devices</h1>
<p class="lead">You are signed in on {count}. Sign out any you do not recognise.</p>
{f'<p class="flash" role="status">{html.escape(flash)}</p>' if isinstance(flash, str) else ""}
<ul class="devices" id="devices">
{rows}
</ul>
<div class="actions">
  {_action("/logout-others", token, "Log out other devices", disabled=not others)}
  {_action("/logout", token, "Log out")}
  {_action("/logout-everywhere", token, "Log out everywhere", style="danger")}
</div>
<section class="session">
<h2>This session</h2>
<p>You have visited this page <strong id="visits">{visits}</strong> time{"" if visits == 1 else "s"} in this session.</p>
<table>
  <tr><th>Session started</th><td id="started">{_when(session.created_at)}</td></tr>
  <tr><th>Session expires</th><td id="expires">{_when(session.expires_at)}</td></tr>
</table>
</section>"""

    @staticmethod
    def _device(info: SessionInfo, current: bool, now: float, token: str) -> str:
        name = _device_name(info)
        icon = _ICONS[_ICON_OF_OS.get(info.os or "", "computer")]
        agent = f' title="{html.escape(info.user_agent)}"' if info.user_agent else ""
        badge = '<span class="badge">This device</span>' if current else ""
        button = (
            ""
            if current
            else f'<form method="post" action="/revoke">{_hidden(csrf=token, handle=info.handle)}'
            f'<button type="submit" aria-label="Sign out {html.escape(name)}">Sign out</button></form>'
        )
        return f"""<li class="device{" current" if current else ""}" data-handle="{html.escape(info.handle)}">
  <span class="icon">{icon}</span>
  <div><span class="name"{agent}>{html.escape(name)}</span>{badge}
    <dl class="facts">
      <div><dt>Where</dt><dd class="where">{html.escape(info.address or "unknown network")}</dd></div>
      <div><dt>Signed in</dt><dd class="signed-in">{_when(info.login_at or info.created_at)}</dd></div>
      <div><dt>Last active</dt><dd class="last-active">{"just now" if current else _ago(info.last_seen, now)}</dd></div>
    </dl>
  </div>
  {button}
</li>"""

    # -- plumbing -------------------------------------------------------------------------------

    @staticmethod
    def _form(environ: dict[str, Any]) -> dict[str, list[str]]:
        try:
            length = min(int(environ.get("CONTENT_LENGTH") or 0), 4096)
        except ValueError:
            length = 0
        return parse_qs(environ["wsgi.input"].read(length).decode("utf-8", "replace"))

    def _refuse(self, start_response: StartResponse) -> list[bytes]:
        body = "<h1>This form has expired</h1><p>Go <a href='/'>back to the page</a>, reload it and try again.</p>"
        return self._respond(start_response, "403 Forbidden", _page("Refused", body))

    @staticmethod
    def _respond(start_response: StartResponse, status: str, page: str) -> list[bytes]:
        body = page.encode()
        start_response(status, [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body))), *_HEADERS])
        return [body]


def _token_matches(session: Session, form: dict[str, list[str]]) -> bool:
    """True if the form carries the session's CSRF token."""
    expected = session.get(CSRF_KEY)
    sent = form.get(CSRF_KEY, [""])[0]
    return isinstance(expected, str) and hmac.compare_digest(expected.encode(), sent.encode())


def _same_origin(environ: dict[str, Any]) -> bool:
    """False for a browser's POST from another site (its ``Origin`` names another host); a
    request without ``Origin`` (not from a browser's form) relies on the token alone."""
    origin = environ.get("HTTP_ORIGIN")
    if origin is None:
        return True
    host = str(environ.get("HTTP_HOST") or f"{environ['SERVER_NAME']}:{environ['SERVER_PORT']}")
    return urlsplit(str(origin)).netloc == host


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


def make_demo_server(store: str, host: str = "127.0.0.1", port: int = 8000) -> WSGIServer:
    """Build the demo's HTTP server (call ``serve_forever()`` on it).

    The store is checked first: an unreachable store raises before the server listens.
    """
    config = SessionConfig(cookie=CookieConfig(secure="auto"), devices=True)
    manager = SessionManager(store, config=config)
    app = SessionMiddleware(DemoApp(manager), manager)
    return make_server(host, port, app, server_class=_ThreadingWSGIServer)

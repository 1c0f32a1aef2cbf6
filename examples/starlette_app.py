"""Starlette with coatcheck: log in, a welcome page that counts your visits, log out.

    python -m examples.starlette_app --port 8000      # then open http://127.0.0.1:8000/

Sessions are kept in ``sessions.db`` (SQLite) in the current directory. ``secure="auto"`` marks
the cookie ``Secure`` over https only, so the app also works over plain http.
"""

from __future__ import annotations

import argparse
import html
from urllib.parse import parse_qs

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from coatcheck import CookieConfig
from coatcheck.starlette import SessionMiddleware, get_session

LOGIN = """<!doctype html><title>coatcheck</title>
<form method="post" action="/login">
  <label>Name <input name="username" required maxlength="64" autofocus></label> <button>Log in</button>
</form>"""

WELCOME = """<!doctype html><title>coatcheck</title>
<h1>Welcome, {name}</h1>
<p>Visit <strong>{visits}</strong> in this session.</p>
<form method="post" action="/logout"><button>Log out</button></form>"""


async def home(request: Request) -> Response:
    session = get_session(request)  # request.session, typed as a coatcheck Session
    if session.user_id is None:
        return HTMLResponse(LOGIN)
    session["visits"] = session.get("visits", 0) + 1
    return HTMLResponse(WELCOME.format(name=html.escape(session.user_id), visits=session["visits"]))


async def login(request: Request) -> Response:
    form = parse_qs((await request.body()).decode())  # request.form() would need python-multipart
    name = form.get("username", [""])[0].strip()
    if not 0 < len(name) <= 64:
        return HTMLResponse(LOGIN, status_code=400)
    get_session(request).login(name)  # a new session ID, bound to the user; the old ID dies at once
    return RedirectResponse("/", status_code=303)


async def logout(request: Request) -> Response:
    get_session(request).logout()  # deleted server-side, cookie cleared
    return RedirectResponse("/", status_code=303)


app = Starlette(
    routes=[
        Route("/", home),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
    ]
)
app.add_middleware(SessionMiddleware, store="sqlite:///sessions.db", cookie=CookieConfig(secure="auto"))


def main(argv: list[str] | None = None) -> None:
    """Serve the app with uvicorn on 127.0.0.1."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.starlette_app", description="Serve the Starlette example on 127.0.0.1."
    )
    parser.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (default 8000; 0 picks a free one)")
    port = parser.parse_args(argv).port
    uvicorn.run(app, host="127.0.0.1", port=port, lifespan="on")  # "on": a bad option or store stops startup


if __name__ == "__main__":
    main()

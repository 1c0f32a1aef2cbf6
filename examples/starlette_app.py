"""Starlette (or FastAPI) with coatcheck: ``uvicorn examples.starlette_app:app``."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from coatcheck import CookieConfig, SessionConfig, SessionManager
from coatcheck.asgi import SessionMiddleware

manager = SessionManager("sqlite:///sessions.db", config=SessionConfig(cookie=CookieConfig(secure="auto")))


async def home(request: Request) -> PlainTextResponse:
    request.session["visits"] = request.session.get("visits", 0) + 1
    return PlainTextResponse(f"visit {request.session['visits']}")


app = SessionMiddleware(Starlette(routes=[Route("/", home)]), manager)

"""Starlette's own signed-cookie ``SessionMiddleware`` (no server-side store)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from ._common import LIFETIME, SIGNING_KEY, stats


async def rmw(request: Request) -> PlainTextResponse:
    """Read the counter, increment it, save."""
    n = request.session.get("n", 0) + 1
    request.session["n"] = n
    return PlainTextResponse(str(n))


async def read(request: Request) -> PlainTextResponse:
    """Read the counter only."""
    return PlainTextResponse(str(request.session.get("n", 0)))


async def bench_stats(request: Request) -> JSONResponse:
    """Counters for the harness."""
    return JSONResponse(stats(None))


app = Starlette(
    routes=[Route("/rmw", rmw), Route("/read", read), Route("/__bench/stats", bench_stats)],
    middleware=[Middleware(SessionMiddleware, secret_key=SIGNING_KEY, max_age=LIFETIME)],
)

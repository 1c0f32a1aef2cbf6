"""The Starlette endpoints of the ASGI apps whose session is ``request.session`` as it comes."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from ._common import stats


async def rmw(request: Request) -> PlainTextResponse:
    """Read the counter, increment it, save."""
    n = request.session.get("n", 0) + 1
    request.session["n"] = n
    return PlainTextResponse(str(n))


async def read(request: Request) -> PlainTextResponse:
    """Read the counter only."""
    return PlainTextResponse(str(request.session.get("n", 0)))


async def bench_stats(request: Request) -> JSONResponse:
    """Counters for the harness (the apps without a store-call counter)."""
    return JSONResponse(stats(None))


ROUTES = [Route("/rmw", rmw), Route("/read", read), Route("/__bench/stats", bench_stats)]

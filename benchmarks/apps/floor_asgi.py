"""The floor (``_floor.FloorASGI``) around the Starlette endpoints, on ``BENCH_STORE``."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from ._common import stats
from ._floor import FloorASGI, store


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


load, save = store(asynchronous=True)
app = FloorASGI(Starlette(routes=[Route("/rmw", rmw), Route("/read", read), Route("/__bench/stats", bench_stats)]), load, save)

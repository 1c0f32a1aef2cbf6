"""The ASGI ceiling: the same Starlette endpoints with no session at all."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from ._common import stats


async def rmw(request: Request) -> PlainTextResponse:
    """What the session endpoints answer, minus the session."""
    return PlainTextResponse("1")


async def read(request: Request) -> PlainTextResponse:
    """What the session endpoints answer, minus the session."""
    return PlainTextResponse("0")


async def bench_stats(request: Request) -> JSONResponse:
    """Counters for the harness."""
    return JSONResponse(stats(None))


app = Starlette(routes=[Route("/rmw", rmw), Route("/read", read), Route("/__bench/stats", bench_stats)])

"""coatcheck's ASGI middleware around the Starlette endpoints, on the store ``BENCH_STORE_URL``."""

from __future__ import annotations

import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from coatcheck.asgi import SessionMiddleware

from ._common import coatcheck_manager, purge_interval, stats
from ._endpoints import read, rmw

manager, counter = coatcheck_manager()


async def bench_stats(request: Request) -> JSONResponse:
    """Counters for the harness."""
    return JSONResponse(stats(counter))


async def purge(request: Request) -> JSONResponse:
    """Purge expired sessions now, as the expirer does, and say how long it took."""
    started = time.perf_counter()
    deleted = await manager.apurge_expired()
    return JSONResponse({"deleted": deleted, "seconds": time.perf_counter() - started})


routes = [Route("/rmw", rmw), Route("/read", read), Route("/__bench/stats", bench_stats), Route("/__bench/purge", purge)]
app = SessionMiddleware(Starlette(routes=routes), manager, purge_interval=purge_interval())

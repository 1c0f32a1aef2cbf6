"""starsessions (memory or Redis store) around the Starlette endpoints."""

from __future__ import annotations

import redis.asyncio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from starsessions import InMemoryStore, SessionMiddleware, SessionStore, load_session
from starsessions.stores.redis import RedisStore

from ._common import LIFETIME, count_redis_round_trips, redis_url, stats, store_kind

if store_kind() == "redis":
    count_redis_round_trips()

store: SessionStore = (
    RedisStore(connection=redis.asyncio.Redis.from_url(redis_url())) if store_kind() == "redis" else InMemoryStore()
)


async def rmw(request: Request) -> PlainTextResponse:
    """Read the counter, increment it, save."""
    await load_session(request)
    n = request.session.get("n", 0) + 1
    request.session["n"] = n
    return PlainTextResponse(str(n))


async def read(request: Request) -> PlainTextResponse:
    """Read the counter only."""
    await load_session(request)
    return PlainTextResponse(str(request.session.get("n", 0)))


async def bench_stats(request: Request) -> JSONResponse:
    """Counters for the harness."""
    return JSONResponse(stats(None))


app = Starlette(
    routes=[Route("/rmw", rmw), Route("/read", read), Route("/__bench/stats", bench_stats)],
    middleware=[Middleware(SessionMiddleware, store=store, lifetime=LIFETIME, rolling=True, cookie_https_only=False)],
)

"""Switching a Starlette app to coatcheck: ``legacy=`` adopts the sessions of Starlette's own
signed-cookie ``SessionMiddleware`` and of starsessions on Redis, each made by the real package,
on every store these integration tests use; forged, expired and replayed cookies adopt nothing,
and the legacy cookie is cleared."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware as StarletteSessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from coatcheck import SessionManager, legacy
from coatcheck.legacy import LegacyReader
from coatcheck.starlette import SessionMiddleware, get_session
from coatcheck.testing import FakeClock
from tests.backends import opened
from tests.legacy.helpers import emptied_redis

pytestmark = pytest.mark.anyio
BASE = "https://testserver"
SECRET = "the-old-secret"
STARSESSIONS_REDIS = "redis://127.0.0.1:6379/9"


async def write(request: Request) -> PlainTextResponse:
    request.session["cart"] = [1, 2]
    request.session["user"] = "42"
    return PlainTextResponse("ok")


async def peek(request: Request) -> JSONResponse:
    return JSONResponse({"data": dict(request.session), "user": get_session(request).user_id})


@pytest.fixture(params=[pytest.param("memory"), pytest.param("sqlite"), pytest.param("redis", marks=pytest.mark.server)])
async def store(request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path) -> AsyncIterator[Any]:
    """The stores the other integrations test adoption on (the adoption itself is tested on
    every store in tests/legacy; here the readers are)."""
    async with opened(request.param, clock, tmp_path) as each:
        yield each


async def new_app(store: Any, clock: FakeClock, reader: LegacyReader) -> Starlette:
    """The app after the switch."""
    manager = SessionManager(store, clock=clock, legacy=[reader])
    return Starlette(routes=[Route("/peek", peek)], middleware=[Middleware(SessionMiddleware, manager=manager)])


def old_cookie(app: Starlette) -> str:
    with TestClient(app, base_url=BASE) as client:
        assert client.post("/write").status_code == 200
        value = client.cookies.get("session")
    assert isinstance(value, str) and value
    return value


def visit(client: TestClient, cookie: str) -> tuple[dict[str, Any], list[str]]:
    """One request from a browser holding only the legacy cookie: what the app saw, and the
    Set-Cookie headers. (One client per app: the app's store stays on the client's event loop.)"""
    client.cookies.clear()
    response = client.get("/peek", headers={"Cookie": f"session={cookie}"})
    return response.json(), response.headers.get_list("set-cookie")


def starlette_before(**options: Any) -> Starlette:
    return Starlette(
        routes=[Route("/write", write, methods=["POST"])],
        middleware=[Middleware(StarletteSessionMiddleware, secret_key=SECRET, **options)],
    )


async def test_starlette_cookie_adopted(store: Any, clock: FakeClock) -> None:
    value = old_cookie(starlette_before())
    app = await new_app(store, clock, legacy.starlette_cookie(secret_key=SECRET, user_key="user"))
    with TestClient(app, base_url=BASE) as client:
        seen, cookies = visit(client, value)
        assert seen == {"data": {"cart": [1, 2], "user": "42"}, "user": "42"}
        assert cookies[0].startswith("sessionid=") and cookies[1].startswith("session=; Max-Age=0; ")
        clock.advance(60)
        assert visit(client, value)[0] == {"data": {}, "user": None}  # a copy replayed later


async def test_starlette_cookie_forged_or_expired(store: Any, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    app = await new_app(store, clock, legacy.starlette_cookie(secret_key=SECRET))
    forged = old_cookie(starlette_before())[:-3] + "xyz"
    with monkeypatch.context() as past:  # signed 15 days ago: past Starlette's default max_age
        past.setattr("itsdangerous.timed.TimestampSigner.get_timestamp", lambda self: int(time.time()) - 15 * 86400)
        expired = old_cookie(starlette_before())
    with TestClient(app, base_url=BASE) as client:
        seen, cookies = visit(client, forged)
        assert seen == {"data": {}, "user": None} and cookies[0].startswith("session=; Max-Age=0")
        assert visit(client, expired)[0] == {"data": {}, "user": None}


@pytest.fixture
def starsessions_redis() -> Iterator[Any]:
    with emptied_redis(STARSESSIONS_REDIS) as client:
        yield client


@pytest.mark.server
async def test_starsessions_adopted_once(store: Any, clock: FakeClock, starsessions_redis: Any) -> None:
    import redis.asyncio
    from starsessions import SessionAutoloadMiddleware
    from starsessions import SessionMiddleware as StarsessionsMiddleware
    from starsessions.stores.redis import RedisStore

    connection = redis.asyncio.Redis.from_url(STARSESSIONS_REDIS)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await connection.aclose()

    before = Starlette(
        lifespan=lifespan,
        routes=[Route("/write", write, methods=["POST"])],
        middleware=[
            Middleware(
                StarsessionsMiddleware,
                store=RedisStore(connection=connection),
                cookie_https_only=False,
                lifetime=3600,
            ),
            Middleware(SessionAutoloadMiddleware),
        ],
    )
    value = old_cookie(before)
    assert starsessions_redis.exists(f"starsessions.{value}")
    app = await new_app(store, clock, legacy.starsessions(STARSESSIONS_REDIS, user_key="user"))
    with TestClient(app, base_url=BASE) as client:
        seen, cookies = visit(client, value)
    assert seen == {"data": {"cart": [1, 2], "user": "42"}, "user": "42"}  # starsessions' own metadata left behind
    assert not starsessions_redis.exists(f"starsessions.{value}")
    assert any(cookie.startswith("session=; Max-Age=0") for cookie in cookies)


@pytest.mark.server
async def test_starsessions_unknown_or_replayed(store: Any, clock: FakeClock, starsessions_redis: Any) -> None:
    starsessions_redis.set("starsessions.known", b'{"cart": [1], "__metadata__": {"created": 0, "lifetime": 0}}', ex=600)
    app = await new_app(store, clock, legacy.starsessions(STARSESSIONS_REDIS))
    with TestClient(app, base_url=BASE) as client:
        assert visit(client, "unknown")[0] == {"data": {}, "user": None}
        assert visit(client, "known")[0] == {"data": {"cart": [1]}, "user": None}
        clock.advance(60)
        assert visit(client, "known")[0] == {"data": {}, "user": None}


async def test_a_websocket_adopts_nothing(store: Any, clock: FakeClock) -> None:
    """A WebSocket handshake cannot send the new cookie: it leaves the legacy session for the
    next HTTP request instead of spending its adoption."""
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket

    async def socket(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json(dict(websocket.session))
        await websocket.close()

    value = old_cookie(starlette_before())
    manager = SessionManager(store, clock=clock, legacy=[legacy.starlette_cookie(secret_key=SECRET, user_key="user")])
    app = Starlette(
        routes=[Route("/peek", peek), WebSocketRoute("/ws", socket)], middleware=[Middleware(SessionMiddleware, manager=manager)]
    )
    with TestClient(app, base_url=BASE) as client:
        with client.websocket_connect("/ws", headers={"Cookie": f"session={value}"}) as websocket:
            assert websocket.receive_json() == {}
        assert visit(client, value)[0] == {"data": {"cart": [1, 2], "user": "42"}, "user": "42"}

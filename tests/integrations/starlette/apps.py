"""One small app, written once for Starlette (``request.session`` and ``get_session``) and once for
FastAPI (``SessionDep``), with coatcheck added the documented way, ``app.add_middleware``:

/public   never touches the session           /peek     the session data and user as JSON
/set      ?k=&v= writes one key                /hold     ?k=&v= writes one key, then waits for the
/login    ?user= logs in (rotates the ID)                test's go-ahead before it answers
/logout   ends the session                     /logout-everywhere  revokes every session of the user
/state    the greeting the app's own lifespan put in the request state
/ws       a WebSocket that sends the session data and user, then closes
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from typing_extensions import assert_type

from coatcheck import Session, SessionManager
from coatcheck.starlette import SessionDep, SessionMiddleware, get_session

FRAMEWORKS = ("starlette", "fastapi")
Lifespan = Callable[[Any], AbstractAsyncContextManager[Any]]


class Gate:
    """Holds ``/hold`` between its write and its answer: ``entered`` is set once the request has
    loaded its session and written; it answers once the test sets ``release``."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    async def hold(self) -> None:
        self.entered.set()
        await anyio.to_thread.run_sync(self.release.wait, 10)


def _peek(session: Session) -> dict[str, Any]:
    return {"data": dict(session), "user": session.user_id}


def starlette_app(gate: Gate, lifespan: Lifespan | None = None, **middleware: Any) -> Starlette:
    """The Starlette app, with coatcheck's middleware on ``middleware``'s options (none: without it)."""
    manager = middleware.get("manager")

    async def public(request: Request) -> Response:
        return PlainTextResponse("public")

    async def peek(request: Request) -> Response:
        return JSONResponse(_peek(get_session(request)))

    async def set_value(request: Request) -> Response:
        request.session[request.query_params["k"]] = request.query_params["v"]  # as with any session middleware
        return PlainTextResponse("ok")

    async def hold(request: Request) -> Response:
        request.session[request.query_params["k"]] = request.query_params["v"]
        await gate.hold()
        return PlainTextResponse("ok")

    async def login(request: Request) -> Response:
        get_session(request).login(request.query_params["user"])
        return PlainTextResponse("ok")

    async def logout(request: Request) -> Response:
        get_session(request).logout()
        return PlainTextResponse("ok")

    async def logout_everywhere(request: Request) -> Response:
        session = get_session(request)
        assert isinstance(manager, SessionManager) and session.user_id is not None
        count = await manager.arevoke_user(session.user_id)
        return PlainTextResponse(str(count))

    async def state(request: Request) -> Response:
        return JSONResponse({"greeting": getattr(request.state, "greeting", None)})

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json(_peek(get_session(websocket)))
        await websocket.close()

    app = Starlette(
        routes=[
            Route("/public", public),
            Route("/peek", peek),
            Route("/set", set_value, methods=["POST"]),
            Route("/hold", hold, methods=["POST"]),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/logout-everywhere", logout_everywhere, methods=["POST"]),
            Route("/state", state),
            WebSocketRoute("/ws", ws),
        ],
        lifespan=lifespan,
    )
    if middleware:
        app.add_middleware(SessionMiddleware, **middleware)
    return app


def fastapi_app(gate: Gate, lifespan: Lifespan | None = None, **middleware: Any) -> FastAPI:
    """The FastAPI app, with coatcheck's middleware on ``middleware``'s options (none: without it)."""
    manager = middleware.get("manager")
    app = FastAPI(lifespan=lifespan)
    if middleware:
        app.add_middleware(SessionMiddleware, **middleware)

    @app.get("/public")
    def public() -> str:
        return "public"

    @app.get("/peek")
    def peek(session: SessionDep) -> dict[str, Any]:
        assert_type(session, Session)  # mypy --strict sees the coatcheck Session, not Any
        return _peek(session)

    @app.post("/set")
    def set_value(k: str, v: str, session: SessionDep) -> str:
        session[k] = v
        return "ok"

    @app.post("/hold")
    async def hold(k: str, v: str, session: SessionDep) -> str:
        session[k] = v
        await gate.hold()
        return "ok"

    @app.post("/login")
    async def login(user: str, session: SessionDep) -> str:
        session.login(user)
        return "ok"

    @app.post("/logout")
    async def logout(session: SessionDep) -> str:
        session.logout()
        return "ok"

    @app.post("/logout-everywhere")
    async def logout_everywhere(session: SessionDep) -> int:
        assert isinstance(manager, SessionManager) and session.user_id is not None
        return await manager.arevoke_user(session.user_id)

    @app.get("/state")
    def state(request: Request) -> dict[str, Any]:
        return {"greeting": getattr(request.state, "greeting", None)}

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, session: SessionDep) -> None:
        await websocket.accept()
        await websocket.send_json(_peek(session))
        await websocket.close()

    return app


def build(framework: str, gate: Gate, lifespan: Lifespan | None = None, **middleware: Any) -> Any:
    """``framework``'s app (one of :data:`FRAMEWORKS`)."""
    factory = starlette_app if framework == "starlette" else fastapi_app
    return factory(gate, lifespan, **middleware)

"""One small app, written once as ASGI (Starlette) and once as WSGI (Flask), with the routes the
HTTP-level tests drive, and ``Browser``, a cookie-keeping client over either middleware:

/public  never touches the session        /peek    returns the session data as JSON
/set     ?k=&v= writes one key             /login   ?user= logs in (rotates the ID)
/logout  ends the session                  /whoami  the user or "anon"
/id      writes, then returns session.id   /fail    writes, then answers 500
/cached  writes, and sets its own Cache-Control (?cc=, default "private, max-age=60")
/stream  writes ?k=before, starts a streamed body, then writes ?k=after (too late to be saved)
/append  makes session["cart"] a list, then on later visits appends a tuple to it in place
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import flask
import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from coatcheck import Session, SessionManager, StoreUnavailableError
from coatcheck.asgi import SessionMiddleware as ASGIMiddleware
from coatcheck.asgi import get_session as asgi_session
from coatcheck.testing import SpyStore
from coatcheck.wsgi import SessionMiddleware as WSGIMiddleware
from coatcheck.wsgi import get_session as wsgi_session

CACHE_CONTROL = "private, max-age=60"


def _peek(session: Session) -> Any:
    return {"data": dict(session), "user": session.user_id}


def _append(session: Session) -> str:
    cart = session.get("cart")
    if cart is None:
        session["cart"] = []
    else:
        cart.append((len(cart), "item"))  # a tuple, in place: JSON would bring it back as a list
    return "ok"


def asgi_app() -> Starlette:
    async def public(request: Request) -> Response:
        return PlainTextResponse("public")

    async def peek(request: Request) -> Response:
        return JSONResponse(_peek(asgi_session(request.scope)))

    async def set_value(request: Request) -> Response:
        asgi_session(request.scope)[request.query_params["k"]] = request.query_params["v"]
        return PlainTextResponse("ok")

    async def login(request: Request) -> Response:
        asgi_session(request.scope).login(request.query_params["user"])
        return PlainTextResponse("ok")

    async def logout(request: Request) -> Response:
        asgi_session(request.scope).logout()
        return PlainTextResponse("ok")

    async def whoami(request: Request) -> Response:
        return PlainTextResponse(asgi_session(request.scope).user_id or "anon")

    async def session_id(request: Request) -> Response:
        session = asgi_session(request.scope)
        session["visited"] = True
        return PlainTextResponse(session.id)

    async def fail(request: Request) -> Response:
        asgi_session(request.scope)["during_error"] = True
        return PlainTextResponse("boom", status_code=500)

    async def cached(request: Request) -> Response:
        asgi_session(request.scope)["seen"] = True
        return PlainTextResponse("cached", headers={"Cache-Control": request.query_params.get("cc", CACHE_CONTROL)})

    async def append(request: Request) -> Response:
        return PlainTextResponse(_append(asgi_session(request.scope)))

    async def stream(request: Request) -> Response:
        session = asgi_session(request.scope)
        session["before"] = True

        async def body() -> AsyncIterator[bytes]:
            yield b"first chunk\n"
            session["after"] = True
            yield b"second chunk\n"

        return StreamingResponse(body())

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json(_peek(asgi_session(websocket.scope)))
        await websocket.close()

    routes: list[Any] = [
        Route("/public", public),
        Route("/peek", peek),
        Route("/set", set_value, methods=["POST"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/whoami", whoami),
        Route("/id", session_id),
        Route("/fail", fail),
        Route("/cached", cached),
        Route("/stream", stream),
        Route("/append", append),
        WebSocketRoute("/ws", ws),
    ]
    return Starlette(routes=routes)


def wsgi_app() -> flask.Flask:
    app = flask.Flask(__name__)

    def session() -> Session:
        return wsgi_session(flask.request.environ)

    @app.get("/public")
    def public() -> str:
        return "public"

    @app.get("/peek")
    def peek() -> Any:
        return flask.jsonify(_peek(session()))

    @app.post("/set")
    def set_value() -> str:
        session()[flask.request.args["k"]] = flask.request.args["v"]
        return "ok"

    @app.post("/login")
    def login() -> str:
        session().login(flask.request.args["user"])
        return "ok"

    @app.post("/logout")
    def logout() -> str:
        session().logout()
        return "ok"

    @app.get("/whoami")
    def whoami() -> str:
        return session().user_id or "anon"

    @app.get("/id")
    def session_id() -> str:
        current = session()
        current["visited"] = True
        return current.id

    @app.get("/fail")
    def fail() -> tuple[str, int]:
        session()["during_error"] = True
        return "boom", 500

    @app.get("/cached")
    def cached() -> flask.Response:
        session()["seen"] = True
        return flask.Response("cached", headers={"Cache-Control": flask.request.args.get("cc", CACHE_CONTROL)})

    @app.get("/append")
    def append() -> str:
        return _append(session())

    @app.get("/stream")
    def stream() -> flask.Response:
        current = session()
        current["before"] = True

        def body() -> Iterator[bytes]:
            yield b"first chunk\n"
            current["after"] = True
            yield b"second chunk\n"

        return flask.Response(body())

    return app


# -- driving the apps --------------------------------------------------------------------------------

BASE = "https://testserver"


class FlakyStore(SpyStore):
    """A spy whose store calls fail with StoreUnavailableError while ``down`` is set."""

    down = False

    def __getattr__(self, name: str) -> Any:
        method = super().__getattr__(name)
        if not callable(method):
            return method

        def maybe_fail(*args: Any, **kwargs: Any) -> Any:
            if self.down:
                raise StoreUnavailableError("store is down (test)")
            return method(*args, **kwargs)

        return maybe_fail


class Browser:
    """A cookie-keeping client over either middleware, with one awaitable API."""

    def __init__(self, kind: str, manager: SessionManager, base_url: str = BASE, **middleware: Any) -> None:
        self.kind = kind
        if kind == "asgi":
            self.app: Any = ASGIMiddleware(asgi_app(), manager, **middleware)
            self.client: Any = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=base_url)
        else:
            self.app = WSGIMiddleware(wsgi_app().wsgi_app, manager, **middleware)
            self.client = httpx.Client(transport=httpx.WSGITransport(app=self.app), base_url=base_url)

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        if self.kind == "asgi":
            return await self.client.request(method, url, **kwargs)  # type: ignore[no-any-return]
        return self.client.request(method, url, **kwargs)  # type: ignore[no-any-return]

    async def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", url, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", url, **kwargs)

    @property
    def session_id(self) -> str | None:
        return self.client.cookies.get("sessionid")  # type: ignore[no-any-return]

    async def close(self) -> None:
        if self.kind == "asgi":
            await self.client.aclose()
        else:
            self.client.close()
            if self.app.expirer is not None:
                self.app.expirer.stop()


def set_cookies(response: httpx.Response) -> list[str]:
    return response.headers.get_list("set-cookie")


def cookie_value(header: str) -> str:
    return header.split(";", 1)[0].split("=", 1)[1]

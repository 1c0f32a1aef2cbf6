"""Middleware life cycle: startup checks, the expirer, websockets, late start_response."""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator, MutableMapping
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from coatcheck import MiddlewareNotInstalledError, SessionManager, StoreUnavailableError
from coatcheck.asgi import SessionMiddleware as ASGIMiddleware
from coatcheck.asgi import get_session as asgi_session
from coatcheck.events import SessionEvent
from coatcheck.stores.memory import MemoryStore
from coatcheck.testing import FakeClock, SpyStore
from coatcheck.wsgi import SessionMiddleware as WSGIMiddleware
from coatcheck.wsgi import get_session as wsgi_session
from tests.apps import FlakyStore, asgi_app, wsgi_app


def test_asgi_lifespan_fails_startup_when_the_store_is_down() -> None:
    store = FlakyStore(MemoryStore())
    store.down = True
    app = ASGIMiddleware(asgi_app(), SessionManager(store))
    with pytest.raises(StoreUnavailableError, match="store is down"), TestClient(app):
        pass


def test_asgi_lifespan_closes_the_store_when_the_apps_own_startup_fails() -> None:
    @contextlib.asynccontextmanager
    async def failing(app: Any) -> AsyncIterator[None]:
        raise RuntimeError("the app's own startup failed")
        yield  # pragma: no cover

    from starlette.applications import Starlette

    store = FlakyStore(MemoryStore())
    app = ASGIMiddleware(Starlette(lifespan=failing), SessionManager(store))
    with pytest.raises(RuntimeError, match="own startup failed"), TestClient(app):
        pass
    assert store.calls.get("close") == 1


def test_asgi_lifespan_runs_the_expirer_and_closes_the_store() -> None:
    clock = FakeClock()
    memory = MemoryStore(clock=clock)
    store = FlakyStore(memory)
    app = ASGIMiddleware(asgi_app(), SessionManager(store, clock=clock), purge_interval=0.01)
    assert app.expirer is not None
    with TestClient(app, base_url="https://testserver") as client:
        client.post("/set", params={"k": "a", "v": "1"})
        assert len(memory) == 1
        clock.advance(3600)
        deadline = clock.now
        while len(memory) and store.calls.get("delete_expired", 0) < 1000:
            client.get("/public")  # yields to the event loop, where the expirer task runs
        assert len(memory) == 0
        assert clock.now == deadline
    assert store.calls.get("close") == 1
    assert not app.expirer.running


def test_websocket_sees_the_session() -> None:
    manager = SessionManager(MemoryStore())
    with TestClient(ASGIMiddleware(asgi_app(), manager), base_url="https://testserver") as client:
        client.post("/set", params={"k": "a", "v": "1"})
        with client.websocket_connect("/ws", headers={"cookie": f"sessionid={client.cookies['sessionid']}"}) as ws:
            assert ws.receive_json() == {"data": {"a": "1"}, "user": None}


def test_a_websocket_write_is_logged_not_dropped_silently(caplog: pytest.LogCaptureFixture) -> None:
    """A WebSocket has no response headers to carry a cookie, so its session is read-only: a
    write is logged (once) and not saved."""

    async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": message["type"] + ".complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        session = asgi_session(scope)
        session["from_ws"] = True
        session["again"] = True
        await send({"type": "websocket.send", "text": "ok"})
        await send({"type": "websocket.close", "code": 1000})

    manager = SessionManager(MemoryStore())
    seeded = manager.new_session()
    seeded["a"] = 1
    manager.commit(seeded)
    with (
        caplog.at_level(logging.WARNING, logger="coatcheck"),
        TestClient(ASGIMiddleware(app, manager)) as client,
        client.websocket_connect("/ws", headers={"cookie": f"sessionid={seeded.id}"}) as ws,
    ):
        assert ws.receive_text() == "ok"
    [line] = [r.getMessage() for r in caplog.records if "WebSocket" in r.getMessage()]
    assert "session['from_ws'] set" in line
    assert dict(manager.load(f"sessionid={seeded.id}")) == {"a": 1}


async def _get_with_generator_headers(headers: list[tuple[bytes, bytes]], *, write: bool) -> httpx.Response:
    """GET through an ASGI app that reads (or writes) the session and sends ``headers`` as a generator."""

    async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if write:
            asgi_session(scope)["k"] = "v"
        else:
            asgi_session(scope).get("k")
        await send({"type": "http.response.start", "status": 200, "headers": (pair for pair in headers)})
        await send({"type": "http.response.body", "body": b"ok"})

    transport = httpx.ASGITransport(app=ASGIMiddleware(app, SessionManager(MemoryStore())))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
        return await client.get("/")


@pytest.mark.anyio
async def test_asgi_response_headers_may_be_any_iterable() -> None:
    response = await _get_with_generator_headers([(b"content-type", b"text/plain"), (b"vary", b"Accept")], write=True)
    assert response.headers["content-type"] == "text/plain"
    assert response.headers.get_list("vary") == ["Accept", "Cookie"]
    assert response.headers["set-cookie"].startswith("sessionid=")
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.anyio
async def test_asgi_iterable_headers_survive_when_nothing_is_added() -> None:
    # read only: the one header to add is Vary, which the app already sends
    response = await _get_with_generator_headers([(b"content-type", b"text/plain"), (b"vary", b"Cookie")], write=False)
    assert response.headers["content-type"] == "text/plain"
    assert response.headers.get_list("vary") == ["Cookie"]
    assert "set-cookie" not in response.headers


def test_get_session_without_middleware_raises_a_clear_error() -> None:
    with pytest.raises(MiddlewareNotInstalledError, match=r"coatcheck\.asgi\.SessionMiddleware"):
        asgi_session({"type": "http"})
    with pytest.raises(MiddlewareNotInstalledError, match=r"coatcheck\.wsgi\.SessionMiddleware"):
        wsgi_session({})


def test_wsgi_middleware_checks_the_store_at_construction() -> None:
    store = FlakyStore(MemoryStore())
    store.down = True
    with pytest.raises(StoreUnavailableError):
        WSGIMiddleware(lambda e, s: [], SessionManager(store))


def test_wsgi_expirer_starts_with_the_first_request_and_purges() -> None:
    clock = FakeClock()
    memory = MemoryStore(clock=clock)

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        wsgi_session(environ)["a"] = 1
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    middleware = WSGIMiddleware(app, SessionManager(memory, clock=clock), purge_interval=0.01)
    assert middleware.expirer is not None and not middleware.expirer.running
    with httpx.Client(transport=httpx.WSGITransport(app=middleware), base_url="https://testserver") as client:
        client.get("/")
    assert middleware.expirer.running
    assert len(memory) == 1
    clock.advance(3600)
    thread = middleware.expirer._thread
    assert thread is not None
    for _ in range(500):
        if not len(memory):
            break
        thread.join(0.01)
    middleware.expirer.stop()
    assert len(memory) == 0
    assert not middleware.expirer.running


def test_wsgi_expirer_is_started_once_per_process() -> None:
    script = textwrap.dedent(
        """
        import os
        from coatcheck import SessionManager
        from coatcheck.stores.memory import MemoryStore
        from coatcheck.wsgi import SessionMiddleware

        def app(environ, start_response):
            start_response("200 OK", [])
            return [b"ok"]

        def request():
            environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "wsgi.url_scheme": "https"}
            b"".join(middleware(environ, lambda status, headers, exc_info=None: None))

        middleware = SessionMiddleware(app, SessionManager(MemoryStore()), purge_interval=60)
        request()
        first = middleware.expirer._thread
        request()
        assert middleware.expirer._thread is first and first.is_alive(), "a second thread in one process"
        pid = os.fork()
        if pid == 0:  # the parent's purge thread does not exist here: the first request starts one
            ok = not middleware.expirer.running
            request()
            ok = ok and middleware.expirer.running and middleware.expirer._thread is not first
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        raise SystemExit(os.waitstatus_to_exitcode(status))
        """
    )
    done = subprocess.run(  # noqa: S603 - this interpreter, the script above
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("fail", [False, True])
def test_wsgi_app_that_starts_its_response_while_iterating(fail: bool) -> None:
    store = FlakyStore(MemoryStore())

    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        wsgi_session(environ)["late"] = True
        store.down = fail
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"body"

    middleware = WSGIMiddleware(app, SessionManager(store), purge_interval=None)
    with httpx.Client(transport=httpx.WSGITransport(app=middleware), base_url="https://testserver") as client:
        response = client.get("/")
    if fail:
        assert (response.status_code, response.headers.get("set-cookie")) == (503, None)
        assert "body" not in response.text
    else:
        assert response.status_code == 200
        assert response.text == "body"
        assert response.headers["set-cookie"].startswith("sessionid=")


def test_non_http_scopes_pass_through() -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    import asyncio

    asyncio.run(ASGIMiddleware(app, SessionManager(MemoryStore()))({"type": "custom"}, None, None))  # type: ignore[arg-type]
    assert seen == ["custom"]


def _client(kind: str, manager: SessionManager) -> Any:
    """An HTTP client of the test app behind the ASGI (Starlette's) or the WSGI (Flask's) middleware."""
    if kind == "asgi":
        return TestClient(ASGIMiddleware(asgi_app(), manager), base_url="https://testserver")
    transport = httpx.WSGITransport(app=WSGIMiddleware(wsgi_app(), manager, purge_interval=None))
    return httpx.Client(transport=transport, base_url="https://testserver")


@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
@pytest.mark.parametrize("path", ["/public", "/peek"])
def test_a_request_with_no_cookie_is_still_announced_to_commit_subscribers(kind: str, path: str) -> None:
    """The middlewares make no commit call for a new session a request leaves untouched, unless
    an event subscriber (the metrics' "unchanged" counter) is there to hear of it."""
    store = SpyStore(MemoryStore())
    manager = SessionManager(store)
    seen: list[SessionEvent] = []
    manager.events.on_commit(seen.append)
    client = _client(kind, manager)
    with client:
        store.reset()  # forget the startup check
        response = client.get(path)
        assert store.calls == {}
    assert response.status_code == 200 and "set-cookie" not in response.headers
    assert response.headers.get("vary") == ("Cookie" if path == "/peek" else None)
    assert seen == [SessionEvent("commit", None, None, "unchanged")]


@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
def test_a_read_is_announced_to_commit_subscribers(kind: str) -> None:
    """A stored session a request only reads has nothing to commit: the middlewares skip the call,
    unless a subscriber is there to hear "unchanged" (and the store sees one load, no write)."""
    store = SpyStore(MemoryStore())
    manager = SessionManager(store)
    client = _client(kind, manager)
    with client:
        cookie = client.post("/set?k=a&v=1").headers["set-cookie"].split(";")[0]
        seen: list[SessionEvent] = []
        for subscribed in (False, True):
            if subscribed:
                manager.events.on_commit(seen.append)
            store.reset()
            response = client.get("/peek", headers={"cookie": cookie})
            assert response.json()["data"] == {"a": "1"} and "set-cookie" not in response.headers
            assert store.calls == {"load": 1}
    [event] = seen
    assert (event.kind, event.detail) == ("commit", "unchanged")

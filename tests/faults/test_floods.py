"""Floods (R-10, C-16, C-45, C-46): what bots, crawlers and scanners cost.

Requests go straight into the middlewares (no HTTP client in between), so the short variant
sends 10,000 of each kind in a few seconds and the full one (scripts/faults) 100,000.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, MutableMapping
from typing import Any

import pytest

from coatcheck import SessionManager, _ids
from coatcheck.asgi import SessionMiddleware as ASGIMiddleware
from coatcheck.asgi import get_session as asgi_session
from coatcheck.stores.memory import MemoryStore
from coatcheck.testing import FakeClock
from coatcheck.wsgi import SessionMiddleware as WSGIMiddleware
from coatcheck.wsgi import get_session as wsgi_session
from tests.backends import dump
from tests.faults.conftest import scaled

Message = MutableMapping[str, Any]


def _wsgi_client(manager: SessionManager, write: bool) -> Callable[[str | None], list[str]]:
    """A function that sends one request (with the given Cookie header) and returns its Set-Cookies."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        session = wsgi_session(environ)
        if write:
            session["seen"] = True
        else:
            session.get("seen")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    middleware = WSGIMiddleware(app, manager, purge_interval=None)

    def request(cookie: str | None) -> list[str]:
        environ: dict[str, Any] = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "wsgi.url_scheme": "https"}
        if cookie is not None:
            environ["HTTP_COOKIE"] = cookie
        started: list[list[tuple[str, str]]] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], object]:
            assert status.startswith("200"), status
            started.append(headers)
            return lambda chunk: None

        assert b"".join(middleware(environ, start_response)) == b"ok"
        return [value for name, value in started[0] if name == "Set-Cookie"]

    return request


async def _asgi_flood(manager: SessionManager, cookies: list[str | None], *, write: bool = False) -> int:
    """Send one request (reading, or writing) per Cookie header through the ASGI middleware;
    count the Set-Cookies."""

    async def app(scope: Message, receive: Any, send: Any) -> None:
        if write:
            asgi_session(scope)["seen"] = True
        else:
            asgi_session(scope).get("seen")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    middleware = ASGIMiddleware(app, manager, purge_interval=None)
    set_cookies = 0

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        nonlocal set_cookies
        set_cookies += sum(name == b"set-cookie" for name, _ in message.get("headers", ()))

    for cookie in cookies:
        headers = [] if cookie is None else [(b"cookie", cookie.encode())]
        await middleware({"type": "http", "scheme": "https", "path": "/", "headers": headers}, receive, send)
    return set_cookies


@pytest.mark.anyio
async def test_r10_cookie_less_reading_requests_leave_every_store_empty(store: Any, clock: FakeClock) -> None:
    manager = SessionManager(store, clock=clock)
    count = scaled(10_000, 100_000)
    request = _wsgi_client(manager, write=False)
    assert not any(request(None) for _ in range(count))
    assert await _asgi_flood(manager, [None] * count) == 0
    assert await dump(store) == b""


@pytest.mark.anyio
async def test_c16_requests_with_distinct_unknown_ids_write_nothing(store: Any, clock: FakeClock) -> None:
    manager = SessionManager(store, clock=clock)
    count = scaled(1_000, 10_000)
    request = _wsgi_client(manager, write=False)
    assert not any(request(f"sessionid={_ids.new_session_id()}") for _ in range(count))
    assert await _asgi_flood(manager, [f"sessionid={_ids.new_session_id()}" for _ in range(count)]) == 0
    assert await dump(store) == b""


def test_c46_session_creating_flood_keeps_the_memory_store_inside_its_bounds(clock: FakeClock) -> None:
    store = MemoryStore(max_entries=2_000, max_bytes=256 * 1024, clock=clock)
    request = _wsgi_client(SessionManager(store, clock=clock), write=True)
    count = scaled(20_000, 100_000)
    for i in range(count):
        assert request(None), "every request made a session"
        if i % 1000 == 0:
            clock.advance(1)
            assert len(store) <= store.max_entries
            assert store.size_bytes() <= store.max_bytes
    assert 0 < len(store) <= store.max_entries and store.size_bytes() <= store.max_bytes


def test_flood_helpers_see_what_they_count(clock: FakeClock) -> None:
    """The flood tests' clients notice cookies and stored records when there are some."""
    store = MemoryStore(clock=clock)
    manager = SessionManager(store, clock=clock)
    assert _wsgi_client(manager, write=True)(None)
    assert asyncio.run(_asgi_flood(manager, [None])) == 0
    assert asyncio.run(_asgi_flood(manager, [None, None], write=True)) == 2
    assert asyncio.run(dump(store)) != b""

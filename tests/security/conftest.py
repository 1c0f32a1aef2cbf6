"""The security checklist as a suite (docs/security.md has the table of items and tests).

Each test is named by the checklist item it proves (``test_c39_...``, ``test_r11_...``, and
``test_b16_...`` for the known advisories of section (b)), and runs through the real middlewares
(ASGI through Starlette, WSGI through Flask: the app of ``tests/apps.py``) on real stores:
``browser`` on an in-memory store wrapped in a spy that counts store calls, ``store_browser``
on every store of the matrix (memory, SQLite, PostgreSQL, MySQL, Redis, Redis Cluster).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import logging
import pickle
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple, TypeVar
from urllib.parse import parse_qsl

import httpx
import pytest

from coatcheck import Session, SessionConfig, SessionManager
from coatcheck._http import status_line
from coatcheck._ids import new_session_id, store_key
from coatcheck._logs import security_log
from coatcheck.asgi import get_session as asgi_session
from coatcheck.stores import Record
from coatcheck.stores.memory import MemoryStore
from coatcheck.testing import FakeClock
from coatcheck.wsgi import get_session as wsgi_session
from tests.apps import BASE, Browser, FlakyStore, cookie_value, set_cookies
from tests.backends import opened

T = TypeVar("T")


@pytest.fixture
async def store_browser(kind: str, store: Any, clock: FakeClock) -> AsyncIterator[Browser]:
    """A cookie-keeping client over ``kind``'s middleware on each store of the matrix."""
    b = Browser(kind, SessionManager(store, clock=clock))
    yield b
    await b.close()


# -- helpers shared by the test files -------------------------------------------------------------

BrowserFactory = Callable[..., Browser]


@pytest.fixture
async def make_browser(kind: str, clock: FakeClock) -> AsyncIterator[BrowserFactory]:
    """Builds more browsers over ``kind``'s middleware, all closed after the test.

    ``make(target, config=..., base_url=..., **manager_options)``: ``target`` is a SessionManager
    to share, or a store for a new manager (default: a fresh memory store); ``base_url`` sets the
    scheme the middleware sees.
    """
    opened: list[Browser] = []

    def make(target: object = None, *, config: SessionConfig | None = None, base_url: str = BASE, **options: Any) -> Browser:
        if not isinstance(target, SessionManager):
            store = MemoryStore(clock=clock) if target is None else target
            target = SessionManager(store, config=config, clock=clock, **options)  # type: ignore[arg-type]
        opened.append(Browser(kind, target, base_url=base_url))
        return opened[-1]

    yield make
    for opened_browser in opened:
        await opened_browser.close()


async def send_with(
    browser: Browser,
    method: str,
    url: str,
    session_id: str | None,
    *,
    name: str = "sessionid",
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """A request carrying only the cookie ``name=session_id`` (none when None), whatever the jar holds."""
    browser.client.cookies.clear()
    sent = dict(headers or {})
    if session_id is not None:
        sent["cookie"] = f"{name}={session_id}"
    return await browser.request(method, url, headers=sent, **kwargs)


def issued_id(response: httpx.Response) -> str:
    """The value of the response's one Set-Cookie ('' when it clears the cookie)."""
    [header] = set_cookies(response)
    return cookie_value(header)


def cookie_attributes(header: str) -> dict[str, str]:
    """The attributes of a Set-Cookie value, names lower-cased: ``{"path": "/", "secure": "", ...}``."""
    pairs = (part.strip().partition("=") for part in header.split(";")[1:])
    return {name.lower(): value for name, _, value in pairs}


def hashed(session_id: str) -> str:
    """What a store may hold for a session ID: its SHA-256 in hex."""
    return hashlib.sha256(session_id.encode()).hexdigest()


async def stored(store: Any, session_id: str) -> Record | None:
    """The live record ``store`` holds for ``session_id``, asked through the store's own API."""
    return await store.aload(hashed(session_id))  # type: ignore[no-any-return]


async def manager_call(browser: Browser, method: str, *args: Any) -> Any:
    """The browser's manager's ``method`` in its middleware's flavour (the a-twin under ASGI)."""
    manager = browser.app.manager
    if browser.kind == "wsgi":
        return getattr(manager, method)(*args)
    return await getattr(manager, "a" + method)(*args)


# -- helpers shared by the files of sections G to M, (b) and (d) -------------------------------------

Query = Mapping[str, str]


PARSE_BOUND = 0.5  # seconds for a whole request: a quadratic cookie parser needs far longer on the test headers


class CreatesFile:
    """A pickle payload: unpickling it creates ``path``, as an attacker's payload would run code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> Any:
        return (Path.touch, (self.path,))


def pickled_payload(sentinel: Path) -> bytes:
    """What an attacker plants: a pickle that, once loaded, creates ``sentinel``."""
    return pickle.dumps({"user": "admin", "run": CreatesFile(sentinel)})


def varies_on_cookie(response: httpx.Response) -> bool:
    """Whether the response's ``Vary`` names Cookie."""
    return any(part.strip().lower() == "cookie" for value in response.headers.get_list("vary") for part in value.split(","))


def shared_cacheable(response: httpx.Response) -> bool:
    """Whether a shared cache may store the response: its Cache-Control has neither ``private``
    nor ``no-store``."""
    values = response.headers.get_list("cache-control")
    directives = {part.split("=", 1)[0].strip().lower() for value in values for part in value.split(",")}
    return not directives & {"private", "no-store"}


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> pytest.LogCaptureFixture:
    """``caplog`` recording every level of the ``coatcheck`` loggers, with a fresh rate limit on
    the security log (the per-process limit would otherwise carry over from earlier tests)."""
    monkeypatch.setattr(security_log, "_budgets", {})  # the one limiter every module logs through
    caplog.set_level(logging.DEBUG, logger="coatcheck")
    return caplog


async def plant(store: Any, raw: bytes, expires_at: float, user_id: str | None = None) -> str:
    """Write ``raw`` straight into ``store`` as the record of a fresh, well-formed session ID, as
    anyone with write access to the backend could; return that ID."""
    session_id = new_session_id()
    assert await store.asave(store_key(session_id), Record(raw, expires_at, 1, user_id), expected_version=None)
    return session_id


class BareResponse(NamedTuple):
    """What :func:`bare_request` got back."""

    status: int
    headers: list[tuple[str, str]]  # names in lower case
    body: bytes


async def bare_request(browser: Browser, method: str, target: str, cookie: str | None = None) -> BareResponse:
    """One request straight into ``browser``'s middleware, without an HTTP client (whose cost would
    dominate a flood, and which cannot send a non-ASCII Cookie header to a WSGI app)."""
    path, _, query = target.partition("?")
    if browser.kind == "asgi":
        request_headers = [(b"host", b"testserver")] + ([(b"cookie", cookie.encode("latin-1"))] if cookie else [])
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "https",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": request_headers,
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 443),
        }
        inbox: list[dict[str, Any]] = [{"type": "http.request", "body": b"", "more_body": False}]
        sent: list[MutableMapping[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return inbox.pop() if inbox else {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message)

        await browser.app(scope, receive, send)
        headers = [(n.decode("latin-1").lower(), v.decode("latin-1")) for n, v in sent[0]["headers"]]
        return BareResponse(int(sent[0]["status"]), headers, b"".join(m.get("body", b"") for m in sent[1:]))
    environ = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "443",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_LENGTH": "0",
        "HTTP_HOST": "testserver",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "https",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        **({"HTTP_COOKIE": cookie} if cookie else {}),
    }
    started: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
        started.append((status, headers))
        return lambda data: None

    result = browser.app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        getattr(result, "close", lambda: None)()
    status, response_headers = started[-1]
    return BareResponse(int(status[:3]), [(name.lower(), value) for name, value in response_headers], body)


class Gate:
    """Stops a request inside its handler, after the middleware loaded its session, until the
    test has run other requests: a deterministic interleaving of concurrent requests, no sleeps."""

    def __init__(self) -> None:
        self._entered, self._released = threading.Event(), threading.Event()  # WSGI: a thread waits
        self._aentered, self._areleased = asyncio.Event(), asyncio.Event()  # ASGI: a task waits

    def hold(self) -> None:
        self._entered.set()
        if not self._released.wait(30):
            raise TimeoutError("the gate was never released")

    async def ahold(self) -> None:
        self._aentered.set()
        await self._areleased.wait()

    async def interleave(
        self, browser: Browser, method: str, url: str, meanwhile: Callable[[], Awaitable[T]], **kwargs: Any
    ) -> tuple[httpx.Response, T]:
        """Send a request that stops at this gate, run ``meanwhile``, release the request; return
        the held request's response and what ``meanwhile`` returned."""
        if browser.kind == "asgi":
            held = asyncio.ensure_future(browser.request(method, url, **kwargs))
            entered = asyncio.ensure_future(self._aentered.wait())
            await asyncio.wait({held, entered}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
            entered.cancel()
            assert self._aentered.is_set(), f"the held request never reached the gate: {await held}"
            try:
                result = await meanwhile()
            finally:
                self._areleased.set()
            return await held, result
        with ThreadPoolExecutor(1) as pool, httpx.Client(transport=httpx.WSGITransport(app=browser.app), base_url=BASE) as client:
            future = pool.submit(client.request, method, url, **kwargs)
            while not self._entered.wait(0.01):
                assert not future.done(), f"the held request never reached the gate: {future.result()}"
            try:
                result = await meanwhile()
            finally:
                self._released.set()
            return future.result(30), result


def act(session: Session, query: Query) -> tuple[int, str]:
    """What :func:`action_app` does: ``?logout=1`` logs out, ``?k=&v=`` sets a key, ``?status=``
    is the answer's status; the body is the session as JSON (with its ID if ``?id=1``)."""
    if "logout" in query:
        session.logout()
    if "k" in query:
        session[query["k"]] = query.get("v", "")
    body: dict[str, Any] = {"data": dict(session), "user": session.user_id}
    if "id" in query:
        body["id"] = session.id
    return int(query.get("status", "200")), json.dumps(body)


def action_app(kind: str, gate: Gate | None = None) -> Any:
    """A bare ASGI or WSGI app answering :func:`act`; with ``?hold=1`` it first waits at ``gate``."""
    if kind == "asgi":

        async def asgi(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
            query = dict(parse_qsl(scope["query_string"].decode()))
            session = asgi_session(scope)
            if gate is not None and "hold" in query:
                await gate.ahold()
            status, body = act(session, query)
            await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body.encode()})

        return asgi

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        query = dict(parse_qsl(environ.get("QUERY_STRING", "")))
        session = wsgi_session(environ)
        if gate is not None and "hold" in query:
            gate.hold()
        status, body = act(session, query)
        start_response(status_line(status), [("Content-Type", "application/json")])
        return [body.encode()]

    return wsgi


def serve_actions(browser: Browser, gate: Gate | None = None) -> Browser:
    """Put :func:`action_app` behind ``browser``'s middleware in place of the routes of tests/apps.py."""
    browser.app.app = action_app(browser.kind, gate)
    return browser


@contextlib.asynccontextmanager
async def open_browser(kind: str, manager: SessionManager, **middleware: Any) -> AsyncIterator[Browser]:
    """A :class:`Browser` over ``kind``'s middleware on ``manager``, closed on exit."""
    browser = Browser(kind, manager, **middleware)
    try:
        yield browser
    finally:
        await browser.close()


def take_store_down_in_handler(browser: Browser, spy: FlakyStore) -> None:
    """From now on ``spy`` goes down when the app behind ``browser``'s middleware starts handling
    a request: the session loads, and the commit is what fails."""
    inner = browser.app.app
    if browser.kind == "asgi":

        async def asgi(scope: Any, receive: Any, send: Any) -> None:
            spy.down = True
            await inner(scope, receive, send)

        browser.app.app = asgi
        return

    def wsgi(environ: Any, start_response: Any) -> Any:
        spy.down = True
        return inner(environ, start_response)

    browser.app.app = wsgi


@pytest.fixture(params=[pytest.param(name, marks=pytest.mark.server) for name in ("redis", "redis-cluster")])
async def redis_store(request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path) -> AsyncIterator[Any]:
    """A Redis store (one server, then a cluster), for checks that write to Redis behind its back."""
    async with opened(request.param, clock, tmp_path) as store:
        yield store

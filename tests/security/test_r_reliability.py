"""Checklist section (d): store and transport faults, R-01 to R-23.

Not here, but in the fault suite (tests/faults), because they need real faults against real
servers: R-02 (a stalled store), R-05 (SIGKILL of SQLite writers) and R-11 (Redis out of memory).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import re
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

from coatcheck import CoatcheckError, ConfigurationError, CookieConfig, SessionConfig, SessionManager, StoreError
from coatcheck._expiry import Expirer
from coatcheck._ids import log_handle, new_session_id, store_key
from coatcheck.asgi import SessionMiddleware as ASGIMiddleware
from coatcheck.asgi import get_session as asgi_session
from coatcheck.stores import from_url
from coatcheck.stores.memory import MemoryStore
from coatcheck.stores.sqlite import SQLiteStore
from coatcheck.testing import FakeClock, SpyStore
from coatcheck.wsgi import SessionMiddleware as WSGIMiddleware
from tests.apps import BASE, Browser, FlakyStore, asgi_app, cookie_value, set_cookies, wsgi_app
from tests.backends import backend, dump, opened
from tests.backends.redis import admin
from tests.security.conftest import (
    PARSE_BOUND,
    Gate,
    bare_request,
    cookie_attributes,
    issued_id,
    manager_call,
    open_browser,
    plant,
    send_with,
    serve_actions,
    stored,
    take_store_down_in_handler,
)

pytestmark = pytest.mark.anyio

SKEW = 300.0  # seconds: worker B's clock runs five minutes ahead of worker A's


def session_cookie(session_id: str) -> dict[str, str]:
    """Request headers carrying ``session_id`` as the session cookie."""
    return {"cookie": f"sessionid={session_id}"}


# -- store failures ------------------------------------------------------------------------


async def test_r01_unreachable_store_on_read_answers_503_and_attempts_no_write(kind: str, clock: FakeClock) -> None:
    """R-01: while the store is unreachable every request carrying a session answers 503 with
    Retry-After and no Set-Cookie, as nobody; nothing but the failed reads is attempted (no new
    ID is minted over the client's cookie); the same cookie works once the store is back."""
    flaky = FlakyStore(MemoryStore(clock=clock))
    attempts = SpyStore(flaky)  # counts calls that reach the failing store, failed or not
    async with open_browser(kind, SessionManager(attempts, clock=clock)) as browser:
        alice = issued_id(await browser.post("/login", params={"user": "alice"}))
        flaky.down = True
        attempts.reset()
        for method, url in [("GET", "/whoami"), ("GET", "/peek"), ("POST", "/set?k=a&v=1"), ("POST", "/login?user=mallory")]:
            response = await send_with(browser, method, url, alice)
            assert (response.status_code, set_cookies(response), response.headers.get("retry-after")) == (503, [], "1")
            assert "alice" not in response.text
        assert attempts.calls == {"load": 4}
        flaky.down = False
        assert (await send_with(browser, "GET", "/whoami", alice)).text == "alice"


async def test_r03_a_failed_save_sends_no_cookie_and_leaves_the_old_one_working(browser: Browser, spy: FlakyStore) -> None:
    """R-03: when the save at the end of the request fails, the answer is a 5xx without
    Set-Cookie (no cookie naming a record that does not exist), for a new session and for a
    login on an existing one; the existing session is untouched."""
    alice = issued_id(await browser.post("/set", params={"k": "cart", "v": "3"}))
    plain_app = browser.app.app
    take_store_down_in_handler(browser, spy)
    for session_id, url in [(None, "/set?k=a&v=1"), (alice, "/login?user=alice"), (alice, "/set?k=cart&v=4")]:
        response = await send_with(browser, "POST", url, session_id)
        assert (response.status_code, set_cookies(response)) == (503, [])
    browser.app.app, spy.down = plain_app, False
    assert len(spy.wrapped) == 1
    assert (await send_with(browser, "GET", "/peek", alice)).json() == {"data": {"cart": "3"}, "user": None}


# -- partial records ------------------------------------------------------------------------------


async def test_r04_a_record_missing_its_metadata_reads_as_missing(
    store_browser: Browser, store: Any, clock: FakeClock, logs: pytest.LogCaptureFixture
) -> None:
    """R-04: a stored record lacking part of its envelope (format, creation time, data) is no
    session at all (never a partial one, never a 500), with a hashed security log line."""
    partial = [
        {"c": clock(), "d": {"a": "1"}},
        {"v": 1, "d": {"a": "1"}},
        {"v": 1, "c": clock()},
        {"v": 1, "c": clock(), "d": ["a"]},
    ]
    for envelope in partial:
        session_id = await plant(store, json.dumps(envelope).encode(), clock() + 600, user_id="alice")
        response = await send_with(store_browser, "GET", "/peek", session_id)
        assert (response.status_code, response.json()) == (200, {"data": {}, "user": None})
        assert any(log_handle(session_id) in r.getMessage() for r in logs.records if r.name == "coatcheck.security")


async def test_r04_a_partly_written_redis_hash_reads_as_missing(
    kind: str, redis_store: Any, clock: FakeClock, logs: pytest.LogCaptureFixture
) -> None:
    """R-04 (spring-session RedisSessionRepositoryKeyMissITests): a session hash left without
    its expiry and creation fields, as a delete racing a partial write would leave it, reads as
    no session."""
    session_id = new_session_id()
    admin(redis_store).hset(
        redis_store._session_key(store_key(session_id)), mapping={"d": b'{"v":1,"c":1,"d":{}}', "v": "3", "u": "alice"}
    )
    async with open_browser(kind, SessionManager(redis_store, clock=clock)) as browser:
        response = await send_with(browser, "GET", "/peek", session_id)
    assert (response.status_code, response.json()) == (200, {"data": {}, "user": None})
    assert any(log_handle(session_id) in r.getMessage() for r in logs.records)


# -- concurrency and clocks, on every store ----------------------------------------------


@pytest.mark.parametrize("held", ["write", "read"])
async def test_r06_a_request_in_flight_never_resurrects_a_logged_out_session(
    store_browser: Browser, store: Any, clock: FakeClock, held: str
) -> None:
    """R-06 (the C-34 sequence): a request loads the session and stalls, a logout ends it, the
    stalled request finishes: its changes raise SessionInterruptedError (409, no cookie), a
    read-only one writes nothing (not even its due refresh), and the session stays gone."""
    gate = Gate()
    serve_actions(store_browser, gate)
    session_id = issued_id(await store_browser.post("/?k=user&v=alice"))
    clock.advance(store_browser.app.manager.config.touch_seconds + 1)  # the stalled request is due a refresh

    def log_out() -> Awaitable[httpx.Response]:
        return send_with(store_browser, "POST", "/?logout=1", session_id)

    url = "/?hold=1&k=late&v=1" if held == "write" else "/?hold=1"
    response, logout = await gate.interleave(store_browser, "POST", url, log_out, headers=session_cookie(session_id))
    assert issued_id(logout) == ""
    assert (response.status_code, set_cookies(response)) == (409 if held == "write" else 200, [])
    assert await stored(store, session_id) is None
    assert b"late" not in await dump(store)


async def test_r07_concurrent_changes_to_one_session_merge_key_by_key(store_browser: Browser) -> None:
    """R-07: two requests load the same version; different keys both survive, and on the same
    key the later commit wins (no lost update, no error)."""
    session_id = issued_id(await serve_actions(store_browser).post("/?k=base&v=0"))
    for held_key, other_key in [("a", "b"), ("same", "same")]:
        gate = Gate()
        serve_actions(store_browser, gate)

        def other(key: str = other_key) -> Awaitable[httpx.Response]:
            return send_with(store_browser, "POST", f"/?k={key}&v=other", session_id)

        response, _ = await gate.interleave(
            store_browser, "POST", f"/?hold=1&k={held_key}&v=held", other, headers=session_cookie(session_id)
        )
        assert response.status_code == 200
    data = (await send_with(store_browser, "GET", "/", session_id)).json()["data"]
    assert data == {"base": "0", "a": "held", "b": "other", "same": "held"}


async def _burst(browser: Browser, session_id: str, count: int) -> list[int]:
    """``count`` concurrent requests on one session, each setting its own key; their statuses."""
    urls = [f"/?k=k{i}&v={i}" for i in range(count)]
    if browser.kind == "asgi":
        responses = await asyncio.gather(*(browser.post(url, headers=session_cookie(session_id)) for url in urls))
        return [r.status_code for r in responses]

    def one(url: str) -> int:
        with httpx.Client(transport=httpx.WSGITransport(app=browser.app), base_url=BASE) as client:
            return client.post(url, headers=session_cookie(session_id)).status_code

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, urls))


async def test_r07_a_burst_with_a_read_only_request_finishing_last_loses_nothing(
    store_browser: Browser, clock: FakeClock
) -> None:
    """R-07: 50 concurrent requests each add a key while a read-only request that loaded the
    session before all of them, and is due a refresh, finishes last: all 50 keys survive."""
    gate = Gate()
    serve_actions(store_browser, gate)
    session_id = issued_id(await store_browser.post("/?k=base&v=0"))
    clock.advance(store_browser.app.manager.config.touch_seconds + 1)

    def burst() -> Awaitable[list[int]]:
        return _burst(store_browser, session_id, 50)

    response, statuses = await gate.interleave(store_browser, "GET", "/?hold=1", burst, headers=session_cookie(session_id))
    assert (response.status_code, statuses) == (200, [200] * 50)
    data = (await send_with(store_browser, "GET", "/", session_id)).json()["data"]
    assert data == {"base": "0", **{f"k{i}": str(i) for i in range(50)}}


async def test_r08_clock_skew_between_workers_never_loses_or_shortens_a_session(store: Any, clock: FakeClock) -> None:
    """R-08: worker B runs five minutes ahead of worker A. A session created on A is valid on
    B; when B refreshes it and A's concurrent write lands afterwards, the expiry never moves
    back (an out-of-order extend never shortens it)."""
    worker_a = SessionManager(store, clock=clock)
    worker_b = SessionManager(store, clock=lambda: clock() + SKEW)
    session = worker_a.new_session()
    session["n"] = 1
    await worker_a.acommit(session)
    header = f"sessionid={session.id}"
    assert (await worker_b.aload(header))["n"] == 1
    clock.advance(600)  # a refresh is due on both workers
    on_a, on_b = await worker_a.aload(header), await worker_b.aload(header)
    await worker_b.acommit(on_b)
    extended = await store.aload(store_key(session.id))
    on_a["n"] = 2
    await worker_a.acommit(on_a)
    final = await store.aload(store_key(session.id))
    assert final is not None and final.expires_at >= extended.expires_at
    assert (await worker_b.aload(header))["n"] == 2


# -- expiry and floods -------------------------------------------------------------------------


async def test_r09_an_expired_session_not_yet_purged_is_refused(kind: str, store: Any, clock: FakeClock) -> None:
    """R-09 (fastify CVE-2024-35220): with no purge running, an expired record still in the
    store is refused on read; purging only reclaims space."""
    async with open_browser(kind, SessionManager(store, clock=clock), purge_interval=None) as browser:
        session_id = issued_id(await browser.post("/login", params={"user": "alice"}))
        clock.advance(browser.app.manager.config.idle_seconds + 1)
        assert store_key(session_id).encode() in await dump(store)
        response = await send_with(browser, "GET", "/whoami", session_id)
    assert (response.text, set_cookies(response)) == ("anon", [])


def test_r09_a_purge_deletes_in_bounded_batches(tmp_path: Path, clock: FakeClock) -> None:
    """R-09: a purge of 35 expired sessions with batches of 10 runs four bounded DELETEs (never
    one long lock) and keeps the live sessions."""
    store = SQLiteStore(tmp_path / "sessions.db", purge_batch=10, clock=clock)
    manager = SessionManager(store, clock=clock)

    def create(count: int) -> list[str]:
        sessions = [manager.new_session() for _ in range(count)]
        for session in sessions:
            session["a"] = 1
            manager.commit(session)
        return [session.id for session in sessions]

    create(35)
    clock.advance(manager.config.idle_seconds + 1)
    live = create(5)
    statements: list[str] = []
    store._connection()[0].set_trace_callback(statements.append)
    try:
        assert manager.purge_expired() == 35
    finally:
        store._connection()[0].set_trace_callback(None)
    deletes = [s for s in statements if s.lstrip().upper().startswith("DELETE")]
    assert len(deletes) == 4 and all("LIMIT 10" in s for s in deletes)
    assert all(not manager.load(f"sessionid={sid}").is_new for sid in live)
    store.close()


async def _until(condition: Callable[[], bool]) -> None:
    """Wait (at most 10 s) for a background purge thread or task to make ``condition`` true."""
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition never became true")


async def test_r09_a_failing_purge_never_stops_the_expirer(kind: str, clock: FakeClock, logs: pytest.LogCaptureFixture) -> None:
    """R-09: purges that fail are logged and retried; the purge thread (WSGI) or task (ASGI)
    survives and purges once the store is back."""
    flaky = FlakyStore(MemoryStore(clock=clock))
    manager = SessionManager(flaky, clock=clock)
    session = manager.new_session()
    session["a"] = 1
    manager.commit(session)
    clock.advance(manager.config.idle_seconds + 1)
    flaky.down = True
    expirer = Expirer(manager, interval=0.001)
    await (expirer.astart() if kind == "asgi" else asyncio.to_thread(expirer.start))
    try:
        await _until(lambda: sum("purging expired sessions failed" in r.getMessage() for r in logs.records) >= 3)
        assert expirer.running
        flaky.down = False
        await _until(lambda: len(flaky.wrapped) == 0)
        assert expirer.running
    finally:
        await (expirer.astop() if kind == "asgi" else asyncio.to_thread(expirer.stop))


async def test_r10_a_flood_of_new_sessions_keeps_the_memory_store_bounded(kind: str, clock: FakeClock) -> None:
    """R-10: 1,000 requests that each create a session, on a store bounded to 100: the store
    never passes its bound, the oldest sessions make room, the newest works."""
    memory = MemoryStore(max_entries=100, clock=clock)
    async with open_browser(kind, SessionManager(memory, clock=clock)) as browser:
        issued = []
        for _ in range(1_000):
            response = await bare_request(browser, "POST", "/set?k=bot&v=1")
            issued.append(cookie_value(dict(response.headers)["set-cookie"]))
            assert len(memory) <= 100
            clock.advance(1)
        assert (await send_with(browser, "GET", "/peek", issued[-1])).json()["data"] == {"bot": "1"}
        assert (await send_with(browser, "GET", "/peek", issued[0])).json()["data"] == {}


# -- cookies and headers --------------------------------------------------------------------


def _longest_path(domain: str) -> str:
    """The longest cookie path CookieConfig accepts alongside ``domain``."""
    low, high = 0, 8192
    while low < high:
        middle = (low + high + 1) // 2
        try:
            CookieConfig(path="/" + "p" * middle, domain=domain)
        except ConfigurationError:
            high = middle - 1
        else:
            low = middle
    return "/" + "p" * low


@pytest.mark.parametrize("timeout", [1800.0, 400 * 86400.0], ids=["30-minutes", "400-days"])
def test_r12_no_configuration_that_builds_emits_a_cookie_over_4096_bytes(timeout: float) -> None:
    """R-12 (ASVS 3.3.5, RFC 6265 6.1): with the longest path and domain the configuration
    accepts, the issued and the clearing Set-Cookie stay within 4096 bytes; one more byte of
    path, or a timeout past the 400 days a browser keeps a cookie (RFC 6265bis), is refused when
    the configuration is built."""
    domain = ".".join(["d" * 63] * 3) + ".example"
    path = _longest_path(domain)
    with pytest.raises(ConfigurationError):
        CookieConfig(path=path + "p", domain=domain)
    with pytest.raises(ConfigurationError):
        SessionConfig(idle_timeout=1e100, absolute_timeout=1e100)
    config = SessionConfig(cookie=CookieConfig(path=path, domain=domain), idle_timeout=timeout, absolute_timeout=timeout)
    clock = FakeClock()
    manager = SessionManager(MemoryStore(clock=clock), config=config, clock=clock)
    session = manager.new_session()
    session["a"] = 1
    issued = manager.commit(session)
    loaded = manager.load(f"sessionid={session.id}")
    loaded.logout()
    cleared = manager.commit(loaded)
    assert issued is not None and cleared is not None
    assert [len(issued.encode()) <= 4096, len(cleared.encode()) <= 4096] == [True, True], len(issued.encode())


FOUND = [
    "  sessionid = {sid}  ",
    ";;; sessionid={sid} ;;",
    "garbage; sessionid={sid}",
    "sessionid; sessionid={sid}",
    "sessionid=; sessionid={sid}",
]
REFUSED = [
    'sessionid="{sid}"',
    "sessionid={sid} x",
    "sessionid={sid}=",
    "sessionid={sid}%00",
    "sessionid=\xe9{sid}",
    "sessionid:{sid}",
]


@pytest.mark.parametrize("template", FOUND + REFUSED)
async def test_r13_malformed_cookie_headers_are_parsed_pair_by_pair(browser: Browser, spy: FlakyStore, template: str) -> None:
    """R-13 (tornado#633, web2py#1084): stray separators, nameless and valueless pairs are
    skipped and the session cookie found; a session value that is not exactly an ID is ignored
    before any store call."""
    session_id = issued_id(await browser.post("/login", params={"user": "alice"}))
    spy.reset()
    response = await bare_request(browser, "GET", "/whoami", template.format(sid=session_id))
    expected = (b"alice", {"load": 1}) if template in FOUND else (b"anon", {})
    assert (response.body, spy.calls) == expected


async def test_r14_oversized_cookie_headers_cost_bounded_work(browser: Browser, spy: FlakyStore) -> None:
    """R-14 (CVE-2024-7592, Tornado CVE-2024-52804): 1,000 other cookies are parsed quickly; a
    1 MiB session value costs no store call; 100 well-formed session cookies cost at most 3
    store reads."""
    session_id = issued_id(await browser.post("/login", params={"user": "alice"}))
    crowd = "; ".join(f"c{i}=v{i}" for i in range(1_000))
    start = time.perf_counter()
    response = await bare_request(browser, "GET", "/whoami", f"{crowd}; sessionid={session_id}")
    assert time.perf_counter() - start < PARSE_BOUND and response.body == b"alice"
    spy.reset()
    assert (await bare_request(browser, "GET", "/whoami", "sessionid=" + "A" * (1 << 20))).body == b"anon"
    assert spy.calls == {}
    many = "; ".join(f"sessionid={new_session_id()}" for _ in range(100))
    assert (await bare_request(browser, "GET", "/whoami", many)).body == b"anon"
    assert 1 <= spy.calls["load"] <= 3


async def test_r15_a_tossed_duplicate_cookie_is_skipped_and_logout_clears_with_the_configured_scope(
    kind: str, spy: FlakyStore, clock: FakeClock
) -> None:
    """R-15 (cookie tossing across domains): with a sibling's cookie in front, logout still
    finds the real session, deletes it, and clears the cookie with the configured Path and
    Domain."""
    cookie = CookieConfig(domain="example.com")
    async with open_browser(kind, SessionManager(spy, config=SessionConfig(cookie=cookie), clock=clock)) as browser:
        victim = issued_id(await browser.post("/login", params={"user": "alice"}))
        header = f"sessionid={new_session_id()}; sessionid={victim}"
        response = await send_with(browser, "POST", "/logout", None, headers={"cookie": header})
    [cleared] = set_cookies(response)
    attributes = cookie_attributes(cleared)
    assert (cleared.split(";")[0], attributes["path"], attributes["domain"], attributes["max-age"]) == (
        "sessionid=",
        "/",
        "example.com",
        "0",
    )
    assert await stored(spy, victim) is None


async def test_r16_session_data_never_reaches_a_response_header(browser: Browser) -> None:
    """R-16: keys and values holding CR LF and header text stay session data: the response has
    exactly one Set-Cookie, the session's, and no injected header."""
    key, value = "x\r\nSet-Cookie: evil=1", "\r\nX-Injected: 1"
    response = await browser.post("/set", params={"k": key, "v": value})
    [header] = set_cookies(response)
    assert header.startswith("sessionid=") and "evil" not in header
    assert "x-injected" not in response.headers
    assert (await browser.get("/peek")).json()["data"] == {key: value}


def test_r16_an_id_from_a_custom_id_factory_never_splits_the_set_cookie_header() -> None:
    """R-16 (the assembled header is checked, not only its parts): an ``id_factory`` that returns
    a header-unsafe value must not produce a Set-Cookie holding CR or LF."""
    manager = SessionManager(MemoryStore(), id_factory=lambda: "x\r\nSet-Cookie: evil=1")
    session = manager.new_session()
    session["a"] = 1
    try:
        header = manager.commit(session)
    except (CoatcheckError, ValueError):
        return
    assert header is None or not re.search(r"[\r\n]", header), header


# -- responses and start-up ---------------------------------------------------------------


async def test_r17_a_streamed_response_commits_when_its_headers_start(
    browser: Browser, spy: FlakyStore, logs: pytest.LogCaptureFixture
) -> None:
    """R-17: a change before the first chunk is saved and its cookie sent with the headers; a
    change after the first chunk is not saved, is logged as a warning, and writes nothing."""
    response = await browser.get("/stream")
    assert response.text == "first chunk\nsecond chunk\n" and len(set_cookies(response)) == 1
    assert spy.writes == 1
    late = [r for r in logs.records if r.name == "coatcheck" and "after its response started" in r.getMessage()]
    assert [r.levelno for r in late] == [logging.WARNING]
    assert (await browser.get("/peek")).json()["data"] == {"before": True}


def test_r17_a_websocket_reads_the_session_but_never_writes_it(spy: FlakyStore) -> None:
    """R-17: a WebSocket handshake sees the session; what the socket handler writes to it is
    never saved (a socket has no response headers to carry a cookie)."""

    async def socket(websocket: WebSocket) -> None:
        await websocket.accept()
        session = asgi_session(websocket.scope)
        seen = dict(session)
        session["from_socket"] = True
        await websocket.send_json(seen)
        await websocket.close()

    app: Starlette = asgi_app()
    app.router.routes.append(WebSocketRoute("/socket", socket))
    with TestClient(ASGIMiddleware(app, SessionManager(spy), purge_interval=None), base_url=BASE) as client:
        session_id = cookie_value(client.post("/set", params={"k": "a", "v": "1"}).headers["set-cookie"])
        spy.reset()
        with client.websocket_connect("/socket", headers=session_cookie(session_id)) as websocket:
            assert websocket.receive_json() == {"a": "1"}
        assert spy.writes == 0
        assert client.get("/peek", headers=session_cookie(session_id)).json()["data"] == {"a": "1"}


@pytest.mark.parametrize("status", [200, 201, 302, 400, 404, 409, 499, 500, 503])
async def test_r18_changes_are_kept_on_4xx_and_dropped_on_5xx(browser: Browser, status: int) -> None:
    """R-18 (Django parity): what a handler changed is saved with any answer below 500 and
    dropped with a 5xx."""
    serve_actions(browser)
    session_id = issued_id(await browser.post("/?k=base&v=0"))
    assert (await send_with(browser, "POST", f"/?k=x&v=1&status={status}", session_id)).status_code == status
    data = (await send_with(browser, "GET", "/", session_id)).json()["data"]
    assert ("x" in data) is (status < 500)


async def test_r19_an_app_started_while_the_store_is_down_recovers_without_a_restart(
    kind: str, spy: FlakyStore, clock: FakeClock
) -> None:
    """R-19: an app allowed to start without its store (WSGI ``check=False``; ASGI without a
    lifespan check) answers 503 while the store is down and works as soon as it is back."""
    spy.down = True
    options = {"check": False} if kind == "wsgi" else {}
    async with open_browser(kind, SessionManager(spy, clock=clock), **options) as browser:
        response = await browser.post("/set", params={"k": "a", "v": "1"})
        assert (response.status_code, set_cookies(response)) == (503, [])
        spy.down = False
        assert len(set_cookies(await browser.post("/set", params={"k": "a", "v": "1"}))) == 1
        assert (await browser.get("/peek")).json()["data"] == {"a": "1"}


# -- formats and deployment -------------------------------------------------------------------


async def test_r20_unknown_record_formats_read_as_missing_and_newer_fields_are_ignored(
    store_browser: Browser, store: Any, clock: FakeClock, logs: pytest.LogCaptureFixture
) -> None:
    """R-20 (rolling deploys): a record in a future format version is no session (logged, no
    500); a current-version record with an extra field a newer writer added still loads."""
    future = await plant(store, json.dumps({"v": 99, "c": clock(), "d": {"a": "1"}}).encode(), clock() + 600)
    assert (await send_with(store_browser, "GET", "/peek", future)).json()["data"] == {}
    assert any("format version" in r.getMessage() and log_handle(future) in r.getMessage() for r in logs.records)
    newer = await plant(
        store, json.dumps({"v": 1, "c": clock(), "d": {"a": "1"}, "x": {"added": "later"}}).encode(), clock() + 600
    )
    assert (await send_with(store_browser, "GET", "/peek", newer)).json()["data"] == {"a": "1"}


def test_r21_a_memory_store_behind_several_workers_is_warned_about_at_startup(
    kind: str, monkeypatch: pytest.MonkeyPatch, logs: pytest.LogCaptureFixture
) -> None:
    """R-21: the memory store is per process; started where the server runs several workers
    (``WEB_CONCURRENCY=4``), the app warns at startup (a log line or a Python warning)."""
    monkeypatch.setenv("WEB_CONCURRENCY", "4")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        manager = SessionManager("memory://")
        if kind == "wsgi":
            WSGIMiddleware(wsgi_app().wsgi_app, manager, purge_interval=None)
        else:
            with TestClient(ASGIMiddleware(asgi_app(), manager, purge_interval=None)):
                pass
    said = [str(w.message) for w in caught] + [r.getMessage() for r in logs.records if r.levelno >= logging.WARNING]
    assert [line for line in said if "memory" in line.lower()] != []


# -- server stores -----------------------------------------------------------------------------


@pytest.mark.server
async def test_r22_revoke_wins_on_a_cluster_even_when_index_writes_were_lost(kind: str, clock: FakeClock, tmp_path: Path) -> None:
    """R-22 (ASVS 7.4.1 per-user epoch): alice's sessions live in several cluster slots and her
    index is lost (a failover after asynchronous replication); "log out everywhere" still ends
    all of them, and only hers."""
    async with (
        opened("redis-cluster", clock, tmp_path) as store,
        open_browser(kind, SessionManager(store, clock=clock)) as browser,
    ):
        alice = [issued_id(await send_with(browser, "POST", "/login?user=alice", None)) for _ in range(3)]
        bob = issued_id(await send_with(browser, "POST", "/login?user=bob", None))
        admin(store).delete(store._index_key("alice"))
        await manager_call(browser, "revoke_user", "alice")
        seen = [(await send_with(browser, "GET", "/whoami", sid)).text for sid in [*alice, bob]]
    assert seen == ["anon", "anon", "anon", "bob"]


@contextlib.asynccontextmanager
async def _only_connection_taken(store: Any, kind: str) -> AsyncIterator[None]:
    """Hold the single connection of ``store``'s pool for ``kind``'s side (sync or async)."""
    if kind == "wsgi":
        with store._sync_pool().connection():
            yield
        return
    pool = store._async_pool()
    if inspect.isawaitable(pool):
        pool = await pool
    async with pool.connection():
        yield


@pytest.mark.server
@pytest.mark.parametrize("name", ["postgres", "mysql"])
async def test_r23_an_exhausted_connection_pool_answers_503_within_its_timeout(
    kind: str, name: str, clock: FakeClock, tmp_path: Path
) -> None:
    """R-23: with its one pooled connection taken, a request waits at most the pool timeout and
    answers 503 without Set-Cookie; the next request, with the connection back, succeeds."""
    async with opened(name, clock, tmp_path) as store:
        module = backend(name)
        small = type(store).from_url(
            module.with_query(module.URL, f"table={store.table}&pool_size=1&pool_timeout=0.2"), clock=clock
        )
        try:
            async with open_browser(kind, SessionManager(small, clock=clock)) as browser:
                session_id = issued_id(await browser.post("/set", params={"k": "a", "v": "1"}))
                async with _only_connection_taken(small, kind):
                    start = time.perf_counter()
                    response = await send_with(browser, "GET", "/peek", session_id)
                    waited = time.perf_counter() - start
                assert (response.status_code, set_cookies(response)) == (503, [])
                assert 0.2 <= waited < 2.0
                assert (await send_with(browser, "GET", "/peek", session_id)).json()["data"] == {"a": "1"}
        finally:
            small.close()
            await small.aclose()


async def _indexed_columns_then_drop(name: str, table: str) -> set[str]:
    """The columns ``table`` has indexes on (read behind the store's back); then drop it."""
    module = backend(name)
    if name == "postgres":
        async with await module.admin() as conn:
            rows = await (await conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename = %s", (table,))).fetchall()
            await conn.execute(f'DROP TABLE IF EXISTS "{table}"')
        return {match.group(1) for (indexdef,) in rows if (match := re.search(r"\((\w+)\)", indexdef))}
    with module.admin() as conn, conn.cursor() as cursor:
        cursor.execute(f"SHOW INDEX FROM `{table}`")
        columns = {row[4] for row in cursor.fetchall()}
        cursor.execute(f"DROP TABLE IF EXISTS `{table}`")
    return columns


async def _start(kind: str, manager: SessionManager) -> None:
    """Start an app on ``manager`` as a server would: build the WSGI middleware (which checks the
    store), or run the ASGI middleware's lifespan, startup then shutdown."""
    if kind == "wsgi":
        WSGIMiddleware(wsgi_app().wsgi_app, manager, purge_interval=None)
        return
    inbox = [{"type": "lifespan.shutdown"}, {"type": "lifespan.startup"}]
    sent: list[str] = []

    async def receive() -> dict[str, str]:
        return inbox.pop()

    async def send(message: Any) -> None:
        sent.append(message["type"])

    await ASGIMiddleware(asgi_app(), manager, purge_interval=None)(
        {"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send
    )
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


@pytest.mark.server
@pytest.mark.parametrize("name", ["postgres", "mysql"])
async def test_r23_a_missing_table_stops_startup_with_a_clear_error_until_migrated(
    kind: str, name: str, clock: FakeClock
) -> None:
    """R-23 (migration drift): a store whose table does not exist stops the app at startup with
    an error saying to run ``coatcheck migrate``; once migrated the app starts, and the table
    has its indexes on expires_at and user_id."""
    module = backend(name)
    table = f"cc_{uuid.uuid4().hex[:16]}"
    store = from_url(module.with_query(module.URL, f"table={table}"), clock=clock)
    manager = SessionManager(store, clock=clock)
    try:
        with pytest.raises(StoreError, match="coatcheck migrate"):
            await _start(kind, manager)
        await store.amigrate()
        await _start(kind, manager)
    finally:
        store.close()
        await store.aclose()
        columns = await _indexed_columns_then_drop(name, table)
    assert {"expires_at", "user_id"} <= columns

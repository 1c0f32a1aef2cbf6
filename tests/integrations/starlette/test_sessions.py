"""Sessions through Starlette and FastAPI on every store of the matrix (memory, SQLite, Redis,
Redis Cluster, PostgreSQL, MariaDB): laziness, strict mode, rotation, logout, timeouts, per-key
merge of concurrent requests and "log out everywhere"."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest

from coatcheck import SessionConfig, SessionManager
from coatcheck._ids import new_session_id
from coatcheck.testing import FakeClock
from tests.backends import dump
from tests.integrations.starlette.apps import Gate
from tests.integrations.starlette.conftest import Browser, Serve

pytestmark = pytest.mark.anyio


async def test_a_request_that_does_not_write_sets_no_cookie_and_stores_nothing(serve: Serve, store: Any) -> None:
    browser = Browser(serve(SessionManager(store)))
    public = browser.get("/public")
    assert public.status_code == 200
    assert "set-cookie" not in public.headers
    read = browser.get("/peek")
    assert read.json() == {"data": {}, "user": None}
    assert "set-cookie" not in read.headers
    assert read.headers["vary"] == "Cookie"  # the answer depended on the (absent) cookie
    assert await dump(store) == b""
    assert browser.post("/set", params={"k": "a", "v": "1"}).headers["set-cookie"].startswith("sessionid=")
    assert "set-cookie" not in browser.get("/peek").headers  # reading a stored session writes no cookie


async def test_an_unknown_session_id_is_never_adopted(serve: Serve, store: Any) -> None:
    planted = new_session_id()
    browser = Browser(serve(SessionManager(store)), session_id=planted)
    assert browser.peek() == {"data": {}, "user": None}
    browser.post("/set", params={"k": "a", "v": "1"})
    assert browser.session_id is not None and browser.session_id != planted
    assert Browser(browser.client, session_id=planted).peek() == {"data": {}, "user": None}
    assert browser.peek() == {"data": {"a": "1"}, "user": None}


async def test_login_rotates_the_id_and_keeps_the_data(serve: Serve, store: Any) -> None:
    browser = Browser(serve(SessionManager(store)))
    browser.post("/set", params={"k": "cart", "v": "3 apples"})
    anonymous_id = browser.session_id
    assert browser.post("/login", params={"user": "alice"}).status_code == 200
    assert browser.session_id not in (None, anonymous_id)
    assert browser.peek() == {"data": {"cart": "3 apples"}, "user": "alice"}
    assert Browser(browser.client, session_id=anonymous_id).peek() == {"data": {}, "user": None}  # the old ID died at once


async def test_logout_ends_the_session_server_side_and_clears_the_cookie(serve: Serve, store: Any) -> None:
    browser = Browser(serve(SessionManager(store)))
    browser.post("/login", params={"user": "alice"})
    browser.post("/set", params={"k": "secret", "v": "s3cr3t"})
    logged_in_id = browser.session_id
    response = browser.post("/logout")
    assert "Max-Age=0" in response.headers["set-cookie"]
    assert browser.session_id is None
    assert Browser(browser.client, session_id=logged_in_id).peek() == {"data": {}, "user": None}  # a replayed cookie
    assert b"s3cr3t" not in await dump(store)


async def test_the_idle_timeout_slides_with_activity(serve: Serve, store: Any, clock: FakeClock) -> None:
    config = SessionConfig(idle_timeout=timedelta(seconds=60), touch_interval=timedelta(seconds=10))
    browser = Browser(serve(SessionManager(store, config=config, clock=clock)))
    browser.post("/login", params={"user": "alice"})
    clock.advance(40)
    assert browser.peek()["user"] == "alice"  # refreshes the idle deadline to t=100
    clock.advance(40)
    assert browser.peek()["user"] == "alice"  # t=80: past the first deadline, alive because it slid
    clock.advance(61)
    assert browser.peek() == {"data": {}, "user": None}


async def test_the_absolute_timeout_ends_even_an_active_session(serve: Serve, store: Any, clock: FakeClock) -> None:
    config = SessionConfig(idle_timeout=timedelta(seconds=60), absolute_timeout=timedelta(seconds=150), touch_interval=0)
    browser = Browser(serve(SessionManager(store, config=config, clock=clock)))
    browser.post("/login", params={"user": "alice"})
    for _ in range(2):
        clock.advance(50)
        assert browser.peek()["user"] == "alice"
    clock.advance(50)  # t=150: active 50 s ago, but 150 s after login
    assert browser.peek() == {"data": {}, "user": None}


async def test_concurrent_requests_changing_different_keys_both_persist(serve: Serve, store: Any, gate: Gate) -> None:
    """The held request loads the session and writes ``a``; the second one loads it, writes ``b``
    and commits first; then the held one commits onto the record it no longer matches."""
    browser = Browser(serve(SessionManager(store)))
    browser.post("/set", params={"k": "start", "v": "0"})
    with ThreadPoolExecutor(max_workers=1) as pool:
        held = pool.submit(browser.post, "/hold", params={"k": "a", "v": "1"})
        assert gate.entered.wait(10), "the held request never reached its view"
        assert browser.post("/set", params={"k": "b", "v": "2"}).status_code == 200
        gate.release.set()
        assert held.result(timeout=10).status_code == 200
    assert browser.peek()["data"] == {"start": "0", "a": "1", "b": "2"}


async def test_logout_everywhere_ends_every_session_of_the_user(serve: Serve, store: Any) -> None:
    manager = SessionManager(store)
    client = serve(manager)
    laptop, phone, other = Browser(client), Browser(client), Browser(client)
    laptop.post("/login", params={"user": "alice"})
    phone.post("/login", params={"user": "alice"})
    other.post("/login", params={"user": "bob"})
    assert phone.post("/logout-everywhere").text == "2"
    assert laptop.peek() == {"data": {}, "user": None}
    assert phone.peek() == {"data": {}, "user": None}
    assert other.peek()["user"] == "bob"
    other_id = other.session_id
    assert manager.revoke_user("bob") == 1  # the manager's sync call, from outside any request
    assert Browser(client, session_id=other_id).peek() == {"data": {}, "user": None}

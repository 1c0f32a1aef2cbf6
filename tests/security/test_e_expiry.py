"""Checklist section E: expiry (C-26 to C-31)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from coatcheck import ConfigurationError, CookieConfig, SessionConfig
from coatcheck.stores.redis import RedisStore
from coatcheck.testing import FakeClock
from tests.apps import Browser, set_cookies
from tests.backends import dump
from tests.backends.redis import admin
from tests.security.conftest import (
    BrowserFactory,
    cookie_attributes,
    hashed,
    issued_id,
    manager_call,
    plant,
    send_with,
    stored,
)

pytestmark = pytest.mark.anyio

IDLE, ABSOLUTE = 30 * 60, 8 * 3600
POLICY = SessionConfig(idle_timeout=timedelta(seconds=IDLE), absolute_timeout=timedelta(seconds=ABSOLUTE))


async def _whoami(browser: Browser, session_id: str) -> str:
    return (await send_with(browser, "GET", "/whoami", session_id)).text


async def _login(browser: Browser, user: str = "alice") -> str:
    return issued_id(await send_with(browser, "POST", f"/login?user={user}", None))


async def test_c26_idle_timeout_is_enforced_on_every_read(make_browser: BrowserFactory, store: Any, clock: FakeClock) -> None:
    """C-26: the idle timeout is enforced server-side when the session is read, not by GC or by
    the cookie (CS "Idle Timeout", ASVS 5.0 7.3.1, @fastify/session CVE-2024-35220): a session
    idle for 31 min of 30 reads as anonymous while its record is still at rest."""
    browser = make_browser(store, config=POLICY)
    session_id = await _login(browser)
    clock.advance(29 * 60)
    assert await _whoami(browser, session_id) == "alice"
    clock.advance(31 * 60)
    assert hashed(session_id).encode() in await dump(store)  # not collected yet
    response = await send_with(browser, "GET", "/whoami", session_id)
    assert response.text == "anon" and set_cookies(response) == []


async def test_c27_absolute_timeout_holds_however_active(make_browser: BrowserFactory, store: Any, clock: FakeClock) -> None:
    """C-27: with 8 h absolute and 30 min idle, a request every 10 min keeps the session until 8 h
    and not a second more (CS "Absolute Timeout", ASVS 5.0 7.3.2)."""
    browser = make_browser(store, config=POLICY)
    start = clock()
    session_id = await _login(browser)
    while clock() + 600 < start + ABSOLUTE:
        clock.advance(600)
        assert await _whoami(browser, session_id) == "alice"
    clock.advance(start + ABSOLUTE + 1 - clock())
    assert await _whoami(browser, session_id) == "anon"


def _envelope(created_at: float) -> bytes:
    """A well-formed record payload (format 1) that says it was created at ``created_at``."""
    return b'{"v":1,"c":%r,"d":{"forged":true}}' % created_at


FORGED = {  # (creation, expiry) relative to now, as a tampered record states them
    "old-session-far-future-expiry": (-ABSOLUTE - 1, 10 * 365 * 86400),
    "fresh-session-far-future-expiry": (0, 10 * 365 * 86400),
    "created-in-the-future": (10 * 365 * 86400, 10 * 365 * 86400 + 3600),
}


async def test_c28_neither_the_client_nor_stored_metadata_extends_a_session(
    make_browser: BrowserFactory, store: Any, clock: FakeClock
) -> None:
    """C-28: replaying a cookie after expiry gets nothing, and a stored record that claims a
    far-future expiry still ends within the configured absolute timeout from now (WSTG-SESS-07;
    starsessions 14977bf: lifetime is server-authoritative). The cookie's own Max-Age never
    reaches the server, so editing it changes nothing."""
    browser = make_browser(store, config=POLICY)
    session_id = await _login(browser)
    clock.advance(IDLE + 1)
    assert await _whoami(browser, session_id) == "anon"
    assert await stored(store, session_id) is None
    now = clock()
    forged = {
        name: await plant(store, _envelope(now + created), now + expires, "mallory")
        for name, (created, expires) in FORGED.items()
    }
    assert await _whoami(browser, forged["old-session-far-future-expiry"]) == "anon"
    assert await _whoami(browser, forged["fresh-session-far-future-expiry"]) == "mallory"  # a session, for now
    clock.advance(ABSOLUTE + 1)
    assert {name: await _whoami(browser, forged_id) for name, forged_id in forged.items()} == dict.fromkeys(FORGED, "anon")


def _native_expiry(store: Any, session_id: str) -> float:
    """When Redis itself drops the session's key (PEXPIRETIME), in unix seconds."""
    client = admin(store)
    [key] = client.scan_iter(match=f"{store.key_prefix}*{hashed(session_id)}*")
    return float(client.pexpiretime(key)) / 1000


async def _assert_expiry(store: Any, session_id: str, expected: float) -> None:
    """The stored expiry is ``expected``, and so is Redis's own expiry of the key."""
    record = await stored(store, session_id)
    assert record is not None and record.expires_at == expected
    if isinstance(store, RedisStore):
        assert _native_expiry(store, session_id) == expected


STEPS = [("GET", "/whoami"), ("POST", "/set?k=a&v=1")]  # reads and writes in turn


async def test_c29_the_stored_expiry_follows_the_policy(make_browser: BrowserFactory, store: Any, clock: FakeClock) -> None:
    """C-29: the record's expiry, and Redis's own TTL, is min(now + idle, creation + absolute)
    after the login and after each read or write that refreshes it, and equals the cookie's
    Max-Age; refreshes move it forward, never past the absolute cap."""
    config = SessionConfig(idle_timeout=timedelta(minutes=30), absolute_timeout=timedelta(hours=2))
    browser = make_browser(store, config=config)
    start = clock()
    response = await send_with(browser, "POST", "/login?user=alice", None)
    session_id = issued_id(response)
    for step in range(6):  # the login, then a request every 20 min up to 1 h 40 min
        if step:
            clock.advance(20 * 60)
            method, url = STEPS[step % 2]
            response = await send_with(browser, method, url, session_id)
        expected = min(clock() + 30 * 60, start + 2 * 3600)
        await _assert_expiry(store, session_id, expected)
        assert int(cookie_attributes(set_cookies(response)[0])["max-age"]) == expected - clock()
    clock.advance(10 * 60)  # 1 h 50 min: the expiry already is at the cap
    response = await send_with(browser, "GET", "/whoami", session_id)
    assert response.text == "alice" and set_cookies(response) == []
    await _assert_expiry(store, session_id, start + 2 * 3600)


PURGING_STORES = [
    pytest.param("memory"),
    pytest.param("sqlite"),
    pytest.param("postgres", marks=pytest.mark.server),
    pytest.param("mysql", marks=pytest.mark.server),
]


@pytest.mark.parametrize("store", PURGING_STORES, indirect=True)
async def test_c30_purge_removes_only_expired_sessions_and_is_idempotent(
    make_browser: BrowserFactory, store: Any, clock: FakeClock
) -> None:
    """C-30: a purge (the expirer's and ``coatcheck purge``'s call) deletes the expired sessions
    and their user-index entries, in batches, keeps the live ones, and a second run is a no-op
    (Django ``test_clearsessions_command``). Redis expires records itself (C-29 checks its TTLs)."""
    if hasattr(store, "purge_batch"):
        store.purge_batch = 2  # several statements, each deleting at most 2 rows
    browser = make_browser(store, config=POLICY)
    expired = [await _login(browser, "gone") for _ in range(5)]
    clock.advance(IDLE + 1)
    live = await _login(browser, "kept")
    assert await manager_call(browser, "purge_expired") == 5
    assert await manager_call(browser, "purge_expired") == 0
    at_rest = await dump(store)
    assert not any(hashed(session_id).encode() in at_rest for session_id in expired)
    assert b"gone" not in at_rest and hashed(live).encode() in at_rest
    assert await manager_call(browser, "list_sessions", "gone") == []
    assert await _whoami(browser, live) == "kept"


INVALID_LIFETIMES: list[dict[str, Any]] = [
    {"idle_timeout": 0},
    {"idle_timeout": -1},
    {"idle_timeout": timedelta(0)},
    {"absolute_timeout": 0},
    {"absolute_timeout": timedelta(seconds=-1)},
    {"idle_timeout": float("nan")},
    {"absolute_timeout": float("inf")},
    {"idle_timeout": None},
    {"idle_timeout": 7200, "absolute_timeout": 3600},
    {"touch_interval": -1},
]


async def test_c31_zero_and_negative_lifetimes_are_refused_and_browser_session_cookies_are_explicit(
    make_browser: BrowserFactory, clock: FakeClock
) -> None:
    """C-31: a zero, negative or non-finite lifetime fails at construction; a cookie that ends
    with the browser is its own explicit option, and the server-side timeouts still bound it
    (Django ``set_expiry(0)``, Spring's negative maxInactiveInterval)."""
    for options in INVALID_LIFETIMES:
        with pytest.raises(ConfigurationError):
            SessionConfig(**options)
    browser = make_browser(config=SessionConfig(cookie=CookieConfig(persistent=False), idle_timeout=IDLE))
    response = await send_with(browser, "POST", "/login?user=alice", None)
    attributes = cookie_attributes(set_cookies(response)[0])
    assert "max-age" not in attributes and "expires" not in attributes
    session_id = issued_id(response)
    assert await _whoami(browser, session_id) == "alice"
    clock.advance(IDLE + 1)
    assert await _whoami(browser, session_id) == "anon"

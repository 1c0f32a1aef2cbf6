"""Checklist section F: termination (C-32 to C-37)."""

from __future__ import annotations

import secrets
from email.utils import parsedate_to_datetime
from typing import Any

import pytest

from coatcheck import CookieConfig, SessionConfig, SessionManager
from coatcheck.testing import FakeClock, SpyStore
from tests.apps import Browser, set_cookies
from tests.backends import dump
from tests.security.conftest import (
    BrowserFactory,
    Gate,
    cookie_attributes,
    hashed,
    issued_id,
    manager_call,
    send_with,
    serve_actions,
    stored,
)

pytestmark = pytest.mark.anyio


async def _whoami(browser: Browser, session_id: str) -> str:
    return (await send_with(browser, "GET", "/whoami", session_id)).text


async def _login(browser: Browser, user: str) -> str:
    return issued_id(await send_with(browser, "POST", f"/login?user={user}", None))


SCOPED_ATTRIBUTES = ("path", "domain", "secure", "httponly", "samesite")


@pytest.mark.parametrize(
    "cookie",
    [pytest.param(CookieConfig(), id="default"), pytest.param(CookieConfig(path="/app", domain="example.com"), id="scoped")],
)
async def test_c32_logout_destroys_the_session_and_clears_the_cookie(
    make_browser: BrowserFactory, store: Any, cookie: CookieConfig
) -> None:
    """C-32: logout deletes the record server-side and answers with a Set-Cookie that expires
    the cookie under the Path and Domain it was set with; replaying the old cookie gets nothing
    (CS "Session Expiration", ASVS 5.0 7.4.1, WSTG-SESS-06)."""
    browser = make_browser(store, config=SessionConfig(cookie=cookie))
    login = await send_with(browser, "POST", "/login?user=alice", None)
    session_id = issued_id(login)
    secret = secrets.token_hex(16)
    await send_with(browser, "POST", f"/set?k=secret&v={secret}", session_id)
    assert secret.encode() in await dump(store)
    logout = await send_with(browser, "POST", "/logout", session_id)
    [cleared] = set_cookies(logout)
    assert cleared.startswith("sessionid=;")
    set_attributes, clear_attributes = cookie_attributes(set_cookies(login)[0]), cookie_attributes(cleared)
    assert clear_attributes["max-age"] == "0"
    assert parsedate_to_datetime(clear_attributes["expires"]).timestamp() == 0
    assert {name: clear_attributes.get(name) for name in SCOPED_ATTRIBUTES} == {
        name: set_attributes.get(name) for name in SCOPED_ATTRIBUTES
    }
    assert await _whoami(browser, session_id) == "anon"
    assert await stored(store, session_id) is None
    assert secret.encode() not in await dump(store)


async def test_c33_logout_without_a_session_creates_nothing(make_browser: BrowserFactory, store: Any) -> None:
    """C-33: logging out with no session, or with an unknown ID, writes nothing and sets no
    cookie (Django CVE-2015-5963, CVE-2015-5964)."""
    spy = SpyStore(store)
    browser = make_browser(spy)
    spy.reset()
    for attempt in range(200):
        unknown = secrets.token_urlsafe(32) if attempt % 2 else None
        response = await send_with(browser, "POST", "/logout", unknown)
        assert response.status_code == 200 and set_cookies(response) == []
    assert spy.calls == {"load": 100}
    assert await dump(store) == b""


@pytest.mark.parametrize("write", [True, False], ids=["writing", "read-only"])
async def test_c34_a_request_in_flight_cannot_resurrect_a_logged_out_session(
    store: Any, clock: FakeClock, make_browser: BrowserFactory, write: bool
) -> None:
    """C-34: a request that loaded the session before a concurrent logout neither brings it back
    nor hands out a cookie for it: one that changed the session gets 409 (its commit raises
    ``SessionInterruptedError``), a read-only one, even with a refresh due, writes nothing
    (Django ``test_session_save_does_not_resurrect_session_logged_out_in_other_context``)."""
    manager = SessionManager(store, clock=clock)
    browser, gate = make_browser(manager), Gate()
    held = serve_actions(make_browser(manager), gate)
    session_id = await _login(browser, "alice")
    clock.advance(120)  # a refresh of the expiry is due for the held request
    response, logout = await gate.interleave(
        held,
        "GET",
        "/?hold=1&k=late&v=1" if write else "/?hold=1",
        lambda: send_with(browser, "POST", "/logout", session_id),
        headers={"cookie": f"sessionid={session_id}"},
    )
    assert issued_id(logout) == ""
    assert response.status_code == (409 if write else 200)
    assert await stored(store, session_id) is None
    assert await _whoami(browser, session_id) == "anon"
    assert set_cookies(response) == []  # no cookie for the session the logout ended


async def test_c35_revoke_user_ends_every_session_of_that_user_only(store_browser: Browser, store: Any) -> None:
    """C-35: ``revoke_user`` ("log out everywhere") ends all of a user's sessions through the
    user index and no one else's (ASVS 5.0 7.4.2, 7.4.5; CS "Simultaneous Session Logons")."""
    alice = [await _login(store_browser, "alice") for _ in range(3)]
    bob = await _login(store_browser, "bob")
    assert await manager_call(store_browser, "revoke_user", "alice") == 3
    assert [await _whoami(store_browser, session_id) for session_id in alice] == ["anon"] * 3
    assert await _whoami(store_browser, bob) == "bob"
    assert await manager_call(store_browser, "list_sessions", "alice") == []
    at_rest = await dump(store)
    assert not any(hashed(session_id).encode() in at_rest for session_id in alice)
    assert hashed(bob).encode() in at_rest


async def test_c37_a_users_sessions_are_listed_without_their_ids(store_browser: Browser, clock: FakeClock) -> None:
    """C-37: a user's sessions can be listed for a "your devices" page, oldest first, with times
    and an opaque handle, never the ID or the store key; a handle opens no session
    (ASVS 5.0 7.5.2)."""
    start = clock()
    ids = []
    for _ in range(3):
        ids.append(await _login(store_browser, "alice"))
        clock.advance(60)
    infos = await manager_call(store_browser, "list_sessions", "alice")
    idle = store_browser.app.manager.config.idle_seconds
    assert [(info.created_at, info.expires_at) for info in infos] == [(start + 60 * i, start + 60 * i + idle) for i in range(3)]
    current = await manager_call(store_browser, "load", f"sessionid={ids[0]}")
    assert infos[0].handle == SessionManager.handle(current)
    assert len({info.handle for info in infos}) == 3
    for info in infos:
        assert not any(session_id in repr(info) or hashed(session_id) in repr(info) for session_id in ids)
        assert await _whoami(store_browser, info.handle) == "anon"

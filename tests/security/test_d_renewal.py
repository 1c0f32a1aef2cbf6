"""Checklist section D: renewal of the ID against fixation (C-20 to C-24)."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

import pytest

from coatcheck import SessionConfig, SessionInterruptedError, SessionManager
from coatcheck.testing import FakeClock, SpyStore, cookie_id
from tests.apps import Browser
from tests.security.conftest import BrowserFactory, cookie_attributes, issued_id, send_with, stored

pytestmark = pytest.mark.anyio


def _cookie(session_id: str) -> str:
    return f"sessionid={session_id}"


async def test_c20_login_rotates_the_id_keeps_the_data_and_ends_the_old_id(store_browser: Browser, store: Any) -> None:
    """C-20: ``login()`` issues a new ID, keeps the data and ends the old ID at once
    (CS "Renew the Session ID After Any Privilege Level Change", ASVS 5.0 7.2.4)."""
    before = issued_id(await store_browser.post("/set", params={"k": "x", "v": "1"}))
    after = issued_id(await store_browser.post("/login", params={"user": "alice"}))
    assert after != before
    assert (await send_with(store_browser, "GET", "/peek", after)).json() == {"data": {"x": "1"}, "user": "alice"}
    assert (await send_with(store_browser, "GET", "/whoami", before)).text == "anon"
    assert await stored(store, before) is None
    assert await stored(store, after) is not None


async def test_c21_a_planted_id_is_worthless_once_the_victim_logs_in(
    browser: Browser, manager: SessionManager, make_browser: BrowserFactory
) -> None:
    """C-21: session fixation end to end (WSTG-SESS-03): the attacker obtains an ID, the victim
    logs in holding it, and the attacker's ID then neither shows nor reaches the victim's session."""
    attacker = browser
    await attacker.get("/public")
    planted = issued_id(await attacker.post("/set", params={"k": "cart", "v": "bait"}))
    victim = make_browser(manager)
    victim.client.cookies.set("sessionid", planted)
    assert issued_id(await victim.post("/login", params={"user": "victim"})) != planted
    assert (await attacker.get("/whoami")).text == "anon"
    assert (await attacker.get("/peek")).json() == {"data": {}, "user": None}
    await attacker.post("/set", params={"k": "evil", "v": "1"})
    assert (await victim.get("/peek")).json() == {"data": {"cart": "bait"}, "user": "victim"}


async def test_c22_rotate_works_on_an_unread_session_and_on_a_new_one(store: Any, clock: FakeClock) -> None:
    """C-22: ``rotate()`` works on a loaded session whose data the request never read, and on a
    new session never saved (Django ``test_cycle_with_no_session_cache``; Spring
    ``changeSessionIdWhenHasNotSaved``)."""
    spy = SpyStore(store)
    manager = SessionManager(spy, clock=clock)
    empty = manager.new_session()
    empty.rotate()
    assert await manager.acommit(empty) is None  # nothing to save: no cookie
    assert spy.calls == {}
    fresh = manager.new_session()
    fresh.rotate()
    fresh["a"] = 1
    created = cookie_id(await manager.acommit(fresh))
    assert created == fresh.id
    unread = await manager.aload(_cookie(created))
    unread.rotate()
    rotated = cookie_id(await manager.acommit(unread))
    assert rotated != created
    assert (await manager.aload(_cookie(created))).is_new
    assert dict(await manager.aload(_cookie(rotated))) == {"a": 1}
    new_login = manager.new_session()
    new_login.login("alice")
    assert (await manager.aload(_cookie(cookie_id(await manager.acommit(new_login))))).user_id == "alice"


async def test_c23_of_two_concurrent_rotations_exactly_one_wins(store: Any, clock: FakeClock) -> None:
    """C-23: two requests rotate the same session: the first wins; the second raises
    ``SessionInterruptedError``, and of every ID drawn only the winner's names a session
    (Spring ``save_ChangeSessionIdConcurrent_ShouldThrowException``)."""
    drawn: list[str] = []

    def draw() -> str:
        drawn.append(secrets.token_urlsafe(32))
        return drawn[-1]

    manager = SessionManager(store, clock=clock, id_factory=draw)
    session = manager.new_session()
    session["a"] = 1
    original = cookie_id(await manager.acommit(session))
    first, second = await manager.aload(_cookie(original)), await manager.aload(_cookie(original))
    first.rotate()
    second.rotate()
    winner = cookie_id(await manager.acommit(first))
    with pytest.raises(SessionInterruptedError):
        await manager.acommit(second)
    assert len(drawn) >= 3  # the original, the winner's and the loser's new IDs
    assert [session_id for session_id in drawn if await stored(store, session_id) is not None] == [winner]
    assert dict(await manager.aload(_cookie(winner))) == {"a": 1}


async def test_c24_rotation_never_extends_the_absolute_lifetime(store: Any, clock: FakeClock) -> None:
    """C-24: a rotation other than a login keeps the absolute deadline: with 8 h absolute and a
    rotation at 4 h, the session ends at 8 h (CS "Absolute Timeout", "Renewal Timeout")."""
    config = SessionConfig(idle_timeout=timedelta(hours=5), absolute_timeout=timedelta(hours=8))
    manager = SessionManager(store, config=config, clock=clock)
    session = manager.new_session()
    session["a"] = 1
    session_id = cookie_id(await manager.acommit(session))
    clock.advance(4 * 3600)
    session = await manager.aload(_cookie(session_id))
    session.rotate()
    set_cookie = await manager.acommit(session)
    assert set_cookie is not None and cookie_attributes(set_cookie)["max-age"] == str(4 * 3600)
    session_id = cookie_id(set_cookie)
    clock.advance(4 * 3600 - 1)
    assert not (await manager.aload(_cookie(session_id))).is_new
    clock.advance(2)
    assert (await manager.aload(_cookie(session_id))).is_new

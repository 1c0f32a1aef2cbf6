"""coatcheck's Django engine through Django's own ``Client`` (sync views) and ``AsyncClient``
(async views), on the memory, SQLite and Redis stores: the views are plain Django."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import AsyncIterator, Iterator
from http.cookies import SimpleCookie
from typing import Any

import anyio
import pytest
from django.contrib.auth.models import User
from django.http import HttpResponse
from django.test import AsyncClient, override_settings

from coatcheck.django import SessionStore, arevoke_user, get_manager, revoke_user
from coatcheck.stores.memory import MemoryStore
from coatcheck.stores.redis import RedisStore
from coatcheck.testing import FakeClock, SpyStore
from tests.backends import dump
from tests.redis_server import Server

from . import views
from .conftest import Browser, Project

pytestmark = pytest.mark.anyio

IDLE, ABSOLUTE = 1800, 7200


def set_cookie(response: HttpResponse) -> Any:
    """The session cookie the response sets (a Morsel), or None."""
    cookies: SimpleCookie = response.cookies
    return cookies.get("sessionid")


def text(response: HttpResponse) -> str:
    assert response.status_code == 200, (response.status_code, response.content)
    return bytes(response.content).decode()


def hashed(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


async def login(browser: Browser, user: User) -> str:
    response = await browser.post("login", username=user.get_username(), password="secret")
    assert text(response) == f"hello {user.get_username()}"
    assert browser.cookie is not None
    return browser.cookie


async def test_a_request_that_does_not_use_the_session_costs_nothing(project: Project, kind: str) -> None:
    spy = SpyStore(project.store)
    with project.settings(STORE=spy):
        browser = Browser(kind)
        assert text(await browser.get("nothing")) == "nothing"  # loads the middleware: its start-up check reads once
        spy.reset()
        response = await browser.get("nothing")
        assert text(response) == "nothing"
        assert set_cookie(response) is None
        assert not response.has_header("Vary")
        response = await browser.get("read")  # read, without a cookie: still no store call, no cookie
        assert text(response) == "None"
        assert set_cookie(response) is None
        assert response["Vary"] == "Cookie"
        assert spy.calls == {}
        assert text(await browser.get("count")) == "1"
        assert spy.writes == 1
        spy.reset()
        response = await browser.get("nothing")  # with a cookie: one read, no write, no cookie
        assert set_cookie(response) is None
        assert spy.calls == {"load": 1}


async def test_the_session_persists_with_djangos_cookie_settings(browser: Browser) -> None:
    first = await browser.get("count")
    assert text(first) == "1"
    morsel = set_cookie(first)
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "Lax"
    assert morsel["path"] == "/"
    assert morsel["max-age"] == 1209600  # SESSION_COOKIE_AGE
    assert morsel["secure"]  # Secure by default: Django's own default (False) applies only when set
    assert first["Cache-Control"] == "no-store"
    assert first["Vary"] == "Cookie"
    assert [text(await browser.get("count")) for _ in range(2)] == ["2", "3"]
    assert text(await browser.get("read")) == "3"


async def test_strict_mode_never_adopts_an_id_the_server_did_not_issue(browser: Browser, project: Project) -> None:
    for forged in ["A" * 43, "abc", "someunknownkey"]:
        other = browser.holding(forged)
        response = await other.get("count")
        assert text(response) == "1"
        issued = set_cookie(response).value
        assert issued != forged
        assert len(issued) == 43
        assert hashed(forged).encode() not in await dump(project.store)


async def test_ids_are_hashed_at_rest(browser: Browser, project: Project) -> None:
    await browser.get("set", k="note", v="kept-at-rest")
    cookie = browser.cookie
    assert cookie is not None
    at_rest = await dump(project.store)
    assert b"kept-at-rest" in at_rest
    assert hashed(cookie).encode() in at_rest
    assert cookie.encode() not in at_rest


async def test_login_rotates_the_id_keeps_the_data_and_binds_the_user(browser: Browser, user: User) -> None:
    assert text(await browser.get("count")) == "1"
    anonymous = browser.cookie
    assert anonymous is not None
    assert await login(browser, user) != anonymous
    assert text(await browser.get("whoami")) == user.get_username()
    assert text(await browser.get("read")) == "1"  # the anonymous session's data is kept, as Django does
    replay = browser.holding(anonymous)
    assert text(await replay.get("whoami")) == "anonymous"
    assert text(await replay.get("read")) == "None"
    [listed] = await get_manager().alist_sessions(str(user.pk))  # the user index
    assert listed.handle == hashed(browser.cookie or "")[:16]


async def test_logout_ends_the_session_server_side(browser: Browser, user: User, project: Project) -> None:
    cookie = await login(browser, user)
    response = await browser.post("logout")
    assert text(response) == "bye"
    cleared = set_cookie(response)
    assert cleared.value == ""
    assert cleared["max-age"] == 0
    assert browser.cookie is None
    replay = browser.holding(cookie)
    assert text(await replay.get("whoami")) == "anonymous"
    assert await project.store.aload(hashed(cookie)) is None


async def test_idle_timeout_slides_with_use_and_ends_an_unused_session(project: Project, kind: str) -> None:
    with project.settings(IDLE_TIMEOUT=IDLE, ABSOLUTE_TIMEOUT=ABSOLUTE):
        browser = Browser(kind)
        assert text(await browser.get("count")) == "1"
        project.clock.advance(IDLE - 1)
        response = await browser.get("read")  # a read refreshes the idle expiry, and the cookie with it
        assert text(response) == "1"
        assert set_cookie(response)["max-age"] == IDLE
        project.clock.advance(IDLE - 1)
        assert text(await browser.get("read")) == "1"
        project.clock.advance(IDLE + 1)
        response = await browser.get("read")
        assert text(response) == "None"
        assert set_cookie(response).value == ""  # the dead cookie is cleared


async def test_absolute_timeout_ends_a_session_however_active(project: Project, kind: str) -> None:
    with project.settings(IDLE_TIMEOUT=IDLE, ABSOLUTE_TIMEOUT=ABSOLUTE):
        browser = Browser(kind)
        visits = [text(await browser.get("count"))]
        for _ in range(7):
            project.clock.advance(1000)
            visits.append(text(await browser.get("count")))
        assert visits == ["1", "2", "3", "4", "5", "6", "7", "8"]
        project.clock.advance(201)  # 7201 s after creation
        assert text(await browser.get("count")) == "1"


async def test_set_expiry_is_enforced_server_side(browser: Browser, project: Project) -> None:
    assert text(await browser.get("count")) == "1"
    response = await browser.get("expiry", s="60")
    assert set_cookie(response)["max-age"] == 60
    project.clock.advance(59)
    assert text(await browser.get("count")) == "2"  # a save moves the deadline, as in Django
    project.clock.advance(61)
    assert text(await browser.get("read")) == "None"


@pytest.fixture
def meeting() -> Iterator[views.Meeting]:
    views.MEETING.append(views.Meeting(2))
    try:
        yield views.MEETING[0]
    finally:
        views.MEETING.clear()


async def test_two_concurrent_requests_changing_different_keys_both_persist(browser: Browser, meeting: views.Meeting) -> None:
    assert text(await browser.get("count")) == "1"
    tab_a, tab_b = browser.holding(browser.cookie), browser.holding(browser.cookie)
    answers: list[str] = []

    async def visit(tab: Browser, key: str) -> None:
        answers.append(text(await tab.get("meet", k=key, v=key.upper())))

    async with anyio.create_task_group() as group:  # both have loaded the session before either saves
        group.start_soon(visit, tab_a, "a")
        group.start_soon(visit, tab_b, "b")
    assert answers == ["ok", "ok"]
    data = json.loads((await browser.get("data")).content)
    assert data == {"visits": 1, "a": "A", "b": "B"}


async def test_revoke_user_logs_out_everywhere(project: Project, kind: str, user: User) -> None:
    laptop, phone, other = Browser(kind), Browser(kind), Browser(kind)
    await login(laptop, user)
    await login(phone, user)
    stranger = await anyio.to_thread.run_sync(lambda: User.objects.create_user(username=f"bob-{id(project)}", password="secret"))
    try:
        await login(other, stranger)
        revoked = await (arevoke_user(user) if kind == "async" else anyio.to_thread.run_sync(revoke_user, user))
        assert revoked == 2
        assert [text(await b.get("whoami")) for b in (laptop, phone)] == ["anonymous", "anonymous"]
        assert text(await other.get("whoami")) == stranger.get_username()
    finally:
        await anyio.to_thread.run_sync(stranger.delete)


async def test_a_password_change_logs_out_the_other_sessions_only(browser: Browser, user: User) -> None:
    phone = Browser(browser.kind)
    before = await login(browser, user)
    await login(phone, user)
    assert text(await browser.post("password", password="new secret")) == "changed"
    assert browser.cookie != before  # update_session_auth_hash() cycles the key
    assert text(await browser.get("whoami")) == user.get_username()
    assert text(await phone.get("whoami")) == "anonymous"


@pytest.fixture
async def outage(private_redis: Server) -> AsyncIterator[RedisStore]:
    store = RedisStore.from_url(f"redis://127.0.0.1:{private_redis.port}/0?socket_timeout=1")
    try:
        yield store
    finally:
        store.close()
        await store.aclose()


@pytest.mark.server
async def test_a_store_outage_answers_503_without_traceback_and_recovers(
    outage: RedisStore, private_redis: Server, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    with override_settings(COATCHECK={"STORE": outage}):
        browser, newcomer = Browser(kind), Browser(kind)
        assert text(await browser.get("count")) == "1"
        assert text(await newcomer.get("nothing")) == "nothing"  # its middleware is loaded: the server "started"
        private_redis.kill()
        with caplog.at_level(logging.ERROR):
            # a load fails (in the middleware), a first write fails (at the commit), an explicit save
            # fails (in the view)
            for client, view in [(browser, "read"), (newcomer, "count"), (newcomer, "save")]:
                response = await client.get(view)
                assert response.status_code == 503
                assert bytes(response.content) == b"503 Service Unavailable\n"
                assert response["Retry-After"] == "1"
                assert set_cookie(response) is None
        errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
        assert [record.name for record in errors if record.name == "coatcheck"] == ["coatcheck"] * 3
        assert all(record.exc_info is None for record in errors)  # Django's own 5xx line included
        private_redis.start()
        assert text(await newcomer.get("count")) == "1"
        assert text(await browser.get("count")) == "1"  # the restarted server lost its data: a fresh session


async def test_the_test_clients_own_session_helpers_work(project: Project, kind: str, user: User) -> None:
    """``client.session`` (changed, then saved), ``force_login()`` and ``logout()`` of Django's
    test clients, as a project's own tests use them."""
    browser = Browser(kind)
    client = browser.client
    if isinstance(client, AsyncClient):
        session = await client.asession()
        await session.aset("seeded", "by the test")
        await session.asave()
        await client.aforce_login(user)
    else:
        session = await anyio.to_thread.run_sync(lambda: client.session)
        session["seeded"] = "by the test"
        await anyio.to_thread.run_sync(session.save)
        await anyio.to_thread.run_sync(client.force_login, user)
    assert browser.cookie is not None and browser.cookie != session.session_key  # force_login rotated it
    assert text(await browser.get("whoami")) == user.get_username()
    assert json.loads((await browser.get("data")).content)["seeded"] == "by the test"
    cookie = browser.cookie
    await (client.alogout() if isinstance(client, AsyncClient) else anyio.to_thread.run_sync(client.logout))
    assert text(await browser.holding(cookie).get("whoami")) == "anonymous"


class AsyncOnly:
    """A memory store seen through its async API only: any sync call would fail."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("a"):
            raise AttributeError(name)
        return getattr(self._store, name)


async def test_the_async_api_runs_on_the_stores_async_side(clock: FakeClock) -> None:
    with override_settings(COATCHECK={"STORE": AsyncOnly(MemoryStore(clock=clock)), "CLOCK": clock}):
        session = SessionStore()
        await session.aset("a", 1)
        await session.asave()
        first = session.session_key
        assert first is not None
        await session.acycle_key()
        await session.asave()
        assert session.session_key != first
        assert not await session.aexists(first)
        assert await SessionStore(session.session_key).aget("a") == 1
        await session.aflush()
        assert not await SessionStore().aexists(session.session_key)
        await SessionStore.aclear_expired()
        browser = Browser("async")
        assert [text(await browser.get("count")) for _ in range(2)] == ["1", "2"]
        assert await arevoke_user("nobody") == 0


async def test_devices_and_encryption_settings_reach_every_session(browser: Browser, user: User, project: Project) -> None:
    with project.settings(DEVICES=True, ENCRYPTION_KEYS=["s" * 32]):
        cookie = await login(browser, user)
        assert text(await browser.get("whoami")) == user.get_username()
        [listed] = await get_manager().alist_sessions(str(user.pk))
        assert listed.handle == hashed(cookie)[:16]
        assert listed.address == "127.0.0.0/24"  # the test client's REMOTE_ADDR, truncated
        assert listed.login_at is not None
        assert b"_auth_user_id" not in await dump(project.store)  # sealed: Django's own keys are not readable

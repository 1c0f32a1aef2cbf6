""" "Your devices" on every store, sync and async: what a session keeps of its browser (opt-in),
the listing, ending one session by its handle, and "log out other devices"."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest

from coatcheck import (
    ConfigurationError,
    CookieConfig,
    NotSupportedError,
    Record,
    Session,
    SessionConfig,
    SessionInfo,
    SessionManager,
)
from coatcheck._ids import store_key
from coatcheck.asgi import SessionMiddleware as ASGISessionMiddleware
from coatcheck.devices import Client, describe, truncated
from coatcheck.stores.memory import MemoryStore
from coatcheck.testing import FakeClock
from coatcheck.wsgi import SessionMiddleware as WSGISessionMiddleware
from coatcheck.wsgi import get_session

from .backends import dump
from .test_conformance import NoRotateStore

pytestmark = pytest.mark.anyio

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148"
    " Safari/604.1"
)


def _cookie(session_id: str) -> str:
    return f"sessionid={session_id}"


def _devices(store: Any, clock: FakeClock) -> SessionManager:
    return SessionManager(store, config=SessionConfig(devices=True), clock=clock)


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Face:
    """The manager's sync or async methods, awaited alike."""

    def __init__(self, manager: SessionManager, mode: str) -> None:
        self.manager, self.sync = manager, mode == "sync"

    async def commit(self, session: Session, client: Client | None = None) -> None:
        if self.sync:
            self.manager.commit(session, client=client)
        else:
            await self.manager.acommit(session, client=client)

    async def load(self, cookie: str) -> Session:
        return self.manager.load(cookie) if self.sync else await self.manager.aload(cookie)

    async def list_sessions(self, user_id: str) -> list[SessionInfo]:
        return self.manager.list_sessions(user_id) if self.sync else await self.manager.alist_sessions(user_id)

    async def revoke(self, handle: str, user_id: str) -> bool:
        return self.manager.revoke(handle, user_id=user_id) if self.sync else await self.manager.arevoke(handle, user_id=user_id)

    async def revoke_user(self, user_id: str, keep: Session | str | None = None) -> int:
        if self.sync:
            return self.manager.revoke_user(user_id, keep=keep)
        return await self.manager.arevoke_user(user_id, keep=keep)


async def test_sessions_list_their_devices_and_one_ends_by_handle(store: Any, clock: FakeClock, mode: str) -> None:
    manager = _devices(store, clock)
    face = Face(manager, mode)
    laptop = manager.new_session()
    laptop.login("alice")
    await face.commit(laptop, client=Client(FIREFOX, "203.0.113.77"))
    laptop_login = clock.now
    clock.advance(600)
    phone = manager.new_session()
    phone.login("alice")
    await face.commit(phone, client=Client(IPHONE, "2001:db8:1234:5678::9"))
    clock.advance(120)
    seen = await face.load(_cookie(laptop.id))
    await face.commit(seen, client=Client(FIREFOX, "198.51.100.5"))  # a refresh: no write, so the address stays
    assert seen.user_id == "alice"

    first, second = await face.list_sessions("alice")
    assert first.handle == manager.handle(laptop) and second.handle == manager.handle(phone)
    assert (first.browser, first.os, first.address, first.user_id) == ("Firefox", "Linux", "203.0.113.0/24", "alice")
    assert (second.browser, second.os, second.address) == ("Safari", "iOS", "2001:db8:1234::/48")
    assert first.login_at == laptop_login and first.created_at == laptop_login
    assert first.last_seen == clock.now  # moved by the refresh a minute ago... just now
    assert second.last_seen == clock.now - 120
    assert first.user_agent == FIREFOX
    at_rest = await dump(store)
    assert b"203.0.113.77" not in at_rest and b"5678::9" not in at_rest  # only the network is kept

    assert await face.revoke(manager.handle(phone), user_id="bob") is False  # not bob's to end
    assert await face.revoke(manager.handle(phone), user_id="alice") is True
    assert (await face.load(_cookie(phone.id))).is_new
    assert [info.handle for info in await face.list_sessions("alice")] == [manager.handle(laptop)]
    assert await face.revoke(manager.handle(phone), user_id="alice") is False  # already gone


async def test_log_out_other_devices_keeps_this_one(store: Any, clock: FakeClock, mode: str) -> None:
    manager = _devices(store, clock)
    face = Face(manager, mode)
    sessions = []
    for _ in range(3):
        session = manager.new_session()
        session.login("alice")
        await face.commit(session, client=Client(FIREFOX, "127.0.0.1"))
        sessions.append(session)
    this = sessions[1]
    assert await face.revoke_user("alice", keep=this) == 2
    assert [info.handle for info in await face.list_sessions("alice")] == [manager.handle(this)]
    assert not (await face.load(_cookie(this.id))).is_new
    assert await face.revoke_user("alice", keep=manager.handle(this)) == 0  # a handle works as well
    assert await face.revoke_user("alice") == 1


async def test_a_login_keeps_its_time_and_a_later_write_its_browser(store: Any, clock: FakeClock, mode: str) -> None:
    manager = _devices(store, clock)
    face = Face(manager, mode)
    session = manager.new_session()
    session["cart"] = 1
    await face.commit(session, client=Client(IPHONE, "192.0.2.10"))
    clock.advance(60)
    loaded = await face.load(_cookie(session.id))
    loaded.login("alice")
    await face.commit(loaded, client=Client(FIREFOX, "192.0.2.200"))
    login_at = clock.now
    clock.advance(60)
    again = await face.load(_cookie(loaded.id))
    again["cart"] = 2
    await face.commit(again)  # no client: what was kept stays
    (info,) = await face.list_sessions("alice")
    assert (info.browser, info.address, info.login_at) == ("Firefox", "192.0.2.0/24", login_at)


def test_without_devices_nothing_is_kept() -> None:
    manager = SessionManager(MemoryStore())
    session = manager.new_session()
    session.login("alice")
    manager.commit(session, client=Client(FIREFOX, "203.0.113.77"))
    (info,) = manager.list_sessions("alice")
    assert (info.browser, info.os, info.address, info.user_agent, info.login_at) == (None, None, None, None, None)
    assert b"Firefox" not in manager.store.load(store_key(session.id)).data


def test_a_handle_is_checked_and_a_store_without_a_scan_needs_the_user() -> None:
    manager = SessionManager(NoRotateStore(MemoryStore()))
    with pytest.raises(ValueError, match="not a session handle"):
        manager.revoke("../../etc", user_id="alice")
    with pytest.raises(NotSupportedError):
        manager.revoke("0" * 16)


def test_a_handle_is_found_by_a_scan_when_no_user_is_given() -> None:
    manager = SessionManager(MemoryStore())
    session = manager.new_session()
    session["a"] = 1
    manager.commit(session)
    assert manager.revoke(manager.handle(session)) is True
    assert manager.load(_cookie(session.id)).is_new


@pytest.mark.parametrize(
    ("agent", "expected"),
    [
        (FIREFOX, ("Firefox", "Linux")),
        (IPHONE, ("Safari", "iOS")),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
            " Edg/126.0",
            ("Edge", "Windows"),
        ),
        (
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36",
            ("Chrome", "Android"),
        ),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
            ("Safari", "macOS"),
        ),
        ("curl/8.5.0", ("curl", "Unknown")),
        ("", ("Unknown", "Unknown")),
    ],
)
def test_user_agents_are_named_by_the_built_in_table(agent: str, expected: tuple[str, str]) -> None:
    assert describe(agent) == expected


@pytest.mark.parametrize(
    ("address", "bits", "expected"),
    [
        ("203.0.113.77", (24, 48), "203.0.113.0/24"),
        ("2001:db8:1234:5678::9", (24, 48), "2001:db8:1234::/48"),
        ("::ffff:203.0.113.77", (24, 48), "203.0.113.0/24"),
        ("2002:cb00:714d::1", (24, 48), "203.0.113.0/24"),  # 6to4 carries the IPv4 address
        ("203.0.113.77", (32, 128), "203.0.113.77"),
        ("fe80::1%eth0", (24, 64), "fe80::/64"),
        ("/run/app.sock", (24, 48), None),
        (None, (24, 48), None),
    ],
)
def test_addresses_are_truncated_to_their_network(address: str | None, bits: tuple[int, int], expected: str | None) -> None:
    assert truncated(address, bits) == expected


async def test_the_middlewares_pass_the_request_s_browser() -> None:
    manager = SessionManager(MemoryStore(), config=SessionConfig(devices=True, cookie=CookieConfig(secure=False)))

    async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
        scope["session"].login("alice")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    def wsgi_app(environ: Any, start_response: Any) -> list[bytes]:
        get_session(environ).login("alice")
        start_response("200 OK", [])
        return [b"ok"]

    asgi = httpx.ASGITransport(app=ASGISessionMiddleware(asgi_app, manager), client=("198.51.100.9", 1234))
    async with httpx.AsyncClient(transport=asgi, base_url="http://localhost") as client:
        await client.get("/", headers={"User-Agent": IPHONE})
    wsgi = httpx.WSGITransport(app=WSGISessionMiddleware(wsgi_app, manager), remote_addr="192.0.2.33")
    await anyio.to_thread.run_sync(_get, wsgi, FIREFOX)
    infos = manager.list_sessions("alice")
    assert sorted((info.browser, info.address) for info in infos) == [("Firefox", "192.0.2.0/24"), ("Safari", "198.51.100.0/24")]


def _get(transport: httpx.WSGITransport, agent: str) -> None:
    with httpx.Client(transport=transport, base_url="http://localhost") as client:
        client.get("/", headers={"User-Agent": agent})


def test_devices_settings_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="device_address_bits"):
        SessionConfig(devices=True, device_address_bits=(33, 48))
    with pytest.raises(ConfigurationError, match="devices must be"):
        SessionConfig(devices="yes")  # type: ignore[arg-type]


class RotatingOnList(MemoryStore):
    """A memory store on which another request rotates a session right after the first listing."""

    def __init__(self) -> None:
        super().__init__()
        self.then: Any = None

    def list_user(self, user_id: str) -> list[tuple[str, Record]]:
        rows = super().list_user(user_id)
        then, self.then = self.then, None
        if then is not None:
            then()
        return rows


def test_log_out_other_devices_wins_against_a_rotation_in_between() -> None:
    store = RotatingOnList()
    manager = SessionManager(store)
    this, other = manager.new_session(), manager.new_session()
    for session in (this, other):
        session.login("alice")
        manager.commit(session)

    def rotate_other() -> None:
        moving = manager.load(_cookie(other.id))
        moving.rotate()
        manager.commit(moving)

    store.then = rotate_other
    assert manager.revoke_user("alice", keep=this) == 2  # the old key and the new one
    assert [info.handle for info in manager.list_sessions("alice")] == [manager.handle(this)]

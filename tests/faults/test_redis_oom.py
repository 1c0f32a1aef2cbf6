"""R-11: Redis at ``maxmemory`` with ``noeviction``, on a private redis-server.

Every write that would grow Redis fails (the store raises StoreError: the middleware answers 503
without a cookie) and changes nothing; deletes (logout, log out everywhere) still work, so an
operator can free memory by logging users out.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio

from coatcheck._ids import store_key
from coatcheck.asgi import SessionMiddleware, get_session
from coatcheck.config import CookieConfig, SessionConfig
from coatcheck.errors import StoreError
from coatcheck.manager import SessionManager
from coatcheck.stores import Record
from coatcheck.stores.redis import RedisClusterStore, RedisStore
from coatcheck.stores.redis._scripts import _SCRIPTS
from coatcheck.testing import FakeClock, Ops, cookie_id
from tests.redis_server import Server

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# -- maxmemory: writes fail, deletes work ---------------------------------------------------------


def used_memory(admin_client: redis.Redis) -> int:
    return int(admin_client.info("memory")["used_memory"])


def fill(admin_client: redis.Redis) -> None:
    """Fill the server, then cap ``maxmemory`` (``noeviction``) below what it uses: every write
    that may grow memory is refused, with a margin that the memory Redis frees by itself (client
    buffers) never covers."""
    admin_client.config_set("maxmemory-policy", "noeviction")
    admin_client.mset({f"fill:{n}": b"x" * 32768 for n in range(64)})
    admin_client.config_set("maxmemory", used_memory(admin_client) - 256 * 1024)
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        admin_client.set("fill:more", b"x")


async def outcome(write: Callable[[], Awaitable[Any]]) -> str:
    """``"written"``, ``"refused"`` (out of memory) or how else the write failed."""
    try:
        await write()
    except StoreError as exc:
        return "refused" if "maxmemory" in str(exc) else f"failed: {exc}"
    return "written"


@pytest.mark.server
def test_r11_redis_refuses_a_script_s_growing_write_only_before_its_first_write(private_redis: Server) -> None:
    """The rule the scripts' write order rests on: a DEL is a write that Redis allows at maxmemory,
    and after it the script's HSET is allowed too."""
    admin_client = private_redis.admin()
    fill(admin_client)
    with pytest.raises(redis.exceptions.ResponseError, match="maxmemory"):
        admin_client.eval("return redis.call('HSET', KEYS[1], 'f', 'v')", 1, "k")
    assert admin_client.eval("redis.call('DEL', KEYS[2]); return redis.call('HSET', KEYS[1], 'f', 'v')", 2, "k", "absent") == 1
    admin_client.close()


@pytest.mark.server
async def test_r11_writes_fail_and_change_nothing_while_deletes_work(private_redis: Server, mode: str, clock: FakeClock) -> None:
    """A full Redis (noeviction) refuses every write that would grow it, and frees memory on a
    logout or a revoke."""
    store = RedisStore.from_url(f"redis://127.0.0.1:{private_redis.port}/0", clock=clock)
    # The cluster store's scripts, run on one server: its revoke writes an epoch.
    cluster = RedisClusterStore(private_redis.admin(), redis.asyncio.Redis(port=private_redis.port), key_prefix="c:", clock=clock)
    ops, cluster_ops = Ops(mode, store, clock), Ops(mode, cluster, clock)
    admin_client = private_redis.admin()
    record = Record(b"x" * 8192, clock() + 60, 1, "alice")
    try:
        for name in ("cas", "rotate", "touch", "logout"):
            assert await ops.save(store_key(name), record, None)
        assert await cluster_ops.save(store_key("c"), record, None)
        for text in _SCRIPTS.values():  # loaded now, so that loading them adds no memory below
            admin_client.script_load(text)
        fill(admin_client)
        before = used_memory(admin_client)

        writes: dict[str, Callable[[], Awaitable[Any]]] = {
            "create": lambda: ops.save(store_key("new"), record, None),
            "compare-and-set": lambda: ops.save(store_key("cas"), record._replace(data=b"y" * 8192, version=2), 1),
            "compare-and-set, new expiry": lambda: ops.save(
                store_key("cas"), record._replace(expires_at=clock() + 90, version=2), 1
            ),
            "rotate": lambda: ops.call(
                "rotate", store_key("rotate"), store_key("rotated"), record._replace(version=2), expected_version=1
            ),
            "touch": lambda: ops.call("touch", store_key("touch"), clock() + 120),
            "cluster create": lambda: cluster_ops.save(store_key("new"), record, None),
        }
        assert {name: await outcome(write) for name, write in writes.items()} == dict.fromkeys(writes, "refused")
        for n in range(50):  # 400 kB of records, had they been written
            with pytest.raises(StoreError, match="maxmemory"):
                await ops.save(store_key(f"more{n}"), record, None)
        assert used_memory(admin_client) < before + 64 * 1024
        for name in ("cas", "rotate", "touch"):
            assert await ops.load(store_key(name)) == record, name
        assert await ops.load(store_key("new")) is None and await ops.load(store_key("rotated")) is None

        await ops.call("delete", store_key("logout"))  # a logout
        assert await ops.load(store_key("logout")) is None
        assert await ops.call("delete_user", "alice") == 3
        assert await cluster_ops.call("delete_user", "alice") == 1
        assert await cluster_ops.load(store_key("c")) is None
    finally:
        admin_client.close()
        store.close()
        cluster.close()
        await store.aclose()
        await cluster.aclose()


async def account_app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
    """``/login`` logs alice in, ``/logout`` ends the session, anything else writes to it."""
    session = get_session(scope)
    if scope["path"] == "/login":
        session.login("alice")
    elif scope["path"] == "/logout":
        session.logout()
    else:
        session["seen"] = True
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.mark.server
async def test_r11_a_login_answers_503_without_a_cookie_and_a_logout_works(private_redis: Server) -> None:
    manager = SessionManager(f"redis://127.0.0.1:{private_redis.port}/0", config=SessionConfig(cookie=CookieConfig(secure=False)))
    middleware = SessionMiddleware(account_app, manager)
    admin_client = private_redis.admin()

    async def get(path: str, session_id: str | None = None) -> httpx.Response:
        cookies = {"sessionid": session_id} if session_id else None
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=middleware), base_url="https://app", cookies=cookies
        ) as http:
            return await http.get(path)

    try:
        alice = cookie_id((await get("/login")).headers["set-cookie"])
        anonymous = cookie_id((await get("/visit")).headers["set-cookie"])
        fill(admin_client)
        for session_id in (None, anonymous):  # a new session is created, a loaded one rotated
            response = await get("/login", session_id)
            assert response.status_code == 503 and "set-cookie" not in response.headers, session_id
        response = await get("/logout", alice)
        assert response.status_code == 200 and cookie_id(response.headers["set-cookie"]) == ""
        assert manager.load(f"sessionid={alice}").is_new
        kept = manager.load(f"sessionid={anonymous}")
        assert not kept.is_new and kept.user_id is None
    finally:
        admin_client.close()
        manager.close()
        await manager.aclose()

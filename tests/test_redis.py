"""Redis-specific tests: URLs, key layout, TTLs, the cluster's revocation epoch, "log out
everywhere" against rotations, retried scripts, and faults (maxmemory: tests/faults/test_redis_oom.py).

The conformance suite (tests/test_conformance.py) covers the store contract; these tests check
what only Redis has, against the real servers (scripts/services.sh) and, for faults, a private
``redis-server`` this module starts and kills.
"""

from __future__ import annotations

import re
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, MutableMapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import anyio
import httpx
import pytest
import redis
import redis.asyncio
import redis.cluster

import coatcheck.stores
from coatcheck._ids import store_key
from coatcheck.asgi import SessionMiddleware, get_session
from coatcheck.config import CookieConfig, SessionConfig
from coatcheck.errors import ConfigurationError, NotSupportedError, StoreError, StoreUnavailableError
from coatcheck.manager import SessionManager
from coatcheck.stores import Record
from coatcheck.stores.redis import CLUSTER_MAX_LIFETIME, RedisClusterStore, RedisStore
from coatcheck.stores.redis._resp import AsyncRespClient, RespClient, RespConnectionError, RespReplyError
from coatcheck.stores.redis._scripts import _SCRIPTS
from coatcheck.testing import FakeClock, Ops, cookie_id
from tests.backends import ServerMissing, backend, unreachable
from tests.backends.redis import URL, admin, require, with_prefix
from tests.faultproxy import FaultProxy
from tests.redis_server import Server

pytestmark = pytest.mark.anyio
T = TypeVar("T")


# -- fixtures ------------------------------------------------------------------------------------


async def _open(name: str, clock: FakeClock, tmp_path: Path) -> Any:
    try:
        return await backend(name).open_store(clock, tmp_path)
    except ServerMissing as exc:
        unreachable(name, exc)


@pytest.fixture(params=[pytest.param(name, id=name, marks=pytest.mark.server) for name in ("redis", "redis-cluster")])
async def rstore(request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path) -> AsyncIterator[RedisStore]:
    store = await _open(request.param, clock, tmp_path)
    yield store
    await backend(request.param).close_store(store)


@pytest.fixture(params=[pytest.param("redis-cluster", id="redis-cluster", marks=pytest.mark.server)])
async def cluster_store(request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path) -> AsyncIterator[RedisClusterStore]:
    store = await _open(request.param, clock, tmp_path)
    yield store
    await backend(request.param).close_store(store)


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def raw(store: RedisStore) -> Any:
    """A redis-py client on the store's server, for looking behind its back."""
    return admin(store)


def redis_keys(store: RedisStore) -> list[str]:
    """KEYS <prefix>* on every primary."""
    client = raw(store)
    options = {"target_nodes": redis.cluster.RedisCluster.PRIMARIES} if isinstance(client, redis.cluster.RedisCluster) else {}
    return sorted(key.decode() for key in client.keys(f"{store.key_prefix}*", **options))


async def login(ops: Ops, user: str) -> str:
    session = await ops.session()
    session.login(user)
    return cookie_id(await ops.commit(session))


# -- URLs ----------------------------------------------------------------------------------------


def test_url_builds_lean_clients_without_io() -> None:
    store = coatcheck.stores.from_url("redis://127.0.0.1:1/2?key_prefix=app:&socket_timeout=0.5")
    try:
        assert isinstance(store, RedisStore) and not isinstance(store, RedisClusterStore)
        assert store.key_prefix == "app:" and store.expires_natively
        sync_client, async_client = store._sync_side().client, store._async_side().client
        assert isinstance(sync_client, RespClient) and isinstance(async_client, AsyncRespClient)
        for client in (sync_client, async_client):
            assert (client.host, client.port, client.path, client.db) == ("127.0.0.1", 1, None, 2)
            assert (client.socket_timeout, client.socket_connect_timeout, client.ssl_context) == (0.5, 1.0, None)
    finally:
        store.close()


def test_url_defaults_and_forms() -> None:
    plain = RedisStore.from_url("redis://h")
    tls = RedisStore.from_url("rediss://user:pw@h:6380/0?ssl_cert_reqs=none")
    unix = RedisStore.from_url("unix:///run/redis.sock?db=3")
    cluster = coatcheck.stores.from_url("redis+cluster://a:7001,b:7002?key_prefix=c:&max_lifetime=3600")
    try:
        client = plain._sync_side().client
        assert (client.host, client.port, client.db) == ("h", 6379, 0)
        assert (client.socket_timeout, client.socket_connect_timeout) == (1.0, 1.0)
        assert (plain.key_prefix, plain.max_lifetime) == ("coatcheck:", None)
        context = tls._sync_side().client.ssl_context
        assert (context.verify_mode, context.check_hostname) == (ssl.CERT_NONE, False)
        assert RedisStore.from_url("rediss://h")._sync_side().client.ssl_context.verify_mode == ssl.CERT_REQUIRED
        assert (unix._sync_side().client.path, unix._sync_side().client.db) == ("/run/redis.sock", 3)
        assert isinstance(cluster, RedisClusterStore)
        assert (cluster.key_prefix, cluster.max_lifetime, cluster._sync) == ("c:", 3600.0, None)  # sync client: on first use
        assert RedisClusterStore.from_url("redis+cluster://a:1").max_lifetime == CLUSTER_MAX_LIFETIME
    finally:
        for store in (plain, tls, unix, cluster):
            store.close()


@pytest.mark.parametrize(
    "url",
    [
        "redis://h:notaport",
        "redis://h/abc",
        "redis://h/1?db=2",
        "redis://h?bogus=1",
        "redis://h?socket_timeout=-1",
        "redis://h?socket_timeout=abc",
        "redis://h?max_connections=0",
        "redis://h?max_connections=7",  # cluster only: a redis:// store has no pool
        "redis://h?pool_timeout=0.25",
        "redis://h?max_lifetime=0",
        "redis://",
        "redis://h?ssl_cert_reqs=none",
        "rediss://h?ssl_cert_reqs=maybe",
        "unix://",
        "redis+cluster://",
        "redis+cluster://h",
        "redis+cluster://h:99999",
        "redis+cluster://h:1/2",
        "redis+cluster://h:1?db=0",
        "redis+cluster://h:1?key_prefix=a{b}",
        "memcached://h",
    ],
)
def test_bad_urls_raise_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError):
        coatcheck.stores.from_url(url)


async def test_unreachable_server_fails_fast_and_hides_the_password() -> None:
    store = RedisStore.from_url("redis://user:s3cret@127.0.0.1:1/0")  # building it does no I/O
    try:
        elapsed, error = timed(lambda: store.load("k"))
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError) as info:
            await store.aload("k")
        for exc, seconds in ((error, elapsed), (info.value, time.monotonic() - started)):
            assert isinstance(exc, StoreUnavailableError) and seconds < 1.0
            assert isinstance(exc.__cause__, RespConnectionError)  # the lean client's: redis:// needs no redis-py
            assert "s3cret" not in str(exc) and "s3cret" not in repr(store)
    finally:
        store.close()
        await store.aclose()


@pytest.mark.server
def test_redis_urls_run_without_redis_py() -> None:
    """The lean client needs only hiredis: a redis:// store loads no redis-py module."""
    code = (
        "import sys; from coatcheck import SessionManager; "
        "manager = SessionManager('redis://127.0.0.1:6379/0'); manager.check(); manager.close(); "
        "print(sorted(name for name in sys.modules if name == 'redis' or name.startswith('redis.')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)  # noqa: S603
    assert (done.returncode, done.stdout.strip()) == (0, "[]"), done.stderr


async def test_a_missing_client_flavour_is_not_supported() -> None:
    store = RedisStore(client=None, async_client=None)
    with pytest.raises(NotSupportedError):
        store.load("k")
    with pytest.raises(NotSupportedError):
        await store.aload("k")


# -- the real servers ----------------------------------------------------------------------------


@pytest.mark.server
def test_an_async_client_factory_serves_each_event_loop(clock: FakeClock) -> None:
    """redis-py's async client belongs to its first loop; built by a factory, one per loop."""
    require()
    built: list[redis.asyncio.Redis] = []

    def build() -> redis.asyncio.Redis:
        built.append(redis.asyncio.Redis.from_url(URL))
        return built[-1]

    prefix = urlsplit(with_prefix(URL)).query.partition("=")[2]
    store = RedisStore(None, async_client_factory=build, key_prefix=prefix, clock=clock)
    record = Record(b"x", clock() + 60, 1, None)

    async def round_trip(name: str) -> Record | None:
        try:
            assert await store.asave(store_key(name), record, expected_version=None)
            return await store.aload(store_key(name))
        finally:
            await store.aclose()

    assert anyio.run(round_trip, "a") == record
    assert anyio.run(round_trip, "b") == record
    assert len(built) == 2
    with redis.Redis.from_url(URL) as client:
        client.delete(*client.keys(f"{prefix}*"))


async def test_every_key_has_a_ttl_never_past_its_record(rstore: RedisStore, mode: str, clock: FakeClock) -> None:
    ops = Ops(mode, rstore, clock)
    await ops.new_saved(a=1)
    alice = await login(ops, "alice")
    session = await ops.session(alice)
    session["cart"] = [1]
    await ops.commit(session)  # compare-and-set
    before = float(raw(rstore).hget(rstore._session_key(store_key(alice)), "e"))
    clock.advance(120)
    await ops.commit(await ops.session(alice))  # a read past touch_interval: touch
    assert float(raw(rstore).hget(rstore._session_key(store_key(alice)), "e")) == before + 120
    await login(ops, "bob")
    await ops.revoke_user("bob")

    client = raw(rstore)
    keys = redis_keys(rstore)
    assert keys and any(":s:" in key for key in keys) and any(":u:" in key for key in keys)
    for key in keys:
        at = client.pexpiretime(key)
        assert at > 0, key
        if key.startswith(f"{rstore.key_prefix}s:"):
            assert at == int(float(client.hget(key, "e")) * 1000)
        elif key.startswith(f"{rstore.key_prefix}u:"):
            members = client.zrange(key, 0, -1, withscores=True)
            assert at == max(score for _, score in members)
            assert all(client.pexpiretime(rstore._session_key(m.decode())) <= at for m, _ in members)
        else:
            assert isinstance(rstore, RedisClusterStore) and ":revoked:" in key
            assert at == int((float(client.get(key)) + CLUSTER_MAX_LIFETIME) * 1000)


async def test_keys_hold_only_hashed_ids(rstore: RedisStore, mode: str, clock: FakeClock) -> None:
    ops = Ops(mode, rstore, clock)
    ids = [await ops.new_saved(a=1), await login(ops, "alice"), await login(ops, "alice")]
    keys = redis_keys(rstore)
    shape = re.compile(re.escape(rstore.key_prefix) + r"(s:\{?[0-9a-f]{64}\}?|u:\{?alice\}?)")
    assert all(shape.fullmatch(key) for key in keys), keys
    assert {store_key(sid) for sid in ids} <= {key[-64:] if key[-1] != "}" else key[-65:-1] for key in keys}
    client = raw(rstore)
    stored = b"".join(b"".join(client.hgetall(key).values()) for key in keys if ":s:" in key)
    stored += b"".join(b"".join(client.zrange(key, 0, -1)) for key in keys if ":u:" in key)
    for sid in ids:
        assert sid not in "".join(keys) and sid.encode() not in stored


async def test_user_index_is_pruned_and_expires_with_its_longest_session(rstore: RedisStore, mode: str, clock: FakeClock) -> None:
    ops = Ops(mode, rstore, clock)
    index = rstore._index_key("u")
    for n in range(3):
        await ops.save(store_key(f"short{n}"), Record(b"x", clock() + 10, 1, "u"), None)
    await ops.save(store_key("long"), Record(b"x", clock() + 1000, 1, "u"), None)
    client = raw(rstore)
    assert client.zcard(index) == 4
    assert client.pexpiretime(index) == int((clock() + 1000) * 1000)
    clock.advance(20)
    await ops.save(store_key("new"), Record(b"x", clock() + 30, 1, "u"), None)
    assert client.zcard(index) == 2  # the expired entries went with the write
    await ops.call("delete", store_key("new"))
    assert [key for key, _ in await ops.call("list_user", "u")] == [store_key("long")]
    assert client.zcard(index) == 1  # list_user dropped the deleted one


async def test_other_driver_errors_are_store_errors(rstore: RedisStore, mode: str, clock: FakeClock) -> None:
    ops = Ops(mode, rstore, clock)
    raw(rstore).set(rstore._session_key(store_key("wrong")), "not a hash")
    with pytest.raises(StoreError) as info:
        await ops.load(store_key("wrong"))
    assert not isinstance(info.value, StoreUnavailableError)
    lean = isinstance(rstore._sync_side().client, RespClient)
    assert isinstance(info.value.__cause__, RespReplyError if lean else redis.exceptions.ResponseError)


# -- the cluster ---------------------------------------------------------------------------------


async def test_revoke_reaches_every_slot_and_node(cluster_store: RedisClusterStore, mode: str, clock: FakeClock) -> None:
    ops = Ops(mode, cluster_store, clock)
    client = raw(cluster_store)
    ids: list[str] = []
    nodes: set[str] = set()
    while len(ids) < 4 or len(nodes) < 2:
        assert len(ids) < 64, "sessions never spread over two nodes"
        ids.append(await login(ops, "alice"))
        nodes.add(client.get_node_from_key(cluster_store._session_key(store_key(ids[-1]))).name)
    keys = [cluster_store._session_key(store_key(sid)) for sid in ids]
    assert len({client.keyslot(key) for key in keys}) > 1
    bob = await login(ops, "bob")
    assert await ops.revoke_user("alice") == len(ids)
    for sid, key in zip(ids, keys, strict=True):
        assert (await ops.session(sid)).is_new
        assert client.exists(key) == 0
    assert client.exists(cluster_store._index_key("alice")) == 0
    assert (await ops.session(bob)).user_id == "bob"
    clock.advance(1)
    again = await login(ops, "alice")  # a login after the revoke is not revoked
    assert (await ops.session(again)).user_id == "alice"


async def test_epoch_revokes_a_session_whose_index_write_was_lost(
    cluster_store: RedisClusterStore, mode: str, clock: FakeClock
) -> None:
    ops = Ops(mode, cluster_store, clock)
    client = raw(cluster_store)
    ids = [await login(ops, "bob") for _ in range(3)]
    lost = ids[0]
    client.zrem(cluster_store._index_key("bob"), store_key(lost))  # as if that index write never happened
    in_flight = await ops.session(lost)  # a request that loaded the session before the revoke

    assert await ops.revoke_user("bob") == 2
    assert client.exists(cluster_store._session_key(store_key(lost))) == 1  # nobody knew it...
    assert await ops.load(store_key(lost)) is None  # ...and yet it is dead
    assert (await ops.session(lost)).is_new
    assert await ops.call("list_user", "bob") == []

    in_flight.rotate()
    in_flight["late"] = 1
    rotated = await ops.commit(in_flight)
    assert rotated is not None and cookie_id(rotated) != lost
    assert (await ops.session(cookie_id(rotated))).is_new  # a rotation keeps the revoked creation time

    epoch_at = client.pexpiretime(cluster_store._epoch_key("bob"))
    assert epoch_at == int((clock() + CLUSTER_MAX_LIFETIME) * 1000)
    clock.advance(1)
    fresh = await login(ops, "bob")
    assert (await ops.session(fresh)).user_id == "bob"
    assert [key for key, _ in await ops.call("list_user", "bob")] == [store_key(fresh)]


async def test_cluster_rotate_undoes_its_first_step(cluster_store: RedisClusterStore, mode: str, clock: FakeClock) -> None:
    ops = Ops(mode, cluster_store, clock)
    await ops.save(store_key("old"), Record(b"o", clock() + 60, 2, "u"), None)
    moved = Record(b"n", clock() + 60, 3, "u")
    assert await ops.call("rotate", store_key("old"), store_key("new"), moved, expected_version=1) is False
    # The old record changes between the rotation's read and its delete: the new record goes.
    flow = cluster_store._rotate_flow(store_key("old"), store_key("new"), moved, 2)
    side = cluster_store._sync_side()
    op = next(flow)
    op = flow.send(op.run(side))  # read old; next op creates the new record
    op = flow.send(op.run(side))  # created; next op deletes the old one at version 2
    await ops.save(store_key("old"), Record(b"o2", clock() + 60, 3, "u"), 2)
    assert finish(flow, op, side) is False
    assert await ops.load(store_key("new")) is None
    assert (await ops.load(store_key("old"))) == Record(b"o2", clock() + 60, 3, "u")


def finish(flow: Generator[Any, Any, T], op: Any, side: Any) -> T:
    """Run a store flow from its pending ``op`` to the end, on the sync client."""
    try:
        while True:
            op = flow.send(op.run(side))
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


# -- faults: a private redis-server, killed, frozen and restarted ---------------------------------

TIMEOUT = 0.5


async def counter_app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
    session = get_session(scope)
    session["n"] = session.get("n", 0) + 1
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": str(session["n"]).encode()})


def timed(call: Callable[[], Any]) -> tuple[float, Exception | None]:
    started = time.monotonic()
    try:
        call()
    except Exception as exc:
        return time.monotonic() - started, exc
    return time.monotonic() - started, None


@pytest.mark.server
async def test_outage_answers_503_quickly_and_recovers_without_restart(private_redis: Server) -> None:
    url = f"redis://127.0.0.1:{private_redis.port}/0?socket_timeout={TIMEOUT}&socket_connect_timeout={TIMEOUT}"
    manager = SessionManager(url, config=SessionConfig(cookie=CookieConfig(secure=False)))
    middleware = SessionMiddleware(counter_app, manager)
    bound = 2 * TIMEOUT + 0.25
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=middleware), base_url="https://app") as http:
            assert (await http.get("/")).text == "1"
            assert (await http.get("/")).text == "2"
            sync_session = manager.new_session()
            sync_session["k"] = "v"
            sync_cookie = f"sessionid={cookie_id(manager.commit(sync_session))}"
            assert manager.load(sync_cookie)["k"] == "v"

            for outage in ("killed", "frozen"):
                if outage == "killed":
                    private_redis.kill()
                else:
                    private_redis.start()
                    private_redis.freeze(True)
                elapsed, error = timed(lambda: manager.load(sync_cookie))
                assert isinstance(error, StoreUnavailableError) and elapsed < bound, (outage, elapsed, error)
                elapsed, error = timed(lambda: manager.commit(_dirty(manager)))
                assert isinstance(error, StoreUnavailableError) and elapsed < bound, (outage, elapsed, error)
                started = time.monotonic()
                response = await http.get("/")
                assert response.status_code == 503 and "set-cookie" not in response.headers, outage
                assert time.monotonic() - started < bound, outage
                if outage == "frozen":
                    private_redis.freeze(False)
                    private_redis.kill()

            private_redis.start()  # same port, same manager, same store, same clients

            async def served() -> httpx.Response:
                with anyio.fail_after(10):
                    while True:
                        response = await http.get("/")
                        if response.status_code == 200:
                            return response
                        await anyio.sleep(0.02)

            assert (await served()).text == "1"  # the old session died with the server; a new one works
            assert (await http.get("/")).text == "2"
            fresh = manager.new_session()
            fresh["k"] = "again"
            cookie = f"sessionid={cookie_id(manager.commit(fresh))}"
            assert manager.load(cookie)["k"] == "again"
    finally:
        manager.close()
        await manager.aclose()


def _dirty(manager: SessionManager) -> Any:
    session = manager.new_session()
    session["x"] = 1
    return session


async def test_created_time_follows_the_owner(rstore: RedisStore, mode: str, clock: FakeClock) -> None:
    ops = Ops(mode, rstore, clock)
    key = rstore._session_key(store_key("k"))
    start = clock()
    await ops.save(store_key("k"), Record(b"x", clock() + 60, 1, "a"), None)
    clock.advance(5)
    await ops.save(store_key("k"), Record(b"y", clock() + 60, 2, "a"), 1)
    assert float(raw(rstore).hget(key, "c")) == start  # same owner: the binding is as old as before
    clock.advance(5)
    await ops.save(store_key("k"), Record(b"z", clock() + 60, 3, "b"), 2)
    assert float(raw(rstore).hget(key, "c")) == clock()  # a new owner: a new binding


async def test_a_write_that_keeps_owner_and_expiry_keeps_ttl_and_index(rstore: RedisStore, mode: str, clock: FakeClock) -> None:
    ops = Ops(mode, rstore, clock)
    client = raw(rstore)
    key, index = rstore._session_key(store_key("k")), rstore._index_key("a")
    expires = clock() + 60
    await ops.save(store_key("k"), Record(b"x", expires, 1, "a"), None)
    created, at = client.hget(key, "c"), client.pexpiretime(key)
    clock.advance(5)
    assert await ops.save(store_key("k"), Record(b"y", expires, 2, "a"), 1)  # the short path
    assert client.hgetall(key) == {b"d": b"y", b"v": b"2", b"e": repr(expires).encode(), b"c": created, b"u": b"a"}
    assert client.pexpiretime(key) == at == int(expires * 1000)
    assert await ops.load(store_key("k")) == Record(b"y", expires, 2, "a")
    assert not await ops.save(store_key("k"), Record(b"z", expires, 3, "a"), 1)  # still compare-and-set
    if not isinstance(rstore, RedisClusterStore):  # the inline index: its entry stands
        assert client.zscore(index, store_key("k")) == at
    await ops.save(store_key("k"), Record(b"z", expires + 30, 3, "a"), 2)  # the expiry moves: TTL too
    assert client.pexpiretime(key) == int((expires + 30) * 1000) and client.hget(key, "c") == created
    await ops.save(store_key("k"), Record(b"w", expires + 30, 4, "b"), 3)  # a new owner, same expiry
    assert client.hget(key, "u") == b"b" and float(client.hget(key, "c")) == clock()
    assert [k for k, _ in await ops.call("list_user", "b")] == [store_key("k")]


# -- flows driven one round trip at a time -------------------------------------------------------


def snapshot(store: RedisStore) -> dict[str, Any]:
    """Every key under the store's prefix: its value and its expiry."""
    client = raw(store)
    readers: dict[bytes, Callable[[str], Any]] = {
        b"hash": client.hgetall,
        b"zset": lambda key: client.zrange(key, 0, -1, withscores=True),
        b"string": client.get,
    }
    return {key: (readers[client.type(key)](key), client.pexpiretime(key)) for key in redis_keys(store)}


async def drive(
    store: RedisStore,
    mode: str,
    flow: Generator[Any, Any, T],
    between: Callable[[], Awaitable[None]] | None = None,
    *,
    twice: bool = False,
) -> T:
    """Run a store flow on the ``mode`` client, awaiting ``between()`` before each round trip and
    after the last. With ``twice``, send each round trip again, as a client does that lost the
    reply: the second run must change nothing, and the flow goes on with its reply."""
    side = store._sync_side() if mode == "sync" else store._async_side()

    async def start(op: Any) -> Any:
        reply = op.run(side)
        return await reply if mode == "async" else reply

    try:
        op = next(flow)
        while True:
            if between is not None:
                await between()
            reply = await start(op)
            if twice:
                first = snapshot(store)
                reply = await start(op)
                assert snapshot(store) == first, op
            op = flow.send(reply)
    except StopIteration as stop:
        if between is not None:
            await between()
        return stop.value  # type: ignore[no-any-return]


# -- "log out everywhere" against rotations -----------------------------------------------------


async def test_revoke_wins_against_rotations_between_its_round_trips(
    rstore: RedisStore, mode: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests that loaded alice's sessions before the revoke rotate them before each of its round
    trips and after the last: afterwards no session of alice loads, under any key."""
    ops = Ops(mode, rstore, clock)
    if not isinstance(rstore, RedisClusterStore):  # several round trips on one server too
        monkeypatch.setattr(rstore, "_delete_batch", 2)
    current = {store_key(f"alice{n}"): Record(b"a", clock() + 600, 1, "alice") for n in range(5)}
    for key, record in current.items():
        assert await ops.save(key, record, None)
    bob = Record(b"b", clock() + 600, 1, "bob")
    assert await ops.save(store_key("bob"), bob, None)
    every_key = set(current)
    rotations: list[int] = []  # how many rotations succeeded at each point

    async def rotate_every_session() -> None:
        rotated = 0
        for key, record in list(current.items()):
            new_key, moved = store_key(f"{key}+"), record._replace(version=record.version + 1)
            if await ops.call("rotate", key, new_key, moved, expected_version=record.version):
                del current[key]
                current[new_key] = moved
                every_key.add(new_key)
                rotated += 1
        rotations.append(rotated)

    deleted = await drive(rstore, mode, rstore._delete_user_flow("alice"), rotate_every_session)

    assert len(rotations) >= 3 and rotations[0] == 5 and rotations[1] > 0  # the race ran mid-revoke
    assert [key for key in every_key if await ops.load(key) is not None] == []
    survivors = [key for key in every_key if raw(rstore).hget(rstore._session_key(key), "u") == b"alice"]
    assert deleted + len(survivors) == 5  # each session counted once, when deleted
    if not isinstance(rstore, RedisClusterStore):  # the cluster leaves late rotations to its epoch
        assert survivors == [] and raw(rstore).exists(rstore._index_key("alice")) == 0
    assert await ops.load(store_key("bob")) == bob


# -- retries: every script may run twice ---------------------------------------------------------


async def test_every_write_run_twice_reports_success_and_changes_nothing_more(
    rstore: RedisStore, mode: str, clock: FakeClock
) -> None:
    """Each round trip of a create, compare-and-set saves, a rotate and a touch, sent twice."""
    ops = Ops(mode, rstore, clock)
    key, new_key = store_key("k"), store_key("k2")
    writes = [
        (key, Record(b"v1", clock() + 60, 1, None), None),  # create
        (key, Record(b"v2", clock() + 90, 2, "alice"), 1),  # a new owner: the full write
        (key, Record(b"v3", clock() + 90, 3, "alice"), 2),  # owner and expiry kept: the short path
    ]
    for write_key, record, expected in writes:
        assert await drive(rstore, mode, rstore._save_flow(write_key, record, expected), twice=True) is True
        assert await ops.load(write_key) == record
    moved = Record(b"v4", clock() + 120, 4, "alice")
    assert await drive(rstore, mode, rstore._rotate_flow(key, new_key, moved, 3), twice=True) is True
    await drive(rstore, mode, rstore._touch_flow(new_key, clock() + 150), twice=True)

    assert await ops.load(key) is None
    assert await ops.load(new_key) == moved._replace(expires_at=clock() + 150)
    assert raw(rstore).zscore(rstore._index_key("alice"), new_key) == int((clock() + 150) * 1000)
    assert [k for k, _ in await ops.call("list_user", "alice")] == [new_key]
    anonymous = Record(b"v5", clock() + 150, 5, None)  # the owner goes, and its field with it
    assert await drive(rstore, mode, rstore._save_flow(new_key, anonymous, 4), twice=True) is True
    assert await ops.load(new_key) == anonymous and raw(rstore).hget(rstore._session_key(new_key), "u") is None
    assert not await ops.save(new_key, Record(b"other", clock() + 150, 6, None), 4)  # still compare-and-set
    assert not await ops.save(new_key, Record(b"other", clock() + 150, 5, None), None)  # still create-only


@pytest.mark.server
async def test_a_write_whose_reply_is_lost_is_retried_and_reports_success(mode: str, clock: FakeClock) -> None:
    """The lean client runs a command again when its connection breaks before the reply: a
    create, a compare-and-set and a rotate that had already run still report success."""
    require()
    target = urlsplit(URL)
    direct = redis.Redis(host=target.hostname or "127.0.0.1", port=target.port or 6379, db=int(target.path.strip("/") or 0))
    with FaultProxy(target.hostname or "127.0.0.1", target.port or 6379) as proxy:
        store = RedisStore.from_url(with_prefix(f"redis://127.0.0.1:{proxy.port}{target.path}"), clock=clock)
        ops = Ops(mode, store, clock)
        try:
            for text in _SCRIPTS.values():  # so that no EVALSHA meets NOSCRIPT
                direct.script_load(text)
            key, new_key = store_key("k"), store_key("k2")
            created, changed = Record(b"v1", clock() + 60, 1, "alice"), Record(b"v2", clock() + 60, 2, "alice")
            moved = Record(b"v3", clock() + 90, 3, "alice")
            assert await ops.load(key) is None  # opens the connection the fault will break
            writes: list[Callable[[], Awaitable[Any]]] = [
                lambda: ops.save(key, created, None),
                lambda: ops.save(key, changed, 1),
                lambda: ops.call("rotate", key, new_key, moved, expected_version=2),
            ]
            for n, write in enumerate(writes, 1):
                proxy.drop_next_reply()
                assert await write() is True, n
                assert proxy.replies_dropped == n

            assert await ops.load(new_key) == moved and await ops.load(key) is None
            prefix = store.key_prefix
            keys = sorted(k.decode() for k in direct.scan_iter(match=f"{prefix}*", count=500))
            assert keys == [store._session_key(new_key), store._index_key("alice")]
            assert [k for k, _ in await ops.call("list_user", "alice")] == [new_key]
        finally:
            for stale in direct.scan_iter(match=f"{store.key_prefix}*", count=500):
                direct.delete(stale)
            direct.close()
            store.close()
            await store.aclose()


# -- a touch keeps the session in its user's index ------------------------------------------------


async def test_a_touch_extends_the_user_index_in_the_same_round_trip_on_one_server(
    rstore: RedisStore, mode: str, clock: FakeClock
) -> None:
    """Every live session of a user is in the user's index: on one server a touch that moves an
    owned session's expiry moves its index entry in the same script call, so no lost second call
    can leave a session that "log out everywhere" cannot find (the cluster's epoch covers it)."""
    ops = Ops(mode, rstore, clock)
    await ops.save(store_key("a"), Record(b"x", clock() + 60, 1, "alice"), None)
    round_trips = 0

    async def count() -> None:
        nonlocal round_trips
        round_trips += 1

    assert await drive(rstore, mode, rstore._touch_flow(store_key("a"), clock() + 3600), count) is True
    index = raw(rstore).zrange(rstore._index_key("alice"), 0, -1, withscores=True)
    assert index == [(store_key("a").encode(), float(int((clock() + 3600) * 1000)))]
    assert round_trips - 1 == (2 if isinstance(rstore, RedisClusterStore) else 1)

"""The lean RESP client (coatcheck.stores.redis._resp) against real servers: the shared Redis on
127.0.0.1:6379 (keys under a unique prefix, deleted after) and private ``redis-server``
processes this module starts, freezes, restarts and kills."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis
import redis.exceptions as rex

from coatcheck.stores.redis import RedisStore, _resp
from coatcheck.stores.redis._resp import (
    AsyncRespClient,
    RespArgumentError,
    RespClient,
    RespConnectionError,
    RespReplyError,
    RespTimeoutError,
    pack,
)
from tests.backends import require_servers
from tests.redis_server import Server, until

pytestmark = pytest.mark.anyio
ECHO = "return ARGV"
TIMEOUT = 0.3
BOUND = TIMEOUT + 0.4  # one timeout, plus room for a busy machine; never two timeouts


# -- fixtures ------------------------------------------------------------------------------------


def _missing(reason: str) -> None:
    if require_servers():
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def shared() -> Iterator[tuple[redis.Redis, str]]:
    """A redis-py admin client on the shared server and a unique key prefix, purged after."""
    admin = redis.Redis(socket_timeout=1, socket_connect_timeout=0.5)
    try:
        admin.ping()
    except rex.ConnectionError as exc:
        admin.close()
        _missing(f"redis on 127.0.0.1:6379 unreachable: {exc}")
    prefix = f"coatcheck-resp-test:{uuid.uuid4().hex}:"
    try:
        yield admin, prefix
    finally:
        for key in admin.scan_iter(match=f"{prefix}*", count=500):
            admin.delete(key)
        admin.close()


@pytest.fixture
def servers() -> Iterator[Callable[..., Server]]:
    if shutil.which("redis-server") is None:
        _missing("redis-server is not installed")
    started: list[Server] = []

    def start(*extra: str, tls: Path | None = None) -> Server:
        started.append(Server(*extra, tls=tls).start())
        return started[-1]

    try:
        yield start
    finally:
        for server in started:
            server.kill()


@pytest.fixture
async def aclient() -> AsyncIterator[AsyncRespClient]:
    client = AsyncRespClient(socket_timeout=2)
    yield client
    await client.aclose()


def commandstats(admin: redis.Redis, command: str) -> int:
    stats: dict[str, Any] = admin.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def connections(admin: redis.Redis, name: str) -> int:
    return sum(1 for client in admin.client_list() if client["name"] == name)


# -- packing and replies -------------------------------------------------------------------------


def test_pack_every_argument_type() -> None:
    assert (
        pack(b"SET", "k\u00e9", 42, -7, 1.5, b"")
        == b"*6\r\n$3\r\nSET\r\n$3\r\nk\xc3\xa9\r\n$2\r\n42\r\n$2\r\n-7\r\n$3\r\n1.5\r\n$0\r\n\r\n"
    )
    assert pack(b"X", 1e-05, b"a\r\nb") == b"*3\r\n$1\r\nX\r\n$5\r\n1e-05\r\n$4\r\na\r\nb\r\n"
    for bad in (True, None, [1]):
        with pytest.raises(RespArgumentError):
            pack(b"GET", bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        ("NOSCRIPT No matching script.", _resp.RespNoScriptError),
        ("LOADING Redis is loading the dataset in memory", RespConnectionError),
        ("READONLY You can't write against a read only replica.", RespConnectionError),
        ("MASTERDOWN Link with MASTER is down", RespConnectionError),
        ("NOAUTH Authentication required.", RespConnectionError),
        ("WRONGPASS invalid username-password pair", RespConnectionError),
        ("ERR max number of clients reached", RespConnectionError),
        ("WRONGTYPE Operation against a key holding the wrong kind of value", RespReplyError),
        ("OOM command not allowed when used memory > 'maxmemory'.", RespReplyError),
        ("ERR unknown command", RespReplyError),
    ],
)
def test_error_replies_map_to_unavailable_or_failed(reply: str, kind: type[Exception]) -> None:
    error = _resp._error(reply)
    assert type(error) is kind and str(error) == reply
    assert isinstance(error, _resp.RespUnavailableError) == (kind is RespConnectionError)


@pytest.mark.server
async def test_arguments_and_replies_match_redis_py(shared: tuple[redis.Redis, str], aclient: AsyncRespClient) -> None:
    admin, prefix = shared
    client = RespClient()
    try:
        args: list[_resp.Arg] = [b"\x00\xff", "\u00e9", 7, -1, 2.5, 1e100, ""]
        expected = [b"\x00\xff", "\u00e9".encode(), b"7", b"-1", b"2.5", b"1e+100", b""]
        assert client.register_script(ECHO)(keys=[], args=args) == expected
        assert await aclient.register_script(ECHO)(keys=[], args=args) == expected

        admin.hset(f"{prefix}h", mapping={"a": b"1", "c": b"\xff"})
        admin.set(f"{prefix}s", b"v")
        nested = client.register_script("return {1, 'two', {3, false}, false}")
        for sync, flavour in ((True, client), (False, aclient)):

            async def call(result: Any, sync: bool = sync) -> Any:
                return result if sync else await result

            admin.zadd(f"{prefix}z", {"m1": 1, "m2": 2, "m3": 3})
            assert await call(flavour.get(f"{prefix}s")) == b"v" == admin.get(f"{prefix}s")
            assert await call(flavour.get(f"{prefix}missing")) is None
            assert await call(flavour.hmget(f"{prefix}h", ["a", "b", "c"])) == [b"1", None, b"\xff"]
            assert await call(flavour.zrange(f"{prefix}z", 0, -1)) == [b"m1", b"m2", b"m3"]
            assert await call(flavour.zrem(f"{prefix}z", "m1", "nope")) == 1
            assert await call(flavour.zrange(f"{prefix}z", 0, 0)) == [b"m2"]
            if sync:
                assert nested(keys=[]) == [1, b"two", [3, None], None]
            assert await call(flavour.ping()) is True
            pipe = flavour.pipeline(transaction=False)
            pipe.get(f"{prefix}s")
            pipe.hmget(f"{prefix}h", ["a"])
            pipe.zrange(f"{prefix}missing", 0, -1)
            assert await call(pipe.execute()) == [b"v", [b"1"], []]
        assert client.delete(f"{prefix}s", f"{prefix}h") == 2
        assert await aclient.delete(f"{prefix}z", f"{prefix}missing") == 1
    finally:
        client.close()


@pytest.mark.server
async def test_error_replies_raise_and_leave_the_connection_in_step(
    shared: tuple[redis.Redis, str], aclient: AsyncRespClient
) -> None:
    admin, prefix = shared
    admin.hset(f"{prefix}h", "a", "1")
    admin.set(f"{prefix}s", "v")
    client = RespClient()
    try:
        for sync, flavour in ((True, client), (False, aclient)):

            async def call(result: Any, sync: bool = sync) -> Any:
                return result if sync else await result

            with pytest.raises(RespReplyError, match="WRONGTYPE"):
                await call(flavour.get(f"{prefix}h"))
            with pytest.raises(RespReplyError, match="boom"):
                await call(flavour.register_script("return redis.error_reply('boom')")(keys=[], args=[]))
            pipe = flavour.pipeline()
            pipe.get(f"{prefix}s")
            pipe.get(f"{prefix}h")
            pipe.hmget(f"{prefix}s", ["x"])
            with pytest.raises(RespReplyError, match="WRONGTYPE"):
                await call(pipe.execute())
            assert await call(flavour.get(f"{prefix}s")) == b"v"  # every reply of the pipeline was read
    finally:
        client.close()


# -- scripts -------------------------------------------------------------------------------------


@pytest.mark.server
async def test_evalsha_falls_back_to_eval_once_after_script_flush(servers: Callable[..., Server]) -> None:
    server = servers()
    admin = server.admin()
    sync_client, async_client = RespClient(port=server.port), AsyncRespClient(port=server.port)
    try:
        sync_script = sync_client.register_script("return 'sync ' .. ARGV[1]")
        async_script = async_client.register_script("return 'async ' .. ARGV[1]")
        evals = commandstats(admin, "eval")
        assert sync_script(keys=[], args=[1]) == b"sync 1"  # NOSCRIPT, then EVAL (which loads it)
        assert await async_script(keys=[], args=[1]) == b"async 1"
        assert commandstats(admin, "eval") == evals + 2
        assert admin.script_exists(sync_script.sha, async_script.sha) == [True, True]
        assert sync_script(keys=[], args=[2]) == b"sync 2"  # EVALSHA alone now
        assert await async_script(keys=[], args=[2]) == b"async 2"
        assert commandstats(admin, "eval") == evals + 2
        admin.script_flush()
        assert sync_script(keys=[], args=[3]) == b"sync 3"
        assert await async_script(keys=[], args=[3]) == b"async 3"
        assert commandstats(admin, "eval") == evals + 4
    finally:
        sync_client.close()
        await async_client.aclose()
        admin.close()


# -- async: one multiplexed connection -----------------------------------------------------------


@pytest.mark.server
async def test_200_concurrent_commands_share_one_connection_and_get_their_own_replies(shared: tuple[redis.Redis, str]) -> None:
    admin, prefix = shared
    name = f"resp-{uuid.uuid4().hex[:12]}"
    client = AsyncRespClient(client_name=name, socket_timeout=2)
    try:
        admin.mset({f"{prefix}{n}": f"value {n}" for n in range(0, 200, 2)})
        echo = client.register_script(ECHO)

        def command(n: int) -> Any:
            if n % 4 == 0:
                return client.get(f"{prefix}{n}")
            if n % 4 == 2:
                return client.hmget(f"{prefix}{n}:missing", [str(n)])
            return echo(keys=[], args=[n, "x" * n])

        expected = [
            f"value {n}".encode() if n % 4 == 0 else [None] if n % 4 == 2 else [str(n).encode(), b"x" * n] for n in range(200)
        ]
        with anyio.fail_after(10):
            assert await asyncio.gather(*(command(n) for n in range(200))) == expected
        assert connections(admin, name) == 1
    finally:
        await client.aclose()
    until(lambda: connections(admin, name) == 0)


@pytest.mark.server
async def test_a_cancelled_command_does_not_shift_the_replies(shared: tuple[redis.Redis, str], aclient: AsyncRespClient) -> None:
    admin, prefix = shared
    admin.mset({f"{prefix}a": "A", f"{prefix}b": "B"})
    assert await aclient.ping()
    with anyio.fail_after(5):
        first = asyncio.ensure_future(aclient.get(f"{prefix}a"))
        await asyncio.sleep(0)  # sent, reply not yet read
        first.cancel()
        assert await aclient.get(f"{prefix}b") == b"B"
        assert await aclient.get(f"{prefix}a") == b"A"
    assert first.cancelled()


@pytest.mark.server
async def test_pending_commands_are_capped(monkeypatch: pytest.MonkeyPatch, aclient: AsyncRespClient) -> None:
    monkeypatch.setattr(_resp, "MAX_PENDING", 5)
    assert await aclient.ping()  # connected: the next sends happen before any reply is read
    with anyio.fail_after(5):
        replies = await asyncio.gather(*(aclient.ping() for _ in range(8)), return_exceptions=True)
    assert replies[:5] == [True] * 5
    assert all(isinstance(reply, RespConnectionError) and "pending" in str(reply) for reply in replies[5:])
    assert await aclient.ping()


@pytest.mark.server
async def test_each_event_loop_gets_its_own_connection(shared: tuple[redis.Redis, str]) -> None:
    admin, prefix = shared
    name = f"resp-{uuid.uuid4().hex[:12]}"
    client = AsyncRespClient(client_name=name)
    admin.set(f"{prefix}k", "v")
    errors: list[BaseException] = []
    barrier = threading.Barrier(3, timeout=10)

    async def work() -> None:
        assert [await client.get(f"{prefix}k") for _ in range(20)] == [b"v"] * 20
        await asyncio.to_thread(barrier.wait)  # all three loops connected at once...
        await asyncio.to_thread(barrier.wait)  # ...and counted
        await client.aclose()

    def in_thread() -> None:
        try:
            asyncio.run(work())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=in_thread) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        assert await client.get(f"{prefix}k") == b"v"
        await asyncio.to_thread(barrier.wait)
        assert connections(admin, name) == 3
        await asyncio.to_thread(barrier.wait)
    finally:
        for thread in threads:
            thread.join(timeout=10)
        await client.aclose()
    assert not errors and not any(thread.is_alive() for thread in threads)
    until(lambda: connections(admin, name) == 0)


# -- faults on a private server ------------------------------------------------------------------


@pytest.mark.server
async def test_async_reply_timeout_fails_every_pending_command_then_recovers(servers: Callable[..., Server]) -> None:
    server = servers()
    client = AsyncRespClient(port=server.port, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)
    try:
        assert await client.ping()
        server.freeze(True)
        started = time.monotonic()
        with anyio.fail_after(5):
            replies = await asyncio.gather(*(client.get(f"k{n}") for n in range(20)), return_exceptions=True)
        elapsed = time.monotonic() - started
        assert all(isinstance(reply, RespTimeoutError) for reply in replies), replies
        assert TIMEOUT * 0.9 < elapsed < BOUND, elapsed
        started = time.monotonic()
        with pytest.raises(RespTimeoutError):
            await client.get("again")  # a new connection (the kernel accepts it), no reply in time
        assert time.monotonic() - started < BOUND
        server.freeze(False)
        with anyio.fail_after(5):
            assert await client.ping()
            assert await client.get("k") is None
    finally:
        server.freeze(False)
        await client.aclose()


@pytest.mark.server
def test_sync_reply_timeout_is_bounded_and_not_retried(servers: Callable[..., Server]) -> None:
    server = servers()
    client = RespClient(port=server.port, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)
    try:
        assert client.ping()
        server.freeze(True)
        started = time.monotonic()
        with pytest.raises(RespTimeoutError):
            client.get("k")
        assert TIMEOUT * 0.9 < time.monotonic() - started < BOUND
        server.freeze(False)
        assert client.ping()
    finally:
        server.freeze(False)
        client.close()


@pytest.mark.server
async def test_a_restart_costs_no_failed_command_and_an_outage_fails_fast(servers: Callable[..., Server]) -> None:
    server = servers()
    sync_client = RespClient(port=server.port, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)
    async_client = AsyncRespClient(port=server.port, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)
    try:
        assert sync_client.ping() and await async_client.ping()
        server.kill()
        server.start()  # same port; both clients hold a dead connection
        assert sync_client.ping()
        with anyio.fail_after(5):
            assert await async_client.ping()
        server.kill()
        started = time.monotonic()
        with pytest.raises(RespConnectionError):
            sync_client.ping()
        with pytest.raises(RespConnectionError):
            await async_client.ping()
        assert time.monotonic() - started < BOUND
        server.start()
        assert sync_client.ping()
        with anyio.fail_after(5):
            assert await async_client.ping()
    finally:
        sync_client.close()
        await async_client.aclose()


@pytest.mark.server
async def test_auth_and_select_at_connect(servers: Callable[..., Server]) -> None:
    server = servers("--requirepass", "s3cret")
    admin = server.admin(password="s3cret", db=3)
    sync_client = RespClient(port=server.port, password="s3cret", db=3)
    async_client = AsyncRespClient(port=server.port, username="default", password="s3cret", db=3)
    try:
        admin.set("k", "in db 3")
        assert sync_client.get("k") == b"in db 3"
        assert await async_client.get("k") == b"in db 3"
        db0 = RespClient(port=server.port, password="s3cret")
        assert db0.get("k") is None
        db0.close()
        for wrong in ({}, {"password": "nope"}):
            bad_sync, bad_async = RespClient(port=server.port, **wrong), AsyncRespClient(port=server.port, **wrong)
            with pytest.raises(RespConnectionError, match=r"NOAUTH|WRONGPASS"):
                bad_sync.get("k")
            with pytest.raises(RespConnectionError, match=r"NOAUTH|WRONGPASS"):
                await bad_async.get("k")
            bad_sync.close()
            await bad_async.aclose()
    finally:
        sync_client.close()
        await async_client.aclose()
        admin.close()


@pytest.mark.server
async def test_unix_socket(servers: Callable[..., Server], tmp_path: Path) -> None:
    path = str(tmp_path / "redis.sock")
    servers("--unixsocket", path, "--unixsocketperm", "700")
    until(lambda: Path(path).exists())
    store = RedisStore.from_url(f"unix://{path}?db=2")
    sync_client, async_client = store._sync_side().client, store._async_side().client
    try:
        assert sync_client.ping() and await async_client.ping()
        assert sync_client.get("k") is None and await async_client.get("k") is None
    finally:
        store.close()
        await store.aclose()


def self_signed(directory: Path) -> None:
    """``cert.pem`` and ``key.pem`` for localhost in ``directory`` (the certificate is its own CA)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        _missing("openssl is not installed")
    command = [str(openssl), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"]
    command += [
        "-addext",
        "subjectAltName=DNS:localhost",
        "-keyout",
        str(directory / "key.pem"),
        "-out",
        str(directory / "cert.pem"),
    ]
    subprocess.run(command, check=True, capture_output=True, timeout=30)  # noqa: S603


@pytest.mark.server
async def test_tls(servers: Callable[..., Server], tmp_path: Path) -> None:
    self_signed(tmp_path)
    server = servers(tls=tmp_path)
    verified = RedisStore.from_url(f"rediss://localhost:{server.port}/0?ssl_ca_certs={tmp_path / 'cert.pem'}")
    unverified = RedisStore.from_url(f"rediss://localhost:{server.port}/0")
    try:
        assert verified._sync_side().client.ping()
        assert await verified._async_side().client.ping()
        with pytest.raises(RespConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            unverified._sync_side().client.ping()
        with pytest.raises(RespConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            await unverified._async_side().client.ping()
    finally:
        for store in (verified, unverified):
            store.close()
            await store.aclose()


# -- sync: one connection per thread -------------------------------------------------------------


@pytest.mark.server
def test_sync_connections_are_per_thread_and_close_closes_them_all(shared: tuple[redis.Redis, str]) -> None:
    admin, prefix = shared
    name = f"resp-{uuid.uuid4().hex[:12]}"
    client = RespClient(client_name=name)
    admin.set(f"{prefix}k", "v")
    barrier = threading.Barrier(8, timeout=10)
    results: list[list[Any]] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            replies = [client.get(f"{prefix}k") for _ in range(20)]
            barrier.wait()  # all eight threads hold their connection at once
            results.append(replies)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert not errors and results == [[b"v"] * 20] * 8
    assert connections(admin, name) == 8
    client.close()
    until(lambda: connections(admin, name) == 0)
    assert client.get(f"{prefix}k") == b"v"  # usable again: a new connection
    assert connections(admin, name) == 1
    client.close()

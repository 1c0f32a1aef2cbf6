from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from weakref import WeakKeyDictionary

import redis

from coatcheck.stores.redis import RedisStore
from coatcheck.stores.redis._resp import RespClient
from coatcheck.testing import FakeClock
from tests.backends import ServerMissing, server_url, unreachable

URL = server_url("redis", "redis://127.0.0.1:6379/0")


def with_prefix(url: str) -> str:
    """``url`` plus a unique ``key_prefix``, so each test sees only its own keys."""
    return f"{url}{'&' if urlsplit(url).query else '?'}key_prefix=coatcheck-test:{uuid.uuid4().hex}:"


def ping(url: str) -> None:
    """Raise ServerMissing unless the server answers within half a second."""
    parts = urlsplit(url)
    client = redis.Redis.from_url(parts._replace(query="").geturl(), socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise ServerMissing(f"{parts.hostname}:{parts.port}: {exc}") from exc
    finally:
        client.close()


def require(url: str = URL) -> None:
    """Skip the test unless the Redis server at ``url`` answers (fail it under COATCHECK_REQUIRE_SERVERS=1)."""
    try:
        ping(url)
    except ServerMissing as exc:
        unreachable("redis", exc)


_ADMINS: WeakKeyDictionary[RedisStore, redis.Redis] = WeakKeyDictionary()


def admin(store: RedisStore) -> Any:
    """A redis-py client on the store's server, for looking behind its back: the store's own
    when it runs on redis-py (the cluster), else one on the lean client's server and database."""
    client = store._sync_side().client
    if not isinstance(client, RespClient):
        return client
    if store not in _ADMINS:
        _ADMINS[store] = redis.Redis(host=client.host, port=client.port, unix_socket_path=client.path, db=client.db)
    return _ADMINS[store]


def purge(store: RedisStore) -> None:
    """Delete every key under the store's prefix (SCAN covers every cluster primary)."""
    client = admin(store)
    keys = list(client.scan_iter(match=f"{store.key_prefix}*", count=500))
    for key in keys:
        client.delete(key)


async def open_store(clock: FakeClock, tmp_path: Path) -> RedisStore:
    ping(URL)
    return RedisStore.from_url(with_prefix(URL), clock=clock)


async def close_store(store: RedisStore) -> None:
    try:
        purge(store)
    finally:
        own = _ADMINS.pop(store, None)
        if own is not None:
            own.close()
        store.close()
        await store.aclose()


async def dump(store: RedisStore) -> bytes:
    client = admin(store)
    parts: list[bytes] = []
    for key in client.scan_iter(match=f"{store.key_prefix}*", count=500):
        parts.append(key)
        kind = client.type(key)
        if kind == b"hash":
            parts.extend(f + v for f, v in client.hgetall(key).items())
        elif kind == b"zset":
            parts.extend(client.zrange(key, 0, -1))
        elif kind == b"string":
            parts.append(client.get(key))
    return b"".join(parts)

from __future__ import annotations

import uuid
from pathlib import Path
from urllib.parse import urlsplit

import redis

from coatcheck.stores.redis import RedisStore
from coatcheck.testing import FakeClock
from tests.backends import ServerMissing, server_url

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


def purge(store: RedisStore) -> None:
    """Delete every key under the store's prefix (SCAN covers every cluster primary)."""
    client = store._sync_side().client
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
        store.close()
        await store.aclose()

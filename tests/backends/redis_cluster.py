from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import redis

from coatcheck.stores.redis import RedisClusterStore
from coatcheck.testing import FakeClock
from tests.backends import ServerMissing, server_url
from tests.backends.redis import dump, purge, with_prefix

URL = server_url("redis-cluster", "redis+cluster://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003")


def ping(url: str) -> None:
    """Raise ServerMissing unless some node answers quickly and reports a healthy cluster."""
    errors = []
    for node in urlsplit(url).netloc.rpartition("@")[2].split(","):
        host, _, port = node.rpartition(":")
        client = redis.Redis(host=host, port=int(port), socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            if client.cluster("info").get("cluster_state") == "ok":
                return
            errors.append(f"{node}: cluster_state not ok")
        except redis.RedisError as exc:
            errors.append(f"{node}: {exc}")
        finally:
            client.close()
    raise ServerMissing("; ".join(errors))


async def open_store(clock: FakeClock, tmp_path: Path) -> RedisClusterStore:
    ping(URL)
    return RedisClusterStore.from_url(with_prefix(URL), clock=clock)


__all__ = ["close_store", "dump", "open_store"]


async def close_store(store: RedisClusterStore) -> None:
    try:
        purge(store)
    finally:
        store.close()
        await store.aclose()

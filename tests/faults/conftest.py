"""The fault suite: real servers behind a TCP proxy that refuses, stalls and cuts; SQLite
writers killed mid-write; floods. ``bash scripts/faults`` runs the full variant (more rounds,
100,000-request floods); the test run in CI runs the short one.

``COATCHECK_FAULTS=full`` selects the full variant.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
import redis

from coatcheck.stores.mysql import MySQLStore
from coatcheck.stores.postgres import PostgresStore
from coatcheck.stores.redis import RedisStore
from coatcheck.testing import FakeClock
from tests.backends import ServerMissing, unreachable
from tests.backends import mysql as mysql_backend
from tests.backends import postgres as pg_backend
from tests.backends import redis as redis_backend

FULL = os.environ.get("COATCHECK_FAULTS") == "full"


def scaled(short: int, full: int) -> int:
    """``full`` in the full variant (scripts/faults), ``short`` in the test run."""
    return full if FULL else short


@dataclass(frozen=True)
class Server:
    """A store's server, and how to build a store that reaches it through a proxy with short
    timeouts (``bound``: the longest a request may take while the server misbehaves)."""

    name: str
    url: str
    store_class: Any
    options: Callable[[], str]  # the store URL's query: a fresh namespace and short timeouts
    bound: float

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or {"redis": 6379, "postgres": 5432, "mysql": 3306}[self.name]

    def build(self, port: int, clock: FakeClock) -> Any:
        """A store on this server through a proxy listening on 127.0.0.1:``port``."""
        parts = urlsplit(self.url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo + '@' if userinfo else ''}127.0.0.1:{port}"
        return self.store_class.from_url(parts._replace(netloc=netloc, query=self.options()).geturl(), clock=clock)

    def check(self) -> None:
        """Raise unless the real server answers."""
        if self.name == "redis":
            redis_backend.ping(redis_backend.URL)
        elif self.name == "postgres":
            psycopg.connect(pg_backend.URL, connect_timeout=2).close()
        else:
            mysql_backend.admin().close()


def _table() -> str:
    return f"table=cc_{uuid.uuid4().hex[:16]}&connect_timeout=1&statement_timeout=1&pool_timeout=1"


SERVERS = {
    "redis": Server(
        "redis",
        redis_backend.URL,
        RedisStore,
        lambda: f"socket_timeout=0.5&socket_connect_timeout=0.5&key_prefix=cc-fault:{uuid.uuid4().hex}:",
        bound=2.0,
    ),
    "postgres": Server("postgres", pg_backend.URL, PostgresStore, _table, bound=4.5),  # connect_timeout rounds up to 2 s
    "mysql": Server("mysql", mysql_backend.URL, MySQLStore, _table, bound=2.5),
}


@pytest.fixture(params=[pytest.param(name, marks=pytest.mark.server) for name in SERVERS])
def server(request: pytest.FixtureRequest) -> Server:
    chosen = SERVERS[request.param]
    try:
        chosen.check()
    except (ServerMissing, Exception) as exc:
        unreachable(chosen.name, exc)
    return chosen


@pytest.fixture
async def cleanup() -> AsyncIterator[list[Any]]:
    """Stores to empty and close after the test, through the real servers (not the proxy)."""
    stores: list[Any] = []
    yield stores
    for store in stores:
        store.close()
        await store.aclose()
        if isinstance(store, RedisStore):
            direct = redis.Redis.from_url(redis_backend.URL)
            try:
                for key in direct.scan_iter(match=f"{store.key_prefix}*", count=500):
                    direct.delete(key)
            finally:
                direct.close()
        elif isinstance(store, PostgresStore):
            async with await pg_backend.admin() as pg:
                await pg.execute(f'DROP TABLE IF EXISTS "{store.table}"')
        else:
            with mysql_backend.admin() as my, my.cursor() as cur:
                cur.execute(f"DROP TABLE IF EXISTS `{store.table}`")

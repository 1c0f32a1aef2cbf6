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

import psycopg
import pytest
import redis

from coatcheck.stores.mysql import MySQLStore
from coatcheck.stores.postgres import PostgresStore
from coatcheck.stores.redis import RedisStore
from coatcheck.testing import FakeClock
from tests.backends import ServerMissing, require_servers
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
    host: str
    port: int
    bound: float
    build: Callable[[int, FakeClock], Any]

    def check(self) -> None:
        """Raise ServerMissing unless the real server answers."""
        if self.name == "redis":
            redis_backend.ping(redis_backend.URL)
        elif self.name == "postgres":
            psycopg.connect(pg_backend.URL, connect_timeout=2).close()
        else:
            mysql_backend.admin().close()


def _via(url: str, port: int, query: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo + '@' if userinfo else ''}127.0.0.1:{port}"
    return parts._replace(netloc=netloc, query=query).geturl()


_SQL_FAST = "connect_timeout=1&statement_timeout=1&pool_timeout=1"  # PostgreSQL rounds connect_timeout up to 2 s

SERVERS = {
    "redis": Server(
        "redis",
        "127.0.0.1",
        6379,
        bound=2.0,
        build=lambda port, clock: RedisStore.from_url(
            _via(
                redis_backend.URL, port, f"socket_timeout=0.5&socket_connect_timeout=0.5&key_prefix=cc-fault:{uuid.uuid4().hex}:"
            ),
            clock=clock,
        ),
    ),
    "postgres": Server(
        "postgres",
        "127.0.0.1",
        5432,
        bound=4.5,
        build=lambda port, clock: PostgresStore.from_url(
            _via(pg_backend.URL, port, f"table=cc_{uuid.uuid4().hex[:16]}&{_SQL_FAST}"), clock=clock
        ),
    ),
    "mysql": Server(
        "mysql",
        "127.0.0.1",
        3306,
        bound=2.5,
        build=lambda port, clock: MySQLStore.from_url(
            _via(mysql_backend.URL, port, f"table=cc_{uuid.uuid4().hex[:16]}&{_SQL_FAST}"), clock=clock
        ),
    ),
}


@pytest.fixture(params=[pytest.param(name, marks=pytest.mark.server) for name in SERVERS])
def server(request: pytest.FixtureRequest) -> Server:
    chosen = SERVERS[request.param]
    try:
        chosen.check()
    except (ServerMissing, Exception) as exc:
        if require_servers():
            pytest.fail(f"{chosen.name} server unreachable and COATCHECK_REQUIRE_SERVERS=1: {exc}")
        pytest.skip(f"{chosen.name} server unreachable: {exc}")
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

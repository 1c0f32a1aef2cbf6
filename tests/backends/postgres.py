"""PostgreSQL backend for the store matrix: one fresh table per test, dropped afterwards."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg

from coatcheck.stores.postgres import PostgresStore
from coatcheck.testing import FakeClock
from tests.backends import ServerMissing, server_url

URL = server_url("postgres", "postgresql://postgres@127.0.0.1:5432/coatcheck_test")


def with_query(url: str, query: str) -> str:
    """``url`` with ``query`` (``a=1&b=2``) appended to its query string."""
    return f"{url}{'&' if '?' in url else '?'}{query}"


async def admin() -> psycopg.AsyncConnection[tuple[object, ...]]:
    """A direct autocommit connection to the test database; ServerMissing if it does not answer."""
    try:
        return await psycopg.AsyncConnection.connect(URL, autocommit=True, connect_timeout=2)
    except psycopg.OperationalError as exc:
        raise ServerMissing(str(exc)) from exc


async def open_store(clock: FakeClock, tmp_path: Path) -> PostgresStore:
    await (await admin()).close()
    store = PostgresStore.from_url(with_query(URL, f"table=cc_{uuid.uuid4().hex[:16]}"), clock=clock)
    await store.amigrate()
    return store


async def close_store(store: PostgresStore) -> None:
    store.close()
    await store.aclose()
    async with await admin() as conn:
        await conn.execute(f'DROP TABLE IF EXISTS "{store.table}"')


async def dump(store: PostgresStore) -> bytes:
    async with await admin() as conn:
        rows = await (await conn.execute(f'SELECT * FROM "{store.table}"')).fetchall()  # noqa: S608
    return b"".join(value if isinstance(value, bytes) else str(value).encode() for row in rows for value in row)

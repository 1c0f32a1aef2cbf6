"""MySQL/MariaDB backend for the store matrix: one fresh table per test, dropped afterwards."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pymysql

from coatcheck.stores.mysql import MySQLStore
from coatcheck.testing import FakeClock
from tests.backends import ServerMissing, server_url

URL = server_url("mysql", "mysql://root@127.0.0.1:3306/coatcheck_test")


def with_query(url: str, query: str) -> str:
    """``url`` with ``query`` (``a=1&b=2``) appended to its query string."""
    return f"{url}{'&' if '?' in url else '?'}{query}"


def admin() -> pymysql.connections.Connection[Any]:
    """A direct autocommit PyMySQL connection to the test database; ServerMissing if it does not answer.

    Synchronous on purpose: aiomysql turns server notes (``DROP TABLE IF EXISTS``) into warnings."""
    parts = urlsplit(URL)
    try:
        return pymysql.connect(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 3306,
            user=unquote(parts.username or "root"),
            password=unquote(parts.password or ""),
            database=parts.path.lstrip("/"),
            autocommit=True,
            connect_timeout=2,
            read_timeout=10,
            write_timeout=10,
        )
    except pymysql.err.OperationalError as exc:
        raise ServerMissing(str(exc)) from exc


async def open_store(clock: FakeClock, tmp_path: Path) -> MySQLStore:
    admin().close()
    store = MySQLStore.from_url(with_query(URL, f"table=cc_{uuid.uuid4().hex[:16]}"), clock=clock)
    await store.amigrate()
    return store


async def close_store(store: MySQLStore) -> None:
    store.close()
    await store.aclose()
    with admin() as conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS `{store.table}`")


async def dump(store: MySQLStore) -> bytes:
    with admin() as conn, conn.cursor() as cur:
        cur.execute(f"SELECT * FROM `{store.table}`")  # noqa: S608 - the store validated the name
        rows = cur.fetchall()
    return b"".join(value if isinstance(value, bytes) else str(value).encode() for row in rows for value in row)

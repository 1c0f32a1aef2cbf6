"""The coatcheck command as a process on 100,000 sessions, on SQLite, PostgreSQL and Redis:
``stats`` counts them, ``sessions --all`` pages through them, ``purge`` deletes the expired ones
showing its running count, ``revoke`` ends one. The sessions are written straight into the
store's table or keys (each a valid record, as the store itself writes them), in bulk."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
import redis

from coatcheck import _codec
from coatcheck._ids import store_key
from coatcheck.stores.postgres import PostgresStore
from coatcheck.stores.sqlite import SQLiteStore
from tests.backends import unreachable
from tests.backends.postgres import URL as POSTGRES_URL
from tests.backends.postgres import with_query
from tests.backends.redis import URL as REDIS_URL

LIVE, EXPIRED, USERS = 100_000, 5_000, 1_000
REDIS_DB = 12  # a database of its own: no other test's keys in its SCAN
Row = tuple[str, bytes, float, int, str]


def _rows(count: int, *, expired: bool, now: float) -> Iterator[Row]:
    """``count`` records as the store holds them: (key, data, expires_at, version, user)."""
    tag = "old" if expired else "live"
    for i in range(count):
        data = _codec.encode(now - 100, {"n": i, "pad": "x" * (i % 200)})
        yield store_key(f"{tag}{i}"), data, now - 60 if expired else now + 3600, 1, f"user{i % USERS}"


@contextlib.contextmanager
def _sqlite(tmp_path: Path) -> Iterator[str]:
    path = tmp_path / "scale.db"
    SQLiteStore(path).migrate()
    now = time.time()
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        insert = "INSERT INTO coatcheck_sessions (key, data, expires_at, version, user_id) VALUES (?, ?, ?, ?, ?)"
        conn.executemany(insert, _rows(LIVE, expired=False, now=now))
        conn.executemany(insert, _rows(EXPIRED, expired=True, now=now))
    yield f"sqlite:///{path}"


@contextlib.contextmanager
def _postgres(tmp_path: Path) -> Iterator[str]:
    table = f"cli_scale_{uuid.uuid4().hex[:12]}"
    url = with_query(POSTGRES_URL, f"table={table}")
    try:
        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=2)
    except psycopg.OperationalError as exc:
        unreachable("postgres", exc)
    store = PostgresStore.from_url(url)
    try:
        store.migrate()
        store.close()
        now = time.time()
        with admin.cursor() as cur, cur.copy(f'COPY "{table}" (key, data, expires_at, version, user_id) FROM STDIN') as copy:
            for row in (*_rows(LIVE, expired=False, now=now), *_rows(EXPIRED, expired=True, now=now)):
                copy.write_row(row)
        yield url
    finally:
        admin.execute(f'DROP TABLE IF EXISTS "{table}"')
        admin.close()


@contextlib.contextmanager
def _redis(tmp_path: Path) -> Iterator[str]:
    """Live sessions only: Redis drops expired records by itself."""
    parts = urlsplit(REDIS_URL)
    client = redis.Redis(host=parts.hostname or "127.0.0.1", port=parts.port or 6379, db=REDIS_DB)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        unreachable("redis", exc)
    prefix = f"coatcheck-scale:{uuid.uuid4().hex}:"
    try:
        pipe = client.pipeline(transaction=False)
        now = time.time()
        for i, (key, data, expires_at, version, user) in enumerate(_rows(LIVE, expired=False, now=now), 1):
            name, at = f"{prefix}s:{key}", int(expires_at * 1000)
            pipe.hset(name, mapping={"d": data, "e": repr(expires_at), "v": version, "c": repr(now - 100), "u": user})
            pipe.pexpireat(name, at)
            pipe.zadd(f"{prefix}u:{user}", {key: at})
            pipe.pexpireat(f"{prefix}u:{user}", at)
            if i % 5_000 == 0:
                pipe.execute()
        pipe.execute()
        yield parts._replace(path=f"/{REDIS_DB}", query=f"key_prefix={prefix}").geturl()
    finally:
        names = list(client.scan_iter(match=f"{prefix}*", count=5_000))
        for start in range(0, len(names), 5_000):
            client.unlink(*names[start : start + 5_000])
        client.close()


def _coatcheck(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(  # noqa: S603 - our own module, run by this interpreter
        [sys.executable, "-m", "coatcheck.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **env},
    )
    assert done.returncode == 0, done.stderr
    return done


def _doc(*args: str) -> Any:
    return json.loads(_coatcheck(*args, "--json").stdout)


@pytest.mark.server
@pytest.mark.parametrize("kind", ["sqlite", "postgres", "redis"])
def test_the_command_on_100k_sessions(kind: str, tmp_path: Path) -> None:
    opened = {"sqlite": _sqlite, "postgres": _postgres, "redis": _redis}[kind]
    expired = 0 if kind == "redis" else EXPIRED
    with opened(tmp_path) as url:
        started = time.perf_counter()
        stats = _doc("stats", "--store", url)
        took = {"stats": time.perf_counter() - started}
        assert (stats["live_sessions"], stats["users"], stats["expired_not_purged"]) == (LIVE, USERS, expired)
        assert stats["other_records"] == 0 and stats["size_bytes"]["min"] < stats["size_bytes"]["max"]

        handles: set[str] = set()
        cursor: str | None = None
        pages = 0
        started = time.perf_counter()
        while True:
            page = _doc("sessions", "--all", "--limit", "40000", "--store", url, *(["--cursor", cursor] if cursor else []))
            handles |= {session["handle"] for session in page["sessions"]}
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        took["sessions --all"] = time.perf_counter() - started
        assert len(handles) == LIVE and pages == 3

        started = time.perf_counter()
        purged = _coatcheck("purge", "--store", url, FORCE_COLOR="1")  # the progress display draws every batch
        took["purge"] = time.perf_counter() - started
        if kind == "redis":
            assert purged.stdout == f"native TTL: nothing to purge in {url}\n"
        else:
            assert purged.stdout == f"deleted {EXPIRED:,} expired sessions from {url}\n"
            shown = [int(n.replace(",", "")) for n in re.findall(r"deleted ([\d,]+) expired sessions", purged.stderr)]
            assert shown == sorted(shown) and shown[-1] == EXPIRED and len(set(shown)) >= 5  # a count per batch of 1,000

        handle = max(handles)  # the last key a scan meets: revoke reads the whole store
        started = time.perf_counter()
        assert _coatcheck("revoke", handle, "--store", url).stdout == f"revoked session {handle} in {url}\n"
        took["revoke"] = time.perf_counter() - started
        after = _doc("stats", "--store", url)
        assert (after["live_sessions"], after["expired_not_purged"]) == (LIVE - 1, 0)
        print(f"{kind}: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in took.items()))

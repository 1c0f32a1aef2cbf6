"""The store matrix. Each backend module offers ``async def open_store(clock, tmp_path) -> store``
(raising ``ServerMissing`` when its server does not answer), ``async def close_store(store)``,
which removes everything the test wrote, and ``async def dump(store) -> bytes``, every key and
value the store holds, read behind its back (for checks of what is at rest). Server backends use a unique key prefix or table per
test, so runs never see each other's data."""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

if TYPE_CHECKING:
    from coatcheck.testing import FakeClock
from types import ModuleType

SERVER_BACKENDS = ["redis", "redis-cluster", "postgres", "mysql"]
ALL_BACKENDS = ["memory", "sqlite", *SERVER_BACKENDS]


class ServerMissing(Exception):
    """The backend's server did not answer."""


def require_servers() -> bool:
    """In CI a server store that cannot be reached fails the test instead of skipping it."""
    return os.environ.get("COATCHECK_REQUIRE_SERVERS") == "1"


def unreachable(name: str, exc: Exception) -> NoReturn:
    """Skip the test whose ``name`` server did not answer (``exc``), or fail it under
    COATCHECK_REQUIRE_SERVERS=1."""
    if require_servers():
        pytest.fail(f"{name} server unreachable and COATCHECK_REQUIRE_SERVERS=1: {exc}")
    pytest.skip(f"{name} server unreachable: {exc}")


def backend(name: str) -> ModuleType:
    return importlib.import_module(f"tests.backends.{name.replace('-', '_')}")


def server_url(name: str, default: str) -> str:
    """``COATCHECK_TEST_<NAME>_URL`` if set, else the default 127.0.0.1 URL."""
    return os.environ.get(f"COATCHECK_TEST_{name.upper().replace('-', '_')}_URL", default)


_BY_TYPE = {
    "MemoryStore": "memory",
    "SQLiteStore": "sqlite",
    "PostgresStore": "postgres",
    "MySQLStore": "mysql",
    "RedisStore": "redis",
    "RedisClusterStore": "redis-cluster",
}


async def dump(store: object) -> bytes:
    """Every key and value ``store`` (a store of the matrix) holds, read behind its back."""
    return await backend(_BY_TYPE[type(store).__name__]).dump(store)  # type: ignore[no-any-return]


@contextlib.asynccontextmanager
async def opened(name: str, clock: FakeClock, tmp_path: Path) -> AsyncIterator[Any]:
    """A store of the matrix by name, emptied and closed afterwards: a server that does not answer
    skips the test, or fails it under COATCHECK_REQUIRE_SERVERS=1."""
    module = backend(name)
    try:
        store = await module.open_store(clock, tmp_path)
    except ServerMissing as exc:
        unreachable(name, exc)
    try:
        yield store
    finally:
        await module.close_store(store)

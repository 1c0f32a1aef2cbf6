"""Fixtures: the store matrix (see ``tests/backends``). memory and sqlite always run; a server
store skips when its server does not answer, and fails instead when COATCHECK_REQUIRE_SERVERS=1
(as in CI). Also hypothesis's profiles: ``ci`` (the default: the same 200 examples per property
every run) and ``deep`` (HYPOTHESIS_PROFILE=deep: 5,000 fresh examples per property)."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from coatcheck import SessionManager
from coatcheck.stores.memory import MemoryStore
from coatcheck.testing import FakeClock
from tests.apps import Browser, FlakyStore
from tests.backends import ALL_BACKENDS, SERVER_BACKENDS, opened, require_servers
from tests.redis_server import Server

# Function-scoped fixtures (the codec switch) hold for every example of a property: that is intended.
_quiet = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
settings.register_profile("ci", max_examples=200, derandomize=True, deadline=None, database=None, suppress_health_check=_quiet)
settings.register_profile("deep", max_examples=5000, deadline=None, suppress_health_check=_quiet)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _param(name: str) -> Any:
    return pytest.param(name, id=name, marks=[pytest.mark.server] if name in SERVER_BACKENDS else [])


@pytest.fixture(params=[_param(name) for name in ALL_BACKENDS])
async def store(request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path) -> AsyncIterator[Any]:
    async with opened(request.param, clock, tmp_path) as each:
        yield each


@pytest.fixture
def private_redis() -> Iterator[Server]:
    """A redis-server of the test's own on a free port (killed afterwards), for faults that would
    disturb the shared one."""
    if shutil.which("redis-server") is None:
        if require_servers():
            pytest.fail("redis-server is not installed")
        pytest.skip("redis-server is not installed")
    server = Server().start()
    try:
        yield server
    finally:
        server.kill()


# -- the HTTP level: either middleware over a spied memory store ------------------------------------


@pytest.fixture(params=["asgi", "wsgi"])
def kind(request: pytest.FixtureRequest) -> str:
    """Which middleware: ``asgi`` (the Starlette app) or ``wsgi`` (the Flask app) of tests/apps.py."""
    return str(request.param)


@pytest.fixture
def spy(clock: FakeClock) -> FlakyStore:
    """An in-memory store that counts calls per method and can be switched ``down``."""
    return FlakyStore(MemoryStore(clock=clock))


@pytest.fixture
def manager(spy: FlakyStore, clock: FakeClock) -> SessionManager:
    return SessionManager(spy, clock=clock)


@pytest.fixture
async def browser(kind: str, manager: SessionManager, spy: FlakyStore) -> AsyncIterator[Browser]:
    """A cookie-keeping client over ``kind``'s middleware on the spied memory store."""
    b = Browser(kind, manager)
    spy.reset()  # the WSGI middleware's startup check is not a request's cost
    yield b
    await b.close()

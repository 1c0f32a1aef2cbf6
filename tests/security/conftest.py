"""The security checklist as a suite (docs/security.md has the table of items and tests).

Each test is named by the checklist item it proves (``test_c39_...``, ``test_r11_...``, and
``test_b16_...`` for the known advisories of section (b)), and runs through the real middlewares
(ASGI through Starlette, WSGI through Flask: the app of ``tests/apps.py``) on real stores:
``browser`` on an in-memory store wrapped in a spy that counts store calls, ``store_browser``
on every store of the matrix (memory, SQLite, PostgreSQL, MySQL, Redis, Redis Cluster).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from coatcheck import SessionManager
from coatcheck.stores.memory import MemoryStore
from coatcheck.testing import FakeClock
from tests.apps import Browser, FlakyStore


@pytest.fixture(params=["asgi", "wsgi"])
def kind(request: pytest.FixtureRequest) -> str:
    """Which middleware: ``asgi`` (Starlette app) or ``wsgi`` (Flask app)."""
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


@pytest.fixture
async def store_browser(kind: str, store: Any, clock: FakeClock) -> AsyncIterator[Browser]:
    """A cookie-keeping client over ``kind``'s middleware on each store of the matrix."""
    b = Browser(kind, SessionManager(store, clock=clock))
    yield b
    await b.close()

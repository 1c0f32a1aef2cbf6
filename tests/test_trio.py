"""Starlette and FastAPI run on anyio, so an app may run under trio: the memory and SQLite stores
work there, and a store built on asyncio drivers refuses to start with a clear error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
from starlette.testclient import TestClient

from coatcheck import NotSupportedError, SessionManager
from coatcheck.asgi import SessionMiddleware
from coatcheck.stores.memory import MemoryStore
from coatcheck.stores.sqlite import SQLiteStore
from coatcheck.testing import FakeClock
from tests.apps import asgi_app


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    return MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "sessions.db")


def test_an_app_on_trio_runs_sessions_on_the_memory_and_sqlite_stores(store: Any) -> None:
    middleware = SessionMiddleware(asgi_app(), SessionManager(store), purge_interval=0.05)
    with TestClient(middleware, base_url="https://testserver", backend="trio") as client:
        assert middleware.expirer is not None and middleware.expirer.running  # a purge thread
        assert client.post("/set", params={"k": "a", "v": "1"}).status_code == 200
        assert client.get("/peek").json() == {"data": {"a": "1"}, "user": None}
        first = client.cookies["sessionid"]
        assert client.post("/login", params={"user": "alice"}).status_code == 200
        assert client.cookies["sessionid"] != first
        assert client.get("/whoami").text == "alice"
        assert client.post("/logout").status_code == 200
        assert client.get("/whoami").text == "anon"
    assert not middleware.expirer.running


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "postgresql://postgres@127.0.0.1/coatcheck_test"])
def test_a_store_built_on_asyncio_refuses_to_start_under_trio(url: str) -> None:
    middleware = SessionMiddleware(asgi_app(), SessionManager(url), purge_interval=None)
    with pytest.raises(NotSupportedError, match=r"needs asyncio.*memory:// or sqlite://"):  # noqa: SIM117
        with TestClient(middleware, base_url="https://testserver", backend="trio"):
            pass


def test_concurrent_commits_under_trio_merge_and_back_off(tmp_path: Path) -> None:
    """No per-session turns under trio: compare-and-set (with its backoff pauses, on trio's
    clock) keeps every change."""
    clock = FakeClock()
    manager = SessionManager(SQLiteStore(tmp_path / "sessions.db", clock=clock), clock=clock)

    async def main() -> dict[str, Any]:
        created = manager.new_session()
        created["base"] = 0
        await manager.acommit(created)
        cookie = f"sessionid={created.id}"
        loaded = [await manager.aload(cookie) for _ in range(8)]
        for i, session in enumerate(loaded):
            session[f"k{i}"] = i
        async with trio.open_nursery() as nursery:
            for session in loaded:
                nursery.start_soon(manager.acommit, session)
        return dict(await manager.aload(cookie))

    assert trio.run(main) == {"base": 0, **{f"k{i}": i for i in range(8)}}

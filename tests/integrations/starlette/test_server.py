"""The examples as real servers: ``python -m examples.<app> --port 0`` (uvicorn on 127.0.0.1) in a
process of its own, driven by httpx over the loopback, then stopped."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import UVICORN, Server


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[[str], Server]]:
    """``start(name)``: ``python -m examples.<name> --port 0`` listening, run in ``tmp_path`` (where its SQLite
    file lands); stopped after the test if still up."""
    with contextlib.ExitStack() as servers:

        def run(name: str) -> Server:
            return servers.enter_context(Server([sys.executable, "-m", f"examples.{name}", "--port", "0"], UVICORN, cwd=tmp_path))

        yield run


def test_the_fastapi_example_under_uvicorn(start: Callable[[str], Server], tmp_path: Path) -> None:
    server = start("fastapi_app")
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.get("/").status_code == 401
        response = client.post("/login", json={"name": "alice"})
        assert response.json() == {"user": "alice"}
        assert "Secure" not in response.headers["set-cookie"]  # secure="auto" over plain http
        assert client.get("/").json() == {"message": "Welcome, alice", "visits": 1}
        assert client.get("/").json() == {"message": "Welcome, alice", "visits": 2}
        assert client.post("/logout").json() == {"user": None}
        assert client.get("/").status_code == 401
    assert "Application shutdown complete." in server.stop()  # the lifespan's end: the store closed
    assert (tmp_path / "sessions.db").exists()


def test_the_starlette_example_under_uvicorn(start: Callable[[str], Server]) -> None:
    server = start("starlette_app")
    with httpx.Client(base_url=server.url, timeout=10, follow_redirects=True) as client:
        assert 'name="username"' in client.get("/").text
        assert "Welcome, alice" in client.post("/login", data={"username": "alice"}).text
        assert 'name="username"' in client.post("/logout").text
    assert "Application shutdown complete." in server.stop()

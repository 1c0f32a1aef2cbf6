"""Fixtures: each test runs on the Starlette app and on the FastAPI app of ``apps.py``, through
Starlette's ``TestClient`` (FastAPI's is the same class), lifespan included.

``store`` narrows the project's store matrix to the stores whose async side may move between
event loops: the TestClient runs the app on an event loop of its own, while the fixture opens and
empties the store on the test's. The MySQL store's async pool and the Redis Cluster client's
connections stay with the loop that first used them (the project's store suites cover both).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from starlette.testclient import TestClient

from coatcheck import SessionManager
from coatcheck.testing import FakeClock
from tests.backends import SERVER_BACKENDS, opened
from tests.integrations.starlette.apps import FRAMEWORKS, Gate, build

BASE = "https://testserver"  # the default cookie is Secure: browsers send it back over https only
STORES = ("memory", "sqlite", "redis", "postgres")


@pytest.fixture(
    params=[pytest.param(name, id=name, marks=[pytest.mark.server] if name in SERVER_BACKENDS else []) for name in STORES]
)
async def store(request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path) -> AsyncIterator[Any]:
    async with opened(request.param, clock, tmp_path) as each:
        yield each


@pytest.fixture(params=FRAMEWORKS)
def framework(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def gate() -> Gate:
    return Gate()


Serve = Callable[..., TestClient]


@pytest.fixture
def serve(framework: str, gate: Gate) -> Iterator[Serve]:
    """``serve(manager, **middleware_options)``: a started TestClient over ``framework``'s app
    (its lifespan ends after the test)."""
    with contextlib.ExitStack() as started:

        def start(manager: SessionManager, **options: Any) -> TestClient:
            app = build(framework, gate, manager=manager, **options)
            client = TestClient(app, base_url=BASE)
            started.enter_context(client)
            return client

        yield start


class Browser:
    """One browser's session cookie over a shared client: it sends its own ``Cookie`` header and
    keeps what ``Set-Cookie`` gives it (the client's own cookie jar stays empty)."""

    def __init__(self, client: TestClient, session_id: str | None = None) -> None:
        self.client = client
        self.session_id = session_id

    def request(self, method: str, url: str, **kwargs: Any) -> httpx2.Response:
        headers = {"cookie": f"sessionid={self.session_id}"} if self.session_id else {}
        response = self.client.request(method, url, headers=headers, **kwargs)
        self.client.cookies.clear()
        for header in response.headers.get_list("set-cookie"):
            name, value = header.split(";", 1)[0].split("=", 1)
            if name == "sessionid":
                self.session_id = value or None
        return response

    def get(self, url: str, **kwargs: Any) -> httpx2.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx2.Response:
        return self.request("POST", url, **kwargs)

    def peek(self) -> Any:
        response = self.get("/peek")
        assert response.status_code == 200, response.text
        return response.json()

"""Django for this directory only: the test project's settings, its in-memory database, and the
fixtures every test here uses (a store of the matrix put in place with ``override_settings``, a
cookie-keeping client of either kind)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import django
import pytest

os.environ["DJANGO_SETTINGS_MODULE"] = "tests.integrations.django.settings"
django.setup()

from django.contrib.auth.models import User  # noqa: E402  (needs the app registry)
from django.db import connection  # noqa: E402
from django.http import HttpResponse, HttpResponseBase  # noqa: E402
from django.test import AsyncClient, Client, override_settings  # noqa: E402
from django.test.utils import setup_test_environment, teardown_test_environment  # noqa: E402

from coatcheck.testing import FakeClock  # noqa: E402
from tests.backends import opened  # noqa: E402

STORES = ["memory", "sqlite", "redis"]
KINDS = ["sync", "async"]


@pytest.fixture(scope="session", autouse=True)
def django_database() -> Iterator[None]:
    """Django's test environment and the auth tables, once for this directory."""
    setup_test_environment()
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        yield
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
        teardown_test_environment()


@dataclass
class Project:
    """The store and clock the test project runs on, and its ``COATCHECK`` setting."""

    store: Any
    clock: FakeClock
    options: dict[str, Any] = field(default_factory=dict)

    def coatcheck(self, **options: Any) -> dict[str, Any]:
        """The ``COATCHECK`` setting: this store and clock, plus ``options``."""
        return {"STORE": self.store, "CLOCK": self.clock, **options}

    def settings(self, **options: Any) -> override_settings:
        return override_settings(COATCHECK=self.coatcheck(**options))


def _param(name: str) -> Any:
    return pytest.param(name, id=name, marks=[pytest.mark.server] if name == "redis" else [])


@pytest.fixture(params=[_param(name) for name in STORES])
async def project(request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path) -> AsyncIterator[Project]:
    """The test project on a store of the matrix (emptied and closed afterwards)."""
    async with opened(request.param, clock, tmp_path) as store:
        each = Project(store, clock)
        with each.settings():
            yield each


class Browser:
    """A cookie-keeping Django test client: ``Client`` (WSGI handler, sync views under /s/, run
    in a worker thread as a WSGI server would) or ``AsyncClient`` (ASGI handler, async views
    under /a/), behind one awaitable API."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.prefix = "/s/" if kind == "sync" else "/a/"
        self.client: Client | AsyncClient = Client() if kind == "sync" else AsyncClient()

    async def request(self, method: str, name: str, data: dict[str, str] | None = None) -> HttpResponse:
        """The response (always an ``HttpResponse`` in this project: no streaming views)."""
        path = self.prefix + name
        client = self.client
        if isinstance(client, AsyncClient):
            response: HttpResponseBase = await (client.get(path, data) if method == "GET" else client.post(path, data))
        else:
            send = client.get if method == "GET" else client.post
            response = await anyio.to_thread.run_sync(lambda: send(path, data))
        assert isinstance(response, HttpResponse)
        return response

    async def get(self, name: str, **query: str) -> HttpResponse:
        return await self.request("GET", name, query)

    async def post(self, name: str, **form: str) -> HttpResponse:
        return await self.request("POST", name, form)

    @property
    def cookie(self) -> str | None:
        """The session cookie this browser holds (None once cleared)."""
        morsel = self.client.cookies.get("sessionid")
        return morsel.value if morsel is not None and morsel.value else None

    def holding(self, cookie: str | None) -> Browser:
        """A second browser (same kind) holding ``cookie``."""
        other = Browser(self.kind)
        if cookie is not None:
            other.client.cookies["sessionid"] = cookie
        return other


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def browser(kind: str, project: Project) -> Browser:
    return Browser(kind)


@pytest.fixture
def user(project: Project) -> Iterator[User]:
    """A user named after the test's store (password "secret"), deleted afterwards."""
    created = User.objects.create_user(username=f"alice-{id(project)}", password="secret")
    try:
        yield created
    finally:
        created.delete()

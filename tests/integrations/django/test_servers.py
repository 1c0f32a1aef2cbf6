"""Smoke tests: the test project under real servers, gunicorn (Django's WSGI handler) and uvicorn
(Django's ASGI handler), driven by httpx over loopback; each server is stopped afterwards."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from coatcheck.stores.redis import RedisStore
from tests.backends import redis as redis_backend
from tests.servers import GUNICORN, UVICORN, Server


def _visit(url: str) -> None:
    """Count, log out, and replay the old cookie, over real HTTP."""
    with httpx.Client(base_url=url, timeout=10) as browser:
        first = browser.get("/s/count")
        assert first.text == "1"
        cookie = first.cookies["sessionid"]
        assert "HttpOnly" in first.headers["set-cookie"]
        assert first.headers["cache-control"] == "no-store"
        assert [browser.get(path).text for path in ("/s/count", "/a/count", "/a/read")] == ["2", "3", "3"]
        bye = browser.post("/s/logout")
        assert bye.text == "bye"
        assert 'sessionid=""' in bye.headers["set-cookie"]
    with httpx.Client(base_url=url, timeout=10, cookies={"sessionid": cookie}) as replay:
        assert replay.get("/s/read").text == "None"


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[Server]:
    command = [sys.executable, "-m", "gunicorn", "--bind", "127.0.0.1:0", "--workers", "2", "--no-control-socket"]
    env = {"COATCHECK_DJANGO_STORE": f"sqlite:///{tmp_path}/sessions.db", "COATCHECK_DJANGO_PLAIN_HTTP": "1"}
    with Server([*command, "tests.integrations.django.wsgi:application"], GUNICORN, env) as server:
        yield server


@pytest.fixture
def uvicorn() -> Iterator[Server]:
    redis_backend.require()
    url = redis_backend.with_prefix(redis_backend.URL)
    command = [sys.executable, "-m", "uvicorn", "--port", "0", "--lifespan", "off"]
    env = {"COATCHECK_DJANGO_STORE": url, "COATCHECK_DJANGO_PLAIN_HTTP": "1"}
    try:
        with Server([*command, "tests.integrations.django.asgi:application"], UVICORN, env) as server:
            yield server
    finally:
        store = RedisStore.from_url(url)  # the server's keys, under its own prefix, are removed
        redis_backend.purge(store)
        store.close()


def test_django_under_gunicorn_on_sqlite(gunicorn: Server) -> None:
    _visit(gunicorn.url)  # two worker processes share the SQLite store


@pytest.mark.server
def test_django_under_uvicorn_on_redis(uvicorn: Server) -> None:
    _visit(uvicorn.url)

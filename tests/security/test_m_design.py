"""Checklist section M: lessons of the original Go design (C-55, C-56)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from coatcheck import ConfigurationError, CookieConfig, SessionConfig, SessionManager, StoreUnavailableError
from coatcheck.asgi import SessionMiddleware as ASGIMiddleware
from coatcheck.stores.memory import MemoryStore
from coatcheck.wsgi import SessionMiddleware as WSGIMiddleware
from tests.apps import Browser, asgi_app, cookie_value, set_cookies, wsgi_app
from tests.security.conftest import serve_actions

UNREACHABLE = "redis://127.0.0.1:1/0"  # nothing listens on port 1: connection refused at once

BAD_CONFIGURATIONS: dict[str, Callable[[Path], object]] = {
    "unknown store scheme": lambda tmp: SessionManager("nosuch://host/db"),
    "store that is not a URL": lambda tmp: SessionManager("sessions.db"),
    "store object without the protocol": lambda tmp: SessionManager(object()),  # type: ignore[arg-type]
    "config of the wrong type": lambda tmp: SessionManager("memory://", config={"idle_timeout": 60}),  # type: ignore[arg-type]
    "cookie name with ';'": lambda tmp: CookieConfig(name="a;b"),
    "empty cookie name": lambda tmp: CookieConfig(name=""),
    "zero idle timeout": lambda tmp: SessionConfig(idle_timeout=0),
    "negative idle timeout": lambda tmp: SessionConfig(idle_timeout=timedelta(seconds=-1)),
    "zero absolute timeout": lambda tmp: SessionConfig(absolute_timeout=0),
    "NaN timeout": lambda tmp: SessionConfig(idle_timeout=float("nan")),
    "idle longer than absolute": lambda tmp: SessionConfig(idle_timeout=7200, absolute_timeout=3600),
    "touch interval not under idle": lambda tmp: SessionConfig(idle_timeout=60, touch_interval=60),
    "tiny max_size": lambda tmp: SessionConfig(max_size=10),
    "no commit attempts": lambda tmp: SessionConfig(max_commit_attempts=0),
    "__Host- with a domain": lambda tmp: CookieConfig(name="__Host-id", domain="example.com"),
    "__Host- without Secure": lambda tmp: CookieConfig(name="__Host-id", secure=False),
    "__Host- off the root path": lambda tmp: CookieConfig(name="__Host-id", path="/app"),
    "SameSite=None without Secure": lambda tmp: CookieConfig(same_site="none", secure="auto"),
    "memory store without room": lambda tmp: MemoryStore(max_entries=0),
    "memory URL with a bad bound": lambda tmp: SessionManager("memory://?max_entries=lots"),
    "SQLite file in a missing directory": lambda tmp: SessionManager(f"sqlite:///{tmp}/missing/sessions.db"),
}


@pytest.mark.parametrize("build", list(BAD_CONFIGURATIONS.values()), ids=list(BAD_CONFIGURATIONS))
def test_c55_misconfiguration_fails_at_construction(build: Callable[[Path], object], tmp_path: Path) -> None:
    """C-55 (the Go design's nil manager): each bad option raises ConfigurationError from the
    constructor that got it, never later from a request."""
    with pytest.raises(ConfigurationError):
        build(tmp_path)


def test_c55_an_unreachable_store_fails_startup_of_both_middlewares() -> None:
    """C-55: a store that cannot be reached stops the app from starting (WSGI when the
    middleware is built, ASGI at lifespan startup) instead of failing every request."""
    with pytest.raises(StoreUnavailableError):
        WSGIMiddleware(wsgi_app().wsgi_app, SessionManager(UNREACHABLE))
    app = ASGIMiddleware(asgi_app(), SessionManager(UNREACHABLE))
    with pytest.raises(StoreUnavailableError), TestClient(app):
        pass


@pytest.mark.anyio
async def test_c56_the_creating_request_reads_its_own_writes(browser: Browser) -> None:
    """C-56 (the Go design read the cookie back from the request): on a first visit the app
    writes, reads the value back and gets the session ID that the Set-Cookie carries."""
    serve_actions(browser)
    response = await browser.get("/?k=a&v=1&id=1")
    body = response.json()
    assert body["data"] == {"a": "1"}
    [header] = set_cookies(response)
    assert cookie_value(header) == body["id"]
    assert (await browser.get("/")).json()["data"] == {"a": "1"}

"""Adding coatcheck to a Starlette or FastAPI app: the middleware's options, the lifespan around
the app's own, the errors that say what to fix, WebSockets, imports and typing."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from starlette.applications import Starlette
from starlette.middleware.sessions import SessionMiddleware as StarletteSessionMiddleware
from starlette.testclient import TestClient

from coatcheck import (
    ConfigurationError,
    CookieConfig,
    MiddlewareNotInstalledError,
    SessionManager,
    StoreUnavailableError,
)
from coatcheck.starlette import SessionMiddleware
from coatcheck.stores.memory import MemoryStore
from coatcheck.testing import FakeClock, SpyStore
from tests.apps import FlakyStore
from tests.backends import opened
from tests.backends import redis as redis_backend
from tests.integrations.starlette.apps import Gate, Lifespan, build
from tests.integrations.starlette.conftest import BASE, Browser, Serve


def session_middleware(app: Any) -> SessionMiddleware:
    """The coatcheck middleware in a started app's middleware stack."""
    layer = app.middleware_stack
    while not isinstance(layer, SessionMiddleware):
        layer = layer.app
    return layer


def recording_lifespan(events: list[str], store: SpyStore) -> Lifespan:
    """An app's own lifespan: it records what the store had seen when it started and stopped,
    and hands its requests a greeting in the request state."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[dict[str, str]]:
        events.append(f"startup after {store.calls.get('load', 0)} store check")
        yield {"greeting": "hello"}
        events.append(f"shutdown before {store.calls.get('close', 0)} store close")

    return lifespan


# -- options --------------------------------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.server)])
async def store_url(request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path) -> AsyncIterator[str]:
    """A store URL as an app would write it (Redis: with a key prefix of the test's own, emptied afterwards)."""
    if request.param == "memory":
        yield "memory://"
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/sessions.db"
    else:
        async with opened("redis", clock, tmp_path) as store:
            separator = "&" if urlsplit(redis_backend.URL).query else "?"
            yield f"{redis_backend.URL}{separator}key_prefix={store.key_prefix}"


@pytest.mark.anyio
async def test_a_store_url_and_session_options_make_the_sessions(framework: str, gate: Gate, store_url: str) -> None:
    cookie = CookieConfig(name="sid", secure=False)  # plain-http development
    app = build(framework, gate, store=store_url, cookie=cookie, idle_timeout=timedelta(minutes=10))
    with TestClient(app) as client:  # http://testserver
        response = client.post("/set", params={"k": "a", "v": "1"})
        assert re.fullmatch(r"sid=[\w-]{43}; Max-Age=600; Path=/; HttpOnly; SameSite=Lax", response.headers["set-cookie"])
        assert client.get("/peek").json() == {"data": {"a": "1"}, "user": None}


def test_the_default_store_is_the_managers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    middleware = SessionMiddleware(Starlette())
    try:
        assert type(middleware.manager.store).__name__ == "SQLiteStore"
        assert Path(middleware.manager.store.path).resolve() == (tmp_path / "sessions.db").resolve()
    finally:
        middleware.manager.close()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"store": "memory://", "idle_timeout": -1}, "must be positive"),
        ({"store": "nosuch://host"}, "unknown store URL scheme 'nosuch'"),
        ({"store": "memory://", "manager": SessionManager("memory://")}, "either manager= or store="),
        ({"idle_timeout": 60, "manager": SessionManager("memory://")}, "either manager= or store="),
        ({"manager": "memory://"}, "manager must be a SessionManager, not str"),
        ({"store": SessionManager("memory://")}, "pass a SessionManager as manager=, not store="),
    ],
)
def test_a_bad_option_fails_when_the_middleware_is_built(
    framework: str, gate: Gate, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        SessionMiddleware(Starlette(), **options)
    app = build(framework, gate, **options)  # add_middleware keeps the options ...
    with pytest.raises(ConfigurationError, match=re.escape(message)), TestClient(app):  # ... the lifespan builds it
        pass


# -- the lifespan ---------------------------------------------------------------------------------


def test_the_apps_own_lifespan_runs_inside_the_sessions_one(framework: str, gate: Gate) -> None:
    events: list[str] = []
    store = SpyStore(MemoryStore())
    app = build(framework, gate, recording_lifespan(events, store), manager=SessionManager(store))
    with TestClient(app, base_url=BASE) as client:
        assert events == ["startup after 1 store check"]
        assert client.get("/state").json() == {"greeting": "hello"}
        browser = Browser(client)
        browser.post("/login", params={"user": "alice"})
        assert browser.peek() == {"data": {}, "user": "alice"}
    assert events == ["startup after 1 store check", "shutdown before 0 store close"]
    assert store.calls["close"] == 1


def test_an_unusable_store_fails_startup_before_the_apps_own(framework: str, gate: Gate) -> None:
    events: list[str] = []
    store = FlakyStore(MemoryStore())
    store.down = True
    app = build(framework, gate, recording_lifespan(events, store), manager=SessionManager(store))
    with pytest.raises(StoreUnavailableError, match="store is down"), TestClient(app, base_url=BASE):
        pass
    assert events == []


def test_the_expirer_runs_while_the_app_is_up(framework: str, gate: Gate) -> None:
    store = SpyStore(MemoryStore())
    app = build(framework, gate, manager=SessionManager(store), purge_interval=0.01)
    with TestClient(app, base_url=BASE):
        middleware = session_middleware(app)
        assert middleware.expirer is not None and middleware.expirer.running
        deadline = time.monotonic() + 10
        while store.calls.get("delete_expired", 0) < 2:  # the expirer's task, on the app's event loop
            assert time.monotonic() < deadline, "no purge within 10 s"
            time.sleep(0.005)
    assert not middleware.expirer.running


# -- errors that say what to fix, WebSockets ------------------------------------------------------


def test_without_the_middleware_the_error_says_how_to_add_it(framework: str, gate: Gate) -> None:
    fix = "app.add_middleware(coatcheck.starlette.SessionMiddleware, store=...)"
    with (
        TestClient(build(framework, gate), base_url=BASE) as client,
        pytest.raises(
            MiddlewareNotInstalledError, match=rf"no coatcheck session in this request: add the middleware with {re.escape(fix)}"
        ),
    ):
        client.get("/peek")


def test_starlettes_own_session_middleware_is_named_in_the_error(framework: str, gate: Gate) -> None:
    app = build(framework, gate)
    app.add_middleware(StarletteSessionMiddleware, secret_key="not-a-secret")
    with (
        TestClient(app, base_url=BASE) as client,
        pytest.raises(
            MiddlewareNotInstalledError,
            match=r"starlette\.middleware\.sessions\.Session, not a coatcheck session: replace the other session middleware"
            r" \(Starlette's own\?\) with app\.add_middleware\(coatcheck\.starlette\.SessionMiddleware, store=\.\.\.\)",
        ),
    ):
        client.get("/peek")


def test_a_websocket_sees_the_session(serve: Serve) -> None:
    client = serve(SessionManager(MemoryStore()))
    browser = Browser(client)
    browser.post("/login", params={"user": "alice"})
    with client.websocket_connect("/ws", headers={"cookie": f"sessionid={browser.session_id}"}) as ws:
        assert ws.receive_json() == {"data": {}, "user": "alice"}


# -- imports and typing ---------------------------------------------------------------------------


def python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)  # noqa: S603
    return result.stdout.strip()


def test_starlette_apps_never_import_fastapi() -> None:
    assert python("import sys, coatcheck.starlette; print(sorted({'fastapi', 'pydantic'} & set(sys.modules)))") == "[]"


def test_without_starlette_the_import_says_which_extra_to_install() -> None:
    code = (
        "import sys; sys.modules['starlette'] = None  # as if Starlette were not installed\n"
        "try:\n"
        "    import coatcheck.starlette\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    assert python(code).endswith("pip install 'coatcheck[starlette]'")


def test_session_dep_without_fastapi_says_which_extra_to_install() -> None:
    code = (
        "import sys; sys.modules['fastapi'] = None  # as if FastAPI were not installed\n"
        "from coatcheck.starlette import SessionMiddleware, get_session\n"
        "try:\n"
        "    from coatcheck.starlette import SessionDep\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    assert python(code).endswith("pip install 'coatcheck[fastapi]'")


USER_APP = """
from fastapi import FastAPI
from coatcheck.starlette import SessionDep, SessionMiddleware

app = FastAPI()
app.add_middleware(SessionMiddleware, store="redis://127.0.0.1:6379/0")


@app.get("/")
def home(session: SessionDep) -> dict[str, int]:
    reveal_type(session)
    session["visits"] = session.get("visits", 0) + 1
    session.login("alice")
    return {"visits": session["visits"]}


app.add_middleware(SessionMiddleware, stor="redis://127.0.0.1:6379/0")
"""


def test_a_fastapi_app_with_session_dep_passes_mypy_strict(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    (tmp_path / "user_app.py").write_text(USER_APP)
    command = [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "cache"), "user_app.py"]
    output = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=120).stdout  # noqa: S603
    assert 'Revealed type is "coatcheck.session.Session"' in output
    errors = [line for line in output.splitlines() if ": error:" in line]
    assert len(errors) == 1 and 'Unexpected keyword argument "stor"' in errors[0], output  # the options are typed too

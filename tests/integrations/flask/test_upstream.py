"""Flask's own session tests, from the installed Flask's source distribution (fetched by
``scripts/check``; see ``upstream.py``), run against ``coatcheck.flask``: their ``app`` fixture
is Flask's (``TESTING``, a ``SECRET_KEY``) with ``Sessions(app)`` installed, on the memory, SQLite
and Redis stores.

The tests that assert what only a signed-cookie session does, or a behaviour coatcheck changes
on purpose, are expected to fail (strictly: should one pass, the run fails), each with its reason.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import flask
import pytest
from flask.ctx import AppContext, RequestContext
from flask.globals import request_ctx
from flask.testing import FlaskClient

from coatcheck.flask import Sessions
from coatcheck.testing import FakeClock
from tests.backends import SERVER_BACKENDS, opened, require_servers
from tests.integrations.flask import upstream

pytestmark = pytest.mark.usefixtures("anyio_backend")  # runs the async store fixture below

APPLY = {  # Flask's test module -> its session tests that hold for any session interface
    "test_basic.py": [
        "test_session_accessed",
        "test_session_path",
        "test_session_using_application_root",
        "test_session_using_session_settings",
        "test_session_stored_last",
        "test_session_special_types",
        "test_session_vary_cookie",
        "test_flashes",
        "test_extended_flashing",
    ],
    "test_testing.py": [
        "test_redirect_session",
        "test_session_transactions",
        "test_session_transactions_keep_context",
        "test_session_transaction_needs_cookies",
    ],
    "test_templating.py": ["test_standard_context"],
}
REFRESH = (
    "it expects Set-Cookie on every response of a permanent session (SESSION_REFRESH_EACH_REQUEST); coatcheck"
    " moves the expiry, and sends the cookie again, at most once per touch interval (COATCHECK_TOUCH_INTERVAL)"
)
EXCEPTIONS: dict[str, tuple[str, tuple[type[BaseException], ...]]] = {  # test_basic.py's, with the reason
    "test_missing_session": (
        "it expects no session without SECRET_KEY, which a signed cookie needs; coatcheck signs nothing (the cookie"
        " holds a random ID) and needs no secret key",
        (pytest.fail.Exception,),
    ),
    "test_session_secret_key_fallbacks": (
        "it expects a new SECRET_KEY to make the session unreadable and SECRET_KEY_FALLBACKS to bring it back: cookie"
        " signing; coatcheck's sessions do not depend on the secret key",
        (AssertionError,),
    ),
    "test_session_expiration": (
        "it looks for an Expires attribute at now + PERMANENT_SESSION_LIFETIME (31 days); coatcheck sends Max-Age:"
        " the time left until the server-side expiry (idle and absolute timeouts), capped by that lifetime",
        (AttributeError,),
    ),
    "test_session_using_samesite_attribute": (
        "it expects no SameSite attribute for SESSION_COOKIE_SAMESITE = None (after checking that 'invalid' raises"
        " ValueError, which holds); coatcheck always sends SameSite, Lax for None (what browsers assume)",
        (AssertionError,),
    ),
    "test_session_cookie_setting": (REFRESH, (AssertionError,)),
    "test_session_refresh_vary": (REFRESH, (KeyError,)),
}
STORES = ("memory", "sqlite", "redis")
UPSTREAM = upstream.tests_dir()


def _load(name: str) -> ModuleType:
    assert UPSTREAM is not None
    spec = importlib.util.spec_from_file_location(f"flask_upstream_{Path(name).stem}", UPSTREAM / name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


if UPSTREAM is None:

    def test_flasks_own_session_tests_are_fetched() -> None:
        message = f"Flask {upstream.FLASK_VERSION}'s tests are not fetched: run python -m tests.integrations.flask.upstream"
        if require_servers():  # scripts/check fetches them first: missing there means broken
            pytest.fail(message)
        pytest.skip(message)

else:
    modules = {name: _load(name) for name in APPLY}
    for module_name, names in APPLY.items():
        for name in names:
            globals()[name] = getattr(modules[module_name], name)
    for name, (reason, raises) in EXCEPTIONS.items():
        globals()[name] = pytest.mark.xfail(reason=reason, raises=raises, strict=True)(getattr(modules["test_basic.py"], name))


# -- the fixtures of Flask's tests/conftest.py, with coatcheck installed -----------------------------


@pytest.fixture(
    params=[pytest.param(name, id=name, marks=[pytest.mark.server] if name in SERVER_BACKENDS else []) for name in STORES]
)
async def store(request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path) -> Any:
    async with opened(request.param, clock, tmp_path) as each:
        yield each


@pytest.fixture
def app(store: Any, clock: FakeClock) -> Iterator[flask.Flask]:
    app = flask.Flask("flask_test", root_path=str(UPSTREAM))
    app.config.update(TESTING=True, SECRET_KEY="test key", COATCHECK_STORE=store)
    sessions = Sessions(app, clock=clock, purge_interval=None)
    yield app
    sessions.close()


@pytest.fixture
def app_ctx(app: flask.Flask) -> Iterator[AppContext]:
    with app.app_context() as ctx:
        yield ctx


@pytest.fixture
def req_ctx(app: flask.Flask) -> Iterator[RequestContext]:
    with app.test_request_context() as ctx:
        yield ctx


@pytest.fixture
def client(app: flask.Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture(autouse=True)
def leak_detector() -> Iterator[None]:
    """As Flask's: no test leaves a request context pushed."""
    yield
    leaks = []
    while request_ctx:
        leaks.append(request_ctx._get_current_object())  # type: ignore[attr-defined]
        request_ctx.pop()
    assert leaks == []

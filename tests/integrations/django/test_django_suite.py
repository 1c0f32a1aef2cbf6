"""Django's own session tests (``tests/sessions_tests`` of the installed Django release) against
coatcheck's engine: ``SessionTestsMixin`` on the memory, SQLite and Redis stores, and
``SessionMiddlewareTests`` with ``SESSION_ENGINE = "coatcheck.django"``.

The tests come from the Django source distribution that ``scripts/check`` puts in
``.venv/django-tests/<version>/`` (nothing is fetched here). Skipped, each with its reason: the
tests that read Django's own session table, which assumes a raw session key in the store.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import tempfile
import unittest
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import pytest
from django.conf import settings
from django.test import SimpleTestCase, override_settings

from coatcheck.django import SessionStore
from coatcheck.django.middleware import SessionMiddleware as CoatcheckMiddleware
from coatcheck.stores.memory import MemoryStore
from coatcheck.stores.redis import RedisStore
from coatcheck.stores.sqlite import SQLiteStore
from tests.backends import ServerMissing, require_servers
from tests.backends import redis as redis_backend


def _suite() -> ModuleType:
    if "sessions_tests" not in settings.INSTALLED_APPS:
        message = f"Django's session tests are not in {settings.DJANGO_TESTS}: run scripts/check to fetch them"
        if require_servers():
            pytest.fail(message, pytrace=False)
        pytest.skip(message, allow_module_level=True)
    return importlib.import_module("sessions_tests.tests")


suite: Any = _suite()


class _OnStore:
    """Puts ``COATCHECK = {"STORE": <a store of this class's kind>}`` in place for the class."""

    store_kind: ClassVar[str]
    _store: ClassVar[Any]
    _settings: ClassVar[override_settings]
    _scratch: ClassVar[tempfile.TemporaryDirectory[str]]

    def __init__(self, methodName: str = "runTest") -> None:
        super().__init__(methodName)  # type: ignore[call-arg]
        method = getattr(self, methodName, None)
        if inspect.iscoroutinefunction(method):
            # Django runs each async test in an event loop of its own: the store's connections of
            # that loop are closed before it ends.
            @functools.wraps(method)
            async def closing() -> None:
                try:
                    await method()
                finally:
                    await type(self)._store.aclose()

            setattr(self, methodName, closing)

    @classmethod
    def setUpClass(cls) -> None:
        cls._scratch = tempfile.TemporaryDirectory()
        if cls.store_kind == "memory":
            cls._store = MemoryStore()
        elif cls.store_kind == "sqlite":
            cls._store = SQLiteStore(Path(cls._scratch.name) / "sessions.db")
        else:
            try:
                redis_backend.ping(redis_backend.URL)
            except ServerMissing as exc:
                if require_servers():
                    raise
                raise unittest.SkipTest(f"redis server unreachable: {exc}") from exc
            cls._store = RedisStore.from_url(redis_backend.with_prefix(redis_backend.URL))
        cls._settings = override_settings(SESSION_ENGINE="coatcheck.django", COATCHECK={"STORE": cls._store})
        cls._settings.enable()
        super().setUpClass()  # type: ignore[misc]

    @classmethod
    def tearDownClass(cls) -> None:
        super().tearDownClass()  # type: ignore[misc]
        cls._settings.disable()
        if isinstance(cls._store, RedisStore):
            redis_backend.purge(cls._store)
        cls._store.close()
        cls._scratch.cleanup()


class _Mixin(_OnStore, suite.SessionTestsMixin):  # type: ignore[misc]
    backend = SessionStore


class TestSessionStoreOnMemory(_Mixin, SimpleTestCase):
    store_kind = "memory"


class TestSessionStoreOnSQLite(_Mixin, SimpleTestCase):
    store_kind = "sqlite"


@pytest.mark.server
class TestSessionStoreOnRedis(_Mixin, SimpleTestCase):
    store_kind = "redis"


class TestSessionMiddleware(_OnStore, suite.SessionMiddlewareTests):  # type: ignore[misc]
    """Django's SessionMiddleware (not coatcheck's) with ``SESSION_ENGINE = "coatcheck.django"``."""

    store_kind = "memory"

    def test_empty_session_saved(self) -> None:
        """Django's test of the same name, but for its one line that reads Django's own session table
        by raw key (coatcheck stores only sha256(key)): here the emptied session is read back
        through the engine. If a session is emptied of data but still has a key, it is still
        updated, and its cookie and ``Vary: Cookie`` are still sent."""

        def response_set_session(request: Any) -> Any:
            request.session["foo"] = "bar"
            return suite.HttpResponse("Session test")

        request = self.request_factory.get("/")
        middleware = suite.SessionMiddleware(response_set_session)
        response = middleware(request)
        assert tuple(request.session.items()) == (("foo", "bar"),)
        assert f"Set-Cookie: sessionid={request.session.session_key}" in str(response.cookies)
        assert response.headers["Vary"] == "Cookie"
        del request.session["foo"]
        response = middleware.process_response(request, suite.HttpResponse("Session test"))
        assert dict(request.session.values()) == {}
        assert SessionStore(request.session.session_key).load() == {}  # stored, emptied, not deleted
        assert len(request.session.session_key) > 8
        assert f"Set-Cookie: sessionid={request.session.session_key}" in str(response.cookies)
        assert response.headers["Vary"] == "Cookie"


class TestCoatcheckSessionMiddleware(TestSessionMiddleware):
    """The same tests with coatcheck's middleware in the place of Django's: the same cookies."""

    @classmethod
    def setUpClass(cls) -> None:
        cls._django_middleware = suite.SessionMiddleware
        suite.SessionMiddleware = CoatcheckMiddleware
        super().setUpClass()

    @classmethod
    def tearDownClass(cls) -> None:
        super().tearDownClass()
        suite.SessionMiddleware = cls._django_middleware

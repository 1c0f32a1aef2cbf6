"""Switching a Django project to coatcheck: ``COATCHECK["LEGACY_ENGINE"]`` adopts the sessions
made by Django's own engines (``db``, ``cache`` on RedisCache with its alias and key prefix,
``cached_db``, ``signed_cookies``), with the auth user logged in, on every store and both
handlers; forged, expired and replayed keys adopt nothing."""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from importlib import import_module
from pathlib import Path
from typing import Any

import anyio
import pytest
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session as DjangoSession
from django.core.cache import caches
from django.test import override_settings

from coatcheck.django import revoke_user

from .conftest import Browser, Project

pytestmark = pytest.mark.anyio
ENGINES = ["db", "cache", "cached_db", "signed_cookies"]
REDIS_CACHE = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "sessions": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:6379/7",
        "KEY_PREFIX": "oldsite",
    },
}


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Iterator[str]:
    """The legacy engine's path, with its cache (RedisCache under the alias "sessions")."""
    with override_settings(CACHES=REDIS_CACHE, SESSION_CACHE_ALIAS="sessions"):
        caches["sessions"].clear()
        try:
            yield f"django.contrib.sessions.backends.{request.param}"
        finally:
            caches["sessions"].clear()
            DjangoSession.objects.all().delete()


async def in_thread(call: Any, *args: Any) -> Any:
    """A sync Django call (the ORM refuses to run on the event loop)."""
    return await anyio.to_thread.run_sync(lambda: call(*args))


def legacy_session(engine: str, user: User | None = None, **data: Any) -> str:
    """A session saved by Django's own engine, as the project made them before the switch."""
    store = import_module(engine).SessionStore()
    store.update(data)
    if user is not None:
        store[SESSION_KEY] = str(user.pk)
        store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.save()
    key = store.session_key
    assert isinstance(key, str)
    return key


def switched(project: Project, engine: str) -> override_settings:
    return override_settings(COATCHECK=project.coatcheck(LEGACY_ENGINE=engine))


async def test_a_returning_user_stays_logged_in(browser: Browser, project: Project, engine: str, user: User) -> None:
    key = await in_thread(lambda: legacy_session(engine, user, cart="3"))
    with switched(project, engine):
        returning = browser.holding(key)
        assert (await returning.get("whoami")).content.decode() == user.get_username()
        new_key = returning.cookie
        assert new_key is not None and new_key != key and len(new_key) == 43
        assert json.loads((await returning.get("data")).content)["cart"] == "3"
        if not engine.endswith("signed_cookies"):  # the legacy record is gone
            assert not await in_thread(import_module(engine).SessionStore().exists, key)
        # a copy of the old cookie, replayed later, adopts nothing
        project.clock.advance(60)
        assert (await browser.holding(key).get("whoami")).content.decode() == "anonymous"
        # the adopted session is bound to the user: log out everywhere reaches it
        assert await in_thread(revoke_user, user) == 1
        assert (await returning.get("whoami")).content.decode() == "anonymous"


async def test_forged_key_adopts_nothing(browser: Browser, project: Project, engine: str, user: User) -> None:
    key = await in_thread(legacy_session, engine, user)
    forged = key[:-1] + ("a" if key[-1] != "a" else "b")
    with switched(project, engine):
        stranger = browser.holding(forged)
        assert (await stranger.get("whoami")).content.decode() == "anonymous"
        assert stranger.cookie is None  # the dead key is cleared, as Django clears the cookie of an empty session


async def test_expired_db_session_adopts_nothing(browser: Browser, project: Project, user: User) -> None:
    engine = "django.contrib.sessions.backends.db"
    key = await in_thread(legacy_session, engine, user)
    await in_thread(
        lambda: DjangoSession.objects.filter(session_key=key).update(
            expire_date=DjangoSession.objects.get(session_key=key).expire_date.replace(year=2000)
        )
    )
    with switched(project, engine):
        assert (await browser.holding(key).get("whoami")).content.decode() == "anonymous"


async def test_remaining_lifetime_is_kept(browser: Browser, project: Project, user: User) -> None:
    engine = "django.contrib.sessions.backends.db"
    store = import_module(engine).SessionStore()
    store["cart"] = "1"
    store.set_expiry(600)  # ends in ten minutes, whatever coatcheck's idle timeout
    await in_thread(store.save)
    assert store.session_key is not None
    with switched(project, engine):
        returning = browser.holding(store.session_key)
        await returning.get("data")
        morsel = returning.client.cookies["sessionid"]
        assert 0 < int(morsel["max-age"]) <= 600


async def test_legacy_engine_setting_is_checked(project: Project) -> None:
    from django.core.exceptions import ImproperlyConfigured

    from coatcheck.django import get_manager

    with override_settings(COATCHECK=project.coatcheck(LEGACY_ENGINE="coatcheck.django")), pytest.raises(ImproperlyConfigured):
        get_manager()
    with override_settings(COATCHECK=project.coatcheck(LEGACY_ENGINE="no.such.engine")), pytest.raises(ImproperlyConfigured):
        get_manager()
    with override_settings(COATCHECK=project.coatcheck(LEGACY_BAD_VALUES="keep")), pytest.raises(ImproperlyConfigured):
        get_manager()


async def test_migrate_sessions_command(user: User, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``coatcheck migrate-sessions --from django-db`` reads the project's settings, counts the
    sessions left, adopts them offline (the rows deleted) with the auth user bound."""
    from coatcheck import SessionManager, legacy
    from coatcheck.cli import main

    engine = "django.contrib.sessions.backends.db"
    await in_thread(lambda: DjangoSession.objects.all().delete())  # what earlier tests left (expired rows)
    keys = [await in_thread(legacy_session, engine, user) for _ in range(2)]
    store = f"sqlite:///{tmp_path / 'sessions.db'}"
    command = ["migrate-sessions", "--from", "django-db", "--store", store]
    assert await in_thread(main, command) == 0
    assert capsys.readouterr().out.startswith("2 legacy sessions left in django-db")
    assert await in_thread(main, [*command, "--adopt"]) == 0
    assert capsys.readouterr().out.startswith("adopted 2 of 2")
    assert await in_thread(DjangoSession.objects.count) == 0
    manager = SessionManager(store, legacy=[legacy.django(engine)])
    try:
        for key in keys:
            assert (await in_thread(manager.load, f"sessionid={key}")).user_id == str(user.pk)
    finally:
        manager.close()


async def test_pickled_db_session_is_never_loaded(browser: Browser, project: Project, user: User) -> None:
    """A row signed by the project but holding a pickle (Django's PickleSerializer, removed in
    5.0) adopts nothing, and the pickle is never loaded."""
    from django.core import signing

    class Boom:
        def __reduce__(self) -> Any:
            return (pytest.fail, ("a pickled legacy session was unpickled",))

    class PickleSerializer:
        def dumps(self, obj: Any) -> bytes:
            return pickle.dumps(obj)

        def loads(self, data: bytes) -> Any:
            return pickle.loads(data)  # noqa: S301 - never called: the test fails if it is

    engine = "django.contrib.sessions.backends.db"
    key = await in_thread(legacy_session, engine, user)
    payload = {SESSION_KEY: str(user.pk), "boom": Boom()}
    data = signing.dumps(payload, salt="django.contrib.sessions.SessionStore", serializer=PickleSerializer, compress=True)
    await in_thread(lambda: DjangoSession.objects.filter(session_key=key).update(session_data=data))
    with switched(project, engine):
        assert (await browser.holding(key).get("whoami")).content.decode() == "anonymous"


async def test_signed_with_a_fallback_key(browser: Browser, project: Project, user: User) -> None:
    """Django's SECRET_KEY_FALLBACKS: a session signed before a key rotation is still adopted."""
    engine = "django.contrib.sessions.backends.signed_cookies"
    with override_settings(SECRET_KEY="the-key-before"):
        key = await in_thread(lambda: legacy_session(engine, user, cart="1"))
    with override_settings(SECRET_KEY="the-key-now", SECRET_KEY_FALLBACKS=["the-key-before"]), switched(project, engine):
        assert (await browser.holding(key).get("whoami")).content.decode() == user.get_username()
    with override_settings(SECRET_KEY="the-key-now"), switched(project, engine):
        assert (await browser.holding(key).get("whoami")).content.decode() == "anonymous"  # no fallback: forged


async def test_migrate_sessions_counts_cache_sessions(project: Project, user: User, capsys: pytest.CaptureFixture[str]) -> None:
    """``--from django-cache`` lists the sessions of the cache engine on RedisCache, under its
    alias and key prefix."""
    from coatcheck.cli import main

    engine = "django.contrib.sessions.backends.cache"
    with override_settings(CACHES=REDIS_CACHE, SESSION_CACHE_ALIAS="sessions"):
        caches["sessions"].clear()
        try:
            for _ in range(2):
                await in_thread(legacy_session, engine, user)
            assert await in_thread(main, ["migrate-sessions", "--from", "django-cache", "--store", "memory://"]) == 0
            assert capsys.readouterr().out.startswith("2 legacy sessions left in django-cache")
        finally:
            caches["sessions"].clear()

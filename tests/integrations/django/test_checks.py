"""Settings are read in one place, once: a bad value fails ``manage.py check`` and start-up, never
a request; ``clearsessions`` purges through coatcheck."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import Client, override_settings

from coatcheck import _cookies
from coatcheck.django import SessionStore, get_manager
from coatcheck.stores.memory import MemoryStore
from coatcheck.stores.sqlite import SQLiteStore
from coatcheck.testing import FakeClock
from tests.backends import dump

OURS = "coatcheck.django.middleware.SessionMiddleware"
DJANGOS = "django.contrib.sessions.middleware.SessionMiddleware"
AUTH = "django.contrib.auth.middleware.AuthenticationMiddleware"


def ids(**settings: Any) -> list[str]:
    with override_settings(**settings):
        return sorted(message.id or "" for message in checks.run_checks(tags=["coatcheck"]))


@pytest.mark.parametrize(
    ("coatcheck", "error"),
    [
        ({"STORE": "memory://", "IDLE_TIMEOUT": -5}, "idle_timeout and absolute_timeout must be positive"),
        ({"STORE": "memory://", "IDLE_TIMEOUT": "30 minutes"}, "COATCHECK['IDLE_TIMEOUT'] must be a number of seconds"),
        ({"STORE": "memory://", "IDLE": 60}, "unknown COATCHECK key(s) IDLE"),
        ({"STORE": "nosuch://x"}, "unknown store URL scheme 'nosuch'"),
        ({}, "COATCHECK['STORE'] is required"),
    ],
)
def test_a_bad_setting_is_reported_by_the_checks_and_fails_start_up(coatcheck: dict[str, Any], error: str) -> None:
    with override_settings(COATCHECK=coatcheck):
        messages = checks.run_checks(tags=["coatcheck"])
        assert [message.id for message in messages] == ["coatcheck.E003" if "scheme" in error else "coatcheck.E001"]
        assert error in messages[0].msg
        with pytest.raises(SystemCheckError, match="coatcheck"):
            call_command("check", verbosity=0)
        with pytest.raises(ImproperlyConfigured, match="COATCHECK"):
            Client().get("/s/nothing")  # Django loads the middleware: start-up fails


def test_djangos_cookie_settings_are_checked_too() -> None:
    assert ids(SESSION_COOKIE_SAMESITE="None", SESSION_COOKIE_SECURE=False) == ["coatcheck.E001"]  # browsers drop it
    assert ids(SESSION_COOKIE_SAMESITE="None") == []  # Secure by default
    assert ids(SESSION_COOKIE_NAME="session id") == ["coatcheck.E001"]
    assert ids(SESSION_COOKIE_NAME="__Host-sessionid", SESSION_COOKIE_SECURE=True, SESSION_COOKIE_DOMAIN="example.com") == [
        "coatcheck.E001"
    ]


def test_an_unreachable_store_is_reported_and_fails_start_up() -> None:
    with override_settings(COATCHECK={"STORE": "redis://127.0.0.1:1/0?socket_connect_timeout=1"}):
        [message] = checks.run_checks(tags=["coatcheck"])
        assert message.id == "coatcheck.E003"
        assert "StoreUnavailableError" in message.msg
        with pytest.raises(Exception, match="unavailable"):
            Client().get("/s/nothing")
        get_manager().close()


def test_the_middleware_and_the_engine_go_together() -> None:
    assert ids() == []
    assert ids(MIDDLEWARE=[DJANGOS, AUTH]) == ["coatcheck.W002"]
    assert ids(SESSION_ENGINE="django.contrib.sessions.backends.cache") == ["coatcheck.E002"]
    assert ids(SESSION_ENGINE="django.contrib.sessions.backends.cache", MIDDLEWARE=[DJANGOS, AUTH]) == ["coatcheck.W001"]
    with override_settings(SESSION_ENGINE="django.contrib.sessions.backends.cache"), pytest.raises(ImproperlyConfigured):
        Client().get("/s/nothing")


@pytest.mark.parametrize(
    ("overrides", "secure"),
    [
        ({}, True),
        ({"SESSION_COOKIE_SECURE": False}, False),
        ({"SESSION_COOKIE_SECURE": True}, True),
        ({"COATCHECK": {"STORE": "memory://", "COOKIE_SECURE": "auto"}}, "auto"),
        ({"COATCHECK": {"STORE": "memory://", "COOKIE_SECURE": False}}, False),
    ],
)
def test_the_cookie_is_secure_unless_a_setting_says_otherwise(overrides: dict[str, Any], secure: object) -> None:
    """Django's SESSION_COOKIE_SECURE defaults to False; coatcheck's cookie is Secure unless that
    setting is set explicitly or COATCHECK['COOKIE_SECURE'] says otherwise."""
    with override_settings(**{"COATCHECK": {"STORE": "memory://"}, **overrides}):
        assert get_manager().config.cookie.secure == secure


def test_the_settings_become_one_config() -> None:
    with override_settings(
        SESSION_COOKIE_NAME="sid",
        SESSION_COOKIE_AGE=3600,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_PATH="/app/",
        SESSION_EXPIRE_AT_BROWSER_CLOSE=True,
        COATCHECK={"STORE": "memory://", "ABSOLUTE_TIMEOUT": 7200, "MAX_SIZE": 4096},
    ):
        config = get_manager().config
        assert (config.cookie.name, config.cookie.same_site, config.cookie.path) == ("sid", "strict", "/app/")
        assert (config.cookie.persistent, config.cookie.secure, config.cookie.http_only) == (False, True, True)
        assert (config.idle_seconds, config.absolute_seconds, config.touch_seconds, config.max_size) == (3600, 7200, 60, 4096)
        assert get_manager() is get_manager()  # built once


@pytest.fixture(params=["memory", "sqlite"])
def purgeable(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[Any]:
    store = MemoryStore(clock=clock) if request.param == "memory" else SQLiteStore(tmp_path / "s.db", clock=clock)
    with override_settings(COATCHECK={"STORE": store, "CLOCK": clock, "IDLE_TIMEOUT": 60, "ABSOLUTE_TIMEOUT": 60}):
        yield store
    store.close()


def test_clearsessions_purges_expired_sessions(purgeable: Any, clock: FakeClock) -> None:
    kept, expired = SessionStore(), SessionStore()
    expired["n"] = 1
    expired.save()
    clock.advance(61)
    kept["n"] = 2
    kept.save()
    assert expired.session_key is not None and kept.session_key is not None
    gone = hashlib.sha256(expired.session_key.encode()).hexdigest().encode()
    assert gone in asyncio.run(dump(purgeable))
    call_command("clearsessions")
    assert gone not in asyncio.run(dump(purgeable))
    assert SessionStore(kept.session_key).get("n") == 2


@pytest.mark.parametrize(("host", "warned"), [("192.168.1.10", True), ("localhost", False)])
def test_a_secure_cookie_over_plain_http_that_browsers_drop_is_warned_about_once(
    host: str, warned: bool, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_cookies, "_warned_insecure", False)
    with (
        override_settings(COATCHECK={"STORE": "memory://"}, ALLOWED_HOSTS=[host]),
        caplog.at_level(logging.WARNING, logger="coatcheck"),
    ):
        for _ in range(2):
            response = Client(HTTP_HOST=host).get("/s/count")
            assert response.cookies["sessionid"]["secure"]
    assert len([r for r in caplog.records if "browsers drop it" in r.getMessage()]) == (1 if warned else 0)

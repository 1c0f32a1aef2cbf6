"""Bad configuration fails loudly, in the constructor, with ConfigurationError."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from coatcheck import ConfigurationError, CookieConfig, SessionConfig, SessionManager
from coatcheck.asgi import SessionMiddleware as ASGIMiddleware
from coatcheck.wsgi import SessionMiddleware as WSGIMiddleware


@pytest.mark.parametrize("name", ["a;b", "a=b", "a b", "a\r\nb", "é", "", "a,b"])
def test_bad_cookie_names(name: str) -> None:
    with pytest.raises(ConfigurationError, match="cookie name"):
        CookieConfig(name=name)


@pytest.mark.parametrize("path", ["app", "/;Domain=evil", "/a b", "/x\r\n", ""])
def test_bad_cookie_paths(path: str) -> None:
    with pytest.raises(ConfigurationError, match="path"):
        CookieConfig(path=path)


@pytest.mark.parametrize("domain", ["x.com\r\nSet-Cookie: a=b", "a;b", "exa mple.com", "-x.com", ""])
def test_bad_cookie_domains(domain: str) -> None:
    with pytest.raises(ConfigurationError, match="domain"):
        CookieConfig(domain=domain)


@pytest.mark.parametrize(
    "options",
    [
        {"name": "__Host-id", "secure": False},
        {"name": "__Host-id", "secure": "auto"},
        {"name": "__Host-id", "path": "/app"},
        {"name": "__Host-id", "domain": "example.com"},
        {"name": "__Secure-id", "secure": False},
        {"name": "__HOST-id", "secure": False},  # browsers match the prefixes case-insensitively
        {"name": "__host-id", "domain": "example.com"},
        {"name": "__SECURE-id", "secure": "auto"},
        {"same_site": "none", "secure": False},
        {"same_site": "Lax"},
        {"secure": "yes"},
        {"path": "/" + "a" * 4000},
    ],
)
def test_inconsistent_cookie_options(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        CookieConfig(**options)


def test_good_cookie_options() -> None:
    assert CookieConfig(name="__Host-id").name == "__Host-id"
    assert CookieConfig(domain=".example.com", path="/app", secure="auto").domain == ".example.com"


@pytest.mark.parametrize(
    "options",
    [
        {"idle_timeout": 0},
        {"idle_timeout": -5},
        {"absolute_timeout": timedelta(0)},
        {"idle_timeout": 7200, "absolute_timeout": 3600},
        {"touch_interval": 3600, "idle_timeout": 1800},
        {"idle_timeout": "30m"},
        {"max_size": 10},
        {"max_commit_attempts": 0},
        {"cookie": {"name": "x"}},
        {"idle_timeout": float("inf"), "absolute_timeout": float("inf")},
        {"absolute_timeout": float("inf")},
        {"idle_timeout": float("nan")},
    ],
)
def test_bad_session_options(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        SessionConfig(**options)


def test_timeouts_take_timedelta_or_seconds() -> None:
    config = SessionConfig(idle_timeout=timedelta(hours=1), absolute_timeout=43200)
    assert (config.idle_seconds, config.absolute_seconds) == (3600.0, 43200.0)


def test_unknown_scheme_lists_the_known_ones() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown store URL scheme 'mongodb'.*memory://.*sqlite://"):
        SessionManager("mongodb://localhost")
    with pytest.raises(ConfigurationError, match="unknown store URL scheme"):
        SessionManager("sessions.db")


@pytest.mark.parametrize(
    ("url", "driver", "extra"),
    [
        ("redis://127.0.0.1", "hiredis", "redis"),  # the lean client's only driver
        ("redis+cluster://127.0.0.1:7000", "redis", "redis"),  # redis-py, imported by the cluster store alone
        ("postgresql://x/db", "psycopg", "postgres"),
        ("mysql://x/db", "pymysql", "mysql"),
    ],
)
def test_missing_driver_names_the_install_line(monkeypatch: pytest.MonkeyPatch, url: str, driver: str, extra: str) -> None:
    for name in list(sys.modules):
        ours = f"coatcheck.stores.{extra}"  # the store's module, or its package and submodules (Redis)
        if name in (driver, ours) or name.startswith((driver + ".", ours + ".")):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, driver, None)
    with pytest.raises(ConfigurationError, match=rf"pip install 'coatcheck\[{extra}\]'"):
        SessionManager(url)


def test_sqlite_in_a_missing_directory_fails_at_construction(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        SessionManager(f"sqlite:///{tmp_path}/nope/sessions.db")


def test_a_store_object_must_implement_a_protocol() -> None:
    with pytest.raises(ConfigurationError, match="neither the Store nor the AsyncStore"):
        SessionManager(object())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="SessionConfig"):
        SessionManager("memory://", config={"idle_timeout": 5})  # type: ignore[arg-type]


def test_middlewares_refuse_a_store_without_their_flavour() -> None:
    class SyncOnly:
        def load(self, key: str) -> None:
            return None

        def save(self, key: str, record: object, *, expected_version: int | None) -> bool:
            return False

        def delete(self, key: str) -> None:
            return None

        def delete_expired(self, now: float) -> int:
            return 0

        def close(self) -> None:
            return None

    manager = SessionManager(SyncOnly())
    with pytest.raises(ConfigurationError, match="no async API"):
        ASGIMiddleware(lambda s, r, c: None, manager)  # type: ignore[arg-type, return-value]
    WSGIMiddleware(lambda e, s: [], manager)

"""The one place that turns Django settings into a coatcheck SessionConfig and SessionManager.

Read: ``COATCHECK`` (a dict: ``STORE`` and the options below) and Django's own
``SESSION_COOKIE_*`` and ``SESSION_EXPIRE_AT_BROWSER_CLOSE``. The manager is built once, on first
use (coatcheck's middleware uses it when Django loads the middleware, so at start-up), and again
only when one of these settings changes (``override_settings`` in tests).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, Literal

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from .. import legacy
from ..config import CookieConfig, SessionConfig
from ..errors import ConfigurationError
from ..legacy import BadValues, LegacyReader
from ..manager import SessionManager
from ..stores import from_url

__all__ = ["OPTIONS", "get_manager", "read_settings"]

OPTIONS = {
    "STORE": "a store URL ('redis://127.0.0.1:6379/0', 'sqlite:///sessions.db', ...) or a store object",
    "IDLE_TIMEOUT": "seconds or timedelta without a request before a session ends (default: SESSION_COOKIE_AGE)",
    "ABSOLUTE_TIMEOUT": "seconds or timedelta after creation or login when a session ends however active "
    "(default: the longer of SESSION_COOKIE_AGE and IDLE_TIMEOUT)",
    "TOUCH_INTERVAL": "seconds or timedelta between two refreshes of an idle expiry (default: 60, or half the idle timeout)",
    "MAX_SIZE": "bytes of encoded session data (default: 65536)",
    "MAX_COMMIT_ATTEMPTS": "compare-and-set attempts before a 409 (default: 32)",
    "COOKIE_SECURE": "True (default), False (plain-http development) or 'auto' (Secure over https); an explicit"
    " SESSION_COOKIE_SECURE setting wins",
    "DEVICES": "True to keep each session's user agent, truncated address and login time for a 'your devices' page"
    " (default: False)",
    "DEVICE_ADDRESS_BITS": "(IPv4, IPv6) network bits of the address kept (default: (24, 48))",
    "ENCRYPTION_KEYS": "secrets (32 bytes or more) that seal session data at rest; the first seals, each opens"
    " (see docs/encryption.md)",
    "ACCEPT_UNSEALED": "True to also open records that are not sealed, while turning ENCRYPTION_KEYS on (default: False)",
    "CLOCK": "a callable returning unix time (default: time.time; tests pass coatcheck.testing.FakeClock)",
    "LEGACY_ENGINE": "the SESSION_ENGINE the project used before: its sessions are adopted as their users return"
    " (see docs/switching.md)",
    "LEGACY": "a list of coatcheck.legacy readers, for legacy sessions LEGACY_ENGINE does not cover",
    "LEGACY_BAD_VALUES": "'drop' (default: a legacy value the session cannot hold is left out) or 'refuse'"
    " (such a session is not adopted)",
}
_WATCHED = frozenset(
    {
        "COATCHECK",
        "SESSION_COOKIE_AGE",
        "SESSION_COOKIE_DOMAIN",
        "SESSION_COOKIE_HTTPONLY",
        "SESSION_COOKIE_NAME",
        "SESSION_COOKIE_PATH",
        "SESSION_COOKIE_SAMESITE",
        "SESSION_COOKIE_SECURE",
        "SESSION_EXPIRE_AT_BROWSER_CLOSE",
    }
)
_SAME_SITE: dict[str, Literal["lax", "strict", "none"]] = {"lax": "lax", "strict": "strict", "none": "none"}


def _seconds(name: str, value: object) -> float:
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ImproperlyConfigured(f"{name} must be a number of seconds or a timedelta, not {value!r}")
    return float(value)


def read_legacy() -> tuple[list[LegacyReader], BadValues]:
    """The legacy readers (``LEGACY_ENGINE``, then ``LEGACY``) and ``LEGACY_BAD_VALUES``."""
    options = getattr(settings, "COATCHECK", None) or {}
    readers = list(options.get("LEGACY") or [])
    engine = options.get("LEGACY_ENGINE")
    if engine is not None:
        if not isinstance(engine, str) or engine == "coatcheck.django":
            raise ImproperlyConfigured(f"COATCHECK['LEGACY_ENGINE'] must be the SESSION_ENGINE used before, not {engine!r}")
        try:
            readers.insert(0, legacy.django(engine))
        except (ImportError, ConfigurationError) as exc:
            raise ImproperlyConfigured(f"COATCHECK['LEGACY_ENGINE']: {exc}") from exc
    bad_values = options.get("LEGACY_BAD_VALUES", "drop")
    if bad_values not in ("drop", "refuse"):
        raise ImproperlyConfigured(f"COATCHECK['LEGACY_BAD_VALUES'] must be 'drop' or 'refuse', not {bad_values!r}")
    return readers, bad_values


def read_settings() -> tuple[Any, SessionConfig, Callable[[], float]]:
    """``(store, config, clock)`` from the Django settings; raises ``ImproperlyConfigured``
    naming the setting at fault. Builds no store."""
    options = getattr(settings, "COATCHECK", None)
    if options is None:
        raise ImproperlyConfigured(
            "SESSION_ENGINE 'coatcheck.django' needs a COATCHECK setting, e.g. COATCHECK = {'STORE': 'redis://127.0.0.1:6379/0'}"
        )
    if not isinstance(options, Mapping):
        raise ImproperlyConfigured(f"COATCHECK must be a dict, not {type(options).__name__}")
    unknown = sorted(str(key) for key in options if key not in OPTIONS)
    if unknown:
        raise ImproperlyConfigured(f"unknown COATCHECK key(s) {', '.join(unknown)}; known: {', '.join(OPTIONS)}")
    store = options.get("STORE")
    if store is None or store == "":
        raise ImproperlyConfigured(f"COATCHECK['STORE'] is required: {OPTIONS['STORE']}")
    clock = options.get("CLOCK", time.time)
    if not callable(clock):
        raise ImproperlyConfigured(f"COATCHECK['CLOCK'] must be a callable returning unix time, not {clock!r}")
    age = _seconds("SESSION_COOKIE_AGE", settings.SESSION_COOKIE_AGE)
    idle = _seconds("COATCHECK['IDLE_TIMEOUT']", options.get("IDLE_TIMEOUT", age))
    absolute = _seconds("COATCHECK['ABSOLUTE_TIMEOUT']", options.get("ABSOLUTE_TIMEOUT", max(age, idle)))
    touch = _seconds("COATCHECK['TOUCH_INTERVAL']", options.get("TOUCH_INTERVAL", min(60.0, idle / 2)))
    same_site = settings.SESSION_COOKIE_SAMESITE
    if same_site is None or same_site is False:
        same_site = "lax"  # Django then sends no SameSite attribute, which browsers read as Lax
    elif not isinstance(same_site, str) or same_site.lower() not in _SAME_SITE:
        raise ImproperlyConfigured(f"SESSION_COOKIE_SAMESITE must be 'Lax', 'Strict', 'None' or None, not {same_site!r}")
    try:
        cookie = CookieConfig(
            name=settings.SESSION_COOKIE_NAME,
            path=settings.SESSION_COOKIE_PATH,
            domain=settings.SESSION_COOKIE_DOMAIN or None,
            # Secure by default: Django's own default (False) applies only when set explicitly.
            secure=bool(settings.SESSION_COOKIE_SECURE)
            if settings.is_overridden("SESSION_COOKIE_SECURE")
            else options.get("COOKIE_SECURE", True),
            http_only=bool(settings.SESSION_COOKIE_HTTPONLY),
            same_site=_SAME_SITE[same_site.lower()],
            persistent=not settings.SESSION_EXPIRE_AT_BROWSER_CLOSE,
        )
        config = SessionConfig(
            cookie=cookie,
            idle_timeout=idle,
            absolute_timeout=absolute,
            touch_interval=touch,
            max_size=options.get("MAX_SIZE", 64 * 1024),
            max_commit_attempts=options.get("MAX_COMMIT_ATTEMPTS", 32),
            devices=options.get("DEVICES", False),
            device_address_bits=options.get("DEVICE_ADDRESS_BITS", (24, 48)),
            encryption_keys=options.get("ENCRYPTION_KEYS", ()),
            accept_unsealed=options.get("ACCEPT_UNSEALED", False),
        )
    except ConfigurationError as exc:
        raise ImproperlyConfigured(f"coatcheck settings (COATCHECK, SESSION_COOKIE_*): {exc}") from exc
    return store, config, clock


_lock = threading.Lock()
_manager: SessionManager | None = None
_stores: dict[tuple[str, Callable[[], float]], Any] = {}  # stores built from URLs outlive a settings change


def _build() -> SessionManager:
    store, config, clock = read_settings()
    readers, bad_values = read_legacy()
    try:
        if isinstance(store, str):
            built = _stores.get((store, clock))
            if built is None:
                built = _stores[store, clock] = from_url(store, clock=clock)
            store = built
        return SessionManager(store, config=config, clock=clock, legacy=readers, legacy_bad_values=bad_values)
    except ConfigurationError as exc:
        raise ImproperlyConfigured(f"COATCHECK: {exc}") from exc


def get_manager() -> SessionManager:
    """The process's SessionManager, built from the settings on first use."""
    global _manager
    manager = _manager
    if manager is None:
        with _lock:
            manager = _manager
            if manager is None:
                manager = _manager = _build()
    return manager


def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    global _manager
    if setting in _WATCHED:
        with _lock:
            _manager = None


setting_changed.connect(_settings_changed, dispatch_uid="coatcheck.django.settings_changed")

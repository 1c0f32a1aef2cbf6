"""``"coatcheck.django"`` in ``INSTALLED_APPS``: system checks for the session settings and store.

``manage.py check`` (and ``runserver``, ``migrate``, ...) then report:

* ``coatcheck.E001`` a bad ``COATCHECK`` or ``SESSION_COOKIE_*`` value;
* ``coatcheck.E002`` coatcheck's middleware without ``SESSION_ENGINE = "coatcheck.django"``;
* ``coatcheck.E003`` a store that cannot be reached;
* ``coatcheck.W001`` the app installed but another ``SESSION_ENGINE``;
* ``coatcheck.W002`` Django's own SessionMiddleware in front of coatcheck's engine (a store
  failure would answer 500 with a traceback instead of 503).
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from django.apps import AppConfig
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from ..errors import CoatcheckError

__all__ = ["CoatcheckConfig", "check_settings", "check_store"]

ENGINE = "coatcheck.django"
MIDDLEWARE = "coatcheck.django.middleware.SessionMiddleware"
DJANGO_MIDDLEWARE = "django.contrib.sessions.middleware.SessionMiddleware"


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """The engine, the middleware and every setting coatcheck reads."""
    from ._settings import read_settings

    messages: list[checks.CheckMessage] = []
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    if settings.SESSION_ENGINE != ENGINE:
        if MIDDLEWARE in middleware:
            messages.append(
                checks.Error(
                    f"{MIDDLEWARE} needs SESSION_ENGINE = {ENGINE!r}, not {settings.SESSION_ENGINE!r}", id="coatcheck.E002"
                )
            )
        else:
            messages.append(
                checks.Warning(
                    f"{ENGINE!r} is installed but SESSION_ENGINE is {settings.SESSION_ENGINE!r}",
                    hint=f"set SESSION_ENGINE = {ENGINE!r} to keep sessions in coatcheck",
                    id="coatcheck.W001",
                )
            )
        return messages
    try:
        read_settings()
    except ImproperlyConfigured as exc:
        messages.append(checks.Error(str(exc), id="coatcheck.E001"))
    if DJANGO_MIDDLEWARE in middleware:
        messages.append(
            checks.Warning(
                f"{DJANGO_MIDDLEWARE} serves coatcheck's sessions without coatcheck's request flow:"
                " a store failure answers 500 with a traceback instead of 503",
                hint=f"replace it with {MIDDLEWARE!r} in MIDDLEWARE",
                id="coatcheck.W002",
            )
        )
    return messages


def check_store(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """One read from the configured store (nothing is written)."""
    from ._settings import get_manager, read_settings

    if settings.SESSION_ENGINE != ENGINE:
        return []
    try:
        read_settings()
    except ImproperlyConfigured:
        return []  # reported by check_settings
    try:
        manager = get_manager()
        if manager.supports_sync:
            manager.check()
        else:
            async_to_sync(manager.acheck)()
    except (ImproperlyConfigured, CoatcheckError) as exc:
        return [
            checks.Error(
                f"the session store cannot be used: {type(exc).__name__}: {exc}",
                hint="check COATCHECK['STORE'] and that its server is running",
                id="coatcheck.E003",
            )
        ]
    return []


class CoatcheckConfig(AppConfig):
    """Registers the checks; sessions themselves need no app (``SESSION_ENGINE`` is enough)."""

    name = "coatcheck.django"
    label = "coatcheck"
    verbose_name = "coatcheck sessions"

    def ready(self) -> None:
        checks.register(check_settings, "coatcheck")
        checks.register(check_store, "coatcheck")

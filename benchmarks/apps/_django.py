"""Django for the benchmark: one settings function for every session layer, the views, the URLs.

The session layer is ``BENCH_LIBRARY`` on ``BENCH_STORE``:

- ``plain``: no session middleware, and views that answer without a session (the ceiling);
- ``coatcheck``: ``SESSION_ENGINE = "coatcheck.django"`` and its middleware, on ``BENCH_STORE_URL``
  (Redis or PostgreSQL);
- ``django``: Django's own ``SessionMiddleware``: the cache backend on ``RedisCache`` when the
  store is ``redis``, the db backend on PostgreSQL when it is ``postgres`` (the ``django_session``
  table is created in the benchmark database if missing; the harness drops it).

Everything else is Django's default (no other middleware, no ORM models but the db backend's).
``django_wsgi`` serves sync views through Django's WSGI handler, ``django_asgi`` async views
(``aget``/``aset``) through its ASGI handler. Django's PostgreSQL connections: persistent under
WSGI (``CONN_MAX_AGE = None``), psycopg's pool under ASGI (Django's advice for ASGI, where
persistent connections do not carry over from one request to the next).
"""

from __future__ import annotations

import concurrent.futures
from typing import Any, Literal
from urllib.parse import urlsplit

import django
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import URLPattern, path

from ._common import (
    LIFETIME,
    SIGNING_KEY,
    bench_clock,
    coatcheck_store,
    count_redis_round_trips,
    env,
    library,
    redis_url,
    stats,
    store_kind,
)

PG_URL = "postgresql://postgres@127.0.0.1:5432/coatcheck_bench"  # the benchmark database (benchmarks/_infra.py)

urlpatterns: list[URLPattern] = []  # filled by configure(): sync or async views
_counter: Any = None  # coatcheck's store-call counter (SQL stores), for /__bench/stats


def _database(views: Literal["sync", "async"]) -> dict[str, Any]:
    url = urlsplit(env("BENCH_PG_URL", PG_URL))
    database: dict[str, Any] = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": url.path.lstrip("/"),
        "USER": url.username or "postgres",
        "PASSWORD": url.password or "",
        "HOST": url.hostname or "127.0.0.1",
        "PORT": str(url.port or 5432),
    }
    if views == "sync":
        database["CONN_MAX_AGE"] = None
    else:
        database["OPTIONS"] = {"pool": True}
    return database


def _settings(views: Literal["sync", "async"]) -> dict[str, Any]:
    """The settings of the session layer ``BENCH_LIBRARY`` on ``BENCH_STORE``."""
    global _counter
    found: dict[str, Any] = {
        "DEBUG": False,
        "SECRET_KEY": SIGNING_KEY,
        "ALLOWED_HOSTS": ["127.0.0.1", "localhost"],
        "ROOT_URLCONF": __name__,
        "INSTALLED_APPS": [],
        "MIDDLEWARE": [],
        "DATABASES": {},
        "SESSION_COOKIE_AGE": LIFETIME,
    }
    kind, layer = store_kind(), library()
    if layer == "coatcheck":
        store, _counter = coatcheck_store()
        found.update(
            INSTALLED_APPS=["coatcheck.django"],
            MIDDLEWARE=["coatcheck.django.middleware.SessionMiddleware"],
            SESSION_ENGINE="coatcheck.django",
            # Plain http, as the other apps: no Secure attribute (Django's default is none either).
            COATCHECK={"STORE": store, "COOKIE_SECURE": False, "CLOCK": bench_clock()},
        )
    elif layer == "django" and kind == "redis":
        count_redis_round_trips()
        found.update(
            INSTALLED_APPS=["django.contrib.sessions"],
            MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"],
            SESSION_ENGINE="django.contrib.sessions.backends.cache",
            CACHES={"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis_url()}},
        )
    elif layer == "django" and kind == "postgres":
        found.update(
            INSTALLED_APPS=["django.contrib.sessions"],
            MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"],
            SESSION_ENGINE="django.contrib.sessions.backends.db",
            DATABASES={"default": _database(views)},
        )
    elif layer != "plain":
        raise ValueError(f"no Django app for library {layer!r} on store {kind!r}")
    return found


def _create_session_table() -> None:
    """Create the db backend's ``django_session`` table if it is missing (in a thread of its own:
    an ASGI server may import the app inside its event loop, where Django refuses sync queries)."""
    from django.contrib.sessions.models import Session
    from django.db import connection

    def create() -> None:
        try:
            if Session._meta.db_table not in connection.introspection.table_names():
                with connection.schema_editor() as editor:
                    editor.create_model(Session)
        finally:
            connection.close()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(create).result()


def configure(views: Literal["sync", "async"]) -> None:
    """Configure Django for ``BENCH_LIBRARY`` and ``BENCH_STORE`` and route to sync or async views."""
    settings.configure(**_settings(views))
    django.setup()
    plain = library() == "plain"
    if views == "sync":
        urlpatterns[:] = [
            path("rmw", plain_rmw if plain else rmw),
            path("read", plain_read if plain else read),
            path("__bench/stats", bench_stats),
        ]
    else:
        urlpatterns[:] = [
            path("rmw", plain_armw if plain else armw),
            path("read", plain_aread if plain else aread),
            path("__bench/stats", abench_stats),
        ]
    if library() == "django" and store_kind() == "postgres":
        _create_session_table()


# -- sync views (WSGI) --------------------------------------------------------------------------


def rmw(request: HttpRequest) -> HttpResponse:
    """Read the counter, increment it, save."""
    n: int = request.session.get("n", 0) + 1
    request.session["n"] = n
    return HttpResponse(str(n))


def read(request: HttpRequest) -> HttpResponse:
    """Read the counter only."""
    return HttpResponse(str(request.session.get("n", 0)))


def plain_rmw(request: HttpRequest) -> HttpResponse:
    """What the session views answer, minus the session."""
    return HttpResponse("1")


def plain_read(request: HttpRequest) -> HttpResponse:
    """What the session views answer, minus the session."""
    return HttpResponse("0")


def bench_stats(request: HttpRequest) -> JsonResponse:
    """Counters for the harness."""
    return JsonResponse(stats(_counter))


# -- async views (ASGI) -------------------------------------------------------------------------


async def armw(request: HttpRequest) -> HttpResponse:
    """Read the counter, increment it, save."""
    n: int = await request.session.aget("n", 0) + 1
    await request.session.aset("n", n)
    return HttpResponse(str(n))


async def aread(request: HttpRequest) -> HttpResponse:
    """Read the counter only."""
    return HttpResponse(str(await request.session.aget("n", 0)))


async def plain_armw(request: HttpRequest) -> HttpResponse:
    """What the session views answer, minus the session."""
    return HttpResponse("1")


async def plain_aread(request: HttpRequest) -> HttpResponse:
    """What the session views answer, minus the session."""
    return HttpResponse("0")


async def abench_stats(request: HttpRequest) -> JsonResponse:
    """Counters for the harness."""
    return JsonResponse(stats(_counter))

"""Django's ASGI handler with async views, under the session layer ``BENCH_LIBRARY`` on ``BENCH_STORE`` (see ``_django``)."""

from __future__ import annotations

from django.core.asgi import get_asgi_application

from ._django import configure

configure("async")
app = get_asgi_application()

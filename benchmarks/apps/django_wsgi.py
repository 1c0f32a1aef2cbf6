"""Django's WSGI handler with sync views, under the session layer ``BENCH_LIBRARY`` on ``BENCH_STORE`` (see ``_django``)."""

from __future__ import annotations

from django.core.wsgi import get_wsgi_application

from ._django import configure

configure("sync")
app = get_wsgi_application()

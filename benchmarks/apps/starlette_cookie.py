"""Starlette's own signed-cookie ``SessionMiddleware`` (no server-side store)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware

from ._common import LIFETIME, SIGNING_KEY
from ._endpoints import ROUTES

app = Starlette(routes=ROUTES, middleware=[Middleware(SessionMiddleware, secret_key=SIGNING_KEY, max_age=LIFETIME)])

"""The floor (``_floor.FloorASGI``) around the Starlette endpoints, on ``BENCH_STORE``."""

from __future__ import annotations

from starlette.applications import Starlette

from ._endpoints import ROUTES
from ._floor import FloorASGI, store

load, save = store(asynchronous=True)
app = FloorASGI(Starlette(routes=ROUTES), load, save)

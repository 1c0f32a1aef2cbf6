"""Starlette and FastAPI: ``app.add_middleware(SessionMiddleware, store=...)``.

``request.session`` is the coatcheck :class:`~coatcheck.Session`; :func:`get_session` returns it
typed, and FastAPI views take it as a parameter annotated ``SessionDep``. The request flow is
:class:`coatcheck.asgi.SessionMiddleware`'s: this module only turns options into one
:class:`SessionManager`. Importing it needs Starlette, not FastAPI; ``SessionDep`` imports
FastAPI when it is first used.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any

from . import asgi
from ._http import ErrorHook, default_error_response
from .config import CookieConfig, SessionConfig
from .errors import ConfigurationError, MiddlewareNotInstalledError
from .legacy import LegacyReader
from .manager import DEFAULT_STORE, SessionManager
from .session import Session
from .stores import AsyncStore, Store

try:
    from starlette.requests import HTTPConnection
except ImportError as exc:
    raise ImportError(
        f"coatcheck.starlette needs Starlette ({exc}): pip install 'coatcheck[starlette]'", name="starlette"
    ) from exc

if TYPE_CHECKING:  # at run time, ``SessionDep`` comes from __getattr__ below, with FastAPI's Depends
    SessionDep = Annotated[Session, "the request's session, through fastapi.Depends"]

__all__ = ["SessionDep", "SessionMiddleware", "get_session"]

_ADD = "app.add_middleware(coatcheck.starlette.SessionMiddleware, store=...)"


class SessionMiddleware(asgi.SessionMiddleware):
    """coatcheck sessions for a Starlette or FastAPI app: ``app.add_middleware(SessionMiddleware, ...)``.

    Pass ``store`` (a URL such as ``"redis://127.0.0.1:6379/0"`` or a store object; the default
    is :class:`SessionManager`'s, ``"sqlite:///sessions.db"``) and any :class:`SessionConfig`
    option, or a ready ``manager`` instead (to call ``revoke_user`` and ``list_sessions`` in
    views). The manager is built once, here, so a bad option raises
    :class:`ConfigurationError` when Starlette builds its middleware (at the app's first call,
    its lifespan startup). At lifespan startup the store is checked (an unreachable store fails
    startup) and the expirer starts; at shutdown it stops and the store is closed, around the
    app's own lifespan. ``on_error`` and ``purge_interval`` are
    :class:`coatcheck.asgi.SessionMiddleware`'s. ``legacy`` takes the readers of the sessions the
    app is switching from (``[legacy.starlette_cookie(secret_key=...)]``, see :mod:`coatcheck.legacy`).
    """

    def __init__(
        self,
        app: asgi.ASGIApp,
        *,
        store: str | Store | AsyncStore | None = None,
        manager: SessionManager | None = None,
        cookie: CookieConfig | None = None,
        idle_timeout: timedelta | float | None = None,
        absolute_timeout: timedelta | float | None = None,
        touch_interval: timedelta | float | None = None,
        max_size: int | None = None,
        save_on_server_error: bool | None = None,
        max_commit_attempts: int | None = None,
        legacy: Sequence[LegacyReader] = (),
        on_error: ErrorHook = default_error_response,
        purge_interval: float | None = 60.0,
    ) -> None:
        options = {
            "cookie": cookie,
            "idle_timeout": idle_timeout,
            "absolute_timeout": absolute_timeout,
            "touch_interval": touch_interval,
            "max_size": max_size,
            "save_on_server_error": save_on_server_error,
            "max_commit_attempts": max_commit_attempts,
        }
        given: dict[str, Any] = {name: value for name, value in options.items() if value is not None}
        if isinstance(store, SessionManager):
            raise ConfigurationError("pass a SessionManager as manager=, not store=")
        if manager is None:
            config = SessionConfig(**given)
            manager = SessionManager(DEFAULT_STORE if store is None else store, config=config, legacy=legacy)
        elif not isinstance(manager, SessionManager):
            raise ConfigurationError(f"manager must be a SessionManager, not {type(manager).__name__}")
        elif store is not None or given or legacy:
            raise ConfigurationError("pass either manager= or store= and session options, not both: a manager has its own")
        super().__init__(app, manager, on_error=on_error, purge_interval=purge_interval)


def get_session(connection: HTTPConnection) -> Session:
    """The request's (or WebSocket's) session, typed: what ``request.session`` holds.

    Raises :class:`MiddlewareNotInstalledError`, saying how to add the middleware, when
    coatcheck's middleware did not see the request.
    """
    session = connection.scope.get("session")
    if isinstance(session, Session):
        return session
    if session is None:
        raise MiddlewareNotInstalledError(f"no coatcheck session in this request: add the middleware with {_ADD}")
    raise MiddlewareNotInstalledError(
        f"request.session is a {type(session).__module__}.{type(session).__name__}, not a coatcheck session:"
        f" replace the other session middleware (Starlette's own?) with {_ADD}"
    )


async def _session_dependency(connection: HTTPConnection) -> Session:
    """FastAPI's way in to :func:`get_session` (a coroutine, so FastAPI calls it on the event
    loop instead of in a worker thread)."""
    return get_session(connection)


def __getattr__(name: str) -> Any:
    """``SessionDep``, built on first use so that Starlette apps never import FastAPI."""
    if name != "SessionDep":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        from fastapi import Depends
    except ImportError as exc:
        raise ImportError(
            f"coatcheck.starlette.SessionDep needs FastAPI ({exc}): pip install 'coatcheck[fastapi]'", name="fastapi"
        ) from exc
    dependency = Annotated[Session, Depends(_session_dependency)]
    globals()["SessionDep"] = dependency
    return dependency

"""WSGI middleware: the session at ``environ["coatcheck.session"]`` for the whole request.

Checks the store when it is built (an unreachable store raises before the first request) and
starts the expirer thread on the first request, so pre-forking servers start it per worker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any

from ._expiry import Expirer, needs_purge
from ._http import WSGI_HEADERS, ErrorHook, default_error_response, session_headers, status_line
from .devices import wsgi_client
from .errors import CoatcheckError, ConfigurationError, MiddlewareNotInstalledError
from .manager import SessionManager
from .session import Session

__all__ = ["ENVIRON_KEY", "SessionMiddleware", "get_session"]

ENVIRON_KEY = "coatcheck.session"
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def get_session(environ: dict[str, Any]) -> Session:
    """The request's session; raises :class:`MiddlewareNotInstalledError` without the middleware."""
    session = environ.get(ENVIRON_KEY)
    if not isinstance(session, Session):
        raise MiddlewareNotInstalledError(
            "no coatcheck session in this environ: wrap the app in coatcheck.wsgi.SessionMiddleware"
        )
    return session


class SessionMiddleware:
    """Load the session when the request arrives; commit it when the app calls ``start_response``.

    A store failure answers through ``on_error`` (by default a 503 with no traceback and no
    ``Set-Cookie``). ``check=False`` skips the startup check of the store.
    """

    def __init__(
        self,
        app: WSGIApp,
        manager: SessionManager,
        *,
        on_error: ErrorHook = default_error_response,
        purge_interval: float | None = 60.0,
        check: bool = True,
    ) -> None:
        if not manager.supports_sync:
            raise ConfigurationError(f"{type(manager.store).__name__} has no sync API; the WSGI middleware needs one")
        if check:
            manager.check()
        self.app = app
        self.manager = manager
        self.on_error = on_error
        self.devices = manager.config.devices  # keep each request's browser as device metadata
        self.expirer = Expirer(manager, purge_interval) if purge_interval and needs_purge(manager) else None

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if self.expirer is not None:
            self.expirer.ensure_started()
        manager = self.manager
        try:
            session = manager.load(environ.get("HTTP_COOKIE"))
        except CoatcheckError as exc:
            return self._refuse(exc, start_response)
        environ[ENVIRON_KEY] = session
        scheme = environ.get("wsgi.url_scheme", "http")
        state: dict[str, Any] = {"started": False, "error": None}

        def start_with_session(
            status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
        ) -> Callable[[bytes], object]:
            if state["started"]:
                return start_response(status, headers, exc_info)
            state["started"] = True
            try:
                set_cookie = (
                    None
                    if manager._skips_commit(session)
                    else manager.commit(
                        session,
                        status_code=int(status[:3]),
                        scheme=scheme,
                        host=environ.get("HTTP_HOST"),
                        client=wsgi_client(environ) if self.devices else None,
                    )
                )
            except CoatcheckError as exc:
                state["error"] = self._refuse(exc, start_response)
                return lambda data: None
            finally:
                session._freeze()
            changed = session_headers(session, set_cookie, headers, WSGI_HEADERS)
            return start_response(status, headers if changed is None else changed, exc_info)

        result = self.app(environ, start_with_session)
        if state["error"] is not None:
            _close(result)
            return state["error"]  # type: ignore[no-any-return]
        if state["started"]:
            return result
        return _LateStart(result, state)

    def _refuse(self, exc: CoatcheckError, start_response: StartResponse) -> list[bytes]:
        status, headers, body = self.on_error(exc)
        start_response(status_line(status), headers)
        return [body]


def _close(result: Iterable[bytes]) -> None:
    close = getattr(result, "close", None)
    if close is not None:
        close()


class _LateStart:
    """The body of an app that calls ``start_response`` only while its body is iterated."""

    def __init__(self, result: Iterable[bytes], state: dict[str, Any]) -> None:
        self._result = result
        self._state = state

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._result:
            if self._state["error"] is not None:
                yield from self._state["error"]
                return
            yield chunk
        if self._state["error"] is not None:
            yield from self._state["error"]

    def close(self) -> None:
        _close(self._result)

"""ASGI middleware: the session at ``scope["session"]`` for the whole request.

Works with Starlette and FastAPI (``request.session`` is the coatcheck Session) and any plain
ASGI app. At lifespan startup it checks the store (a failure aborts startup) and starts the
expirer; at shutdown it stops the expirer and closes the store.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ._expiry import Expirer, needs_purge
from ._http import ASGI_HEADERS, ErrorHook, default_error_response, session_headers
from .devices import asgi_client
from .errors import CoatcheckError, ConfigurationError, MiddlewareNotInstalledError
from .manager import SessionManager
from .session import Session

__all__ = ["SessionMiddleware", "get_session"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def get_session(scope: Scope) -> Session:
    """The request's session; raises :class:`MiddlewareNotInstalledError` without the middleware."""
    session = scope.get("session")
    if not isinstance(session, Session):
        raise MiddlewareNotInstalledError("no coatcheck session in this scope: wrap the app in coatcheck.asgi.SessionMiddleware")
    return session


class SessionMiddleware:
    """Load the session when the request arrives; commit it when the response starts.

    A store failure while loading or committing answers through ``on_error`` (by default a 503
    with no traceback and no ``Set-Cookie``). ``purge_interval`` seconds between purges of
    expired sessions (None: never; stores with native TTL never need it).
    """

    def __init__(
        self,
        app: ASGIApp,
        manager: SessionManager,
        *,
        on_error: ErrorHook = default_error_response,
        purge_interval: float | None = 60.0,
    ) -> None:
        if not manager.supports_async:
            raise ConfigurationError(f"{type(manager.store).__name__} has no async API; the ASGI middleware needs one")
        self.app = app
        self.manager = manager
        self.devices = manager.config.devices  # keep each request's browser as device metadata
        self.on_error = on_error
        self.expirer = Expirer(manager, purge_interval) if purge_interval and needs_purge(manager) else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        manager = self.manager
        cookies = [value.decode("latin-1") for name, value in scope["headers"] if name == b"cookie"]
        try:
            # A WebSocket cannot send the cookie of an adopted legacy session: it adopts none.
            session = await manager.aload(cookies, legacy=kind == "http") if cookies else manager.new_session()
        except CoatcheckError as exc:
            await self._refuse(kind, exc, send)
            return
        scope["session"] = session
        if kind == "websocket":  # no response headers to carry a cookie: read-only by nature
            session._freeze()
            await self.app(scope, receive, send)
            return
        failed = False

        async def send_with_session(message: Message) -> None:
            nonlocal failed
            if message["type"] == "http.response.start":
                try:
                    set_cookie = (
                        None
                        if manager._skips_commit(session)
                        else await manager.acommit(
                            session,
                            status_code=message["status"],
                            scheme=scope.get("scheme", "http"),
                            host=lambda: _host(scope),
                            client=asgi_client(scope) if self.devices else None,
                        )
                    )
                except CoatcheckError as exc:
                    failed = True
                    await self._refuse(kind, exc, send)
                    return
                finally:
                    session._freeze()
                message = _with_session_headers(message, session, set_cookie)
            elif failed:
                return  # the app's body belongs to the response we replaced
            await send(message)

        await self.app(scope, receive, send_with_session)

    async def _refuse(self, kind: str, exc: CoatcheckError, send: Send) -> None:
        status, headers, body = self.on_error(exc)
        if kind == "websocket":
            await send({"type": "websocket.close", "code": 1011})
            return
        raw = [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in headers]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the store before the app starts; if it is unusable, fail startup loudly."""
        startup = await receive()
        try:
            await self.manager.acheck()
        except CoatcheckError as exc:
            with contextlib.suppress(Exception):  # the check's error is the one to report (an asyncio
                await self.manager.aclose()  # store under trio cannot even close)
            await send({"type": "lifespan.startup.failed", "message": f"coatcheck: session store unusable: {exc}"})
            raise  # as Starlette's router does: the server reports it and exits
        pending = [startup]

        async def replay_receive() -> Message:
            return pending.pop() if pending else await receive()

        async def lifespan_send(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete" and self.expirer is not None:
                await self.expirer.astart()
            elif message["type"] in ("lifespan.shutdown.complete", "lifespan.startup.failed"):
                if self.expirer is not None:
                    await self.expirer.astop()
                await self.manager.aclose()  # the app's own startup failed, or it shut down
            await send(message)

        await self.app(scope, replay_receive, lifespan_send)


def _with_session_headers(message: Message, session: Session, set_cookie: str | None) -> Message:
    """``http.response.start`` plus Set-Cookie / Vary / Cache-Control as the session needs."""
    original = message.get("headers", ())
    headers = original if isinstance(original, (list, tuple)) else list(original)  # any iterable: read it once
    changed = session_headers(session, set_cookie, headers, ASGI_HEADERS)
    if changed is not None:
        return {**message, "headers": changed}
    return message if headers is original else {**message, "headers": headers}


def _host(scope: Scope) -> str | None:
    """The request's Host header (for the plain-http Secure cookie warning)."""
    for name, value in scope.get("headers", ()):
        if name == b"host":
            return str(value.decode("latin-1"))
    return None

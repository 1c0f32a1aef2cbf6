"""``coatcheck.django.middleware.SessionMiddleware``: Django's SessionMiddleware, for
``SESSION_ENGINE = "coatcheck.django"``, with coatcheck's request flow.

In ``MIDDLEWARE`` it takes the place of ``django.contrib.sessions.middleware.SessionMiddleware``
(it is a subclass, so the admin's check for a session middleware still holds). Differences:

* The session the cookie names is loaded when the request arrives and committed once when the
  response leaves, on the store's async API under ASGI (no thread for the session). The app
  itself does no session I/O unless it calls ``save()``, ``exists()``, ``delete()`` or
  ``revoke_user()``.
* A store failure answers 503 (compare-and-set retries exhausted, or the session ended under a
  request that changed it: 409), without traceback or ``Set-Cookie`` and never as an anonymous or
  authenticated request; :meth:`SessionMiddleware.error_response` can be overridden.
* The idle expiry of a session the request used slides (refreshed at most once per
  ``TOUCH_INTERVAL``) and the cookie with it; a response that sets the cookie gets
  ``Cache-Control: no-store`` unless it says ``private`` or ``no-store`` already.
* The store is checked when Django loads the middleware: an unreachable store fails start-up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, cast

from django.conf import settings
from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.utils.cache import patch_cache_control, patch_vary_headers
from django.utils.http import http_date

from .._cookies import wants_secure, warn_if_browsers_drop
from .._http import default_error_response
from ..devices import Client, wsgi_client
from ..errors import CoatcheckError, ConcurrentUpdateError, StoreError
from . import SessionStore
from ._settings import get_manager

__all__ = ["SessionMiddleware"]

log = logging.getLogger("coatcheck")
REFUSED = "coatcheck.refused"  # in request.META once a view's session failure was answered


class SessionMiddleware(DjangoSessionMiddleware):
    """Load the session when the request arrives, commit it when the response leaves."""

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        super().__init__(get_response)
        if not issubclass(self.SessionStore, SessionStore):
            raise ImproperlyConfigured(
                f"coatcheck.django.middleware.SessionMiddleware needs SESSION_ENGINE = 'coatcheck.django', "
                f"not {settings.SESSION_ENGINE!r}"
            )
        manager = get_manager()
        if manager.supports_sync:
            manager.check()  # an unreachable store fails start-up, not the first request

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self._acall(request)
        try:
            self._open(request)._preload()
        except CoatcheckError as exc:
            return self.error_response(request, exc)
        response = cast(HttpResponseBase, self.get_response(request))
        try:
            plan = self._plan(request, response)
            if plan is None:
                return self._unplanned(request, response)
            if plan.commit:
                plan.session._commit(response.status_code, _client(request))
        except CoatcheckError as exc:
            return self.error_response(request, exc)
        return self._cookie(request, response, plan)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        try:
            await self._open(request)._apreload()
        except CoatcheckError as exc:
            return self.error_response(request, exc)
        response = await cast(Awaitable[HttpResponseBase], self.get_response(request))
        try:
            plan = self._plan(request, response)
            if plan is None:
                return self._unplanned(request, response)
            if plan.commit:
                await plan.session._acommit(response.status_code, _client(request))
        except CoatcheckError as exc:
            return self.error_response(request, exc)
        return self._cookie(request, response, plan)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """A store failure or a lost compare-and-set race raised in a view (an explicit
        ``save()``, ``exists()``, ``revoke_user()``) answers like one in the middleware."""
        if isinstance(exception, (StoreError, ConcurrentUpdateError)):
            request.META[REFUSED] = True  # the answer passes back through __call__ untouched
            return self.error_response(request, exception)
        return None

    def error_response(self, request: HttpRequest, exc: CoatcheckError) -> HttpResponse:
        """The middlewares' answer (:func:`coatcheck._http.default_error_response`): 503 when the
        store failed, 409 when compare-and-set retries ran out or the session ended or changed ID
        under this request, 500 otherwise; one error log line, no traceback, no ``Set-Cookie``.
        Override to answer differently."""
        status, headers, body = default_error_response(exc)
        response = HttpResponse(body, status=status)
        for name, value in headers:
            response[name] = value
        return response

    # -- the steps ------------------------------------------------------------------------------

    def _open(self, request: HttpRequest) -> SessionStore:
        session = self.SessionStore(request.COOKIES.get(settings.SESSION_COOKIE_NAME))
        assert isinstance(session, SessionStore)
        session._deferred = True  # a logout is committed here, with the rest
        request.session = session
        return session

    @staticmethod
    def _plan(request: HttpRequest, response: HttpResponseBase) -> _Plan | None:
        """What to commit for this response; None for a response this middleware leaves alone."""
        session = request.session
        if request.META.get(REFUSED) or not isinstance(session, SessionStore):
            return None
        # Django's rule: a modified session (any, with SESSION_SAVE_EVERY_REQUEST) that is not empty.
        save = (session.modified or settings.SESSION_SAVE_EVERY_REQUEST) and not session.is_empty()
        if save:
            session._prepare_save()
        # What the app used is committed (changes, an idle refresh, a new ID, a logout); a request
        # that never touched its session writes nothing.
        due = session._inner is not None and session._inner._requests.cookie_due  # adopted from a legacy session
        return _Plan(session, save or due, save or due or session.accessed or session._pending, _state(session))

    def _unplanned(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if request.META.get(REFUSED):
            return response
        return self.process_response(request, response)  # type: ignore[arg-type]  # the app put another store in place

    def _cookie(self, request: HttpRequest, response: HttpResponseBase, plan: _Plan) -> HttpResponseBase:
        """Set, refresh or delete the cookie as Django's SessionMiddleware does, and refresh it
        too when the commit gave a new ID or moved the idle expiry."""
        session, name = plan.session, settings.SESSION_COOKIE_NAME
        empty = session.is_empty()
        if name in request.COOKIES and empty:
            response.delete_cookie(
                name,
                path=settings.SESSION_COOKIE_PATH,
                domain=settings.SESSION_COOKIE_DOMAIN,
                samesite=settings.SESSION_COOKIE_SAMESITE,
            )
            patch_vary_headers(response, ("Cookie",))
            return response
        vary = session.accessed
        renew = plan.save or _state(session) != plan.state
        if renew and not empty and response.status_code < 500:
            if session.get_expire_at_browser_close():
                max_age: int | None = None
                expires: str | None = None
            else:
                max_age = session.get_expiry_age()
                expires = http_date(time.time() + max_age)
            scheme = request.scheme or "http"
            secure = wants_secure(get_manager().config.cookie, scheme)
            if secure and scheme == "http":
                warn_if_browsers_drop(request.META.get("HTTP_HOST"))
            response.set_cookie(
                name,
                session.session_key or "",
                max_age=max_age,
                expires=expires,
                domain=settings.SESSION_COOKIE_DOMAIN,
                path=settings.SESSION_COOKIE_PATH,
                secure=secure,
                httponly=bool(settings.SESSION_COOKIE_HTTPONLY),
                samesite=settings.SESSION_COOKIE_SAMESITE,
            )
            _not_shared(response)
            vary = True
        if vary:
            patch_vary_headers(response, ("Cookie",))
        return response


class _Plan(NamedTuple):
    session: SessionStore
    save: bool  # Django would save: the cookie is sent
    commit: bool
    state: tuple[str | None, float | None]


def _state(session: SessionStore) -> tuple[str | None, float | None]:
    """What the cookie depends on: the key and the stored expiry."""
    inner = session._inner
    return session._session_key, (None if inner is None or inner.is_new else inner.expires_at)


def _not_shared(response: HttpResponseBase) -> None:
    """A response that sets the session cookie is never stored by a shared cache."""
    if not response.has_header("Cache-Control"):
        response["Cache-Control"] = "no-store"
        return
    directives = {part.split("=", 1)[0].strip().lower() for part in response["Cache-Control"].split(",")}
    if not directives & {"private", "no-store"}:
        patch_cache_control(response, private=True)


def _client(request: HttpRequest) -> Client | None:
    """The request's browser, kept as device metadata with ``SessionConfig(devices=True)``."""
    return wsgi_client(request.META) if get_manager().config.devices else None

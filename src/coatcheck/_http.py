"""What the ASGI and WSGI middlewares share: the error hook and the response headers."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import AnyStr

from . import _core
from .errors import CoatcheckError, ConcurrentUpdateError, StoreError
from .session import Session

log = logging.getLogger("coatcheck")

ErrorResponse = tuple[int, list[tuple[str, str]], bytes]
ErrorHook = Callable[[CoatcheckError], ErrorResponse]


def default_error_response(exc: CoatcheckError) -> ErrorResponse:
    """Log the failure and answer without a traceback: 503 when the store failed, 409 when
    compare-and-set retries ran out, 500 otherwise. Replace it with ``on_error=``."""
    if isinstance(exc, StoreError):
        status = HTTPStatus.SERVICE_UNAVAILABLE
    elif isinstance(exc, ConcurrentUpdateError):
        status = HTTPStatus.CONFLICT
    else:
        status = HTTPStatus.INTERNAL_SERVER_ERROR
    log.error("session %s: %s: %s", "store failure" if status == 503 else "error", type(exc).__name__, exc)
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Cache-Control", "no-store")]
    if status == HTTPStatus.SERVICE_UNAVAILABLE:
        headers.append(("Retry-After", "1"))
    return int(status), headers, f"{status.value} {status.phrase}\n".encode()


def status_line(code: int) -> str:
    """``"503 Service Unavailable"`` for 503."""
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return f"{code} Unknown"


def response_flags(headers: Iterable[tuple[AnyStr, AnyStr]], names: tuple[AnyStr, AnyStr, AnyStr]) -> tuple[bool, bool]:
    """Whether a response's own headers set Cache-Control, and whether they vary on Cookie.

    ``names`` is ``("cache-control", "vary", "cookie")`` in the headers' type (``str`` for
    WSGI, ``bytes`` for ASGI), so neither middleware converts its headers to scan them.
    """
    cache_control, vary, cookie = names
    has_cache_control = varies_on_cookie = False
    for name, value in headers:
        lower = name.lower()
        if lower == cache_control:
            has_cache_control = True
        elif lower == vary and cookie in value.lower():
            varies_on_cookie = True
    return has_cache_control, varies_on_cookie


def session_headers(
    session: Session,
    set_cookie: str | None,
    headers: Iterable[tuple[AnyStr, AnyStr]],
    names: tuple[AnyStr, AnyStr, AnyStr],
) -> list[tuple[str, str]]:
    """The headers to add to a response whose own headers are ``headers`` (scanned with ``names``,
    see :func:`response_flags`)."""
    has_cache_control, varies_on_cookie = response_flags(headers, names)
    return _core.extra_response_headers(
        session, set_cookie, has_cache_control=has_cache_control, varies_on_cookie=varies_on_cookie
    )

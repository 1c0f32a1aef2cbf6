"""What the ASGI and WSGI middlewares share: the error hook and the response headers."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from http import HTTPStatus

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


def session_headers(session: Session, set_cookie: str | None, headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The headers to add to a response whose own headers are ``headers``."""
    has_cache_control = False
    vary: list[str] = []
    for name, value in headers:
        lower = name.lower()
        if lower == "cache-control":
            has_cache_control = True
        elif lower == "vary":
            vary.append(value)
    return _core.extra_response_headers(
        session, set_cookie, has_cache_control=has_cache_control, vary=", ".join(vary) if vary else None
    )

"""What the ASGI and WSGI middlewares share: the error hook and the response headers."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import AnyStr, Generic

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


def _latin1(value: str) -> bytes:
    return value.encode("latin-1")


def status_line(code: int) -> str:
    """``"503 Service Unavailable"`` for 503."""
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return f"{code} Unknown"


@dataclass(frozen=True, slots=True)
class HeaderDialect(Generic[AnyStr]):
    """One middleware's header type (``str`` for WSGI, lower-case ``bytes`` for ASGI): the names
    :func:`session_headers` scans for and the headers it adds, built once."""

    cache_control: AnyStr  # lower-case names
    vary: AnyStr
    cookie: AnyStr
    set_cookie: AnyStr
    vary_cookie: tuple[AnyStr, AnyStr]
    no_store: tuple[AnyStr, AnyStr]
    encode: Callable[[str], AnyStr]


WSGI_HEADERS = HeaderDialect(
    "cache-control", "vary", "cookie", "Set-Cookie", ("Vary", "Cookie"), ("Cache-Control", "no-store"), str
)
ASGI_HEADERS = HeaderDialect(
    b"cache-control", b"vary", b"cookie", b"set-cookie", (b"vary", b"Cookie"), (b"cache-control", b"no-store"), _latin1
)


def session_headers(
    session: Session, set_cookie: str | None, headers: Iterable[tuple[AnyStr, AnyStr]], dialect: HeaderDialect[AnyStr]
) -> list[tuple[AnyStr, AnyStr]]:
    """The headers to add to a response whose own headers are ``headers``: ``Set-Cookie`` (with
    ``Cache-Control: no-store`` unless the app set a Cache-Control) and ``Vary: Cookie`` when the
    session was used (unless the app already varies on Cookie)."""
    if set_cookie is None and not session.accessed:
        return []
    has_cache_control = varies_on_cookie = False
    for name, value in headers:
        lower = name.lower()
        if lower == dialect.cache_control:
            has_cache_control = True
        elif lower == dialect.vary and dialect.cookie in value.lower():
            varies_on_cookie = True
    extra: list[tuple[AnyStr, AnyStr]] = []
    if set_cookie is not None:
        extra.append((dialect.set_cookie, dialect.encode(set_cookie)))
        if not has_cache_control:
            extra.append(dialect.no_store)
    if not varies_on_cookie:
        extra.append(dialect.vary_cookie)
    return extra

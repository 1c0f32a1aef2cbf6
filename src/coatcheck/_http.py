"""What the ASGI and WSGI middlewares share: the error hook and the response headers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import AnyStr, Generic

from ._logs import log
from .errors import CoatcheckError, ConcurrentUpdateError, StoreError
from .session import Session

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
    decode: Callable[[AnyStr], str]


def _str(value: str) -> str:
    return value


def _from_latin1(value: bytes) -> str:
    return value.decode("latin-1")


WSGI_HEADERS = HeaderDialect(
    "cache-control", "vary", "cookie", "Set-Cookie", ("Vary", "Cookie"), ("Cache-Control", "no-store"), _str, _str
)
ASGI_HEADERS = HeaderDialect(
    b"cache-control",
    b"vary",
    b"cookie",
    b"set-cookie",
    (b"vary", b"Cookie"),
    (b"cache-control", b"no-store"),
    _latin1,
    _from_latin1,
)


def session_headers(
    session: Session, set_cookie: str | None, headers: Sequence[tuple[AnyStr, AnyStr]], dialect: HeaderDialect[AnyStr]
) -> list[tuple[AnyStr, AnyStr]] | None:
    """The response headers with the session's added, or None when they stay as they are.

    A legacy cookie the request carried (see :mod:`coatcheck.legacy`) is cleared, unless the
    session's own cookie, of the same name, path and domain, replaces it.
    ``Set-Cookie`` goes with ``Cache-Control: no-store`` when the app set no Cache-Control, and
    when the app's would let a shared cache store the response (``public``, ``s-maxage``, a bare
    ``max-age``), it is made ``private`` (C-39: one user's cookie must never be served to
    another). ``Vary: Cookie`` is added when the session was used, unless the app already
    varies on Cookie.
    """
    legacy = session._legacy_cookie
    if set_cookie is None and not session._accessed and legacy is None:
        return None
    extra = [(dialect.set_cookie, dialect.encode(set_cookie))] if set_cookie is not None else []
    if legacy is not None and (set_cookie is None or not legacy[1]):  # a legacy cookie ours does not replace
        extra.append((dialect.set_cookie, dialect.encode(legacy[0])))
    if extra:  # a cookie goes out: the response must not be stored by a shared cache
        if _has(headers, dialect.cache_control):
            headers = _private(headers, dialect)
        else:
            extra.append(dialect.no_store)
    if not _has(headers, dialect.vary, dialect.cookie):
        extra.append(dialect.vary_cookie)
    if not extra:
        return None
    result = list(headers)
    result.extend(extra)
    return result


def _has(headers: Sequence[tuple[AnyStr, AnyStr]], lower_name: AnyStr, lower_token: AnyStr | None = None) -> bool:
    """Whether ``headers`` hold a ``lower_name`` header (whose value contains ``lower_token``, if given)."""
    for name, value in headers:  # noqa: SIM110 - a loop: any() over a generator costs more per response
        if name.lower() == lower_name and (lower_token is None or lower_token in value.lower()):
            return True
    return False


_SHARED_ONLY = frozenset({"public", "s-maxage", "proxy-revalidate"})  # directives for shared caches
_warned_cacheable = False


def _private(headers: Sequence[tuple[AnyStr, AnyStr]], dialect: HeaderDialect[AnyStr]) -> Sequence[tuple[AnyStr, AnyStr]]:
    """``headers`` with a Cache-Control that no shared cache may store (``private`` or
    ``no-store`` already there wins; else ``private`` replaces the shared-cache directives)."""
    original = ", ".join(dialect.decode(value) for name, value in headers if name.lower() == dialect.cache_control)
    directives = [part.strip() for part in original.split(",") if part.strip()]
    names = {directive.split("=", 1)[0].strip().lower() for directive in directives}
    if "private" in names or "no-store" in names:
        return headers
    global _warned_cacheable
    if not _warned_cacheable:
        _warned_cacheable = True
        log.warning(
            "a response that sets the session cookie had Cache-Control %r, which lets shared caches store it;"
            " sent as 'private' (logged once)",
            original,
        )
    kept: list[str] = ["private"]
    kept += (directive for directive in directives if directive.split("=", 1)[0].strip().lower() not in _SHARED_ONLY)
    result = [(name, value) for name, value in headers if name.lower() != dialect.cache_control]
    result.append((dialect.no_store[0], dialect.encode(", ".join(kept))))
    return result

"""Cookies, read and written: the session cookie's candidates in a request's ``Cookie`` headers,
its ``Set-Cookie`` values, a legacy system's cookie, and the warning about a ``Secure`` cookie
over plain http. Pure functions: no I/O, no store, no session."""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable
from email.utils import formatdate
from typing import TYPE_CHECKING

from ._ids import is_valid_id, log_handle
from ._logs import log, security_log
from .config import CookieConfig

if TYPE_CHECKING:
    from ._core import Rejected
    from .legacy import LegacyCookie

__all__ = [
    "MAX_COOKIE_CANDIDATES",
    "clear_cookie_header",
    "cookie_attributes",
    "cookie_candidates",
    "legacy_clear_header",
    "legacy_value",
    "set_cookie_header",
    "wants_secure",
    "warn_if_browsers_drop",
]

MAX_COOKIE_CANDIDATES = 3


def cookie_candidates(
    cookie_headers: Iterable[str], name: str, *, legacy_name: bool = False, rejected: Rejected | None = None
) -> list[str]:
    """Values of cookie ``name`` in request order, well-formed IDs only; linear in header size.

    Pairs that are malformed, nameless (``=name=value``) or of other names are skipped, so one
    bad cookie never hides the session cookie. Malformed session values cause one security log
    line per request however many there are (hashed, and rate-limited per process), unless a
    legacy reader reads cookies of this ``name`` (``legacy_name``): they are its to judge and log;
    ``rejected``, if given, is told of each (reason ``malformed``).
    """
    found: list[str] = []
    malformed: list[str] = []
    pattern = _cookie_pattern(name)
    for header in cookie_headers:
        if name not in header:
            continue
        for value in pattern.findall(header):
            value = value.strip(" \t")  # RFC 6265 OWS only: other padding makes a value malformed
            if not is_valid_id(value):
                malformed.append(value)
            elif value not in found:
                found.append(value)
                if len(found) >= MAX_COOKIE_CANDIDATES:
                    break
        if len(found) >= MAX_COOKIE_CANDIDATES:
            break
    if malformed and not legacy_name:
        first = log_handle(malformed[0][:4096])
        security_log(logging.WARNING, "%d malformed session cookie value(s) ignored (first: sha256 %s)", len(malformed), first)
        if rejected is not None:
            for _ in malformed:
                rejected("malformed", None)
    return found


@functools.lru_cache(maxsize=16)
def _cookie_pattern(name: str) -> re.Pattern[str]:
    """Matches each ``name=value`` pair of a Cookie header and captures the value."""
    return re.compile(r"(?:^|;)\s*" + re.escape(name) + r"\s*=([^;]*)")


def cookie_attributes(cookie: CookieConfig, *, secure: bool) -> str:
    """The attributes after the value: ``"; Path=/; Secure; HttpOnly; SameSite=Lax"``."""
    parts = [f"Path={cookie.path}"]
    if cookie.domain:
        parts.append(f"Domain={cookie.domain}")
    if secure:
        parts.append("Secure")
    if cookie.http_only:
        parts.append("HttpOnly")
    parts.append(f"SameSite={cookie.same_site.capitalize()}")
    return "; " + "; ".join(parts)


def set_cookie_header(cookie: CookieConfig, session_id: str, max_age: int, attributes: str) -> str:
    """The ``Set-Cookie`` value that hands the browser ``session_id`` for ``max_age`` seconds."""
    if cookie.persistent:
        return f"{cookie.name}={session_id}; Max-Age={max_age}{attributes}"
    return f"{cookie.name}={session_id}{attributes}"


def clear_cookie_header(cookie: CookieConfig, attributes: str) -> str:
    """The ``Set-Cookie`` value that deletes the session cookie (same Path and Domain)."""
    return f"{cookie.name}=; Max-Age=0; Expires={formatdate(0, usegmt=True)}{attributes}"


_warned_insecure = False
_LOOPBACK = re.compile(r"(localhost|[^:]+\.localhost|127\.\d+\.\d+\.\d+|\[::1\])(:\d+)?", re.IGNORECASE)


def warn_if_browsers_drop(host: str | None) -> None:
    """Log, once per process, that a ``Secure`` cookie sent over plain http to ``host`` is
    dropped by browsers (all but localhost, which they treat as secure), and what to set."""
    global _warned_insecure
    if _warned_insecure or host is None or _LOOPBACK.fullmatch(host):
        return
    _warned_insecure = True
    log.warning(
        "a Secure session cookie was sent over plain http to %r: browsers drop it, so every request"
        " starts a new session. Serve over https, or for development set CookieConfig(secure='auto')"
        " (or secure=False); logged once",
        host[:255],
    )


def wants_secure(cookie: CookieConfig, scheme: str) -> bool:
    """Whether this response's cookie gets ``Secure``: by option, or by scheme for ``"auto"``."""
    return scheme in ("https", "wss") if cookie.secure == "auto" else bool(cookie.secure)


# -- a legacy system's cookie (see coatcheck.legacy) -----------------------------------------------


def legacy_value(cookie_headers: Iterable[str], name: str, limit: int) -> str | None:
    """The first non-empty value of cookie ``name`` of at most ``limit`` characters, if any."""
    pattern = _cookie_pattern(name)
    for header in cookie_headers:
        if name in header:
            for value in pattern.findall(header):
                value = value.strip(" \t")
                if value and len(value) <= limit:
                    return str(value)
    return None


def legacy_clear_header(cookie: LegacyCookie, secure: bool) -> str:
    """The ``Set-Cookie`` value that deletes a legacy cookie, with the name, path and domain it was set with."""
    parts = [f"{cookie.name}=; Max-Age=0; Expires={formatdate(0, usegmt=True)}; Path={cookie.path}"]
    if cookie.domain:
        parts.append(f"Domain={cookie.domain}")
    if secure or cookie.name.startswith(("__Secure-", "__Host-")):
        parts.append("Secure")
    parts.append("HttpOnly")
    return "; ".join(parts)

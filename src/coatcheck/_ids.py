"""Session IDs and the keys stores see."""

from __future__ import annotations

import hashlib
import re
import secrets

ID_BYTES = 32
ID_LENGTH = 43  # len(secrets.token_urlsafe(32))
_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")


def new_session_id() -> str:
    """A fresh session ID: 256 bits from :mod:`secrets`, URL-safe base64, 43 characters."""
    return secrets.token_urlsafe(ID_BYTES)


def is_valid_id(value: str) -> bool:
    """True for a well-formed session ID (length first, so long values cost nothing)."""
    return len(value) == ID_LENGTH and _ID_PATTERN.fullmatch(value) is not None


def store_key(session_id: str) -> str:
    """The key a store sees: SHA-256 of the ID in hex. No store holds a raw ID."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def log_handle(session_id: str) -> str:
    """A short, irreversible tag for log lines and session listings (never show a raw ID)."""
    return handle_of_key(store_key(session_id))


def handle_of_key(key: str) -> str:
    """The :func:`log_handle` of the session stored under ``key``."""
    return key[:16]

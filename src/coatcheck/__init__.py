"""coatcheck: server-side HTTP sessions for Python web apps.

The browser holds only a random session ID in a cookie; the data stays in a store on the server.
"""

from __future__ import annotations

from .config import CookieConfig, SessionConfig
from .errors import (
    CoatcheckError,
    ConcurrentUpdateError,
    ConfigurationError,
    MiddlewareNotInstalledError,
    NotSupportedError,
    SessionInterruptedError,
    SessionTooLargeError,
    SessionValueError,
    StoreError,
    StoreUnavailableError,
)
from .manager import SessionInfo, SessionManager
from .session import Session
from .stores import AsyncStore, Record, Store

__all__ = [
    "AsyncStore",
    "CoatcheckError",
    "ConcurrentUpdateError",
    "ConfigurationError",
    "CookieConfig",
    "MiddlewareNotInstalledError",
    "NotSupportedError",
    "Record",
    "Session",
    "SessionConfig",
    "SessionInfo",
    "SessionInterruptedError",
    "SessionManager",
    "SessionTooLargeError",
    "SessionValueError",
    "Store",
    "StoreError",
    "StoreUnavailableError",
]

"""The exceptions coatcheck raises.

::

    CoatcheckError
     +- ConfigurationError (also ValueError)   bad options, unknown URL scheme, missing driver extra
     +- MiddlewareNotInstalledError            session used without the middleware
     +- NotSupportedError                      a store lacks a capability the caller needs
     +- ConcurrentUpdateError                  compare-and-set retries exhausted
     +- SessionInterruptedError            the session ended or changed ID under this request
     +- SessionTooLargeError                   encoded session over the configured limit
 +- SessionValueError (also TypeError)     a value that is not JSON that comes back exactly
     +- StoreError                             a backend failed; raised ``from`` the driver's error
         +- StoreUnavailableError              connect / timeout / refused

A missing, expired, malformed or corrupt session is *not* an error: the request gets a fresh
session. Exceptions never carry a raw session ID.
"""

from __future__ import annotations

__all__ = [
    "CoatcheckError",
    "ConcurrentUpdateError",
    "ConfigurationError",
    "MiddlewareNotInstalledError",
    "NotSupportedError",
    "SessionInterruptedError",
    "SessionTooLargeError",
    "SessionValueError",
    "StoreError",
    "StoreUnavailableError",
]


class CoatcheckError(Exception):
    """Base class of every exception coatcheck raises on purpose."""


class ConfigurationError(CoatcheckError, ValueError):
    """Raised by constructors for bad options, an unknown store URL or a missing driver extra."""


class MiddlewareNotInstalledError(CoatcheckError, RuntimeError):
    """Raised when a session is looked up in a request the session middleware did not see."""


class NotSupportedError(CoatcheckError):
    """Raised when a store lacks a capability (sync or async side, user index, ...)."""


class ConcurrentUpdateError(CoatcheckError):
    """Raised when a commit lost the compare-and-set race more times than configured."""


class SessionInterruptedError(ConcurrentUpdateError):
    """Raised by a commit whose changes cannot be saved because a concurrent request ended the
    session (logout, ``revoke_user``) or gave it a new ID (``rotate``, ``login``) after this
    request loaded it, or because it expired while the request ran. Nothing is written; the
    middlewares answer 409."""


class SessionTooLargeError(CoatcheckError):
    """Raised when the encoded session would exceed ``SessionConfig.max_size`` bytes."""


class SessionValueError(CoatcheckError, TypeError):
    """A session value that would not come back exactly as it was stored (not JSON, a tuple, an
    int past 64 bits). Raised naming the key when the value is set, or, for a list or dict read
    from the session and then changed in place, when the session is committed (the middlewares
    then answer 500, without a traceback, with the key in the error log line)."""


class StoreError(CoatcheckError):
    """A store backend failed. Always raised ``from`` the driver's own exception."""


class StoreUnavailableError(StoreError):
    """The store could not be reached in time (refused, timed out, pool exhausted)."""

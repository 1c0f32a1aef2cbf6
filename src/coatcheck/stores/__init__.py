"""Session stores and the URL registry.

Each backend's module is imported only when its URL scheme is used, so ``import coatcheck``
pulls in no database driver. A missing driver raises :class:`ConfigurationError` with the
``pip install`` line that fixes it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigurationError
from ._protocol import (
    AsyncStore,
    Record,
    Store,
    SupportsAsyncRotate,
    SupportsAsyncScan,
    SupportsAsyncTouch,
    SupportsAsyncUserIndex,
    SupportsRotate,
    SupportsScan,
    SupportsTouch,
    SupportsUserIndex,
    asyncio_only,
    expires_natively,
    implements,
    nonblocking,
)

__all__ = [
    "SCHEMES",
    "AsyncStore",
    "Record",
    "Store",
    "SupportsAsyncRotate",
    "SupportsAsyncScan",
    "SupportsAsyncTouch",
    "SupportsAsyncUserIndex",
    "SupportsRotate",
    "SupportsScan",
    "SupportsTouch",
    "SupportsUserIndex",
    "asyncio_only",
    "expires_natively",
    "from_url",
    "implements",
    "nonblocking",
]

# scheme -> (module, class, the extra that brings its driver)
SCHEMES: dict[str, tuple[str, str, str | None]] = {
    "memory": ("coatcheck.stores.memory", "MemoryStore", None),
    "sqlite": ("coatcheck.stores.sqlite", "SQLiteStore", None),
    "postgresql": ("coatcheck.stores.postgres", "PostgresStore", "postgres"),
    "postgres": ("coatcheck.stores.postgres", "PostgresStore", "postgres"),
    "mysql": ("coatcheck.stores.mysql", "MySQLStore", "mysql"),
    "mariadb": ("coatcheck.stores.mysql", "MySQLStore", "mysql"),
    "redis": ("coatcheck.stores.redis", "RedisStore", "redis"),
    "rediss": ("coatcheck.stores.redis", "RedisStore", "redis"),
    "unix": ("coatcheck.stores.redis", "RedisStore", "redis"),
    "redis+cluster": ("coatcheck.stores.redis", "RedisClusterStore", "redis"),
}


def from_url(url: str, *, clock: Callable[[], float] | None = None) -> Any:
    """Build the store a URL names, e.g. ``"sqlite:///sessions.db"`` or ``"memory://"``."""
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if scheme not in SCHEMES:
        known = ", ".join(f"{name}://" for name in sorted(SCHEMES))
        raise ConfigurationError(f"unknown store URL scheme {scheme or url!r}; known schemes: {known}")
    module_name, class_name, extra = SCHEMES[scheme]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = f"pip install 'coatcheck[{extra}]'" if extra else "reinstall coatcheck"
        raise ConfigurationError(f"the {scheme}:// store needs a driver that is not installed ({exc.name}): {hint}") from exc
    store_class = getattr(module, class_name)
    kwargs = {} if clock is None else {"clock": clock}
    return store_class.from_url(url, **kwargs)

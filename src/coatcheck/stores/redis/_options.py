"""Redis URLs: their options, checked, and what the clients are built from."""

from __future__ import annotations

import math
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl

from ...errors import ConfigurationError
from .._urls import flag, query_options

if TYPE_CHECKING:  # redis-py is imported where it is used: redis:// URLs run without it
    import redis.asyncio.retry
    import redis.retry

RetryT = TypeVar("RetryT", "redis.retry.Retry", "redis.asyncio.retry.Retry")

DEFAULT_TIMEOUT = 1.0
DEFAULT_MAX_CONNECTIONS = 50


def _positive(kind: type[float] | type[int]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if not value > 0 or not math.isfinite(value):
            raise ValueError(f"{text!r} is not positive")
        return value

    return parse


_STORE_OPTIONS: dict[str, Callable[[str], Any]] = {"key_prefix": str, "max_lifetime": _positive(float)}
_POOL_OPTIONS: dict[str, Callable[[str], Any]] = {
    "socket_timeout": _positive(float),
    "socket_connect_timeout": _positive(float),
    "max_connections": _positive(int),
    "pool_timeout": _positive(float),
    "client_name": str,
}
_TLS_OPTIONS: dict[str, Callable[[str], Any]] = {
    "ssl_ca_certs": str,
    "ssl_certfile": str,
    "ssl_keyfile": str,
    "ssl_cert_reqs": str,
    "ssl_check_hostname": flag,
}


def _query(query: str, *, cluster: bool, tls: bool) -> dict[str, Any]:
    known: dict[str, Callable[[str], Any]] = {**_STORE_OPTIONS, **_POOL_OPTIONS}
    if tls:
        known.update(_TLS_OPTIONS)
    if not cluster:
        known["db"] = str
    if not cluster:  # one connection per thread and per event loop: no pool to size or wait for
        del known["max_connections"], known["pool_timeout"]
        for name, _ in parse_qsl(query, keep_blank_values=True):
            if name in ("max_connections", "pool_timeout"):
                raise ConfigurationError(
                    f"Redis URL option {name!r} applies to redis+cluster:// only: a redis:// store keeps one"
                    " connection per thread and per event loop, with no pool to size or wait for"
                )
    return query_options(query, known, "Redis")


def _store_options(options: dict[str, Any]) -> dict[str, Any]:
    return {name: options[name] for name in _STORE_OPTIONS if name in options}


def _pool_options(options: dict[str, Any]) -> dict[str, Any]:
    pool: dict[str, Any] = {
        "socket_timeout": DEFAULT_TIMEOUT,
        "socket_connect_timeout": DEFAULT_TIMEOUT,
        "max_connections": DEFAULT_MAX_CONNECTIONS,
        "timeout": DEFAULT_TIMEOUT,
    }
    for name, value in options.items():
        if name in _POOL_OPTIONS or name in _TLS_OPTIONS:
            pool["timeout" if name == "pool_timeout" else name] = value
    return pool


def _ssl_context(options: dict[str, Any]) -> ssl.SSLContext:
    """A client TLS context from the ``ssl_*`` URL options (verifying the server by default)."""
    modes = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
    mode = modes.get(options.get("ssl_cert_reqs", "required").lower())
    if mode is None:
        raise ConfigurationError(f"ssl_cert_reqs must be one of {', '.join(modes)}")
    try:
        context = ssl.create_default_context(cafile=options.get("ssl_ca_certs"))
        context.check_hostname = mode != ssl.CERT_NONE and options.get("ssl_check_hostname", True)
        context.verify_mode = mode
        if "ssl_certfile" in options:
            context.load_cert_chain(options["ssl_certfile"], options.get("ssl_keyfile"))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"bad Redis TLS options: {exc}") from exc
    return context


def _retry_once(kind: type[RetryT]) -> RetryT:
    """Retry a command once, at once, after a dropped connection (a stale pooled socket after a
    server restart); never after a timeout, so a hung server costs one timeout, not several."""
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError

    return kind(NoBackoff(), 1, supported_errors=(RedisConnectionError,))


def _db(parts: Any, query_db: str | None) -> int:
    path_db = parts.path.strip("/") if parts.scheme != "unix" else ""
    if path_db and query_db is not None:
        raise ConfigurationError("give the Redis database either in the path or as ?db=, not both")
    text = query_db if query_db is not None else (path_db or "0")
    if not text.isdigit():
        raise ConfigurationError(f"Redis database must be a number, not {text!r}")
    return int(text)


def _host_port(item: str) -> tuple[str, int]:
    host, sep, port = item.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigurationError(f"redis+cluster:// node {item!r} must be host:port")
    return host, int(port)

"""Configuration: frozen, keyword-only dataclasses validated when they are built."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from ._sealing import secret_bytes
from .errors import ConfigurationError

__all__ = ["CookieConfig", "SessionConfig"]

SameSite = Literal["lax", "strict", "none"]
Secure = Literal["auto"] | bool

# RFC 6265 cookie-name: an RFC 7230 token.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_PATH = re.compile(r"/[\x21-\x3a\x3c-\x7e]*")  # visible ASCII except ';'
_DOMAIN = re.compile(r"\.?[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")
_MAX_COOKIE_BYTES = 4096
_ID_LENGTH = 43
MAX_LIFETIME = 400 * 24 * 3600.0  # seconds: the longest a browser keeps a cookie (RFC 6265bis)


def _seconds(name: str, value: timedelta | float) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        raise ConfigurationError(f"{name} must be a timedelta or a finite number of seconds, not {value!r}")
    return float(seconds)


@dataclass(frozen=True, slots=True, kw_only=True)
class CookieConfig:
    """How the session cookie is named and flagged. The defaults are the secure ones.

    ``secure`` is ``True`` (always send ``Secure``), ``False`` (plain-http development) or
    ``"auto"`` (``Secure`` when the request's scheme is https). ``persistent=False`` sends a
    browser-session cookie without ``Max-Age``.
    """

    name: str = "sessionid"
    path: str = "/"
    domain: str | None = None
    secure: Secure = True
    http_only: bool = True
    same_site: SameSite = "lax"
    persistent: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _TOKEN.fullmatch(self.name):
            raise ConfigurationError(f"cookie name {self.name!r} is not a valid RFC 6265 token")
        if not isinstance(self.path, str) or not _PATH.fullmatch(self.path):
            raise ConfigurationError(f"cookie path {self.path!r} must start with '/' and hold no ';', space or control character")
        if self.domain is not None and (not isinstance(self.domain, str) or not _DOMAIN.fullmatch(self.domain)):
            raise ConfigurationError(f"cookie domain {self.domain!r} is not a valid host name")
        if self.secure not in (True, False, "auto"):
            raise ConfigurationError(f"secure must be True, False or 'auto', not {self.secure!r}")
        if self.same_site not in ("lax", "strict", "none"):
            raise ConfigurationError(f"same_site must be 'lax', 'strict' or 'none', not {self.same_site!r}")
        if self.same_site == "none" and self.secure is not True:
            raise ConfigurationError("same_site='none' needs secure=True: browsers drop such cookies otherwise")
        # Browsers match the prefixes case-insensitively (RFC 6265bis), so "__HOST-" is "__Host-".
        prefix = self.name[:9].lower()
        if prefix.startswith("__host-") and (self.secure is not True or self.path != "/" or self.domain is not None):
            raise ConfigurationError("a '__Host-' cookie needs secure=True, path='/' and no domain")
        if prefix == "__secure-" and self.secure is not True:
            raise ConfigurationError("a '__Secure-' cookie needs secure=True")
        longest = len(self.name) + _ID_LENGTH + len(self.path) + len(self.domain or "") + 128
        if longest > _MAX_COOKIE_BYTES:
            raise ConfigurationError(
                f"the session cookie would exceed {_MAX_COOKIE_BYTES} bytes; shorten its name, path or domain"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionConfig:
    """Session policy: cookie, timeouts, size limit and commit behaviour.

    ``idle_timeout`` slides with activity; ``absolute_timeout`` counts from creation (or login)
    whatever the activity. A read-only request refreshes the idle expiry at most once per
    ``touch_interval``. Durations are ``timedelta`` objects or seconds.

    ``devices=True`` keeps, beside each session's data, what a "your devices" page shows: the
    browser's user agent (at most 256 characters) and its address, truncated to the network of
    ``device_address_bits`` (IPv4, IPv6; ``(32, 128)`` keeps it whole), taken from the request
    that last saved the session, and the time of the login (see ``docs/operations.md``).

    ``encryption_keys`` (secrets of 32 bytes or more; extra ``coatcheck[crypto]``) seal each
    session's data with AES-256-GCM under a key derived from the first secret and the session's
    own ID; every listed secret opens. A record that is not sealed then reads as no session,
    unless ``accept_unsealed`` (while turning encryption on for a store that already holds
    sessions: see ``docs/encryption.md``).
    """

    cookie: CookieConfig = field(default_factory=CookieConfig)
    idle_timeout: timedelta | float = timedelta(minutes=30)
    absolute_timeout: timedelta | float = timedelta(hours=12)
    touch_interval: timedelta | float = timedelta(minutes=1)
    max_size: int = 64 * 1024
    save_on_server_error: bool = False
    max_commit_attempts: int = 32
    devices: bool = False
    device_address_bits: tuple[int, int] = (24, 48)
    encryption_keys: Sequence[bytes | str] = field(default=(), repr=False)
    accept_unsealed: bool = False
    idle_seconds: float = field(init=False, repr=False, compare=False)
    absolute_seconds: float = field(init=False, repr=False, compare=False)
    touch_seconds: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.cookie, CookieConfig):
            raise ConfigurationError(f"cookie must be a CookieConfig, not {type(self.cookie).__name__}")
        idle = _seconds("idle_timeout", self.idle_timeout)
        absolute = _seconds("absolute_timeout", self.absolute_timeout)
        touch = _seconds("touch_interval", self.touch_interval)
        if idle <= 0 or absolute <= 0:
            raise ConfigurationError("idle_timeout and absolute_timeout must be positive")
        if idle > absolute:
            raise ConfigurationError("idle_timeout cannot be longer than absolute_timeout")
        if absolute > MAX_LIFETIME:
            raise ConfigurationError("absolute_timeout cannot pass 400 days, the longest a browser keeps a cookie")
        if not 0 <= touch < idle:
            raise ConfigurationError("touch_interval must be at least 0 and shorter than idle_timeout")
        if isinstance(self.max_size, bool) or not isinstance(self.max_size, int) or self.max_size < 64:
            raise ConfigurationError("max_size must be an int of at least 64 bytes")
        if (
            isinstance(self.max_commit_attempts, bool)
            or not isinstance(self.max_commit_attempts, int)
            or self.max_commit_attempts < 1
        ):
            raise ConfigurationError("max_commit_attempts must be a positive int")
        if not isinstance(self.devices, bool):
            raise ConfigurationError("devices must be True or False")
        bits = self.device_address_bits
        if (
            not isinstance(bits, tuple)
            or len(bits) != 2
            or not all(type(each) is int for each in bits)
            or not (0 <= bits[0] <= 32 and 0 <= bits[1] <= 128)
        ):
            raise ConfigurationError("device_address_bits must be (IPv4 bits 0-32, IPv6 bits 0-128), like (24, 48)")
        if isinstance(self.encryption_keys, (str, bytes)) or not isinstance(self.encryption_keys, Sequence):
            raise ConfigurationError("encryption_keys must be a list of secrets (the first seals, every one opens)")
        keys = tuple(secret_bytes("encryption_keys", key) for key in self.encryption_keys)
        if len(set(keys)) != len(keys):
            raise ConfigurationError("encryption_keys holds the same secret twice")
        object.__setattr__(self, "encryption_keys", keys)
        if not isinstance(self.accept_unsealed, bool):
            raise ConfigurationError("accept_unsealed must be True or False")
        object.__setattr__(self, "idle_seconds", idle)
        object.__setattr__(self, "absolute_seconds", absolute)
        object.__setattr__(self, "touch_seconds", touch)

"""Readers of the sessions a team is switching from, so that the switch logs nobody out.

Give the manager (or an integration) ``legacy=[reader, ...]``. On a request that carries no live
coatcheck session but a cookie a reader knows, the reader checks it the way the old system did
(its signature, or a lookup in its store) and returns the session's data and user. coatcheck
then stores that data as a new session (a new ID, the user bound), sends its cookie, clears the
legacy cookie and has the reader delete the legacy record: each legacy session is adopted at
most once. A copy of the legacy cookie replayed later adopts nothing (coatcheck keeps a claim on
the cookie's hash until the cookie's own expiry); two requests that carry it at once end up in
the same new session.

Readers here: :func:`django`, :func:`flask_cookie`, :func:`flask_session`,
:func:`starlette_cookie` and :func:`starsessions`. A home-made session system needs only a small
class that follows :class:`LegacyReader`. No reader ever unpickles: a legacy record in a pickle
format adopts nothing and is logged. See ``docs/switching.md``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from importlib import import_module
from typing import Any, Literal, Protocol, runtime_checkable

from ._aio import to_thread
from ._logs import security_log
from .errors import CoatcheckError, ConfigurationError, NotSupportedError, StoreError

__all__ = [
    "LegacyCookie",
    "LegacyReader",
    "LegacySession",
    "ListableReader",
    "django",
    "flask_cookie",
    "flask_session",
    "starlette_cookie",
    "starsessions",
]

MAX_LEGACY_VALUE = 4096  # longer cookie values are never handed to a reader
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,255}")
_PATH = re.compile(r"/[ -:<-~]{0,1023}")
_DOMAIN = re.compile(r"\.?[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})*")
_log = logging.getLogger("coatcheck.legacy")


@dataclass(frozen=True, slots=True)
class LegacyCookie:
    """Where the old system kept its cookie: the name, path and domain it was set with (the
    legacy cookie is cleared with the same three)."""

    name: str
    path: str = "/"
    domain: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _TOKEN.fullmatch(self.name):
            raise ConfigurationError(f"legacy cookie name must be a cookie name (an RFC 6265 token), not {self.name!r}")
        if not isinstance(self.path, str) or not _PATH.fullmatch(self.path):
            raise ConfigurationError(
                f"legacy cookie path must start with '/' and hold printable ASCII but ';', not {self.path!r}"
            )
        if self.domain is not None and (not isinstance(self.domain, str) or not _DOMAIN.fullmatch(self.domain)):
            raise ConfigurationError(f"legacy cookie domain is not a domain name: {self.domain!r}")


@dataclass(frozen=True, slots=True)
class LegacySession:
    """What a reader found: the session's data, its user (if the old system recorded one; an
    int is taken as its decimal string) and when the old system would have ended it (unix
    seconds; None when it cannot tell)."""

    data: dict[str, Any]
    user_id: str | int | None = None
    expires_at: float | None = None


@runtime_checkable
class LegacyReader(Protocol):
    """Reads one old session system. ``read`` checks a cookie value the way the old system did
    and returns the session, or None when it does not verify, is expired, unknown or unreadable
    (never raise for those: raise only when the old system's store cannot be reached).
    ``forget`` deletes the legacy record after its adoption (nothing to do for a system that
    keeps everything in the cookie). The ``a``-prefixed methods are the same for async apps."""

    name: str
    """A short, stable name ("django-db", "flask-cookie"): in logs, and in the claim kept on a
    cookie once it is adopted, so two readers never claim each other's cookies."""

    cookie: LegacyCookie

    def read(self, value: str) -> LegacySession | None: ...

    def forget(self, value: str) -> None: ...

    async def aread(self, value: str) -> LegacySession | None: ...

    async def aforget(self, value: str) -> None: ...


@runtime_checkable
class ListableReader(LegacyReader, Protocol):
    """A reader of a system that keeps its sessions server-side, where they can be listed: what
    ``coatcheck migrate-sessions`` counts and adopts offline."""

    def scan(self) -> Iterator[str]:
        """The cookie values of the legacy sessions the old system still holds."""
        ...


# -- shared helpers ---------------------------------------------------------------------------------


def refused(reader: str, why: str, value: str) -> None:
    """Log a legacy cookie that adopts nothing, as an unknown session ID is logged (hashed)."""
    handle = hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    security_log(logging.INFO, "legacy %s session not adopted: %s (sha256 %s)", reader, why, handle)


def _pickled(raw: bytes) -> bool:
    """Whether ``raw`` looks like a pickle (protocol 2 and up start with PROTO): never loaded."""
    return raw[:1] == b"\x80" and raw[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")


def _json_object(raw: bytes | str) -> dict[str, Any] | None:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _glob_prefix(prefix: str) -> str:
    """A Redis SCAN pattern matching the keys that start with ``prefix``."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in prefix) + "*"


def user_id_of(value: object) -> str | None:
    """A user ID as coatcheck binds it: a non-empty str, or an int as its decimal string; None
    for anything else."""
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        return None
    return str(value)


def _user(data: Mapping[str, Any], key: str | None) -> str | None:
    return None if key is None else user_id_of(data.get(key))


class _Named:
    name: str
    cookie: LegacyCookie

    def __repr__(self) -> str:
        return f"<legacy reader {self.name} cookie={self.cookie.name!r}>"


class _CookieOnly(_Named):
    """A reader of a system that kept the whole session in its signed cookie: checking it takes
    no I/O (so the async methods are the sync ones), and there is no record to forget."""

    def read(self, value: str) -> LegacySession | None:
        raise NotImplementedError

    def forget(self, value: str) -> None:
        return None

    async def aread(self, value: str) -> LegacySession | None:
        return self.read(value)

    async def aforget(self, value: str) -> None:
        return None


# -- Starlette's signed cookie -------------------------------------------------------------------


class _StarletteCookie(_CookieOnly):
    def __init__(self, secret_key: str, cookie: LegacyCookie, max_age: int | None, user_key: str | None) -> None:
        try:
            import itsdangerous
        except ImportError as exc:
            raise ConfigurationError("legacy.starlette_cookie needs itsdangerous, as Starlette's SessionMiddleware does") from exc

        self.name, self.cookie, self.max_age, self.user_key = "starlette-cookie", cookie, max_age, user_key
        self._signer = itsdangerous.TimestampSigner(str(secret_key))
        self._bad = itsdangerous.BadSignature

    def read(self, value: str) -> LegacySession | None:
        try:
            payload, signed_at = self._signer.unsign(value.encode(), max_age=self.max_age, return_timestamp=True)
            data = _json_object(base64.b64decode(payload, validate=True))
        except (self._bad, binascii.Error, ValueError):
            refused(self.name, "bad or expired signature", value)
            return None
        if data is None:
            refused(self.name, "not a JSON object", value)
            return None
        expires_at = signed_at.timestamp() + self.max_age if self.max_age else None
        return LegacySession(data, _user(data, self.user_key), expires_at)


def starlette_cookie(
    secret_key: str,
    *,
    session_cookie: str = "session",
    max_age: int | None = 14 * 24 * 60 * 60,
    path: str = "/",
    domain: str | None = None,
    user_key: str | None = None,
) -> LegacyReader:
    """Starlette's ``SessionMiddleware`` (its signed cookie), from the same arguments: the
    ``secret_key``, ``session_cookie``, ``max_age``, ``path`` and ``domain`` it was given.
    ``user_key`` names the session key that held the user ID, if the app kept one."""
    return _StarletteCookie(secret_key, LegacyCookie(session_cookie, path, domain), max_age, user_key)


# -- Flask's signed cookie ------------------------------------------------------------------------


class FlaskCookieReader(_CookieOnly):
    """Flask's default session (``SecureCookieSessionInterface``). Built with ``secret_key=None``
    by :func:`flask_cookie`, ``coatcheck.flask`` fills in the app's own settings."""

    def __init__(
        self,
        secret_key: str | bytes | None,
        fallbacks: Sequence[str | bytes],
        cookie: LegacyCookie,
        max_age: int,
        user_key: str | None,
    ) -> None:
        self.name, self.cookie, self.max_age, self.user_key = "flask-cookie", cookie, max_age, user_key
        self.secret_key, self.fallbacks = secret_key, tuple(fallbacks)
        self._serializer: Any = None
        if secret_key is not None:
            self._serializer = self._make_serializer()

    def _make_serializer(self) -> Any:
        from flask.json.tag import TaggedJSONSerializer
        from itsdangerous import URLSafeTimedSerializer

        if not self.secret_key:
            raise ConfigurationError("legacy.flask_cookie needs the app's SECRET_KEY")
        keys: list[Any] = [*self.fallbacks, self.secret_key]  # itsdangerous signs with the last, verifies with all
        return URLSafeTimedSerializer(
            keys,
            salt="cookie-session",
            serializer=TaggedJSONSerializer(),
            signer_kwargs={"key_derivation": "hmac", "digest_method": hashlib.sha1},
        )

    def for_app(
        self, *, secret_key: str | bytes | None, fallbacks: Sequence[str | bytes], cookie: LegacyCookie, max_age: int
    ) -> FlaskCookieReader:
        """This reader with what it left out filled in from a Flask app's settings, as
        ``coatcheck.flask`` reads them (``SECRET_KEY``, ``SECRET_KEY_FALLBACKS``, the session
        cookie and ``PERMANENT_SESSION_LIFETIME``). A reader given its secret key is kept as it is."""
        if self.secret_key is not None:
            return self
        own_cookie = cookie if self.cookie == _FLASK_DEFAULT_COOKIE else self.cookie
        return FlaskCookieReader(secret_key, self.fallbacks or tuple(fallbacks), own_cookie, max_age, self.user_key)

    def read(self, value: str) -> LegacySession | None:
        if self._serializer is None:
            raise ConfigurationError("legacy.flask_cookie() without secret_key works only in coatcheck.flask")
        from itsdangerous import BadSignature

        try:
            data, signed_at = self._serializer.loads(value, max_age=self.max_age, return_timestamp=True)
        except (BadSignature, ValueError, TypeError, KeyError):
            refused(self.name, "bad or expired signature", value)
            return None
        if not isinstance(data, dict):
            refused(self.name, "not a mapping", value)
            return None
        return LegacySession(data, _user(data, self.user_key), signed_at.timestamp() + self.max_age)


_FLASK_DEFAULT_COOKIE = LegacyCookie("session")


def flask_cookie(
    secret_key: str | bytes | None = None,
    *,
    fallbacks: Sequence[str | bytes] = (),
    cookie_name: str | None = None,
    path: str = "/",
    domain: str | None = None,
    max_age: int | timedelta = timedelta(days=31),
    user_key: str | None = None,
) -> FlaskCookieReader:
    """Flask's default signed-cookie session. In ``coatcheck.flask`` (``COATCHECK_LEGACY``) it
    takes the app's ``SECRET_KEY``, ``SECRET_KEY_FALLBACKS`` and session cookie settings when
    left out; elsewhere pass them. Flask's tagged values (tuple, bytes, Markup, UUID, datetime)
    come back as those types. ``user_key`` names the session key that held the user ID."""
    seconds = int(max_age.total_seconds() if isinstance(max_age, timedelta) else max_age)
    cookie = _FLASK_DEFAULT_COOKIE if cookie_name is None else LegacyCookie(cookie_name, path, domain)
    return FlaskCookieReader(secret_key, fallbacks, cookie, seconds, user_key)


# -- Redis-backed systems (starsessions, Flask-Session's Redis store) ---------------------------------


class _RedisRecords:
    """GET / DEL of one key through redis-py, from one URL, with a client per call: a legacy
    session is read once per returning browser, so no connection is kept open between them."""

    def __init__(self, url: str) -> None:
        try:
            import redis
            import redis.asyncio
        except ImportError as exc:  # pragma: no cover - the test environment has redis
            raise ConfigurationError("this legacy reader needs redis-py: pip install 'coatcheck[redis]'") from exc
        self.url = url
        self._sync, self._async = redis.Redis, redis.asyncio.Redis
        self._sync.from_url(url)  # a malformed URL fails here, at start-up

    @staticmethod
    def _expiry(ttl: int | None) -> float | None:
        return time.time() + ttl / 1000 if ttl and ttl > 0 else None

    def get(self, key: str) -> tuple[bytes | None, float | None]:
        with self._sync.from_url(self.url) as client, client.pipeline(transaction=False) as pipe:
            pipe.get(key)
            pipe.pttl(key)
            value, ttl = pipe.execute()
        return value, self._expiry(ttl)

    async def aget(self, key: str) -> tuple[bytes | None, float | None]:
        async with self._async.from_url(self.url) as client, client.pipeline(transaction=False) as pipe:
            pipe.get(key)
            pipe.pttl(key)
            value, ttl = await pipe.execute()
        return value, self._expiry(ttl)

    def delete(self, key: str) -> None:
        with self._sync.from_url(self.url) as client:
            client.delete(key)

    async def adelete(self, key: str) -> None:
        async with self._async.from_url(self.url) as client:
            await client.delete(key)

    def scan(self, prefix: str) -> Iterator[str]:
        """The names after ``prefix`` of the keys that start with it."""
        with self._sync.from_url(self.url) as client:
            for key in client.scan_iter(match=_glob_prefix(prefix), count=1000):
                yield key.decode()[len(prefix) :]


class _StoredReader(_Named):
    """A reader of a server-side system: the cookie names a record, decoded by :meth:`decode`."""

    records: Any  # _RedisRecords or _SQLRecords
    key_prefix: str

    def key(self, value: str) -> str | None:
        raise NotImplementedError

    def decode(self, raw: bytes, value: str, expires_at: float | None) -> LegacySession | None:
        raise NotImplementedError

    def _found(self, value: str, found: tuple[bytes | None, float | None]) -> LegacySession | None:
        raw, expires_at = found
        if raw is None:
            refused(self.name, "no such session", value)
            return None
        if _pickled(raw):
            refused(self.name, "a pickled record (never unpickled)", value)
            warn(self.name, "a record in a pickle format not adopted (coatcheck never unpickles)")
            return None
        return self.decode(raw, value, expires_at)

    def read(self, value: str) -> LegacySession | None:
        key = self.key(value)
        return None if key is None else self._found(value, self.records.get(key))

    async def aread(self, value: str) -> LegacySession | None:
        key = self.key(value)
        return None if key is None else self._found(value, await self.records.aget(key))

    def forget(self, value: str) -> None:
        key = self.key(value)
        if key is not None:
            self.records.delete(key)

    def cookie_value(self, record_id: str) -> str:
        """The cookie value the old system gave the browser for the record ``record_id``."""
        return record_id

    def scan(self) -> Iterator[str]:
        return (self.cookie_value(record_id) for record_id in self.records.scan(self.key_prefix))

    async def aforget(self, value: str) -> None:
        key = self.key(value)
        if key is not None:
            await self.records.adelete(key)


class _Starsessions(_StoredReader):
    def __init__(self, url: str, prefix: str, cookie: LegacyCookie, user_key: str | None) -> None:
        self.name, self.cookie, self.key_prefix, self.user_key = "starsessions", cookie, prefix, user_key
        self.records = _RedisRecords(url)

    def key(self, value: str) -> str | None:
        return self.key_prefix + value

    def decode(self, raw: bytes, value: str, expires_at: float | None) -> LegacySession | None:
        data = _json_object(raw)
        if data is None:
            refused(self.name, "not a JSON object", value)
            return None
        metadata = data.pop("__metadata__", None)
        if isinstance(metadata, dict):
            created, lifetime = metadata.get("created"), metadata.get("lifetime")
            if isinstance(created, (int, float)) and isinstance(lifetime, (int, float)) and lifetime > 0:
                expires_at = min(expires_at, created + lifetime) if expires_at is not None else created + lifetime
        if expires_at is not None and expires_at <= time.time():
            refused(self.name, "expired", value)
            return None
        return LegacySession(data, _user(data, self.user_key), expires_at)


def starsessions(
    url: str,
    *,
    prefix: str = "starsessions.",
    cookie_name: str = "session",
    cookie_path: str = "/",
    cookie_domain: str | None = None,
    user_key: str | None = None,
) -> LegacyReader:
    """starsessions with its ``RedisStore`` and ``JsonSerializer``: the Redis ``url``, the
    store's key ``prefix`` and the middleware's cookie settings. ``user_key`` names the session
    key that held the user ID, if the app kept one."""
    return _Starsessions(url, prefix, LegacyCookie(cookie_name, cookie_path, cookie_domain), user_key)


# -- Flask-Session ------------------------------------------------------------------------------


class _FlaskSessionFormat:
    """Flask-Session 0.8's records: msgpack or JSON through msgspec; pickle (before 0.7) refused."""

    def __init__(self) -> None:
        try:
            import msgspec
        except ImportError as exc:
            raise ConfigurationError("legacy.flask_session needs msgspec (installed with Flask-Session 0.8)") from exc
        self._decoders = (msgspec.msgpack.Decoder(), msgspec.json.Decoder())
        self._error = msgspec.DecodeError

    def decode(self, raw: bytes) -> dict[str, Any] | None:
        for decoder in self._decoders:
            try:
                data = decoder.decode(raw)
            except self._error:
                continue
            return data if isinstance(data, dict) else None
        return None


class _FlaskSession(_StoredReader):
    def __init__(
        self,
        records: Any,
        key_prefix: str,
        signer: Any,
        cookie: LegacyCookie,
        user_key: str | None,
    ) -> None:
        self.name, self.cookie, self.records = "flask-session", cookie, records
        self.key_prefix, self._signer, self.user_key = key_prefix, signer, user_key
        self._format = _FlaskSessionFormat()

    def key(self, value: str) -> str | None:
        if self._signer is None:
            return self.key_prefix + value
        from itsdangerous import BadSignature

        try:
            return self.key_prefix + str(self._signer.unsign(value).decode())
        except (BadSignature, UnicodeDecodeError):
            refused(self.name, "bad signature", value)
            return None

    def cookie_value(self, record_id: str) -> str:
        return record_id if self._signer is None else str(self._signer.sign(record_id).decode())

    def decode(self, raw: bytes, value: str, expires_at: float | None) -> LegacySession | None:
        data = self._format.decode(raw)
        if data is None:
            refused(self.name, "not msgpack or JSON", value)
            return None
        return LegacySession(data, _user(data, self.user_key), expires_at)


class _SQLRecords:
    """Flask-Session's SQLAlchemy table, through SQLAlchemy Core (no Flask app needed)."""

    def __init__(self, url_or_engine: Any, table: str, schema: str | None) -> None:
        try:
            import sqlalchemy as sa
        except ImportError as exc:
            raise ConfigurationError("legacy.flask_session(sqlalchemy=...) needs SQLAlchemy") from exc
        self._sa = sa
        self.engine = sa.create_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
        self.table = sa.Table(
            table,
            sa.MetaData(schema=schema),
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("session_id", sa.String(255)),
            sa.Column("data", sa.LargeBinary),
            sa.Column("expiry", sa.DateTime),
        )

    def get(self, key: str) -> tuple[bytes | None, float | None]:
        table = self.table
        with self.engine.connect() as conn:
            row = conn.execute(self._sa.select(table.c.data, table.c.expiry).where(table.c.session_id == key)).first()
        if row is None or row.expiry is None:
            return None, None
        expires_at = row.expiry.replace(tzinfo=timezone.utc).timestamp()  # Flask-Session writes naive UTC
        if expires_at <= time.time():
            return None, None
        return bytes(row.data), expires_at

    def delete(self, key: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(self.table.delete().where(self.table.c.session_id == key))

    def scan(self, prefix: str) -> Iterator[str]:
        table, now = self.table, datetime.now(timezone.utc).replace(tzinfo=None)
        query = self._sa.select(table.c.session_id).where(
            table.c.expiry > now, table.c.session_id.startswith(prefix, autoescape=True)
        )
        with self.engine.connect() as conn:
            for (session_id,) in conn.execute(query):
                yield session_id[len(prefix) :]

    async def aget(self, key: str) -> tuple[bytes | None, float | None]:
        return await to_thread(self.get, key)

    async def adelete(self, key: str) -> None:
        await to_thread(self.delete, key)


def flask_session(
    *,
    redis: str | None = None,
    sqlalchemy: Any = None,
    table: str = "sessions",
    schema: str | None = None,
    key_prefix: str = "session:",
    use_signer: bool = False,
    secret_key: str | bytes | None = None,
    cookie_name: str = "session",
    path: str = "/",
    domain: str | None = None,
    user_key: str | None = None,
) -> LegacyReader:
    """Flask-Session 0.8 on Redis (``redis="redis://..."``) or SQLAlchemy (``sqlalchemy=`` a
    database URL or an Engine, with its ``table`` and ``schema``), from its settings:
    ``SESSION_KEY_PREFIX`` (``key_prefix``), ``SESSION_USE_SIGNER`` with the app's
    ``SECRET_KEY``, and the app's session cookie. Records in msgpack or JSON are adopted; a
    pickled one (Flask-Session before 0.7) never is."""
    if (redis is None) == (sqlalchemy is None):
        raise ConfigurationError("legacy.flask_session takes one of redis= or sqlalchemy=")
    signer = None
    if use_signer:
        if not secret_key:
            raise ConfigurationError("legacy.flask_session(use_signer=True) needs the app's secret_key")
        from itsdangerous import Signer

        signer = Signer(secret_key, salt="flask-session", key_derivation="hmac")
    records = _RedisRecords(redis) if redis is not None else _SQLRecords(sqlalchemy, table, schema)
    return _FlaskSession(records, key_prefix, signer, LegacyCookie(cookie_name, path, domain), user_key)


# -- Django's session backends ------------------------------------------------------------------------


_DJANGO_ENGINES = {
    "django.contrib.sessions.backends.db": "django-db",
    "django.contrib.sessions.backends.cache": "django-cache",
    "django.contrib.sessions.backends.cached_db": "django-cached-db",
    "django.contrib.sessions.backends.signed_cookies": "django-signed-cookies",
}


class _Django(_Named):
    """One of Django's session engines, read through the engine's own ``SessionStore`` with the
    project's settings (``SECRET_KEY``, ``SECRET_KEY_FALLBACKS``, ``SESSION_SERIALIZER``,
    ``SESSION_CACHE_ALIAS``, ``SESSION_COOKIE_*``), exactly as Django reads it."""

    def __init__(self, engine: str, cookie: LegacyCookie | None) -> None:
        from django.conf import settings

        self.engine = engine
        self.name = _DJANGO_ENGINES.get(engine, "django")
        self._db = engine == "django.contrib.sessions.backends.db"  # the row tells the remaining lifetime
        self._module = import_module(engine)
        self.cookie = cookie or LegacyCookie(
            settings.SESSION_COOKIE_NAME, settings.SESSION_COOKIE_PATH or "/", settings.SESSION_COOKIE_DOMAIN or None
        )
        serializer = getattr(settings, "SESSION_SERIALIZER", "django.core.signing.JSONSerializer")
        if not serializer.endswith("JSONSerializer"):
            raise ConfigurationError(f"legacy.django reads JSON sessions only, not SESSION_SERIALIZER = {serializer!r}")

    @staticmethod
    def _expires_at(store: Any, data: Mapping[str, Any], row: Any) -> float:
        """When Django would end the session: its ``set_expiry()``, else the row's
        ``expire_date`` (db engine), else ``SESSION_COOKIE_AGE`` from now, as Django counts it."""
        expiry = data.get("_session_expiry")
        if isinstance(expiry, str):
            return datetime.fromisoformat(expiry).timestamp()
        if isinstance(expiry, (int, float)) and expiry:
            return time.time() + expiry
        if row is not None:
            return float(row.expire_date.timestamp())
        return time.time() + float(store.get_session_cookie_age())

    def _found(self, store: Any, data: dict[str, Any], value: str, row: Any = None) -> LegacySession | None:
        if store.session_key is None or not data:
            refused(self.name, "unknown, expired or not verified", value)
            return None
        expires_at = self._expires_at(store, data, row)
        if expires_at <= time.time():
            refused(self.name, "expired", value)
            return None
        from django.contrib.auth import SESSION_KEY

        return LegacySession(dict(data), _user(data, SESSION_KEY), expires_at)

    def read(self, value: str) -> LegacySession | None:
        store = self._module.SessionStore(value)
        if self._db:
            row = store._get_session_from_db()
            return self._found(store, store.decode(row.session_data) if row else {}, value, row)
        return self._found(store, store.load(), value)

    async def aread(self, value: str) -> LegacySession | None:
        store = self._module.SessionStore(value)
        if self._db and hasattr(store, "_aget_session_from_db"):
            row = await store._aget_session_from_db()
            return self._found(store, store.decode(row.session_data) if row else {}, value, row)
        aload: Callable[[], Awaitable[dict[str, Any]]] | None = getattr(store, "aload", None)
        if self._db or aload is None:  # Django before 5.1
            from asgiref.sync import sync_to_async

            return await sync_to_async(self.read)(value)
        return self._found(store, await aload(), value)

    def forget(self, value: str) -> None:
        self._module.SessionStore(value).delete(value)

    def scan(self) -> Iterator[str]:
        """The keys of the live sessions: from the table (``db``, ``cached_db``), or from Redis
        (``cache`` on ``RedisCache``). Other caches cannot list their keys."""
        from django.utils import timezone as django_timezone

        store = self._module.SessionStore()
        model = getattr(store, "get_model_class", None)
        if model is not None:
            rows = model().objects.filter(expire_date__gt=django_timezone.now()).values_list("session_key", flat=True)
            yield from rows.iterator()
            return
        cache = getattr(store, "_cache", None)
        client: Any = getattr(cache, "_cache", None)
        if cache is None or not hasattr(client, "get_client"):
            raise NotSupportedError(f"{self.engine} cannot list its sessions: they are adopted as their users return")
        prefix = cache.make_key(self._module.KEY_PREFIX)
        for key in client.get_client(None).scan_iter(match=_glob_prefix(prefix), count=1000):
            yield key.decode()[len(prefix) :]

    async def aforget(self, value: str) -> None:
        store = self._module.SessionStore(value)
        adelete = getattr(store, "adelete", None)
        if adelete is None:
            from asgiref.sync import sync_to_async

            await sync_to_async(self.forget)(value)
        else:
            await adelete(value)


def django(engine: str = "django.contrib.sessions.backends.db", *, cookie: LegacyCookie | None = None) -> LegacyReader:
    """One of Django's own session engines (``db``, ``cache``, ``cached_db``, ``signed_cookies``,
    or another ``SESSION_ENGINE`` path built on Django's ``SessionBase``), read with the
    project's settings as Django reads them. The auth user (``_auth_user_id``) becomes the
    coatcheck user. Needs Django configured; ``coatcheck.django`` builds it from
    ``COATCHECK["LEGACY_ENGINE"]``."""
    return _Django(engine, cookie)


# -- used by the manager -------------------------------------------------------------------------


@dataclass(slots=True)
class Read:
    """The operation a flow yields to read legacy cookie ``value`` with ``reader`` (see
    :mod:`coatcheck._ops`). The reader's own failures raise as :class:`StoreError` (503)."""

    reader: LegacyReader
    value: str

    def run(self, _store: object) -> LegacySession | None:
        with _reading(self.reader):
            return self.reader.read(self.value)

    async def arun(self, _store: object) -> LegacySession | None:
        with _reading(self.reader):
            return await self.reader.aread(self.value)


@dataclass(slots=True)
class Forget:
    """The operation that deletes an adopted legacy record: best effort, since the claim already
    stops a second adoption (a failure is logged, and the request goes on with its session; an
    observer of store operations sees it succeed)."""

    reader: LegacyReader
    value: str

    def run(self, _store: object) -> None:
        with _forgetting(self.reader):
            self.reader.forget(self.value)

    async def arun(self, _store: object) -> None:
        with _forgetting(self.reader):
            await self.reader.aforget(self.value)


@contextlib.contextmanager
def _reading(reader: LegacyReader) -> Iterator[None]:
    try:
        yield
    except CoatcheckError:
        raise
    except Exception as exc:
        raise StoreError(f"legacy reader {reader.name} failed: {type(exc).__name__}: {exc}") from exc


@contextlib.contextmanager
def _forgetting(reader: LegacyReader) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        warn(reader.name, f"session adopted, but its legacy record not deleted: {type(exc).__name__}: {exc}")


def check_readers(readers: Iterable[Any]) -> tuple[LegacyReader, ...]:
    """The readers as a tuple, or :class:`ConfigurationError` naming what is not one."""
    if isinstance(readers, (str, bytes)) or not isinstance(readers, Iterable):
        raise ConfigurationError("legacy must be a list of legacy readers")
    found = tuple(readers)
    for reader in found:
        if not isinstance(reader, LegacyReader) or not isinstance(reader.cookie, LegacyCookie):
            raise ConfigurationError(f"{reader!r} is not a legacy reader (see coatcheck.legacy.LegacyReader)")
        if not isinstance(reader.name, str) or not reader.name:
            raise ConfigurationError(f"legacy reader {reader!r} needs a non-empty name")
    names = [reader.name for reader in found]
    if len(set(names)) != len(names):
        raise ConfigurationError(f"two legacy readers share a name: {names}")
    return found


BadValues = Literal["drop", "refuse"]
_reported: set[tuple[str, str]] = set()


def warn(reader: str, message: str) -> None:
    """Log, on ``coatcheck.legacy``, what went wrong with a legacy session that verified."""
    _log.warning("legacy %s: %s", reader, message)


def report_bad_value(reader: str, key: str, error: Exception) -> None:
    """Log, once per reader and key name (for the first 1,000 names), a legacy value that the
    session cannot hold."""
    key = key[:100]
    if (reader, key) in _reported or len(_reported) >= 1000:
        return
    _reported.add((reader, key))
    _log.warning("legacy %s session value %r cannot be kept: %s", reader, key[:100], error)

"""Flask: ``Sessions(app)`` makes ``flask.session`` a coatcheck session, kept server-side.

::

    app.config["COATCHECK_STORE"] = "redis://127.0.0.1:6379/0"
    Sessions(app)                      # or: sessions = Sessions(); sessions.init_app(app)

``Sessions`` installs a :class:`flask.sessions.SessionInterface`, so ``flask.session``, Jinja's
``session``, ``flash()`` and the extensions built on them work unchanged. Flask's own settings
(``SESSION_COOKIE_*``, ``PERMANENT_SESSION_LIFETIME``, ``SESSION_REFRESH_EACH_REQUEST``) and the
``COATCHECK_*`` ones become one :class:`SessionConfig` in one place, :func:`read_settings`, when
``init_app`` runs: a bad value or an unreachable store fails there. A setting changed later (tests
do) is read again at the next request.

Values are JSON plus Flask's tagged types (tuple, bytes, ``Markup``, ``UUID``, ``datetime``),
stored as Flask's tagged JSON by :class:`TaggedJSONCodec`; never pickle.

Why ``Sessions`` also wraps ``app.wsgi_app``: Flask opens the session outside its HTTP error
handling (an exception raised in ``open_session``, even an ``HTTPException``, becomes a 500 with a
traceback). So the session is loaded just before Flask takes the request, and a store that fails
then is answered 503 (through ``on_error``) before any view, hook or error handler runs. A store
that fails while the session is saved turns the response into the same 503.
"""

from __future__ import annotations

import dataclasses
import json
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, NamedTuple, cast
from uuid import UUID

import flask
from flask.json.tag import JSONTag, PassDict, PassList, TagBytes, TagDict, TaggedJSONSerializer, TagMarkup, TagTuple, TagUUID
from flask.sessions import SessionInterface, SessionMixin
from markupsafe import Markup

from . import _codec, _cookies
from ._expiry import Expirer, needs_purge
from ._http import WSGI_HEADERS, ErrorHook, ErrorResponse, default_error_response, session_headers, status_line
from .config import CookieConfig, SessionConfig
from .devices import wsgi_client
from .errors import CoatcheckError, ConfigurationError, MiddlewareNotInstalledError
from .legacy import BadValues, FlaskCookieReader, LegacyCookie, LegacyReader, check_readers
from .manager import DEFAULT_STORE, SessionManager
from .session import Session
from .stores import AsyncStore, Store

if TYPE_CHECKING:
    from flask.wrappers import Request, Response
    from werkzeug.datastructures import Headers
    from werkzeug.local import LocalProxy

__all__ = [
    "CODEC",
    "ENVIRON_KEY",
    "CoatcheckSessionInterface",
    "FlaskSession",
    "Sessions",
    "Settings",
    "TaggedJSONCodec",
    "get_session",
    "read_settings",
]

ENVIRON_KEY = "coatcheck.flask.session"
_ACTIVE_KEY = "coatcheck.flask.active"  # the settings the request's session was loaded with
"""Where the session loaded before Flask takes the request waits for ``open_session``."""

# -- values: Flask's tagged JSON, checked so that every accepted value comes back equal ----------

FORMAT = "flask/1"
"""The record envelope's version: a plain-JSON reader (``coatcheck.wsgi``) refuses such records
instead of misreading tagged values; this codec also reads plain coatcheck JSON records."""

_MAX_DEPTH = 64
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1  # the integers orjson reads back as integers
_TYPES = "JSON (str, int, float, bool, None, lists, str-keyed dicts) nor a tagged type (tuple, bytes, Markup, UUID, datetime)"
_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_SCALARS = frozenset({str, int, float, bool, type(None)})


class _TagDateTime(JSONTag):
    """``datetime`` as ISO 8601: microseconds, and naive or its fixed UTC offset, all kept.
    (Flask's own ``" d"`` tag keeps whole seconds in UTC, so most datetimes came back different.)"""

    __slots__ = ()
    key = " dt"

    def check(self, value: Any) -> bool:
        return isinstance(value, datetime)

    def to_json(self, value: Any) -> Any:
        return value.isoformat()

    def to_python(self, value: Any) -> Any:
        return datetime.fromisoformat(value)


class _Serializer(TaggedJSONSerializer):
    """Flask's tagged JSON with a lossless datetime tag."""

    __slots__ = ()
    default_tags = [TagDict, PassDict, TagTuple, PassList, TagBytes, TagMarkup, TagUUID, _TagDateTime]  # noqa: RUF012


def _tagged_leaf(value: Any) -> bool:
    """Whether ``value`` is one of the tagged types that are not containers (a datetime only if
    its zone comes back as it is)."""
    kind = type(value)
    if kind is bytes or kind is Markup or kind is UUID:
        return True
    if kind is not datetime:
        return False
    zone = value.tzinfo  # a fixed offset comes back as it is; a zone (ZoneInfo, pytz) would not
    if zone is not None and (type(zone) is not timezone or zone.tzname(None) != timezone(zone.utcoffset(None)).tzname(None)):
        raise ValueError(
            f"a datetime with tzinfo {zone!r} would come back with a plain UTC offset:"
            " store it naive, or as value.astimezone(timezone.utc)"
        )
    return True


def _check(value: Any) -> None:
    """Raise ``TypeError`` (``ValueError`` for NaN, huge ints, deep nesting) unless ``value``
    comes back from tagged JSON equal to itself, type included."""
    _codec.check_value(value, leaf=_tagged_leaf, tuples=True, refusal=f"is neither {_TYPES}")


def _dumps(value: Any) -> bytes:
    if _codec.fast_json is not None:
        return bytes(memoryview(_codec.fast_json.dumps(value)))  # an exact-size copy (see _codec.encode)
    return _encoder.encode(value).encode()


class TaggedJSONCodec:
    """A coatcheck :class:`~coatcheck._codec.Codec` for Flask: JSON plus the types Flask's own
    session takes (tuple, bytes, ``Markup``, ``UUID``, ``datetime``, in lists and dicts), written
    as Flask's tagged JSON (``{" t": [...]}`` for a tuple, ...). Every accepted value comes back
    equal, type included (a datetime keeps its microseconds and its fixed UTC offset, if any);
    anything else (a ``date``, a ``Decimal``, a namedtuple, a set, a datetime in a ``ZoneInfo``
    zone) is refused when it is set. Never pickle."""

    __slots__ = ("_serializer",)

    def __init__(self) -> None:
        self._serializer = _Serializer()

    def check(self, value: Any) -> bytes:
        _check(value)
        return _dumps(self._tag(value))

    def encode(self, created_at: float, data: Mapping[str, Any]) -> bytes:
        tag = self._tag
        return _dumps({"v": FORMAT, "c": created_at, "d": {key: tag(value) for key, value in data.items()}})

    def _tag(self, value: Any) -> Any:
        # A plain scalar is its own tagged form: no tag takes it (a Markup is not exactly a str).
        return value if type(value) in _SCALARS else self._serializer.tag(value)

    def decode(self, raw: bytes) -> tuple[float, dict[str, Any]]:
        version, created_at, data = _codec.open_envelope(raw)
        if version == FORMAT:
            try:
                data = {key: self._untag(value) for key, value in data.items()}
            except (TypeError, ValueError, LookupError, StopIteration, AttributeError, RecursionError) as exc:
                raise _codec.CorruptRecordError("record holds a malformed tagged value") from exc
        elif version != _codec.FORMAT_VERSION:  # a plain JSON record (coatcheck.wsgi's) is read as it is
            raise _codec.CorruptRecordError("record has an unknown format version")
        return created_at, data

    def _untag(self, value: Any) -> Any:
        if type(value) is dict:
            return self._serializer.untag({key: self._untag(item) for key, item in value.items()})
        if type(value) is list:
            return [self._untag(item) for item in value]
        return value


CODEC = TaggedJSONCodec()
"""The codec ``Sessions`` gives its managers."""


# -- the session ----------------------------------------------------------------------------------


class FlaskSession(Session, SessionMixin):
    """``flask.session``: a coatcheck :class:`~coatcheck.Session` that also speaks Flask's session
    protocol (:class:`flask.sessions.SessionMixin`).

    - ``permanent``: a permanent session gets a persistent cookie (``Max-Age``), any other a
      browser-session cookie; the flag alone does not make a new session worth storing.
    - ``new``: True when the session was not loaded from the store in this request.
    - ``modified``: True when saving would write to the store. Changes are found by comparison,
      in-place changes to lists, dicts and tuples' contents included, so setting it True is never
      needed (and changes nothing); setting it False drops the changes made so far from the save,
      as Flask does.
    - ``accessed``: settable, as Flask sets it; drives ``Vary: Cookie``.
    - ``clear()`` ends the session, as :meth:`logout` does: deleted server-side, cookie cleared,
      and whatever is written afterwards goes into a new session with a new ID.
    - ``login(user_id)``, ``logout()``, ``rotate()``, ``user_id``, ``id``: coatcheck's.
    """

    _manager: _Manager  # the manager that made it, with the settings of the request it was loaded in

    @property
    def new(self) -> bool:  # type: ignore[override]  # SessionMixin's is a plain attribute, hard-coded False
        """True when this session was not loaded from the store in this request."""
        return self.is_new

    @property
    def permanent(self) -> bool:
        """Flask's ``session.permanent``: the ``"_permanent"`` key."""
        return bool(self.get("_permanent", False))

    @permanent.setter
    def permanent(self, value: bool) -> None:
        self._accessed = True
        if dict.get(self, "_permanent", False) is not bool(value):  # setting it again is no change
            self["_permanent"] = bool(value)

    @property
    def modified(self) -> bool:
        """True when saving this session would write to the store."""
        return super().modified

    @modified.setter
    def modified(self, value: bool) -> None:
        if value:
            return  # changes are found by comparison: nothing to force
        self._dirty.clear()
        for key in list(self._snapshots):
            if dict.__contains__(self, key):
                self._snapshots[key] = self._check(key, dict.__getitem__(self, key))
            else:
                del self._snapshots[key]

    def __getitem__(self, key: str) -> Any:
        value = Session.__getitem__(self, key)
        if type(value) is tuple and key not in self._dirty and key not in self._snapshots:
            self._snapshots[key] = self._check(key, value)  # a tuple may hold lists changed in place
        return value

    def clear(self) -> None:
        """End the session, as :meth:`logout` does (Flask's way to log out)."""
        self.logout()


class _Manager(SessionManager):
    """A :class:`SessionManager` whose sessions are :class:`FlaskSession` objects."""

    def new_session(self) -> FlaskSession:
        return self._session(None)

    def _session(self, session_id: str | None) -> FlaskSession:
        session = FlaskSession(session_id, id_factory=self._id_factory, max_size=self.config.max_size, codec=self.codec)
        session._manager = self
        return session


# -- settings: the one place --------------------------------------------------------------------

_OPTIONS = {  # COATCHECK_* setting -> SessionConfig field
    "COATCHECK_IDLE_TIMEOUT": "idle_timeout",
    "COATCHECK_ABSOLUTE_TIMEOUT": "absolute_timeout",
    "COATCHECK_TOUCH_INTERVAL": "touch_interval",
    "COATCHECK_MAX_SIZE": "max_size",
    "COATCHECK_SAVE_ON_SERVER_ERROR": "save_on_server_error",
    "COATCHECK_MAX_COMMIT_ATTEMPTS": "max_commit_attempts",
    "COATCHECK_DEVICES": "devices",
    "COATCHECK_DEVICE_ADDRESS_BITS": "device_address_bits",
    "COATCHECK_ENCRYPTION_KEYS": "encryption_keys",
    "COATCHECK_ACCEPT_UNSEALED": "accept_unsealed",
}
_COATCHECK_SETTINGS = ("COATCHECK_STORE", "COATCHECK_COOKIE_SECURE", "COATCHECK_LEGACY", "COATCHECK_LEGACY_BAD_VALUES", *_OPTIONS)
_FLASK_SETTINGS = (
    "SESSION_COOKIE_NAME",
    "SESSION_COOKIE_DOMAIN",
    "SESSION_COOKIE_PATH",
    "APPLICATION_ROOT",
    "SESSION_COOKIE_HTTPONLY",
    "SESSION_COOKIE_SECURE",
    "SESSION_COOKIE_SAMESITE",
    "SESSION_COOKIE_PARTITIONED",
    "PERMANENT_SESSION_LIFETIME",
    "SESSION_REFRESH_EACH_REQUEST",
)
_READ = (*_FLASK_SETTINGS, *_COATCHECK_SETTINGS)


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """What :func:`read_settings` makes of an app's config."""

    store: str | Store | AsyncStore
    config: SessionConfig
    partitioned: bool  # SESSION_COOKIE_PARTITIONED: "; Partitioned" on every session Set-Cookie
    permanent_lifetime: int  # PERMANENT_SESSION_LIFETIME in seconds: the longest Max-Age of a permanent cookie
    refresh_each_request: bool  # SESSION_REFRESH_EACH_REQUEST
    legacy: tuple[LegacyReader, ...] = ()  # COATCHECK_LEGACY, with the app's settings filled in
    legacy_bad_values: BadValues = "drop"  # COATCHECK_LEGACY_BAD_VALUES

    def manager(self, store: str | Store | AsyncStore, clock: Callable[[], float]) -> _Manager:
        """The manager these settings make, on ``store``."""
        return _Manager(
            store, config=self.config, clock=clock, codec=CODEC, legacy=self.legacy, legacy_bad_values=self.legacy_bad_values
        )


def _flag(config: Mapping[str, Any], name: str, default: bool) -> bool:
    value = config.get(name, default)
    if type(value) is not bool:
        raise ConfigurationError(f"{name} must be True or False, not {value!r}")
    return value


def _same_site(value: Any) -> Any:
    """Flask's ``SESSION_COOKIE_SAMESITE``: None (Flask's default: no attribute, which browsers
    read as Lax) is coatcheck's Lax; otherwise "Strict", "Lax" or "None", any case."""
    if value is None:
        return "lax"
    if isinstance(value, str) and value.lower() in ("lax", "strict", "none"):
        return value.lower()
    raise ConfigurationError(f"SESSION_COOKIE_SAMESITE must be 'Strict', 'Lax', 'None' or None, not {value!r}")


def _secure(config: Mapping[str, Any]) -> Any:
    """``Secure`` by default. Flask's ``SESSION_COOKIE_SECURE`` defaults to False, so only True
    counts; ``COATCHECK_COOKIE_SECURE`` (True, False or "auto") is the explicit choice."""
    flask_secure = _flag(config, "SESSION_COOKIE_SECURE", False)
    ours = config.get("COATCHECK_COOKIE_SECURE")
    if ours is None:
        return True
    if flask_secure and ours is not True:
        raise ConfigurationError(f"SESSION_COOKIE_SECURE = True contradicts COATCHECK_COOKIE_SECURE = {ours!r}")
    return ours


def _lifetime(value: Any) -> int:
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds < 1:
        raise ConfigurationError(f"PERMANENT_SESSION_LIFETIME must be a timedelta or seconds, at least 1 s; not {value!r}")
    return int(seconds)


def read_settings(app: flask.Flask) -> Settings:
    """Every setting ``Sessions`` reads, checked, from ``app.config``: the only place that does.

    Flask's: ``SESSION_COOKIE_NAME``, ``_DOMAIN``, ``_PATH`` (else ``APPLICATION_ROOT``),
    ``_HTTPONLY``, ``_SECURE``, ``_SAMESITE``, ``_PARTITIONED``, ``PERMANENT_SESSION_LIFETIME``,
    ``SESSION_REFRESH_EACH_REQUEST``. coatcheck's: ``COATCHECK_STORE`` (a URL or a store object),
    ``COATCHECK_IDLE_TIMEOUT``, ``_ABSOLUTE_TIMEOUT``, ``_TOUCH_INTERVAL``, ``_MAX_SIZE``,
    ``_COOKIE_SECURE``, ``_SAVE_ON_SERVER_ERROR``, ``_MAX_COMMIT_ATTEMPTS``, ``_DEVICES``,
    ``_DEVICE_ADDRESS_BITS``, ``_ENCRYPTION_KEYS``, ``_ACCEPT_UNSEALED``, ``_LEGACY`` (legacy
    readers; :func:`coatcheck.legacy.flask_cookie` takes the app's ``SECRET_KEY``,
    ``SECRET_KEY_FALLBACKS`` and cookie settings) and ``_LEGACY_BAD_VALUES``. Raises
    :class:`ConfigurationError` for a bad value or an unknown ``COATCHECK_*`` name.
    """
    config = app.config
    unknown = sorted(name for name in config if name.startswith("COATCHECK_") and name not in _COATCHECK_SETTINGS)
    if unknown:
        raise ConfigurationError(f"unknown setting {', '.join(unknown)}; coatcheck.flask reads {', '.join(_COATCHECK_SETTINGS)}")
    domain = config.get("SESSION_COOKIE_DOMAIN") or None
    same_site = _same_site(config.get("SESSION_COOKIE_SAMESITE"))
    partitioned = _flag(config, "SESSION_COOKIE_PARTITIONED", False)
    options = {field: config[name] for name, field in _OPTIONS.items() if config.get(name) is not None}
    if "save_on_server_error" in options:
        _flag(config, "COATCHECK_SAVE_ON_SERVER_ERROR", False)
    try:
        cookie = CookieConfig(
            name=config.get("SESSION_COOKIE_NAME", "session"),
            path=config.get("SESSION_COOKIE_PATH") or config.get("APPLICATION_ROOT") or "/",
            domain=domain.lstrip(".") if isinstance(domain, str) else domain,  # browsers ignore a leading dot
            secure=_secure(config),
            http_only=_flag(config, "SESSION_COOKIE_HTTPONLY", True),
            same_site=same_site,
        )
        session_config = SessionConfig(cookie=cookie, **options)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{exc} (from the app's SESSION_COOKIE_* and COATCHECK_* settings)") from None
    if partitioned and cookie.secure is not True:
        raise ConfigurationError("SESSION_COOKIE_PARTITIONED = True needs a Secure cookie; COATCHECK_COOKIE_SECURE is not True")
    store = config.get("COATCHECK_STORE")
    permanent_lifetime = _lifetime(config.get("PERMANENT_SESSION_LIFETIME", timedelta(days=31)))
    flask_cookie = LegacyCookie(cookie.name, cookie.path, cookie.domain)  # what Flask's own session cookie was
    return Settings(
        store=DEFAULT_STORE if store is None else store,
        config=session_config,
        partitioned=partitioned,
        permanent_lifetime=permanent_lifetime,
        refresh_each_request=_flag(config, "SESSION_REFRESH_EACH_REQUEST", True),
        legacy=tuple(
            reader.for_app(
                secret_key=config.get("SECRET_KEY"),
                fallbacks=config.get("SECRET_KEY_FALLBACKS") or (),
                cookie=flask_cookie,
                max_age=permanent_lifetime,
            )
            if isinstance(reader, FlaskCookieReader)
            else reader
            for reader in check_readers(config.get("COATCHECK_LEGACY") or ())
        ),
        legacy_bad_values=config.get("COATCHECK_LEGACY_BAD_VALUES") or "drop",
    )


class _Active(NamedTuple):
    """The settings in force and the manager built from them."""

    settings: Settings
    manager: _Manager
    browser_cookie: CookieConfig  # the cookie of a session that is not permanent: no Max-Age


class _AppState:
    """One app's sessions: its settings, manager, expirer and error hook."""

    def __init__(
        self,
        app: flask.Flask,
        *,
        clock: Callable[[], float],
        on_error: ErrorHook,
        purge_interval: float | None,
        check: bool,
    ) -> None:
        self.app = app
        self.clock = clock
        self.on_error = on_error
        self._lock = threading.Lock()
        self._config = dict(app.config)  # the whole config, as it was when the settings were read
        self._seen = _snapshot(self._config)
        settings = read_settings(app)
        manager = settings.manager(settings.store, clock)
        if not manager.supports_sync:
            raise ConfigurationError(f"{type(manager.store).__name__} has no sync API; Flask needs one")
        self.owns_store = isinstance(settings.store, str)
        if check:
            try:
                manager.check()
            except BaseException:
                if self.owns_store:
                    manager.close()
                raise
        self._active = _active(settings, manager)
        self.expirer = Expirer(manager, purge_interval) if purge_interval and needs_purge(manager) else None

    def active(self) -> _Active:
        """The settings and manager in force, rebuilt first if the app's settings changed."""
        # The whole config against a copy, in C: cheaper than reading coatcheck's settings one by
        # one (each read of a dict subclass goes through a Python-level __getitem__ slot). The
        # same objects compare equal without a call to their __eq__.
        config = self.app.config
        try:
            unchanged = config == self._config
        except Exception:  # a value replaced by one whose == cannot answer (an array)
            unchanged = False
        if unchanged:
            return self._active
        # The config changed; coatcheck's settings may not have. The copy is taken first and the
        # settings are compared in it, so a write after the copy is seen by the next request.
        copy = dict(config)
        seen = _snapshot(copy)
        with self._lock:
            if seen != self._seen:
                current = self._active
                settings = read_settings(self.app)
                if settings.store is not current.settings.store and settings.store != current.settings.store:
                    raise ConfigurationError(
                        "COATCHECK_STORE changed after init_app; set it before Sessions(app) or init_app(app)"
                    )
                manager = settings.manager(current.manager.store, self.clock)
                # the subscribers (audit trails, metrics) and the store observer stay on
                manager.events, manager.observe = current.manager.events, current.manager.observe
                self._active, self._seen = _active(settings, manager), seen
            self._config = copy
            return self._active

    def start_expirer(self) -> None:
        if self.expirer is not None:
            self.expirer.ensure_started()

    def close(self) -> None:
        if self.expirer is not None:
            self.expirer.stop()
        if self.owns_store:
            self._active.manager.close()


def _snapshot(config: Mapping[str, Any]) -> tuple[Any, ...]:
    # None for a missing name is exact: Flask's settings are always in app.config, and
    # read_settings takes a COATCHECK_ setting set to None as left out.
    return tuple(map(config.get, _READ))


def _active(settings: Settings, manager: _Manager) -> _Active:
    return _Active(settings, manager, dataclasses.replace(settings.config.cookie, persistent=False))


# -- the request flow -----------------------------------------------------------------------------


class _Loader:
    """Loads the request's session before Flask takes the request (see the module docstring)."""

    def __init__(self, wsgi_app: Callable[..., Iterable[bytes]], state: _AppState) -> None:
        self.wsgi_app = wsgi_app
        self.state = state

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        state = self.state
        active = environ[_ACTIVE_KEY] = state.active()
        state.start_expirer()
        try:
            environ[ENVIRON_KEY] = active.manager.load(environ.get("HTTP_COOKIE"))
        except CoatcheckError as exc:
            status, headers, body = state.on_error(exc)
            start_response(status_line(status), headers)
            return [body]
        return self.wsgi_app(environ, start_response)


class CoatcheckSessionInterface(SessionInterface):
    """Flask's seam for coatcheck: ``open_session`` hands Flask the session loaded for this request,
    ``save_session`` commits it and adds ``Set-Cookie``, ``Vary: Cookie`` and the caching rules."""

    def __init__(self, state: _AppState) -> None:
        self._state = state

    def open_session(self, app: flask.Flask, request: Request) -> FlaskSession:
        session = request.environ.get(ENVIRON_KEY)
        if isinstance(session, FlaskSession):
            return session
        # A request context built without the WSGI app (test_request_context, session_transaction):
        # load here; a store failure raises as it is.
        return cast(FlaskSession, self._state.active().manager.load(request.environ.get("HTTP_COOKIE")))

    def save_session(self, app: flask.Flask, session: SessionMixin, response: Response) -> None:
        if not isinstance(session, FlaskSession):
            raise MiddlewareNotInstalledError(f"the session is a {type(session).__name__}, not a coatcheck FlaskSession")
        state = self._state
        try:  # nothing to commit (a new session left untouched, a read): no call at all
            set_cookie = None if session._manager._skips_commit(session) else _commit(state, session, response.status_code)
        except CoatcheckError as exc:
            _replace(response, state.on_error(exc))
            return
        finally:
            session._freeze()
        if set_cookie is not None or session._accessed:
            _vary_on_cookie(response.headers)
        if set_cookie is None and session._legacy_cookie is None:
            return
        headers = session_headers(session, set_cookie, response.headers.to_wsgi_list(), WSGI_HEADERS)
        if headers is not None:
            response.headers.clear()
            response.headers.extend(headers)


def _vary_on_cookie(headers: Headers) -> None:
    """Make the response vary on ``Cookie``, as Flask's ``response.vary.add("Cookie")`` does: one
    ``Vary`` header, the app's tokens first, ``Cookie`` once, empty items dropped. Unlike it, the
    tokens of every ``Vary`` header the app sent are kept (werkzeug keeps the first header's), and
    no ``HeaderSet`` is built (it parsed and rewrote the header for a sixth of a request's session
    work)."""
    values = [value for name, value in headers if name.lower() == "vary"]  # getlist("Vary"), a call less
    if not values:
        headers.add("Vary", "Cookie")
        return
    tokens = [token for value in values for token in (part.strip() for part in value.split(",")) if token]
    if any(token.strip('"').lower() == "cookie" for token in tokens):
        return
    headers["Vary"] = ", ".join([*tokens, "Cookie"])


def _settle(session: FlaskSession, keep_changes: bool) -> bool:
    """Apply Flask's rules before the commit; False when there is nothing to commit.

    A loaded session emptied by this request is ended (deleted server-side, cookie cleared),
    unless the request's changes are not kept (a 5xx). A new one holding nothing but the
    permanent flag, or nothing changed (``modified = False``), is not stored.
    """
    content = dict.__len__(session) - dict.__contains__(session, "_permanent")
    if session._stored is not None:
        if keep_changes and not content and not session._requests.login and session._changed_keys():
            session.logout()
        return True
    if session._user_id is None and not (session._changed_keys() - {"_permanent"}):
        if session._requests.ended is None:
            return False
        dict.clear(session)  # ended in this request: delete it, create nothing new
    return True


def _commit(state: _AppState, session: FlaskSession, status_code: int) -> str | None:
    """Commit ``session`` and return the ``Set-Cookie`` Flask's rules make of it, if any.

    No ``Max-Age`` unless the session is permanent; ``Max-Age`` at most
    ``PERMANENT_SESSION_LIFETIME``; ``Partitioned`` if set. A session that became permanent (or
    stopped being) gets its cookie again. A refresh of an unchanged session (only its expiry
    moved) is sent for a permanent session when ``SESSION_REFRESH_EACH_REQUEST`` is on, and never
    for a browser-session cookie, which holds no expiry to refresh.
    """
    # The request itself, not the proxy: each attribute read through a LocalProxy first fails
    # on the proxy (an AttributeError raised and caught in C) before it reaches the request.
    request: Request = flask.request._get_current_object()  # type: ignore[attr-defined]
    active = request.environ.get(_ACTIVE_KEY) or state.active()  # the settings it was loaded with
    if not _settle(session, status_code < 500 or active.settings.config.save_on_server_error):
        return None
    before = session._stored
    permanence_changed = "_permanent" in session._dirty
    due = session._requests.cookie_due  # adopted from a legacy session: the browser has not got this ID yet
    scheme = request.scheme
    client = wsgi_client(request.environ) if active.manager.config.devices else None
    set_cookie = active.manager.commit(session, status_code=status_code, scheme=scheme, host=lambda: request.host, client=client)
    settings = active.settings
    stored = session._stored
    if stored is None:  # ended, or nothing stored: the manager's clearing cookie, if any
        if set_cookie is None or not settings.partitioned:
            return set_cookie
        return f"{set_cookie}; Partitioned"
    wrote = before is None or stored.key != before.key or stored.version != before.version
    permanent = dict.get(session, "_permanent", False) is True
    if set_cookie is None and not (wrote and permanence_changed):
        return None
    if not wrote and not due and not (permanent and settings.refresh_each_request):
        return None
    cookie = settings.config.cookie if permanent else active.browser_cookie
    max_age = min(max(0, int(stored.expires_at - active.manager.clock())), settings.permanent_lifetime)
    attributes = _cookies.cookie_attributes(cookie, secure=_cookies.wants_secure(cookie, scheme))
    set_cookie = _cookies.set_cookie_header(cookie, session._current_id(), max_age, attributes)
    return f"{set_cookie}; Partitioned" if settings.partitioned else set_cookie


def _replace(response: Response, answer: ErrorResponse) -> None:
    """Turn ``response`` into the error hook's answer (Flask takes no new response from here)."""
    status, headers, body = answer
    close = getattr(response.response, "close", None)
    if callable(close):
        close()
    response.direct_passthrough = False
    response.status_code = status
    response.headers.clear()
    response.headers.extend(headers)
    response.set_data(body)


# -- the extension ----------------------------------------------------------------------------------


class Sessions:
    """coatcheck sessions for a Flask app: ``Sessions(app)``, or ``Sessions()`` then ``init_app(app)``.

    ``init_app`` reads the settings (:func:`read_settings`), builds the app's
    :class:`SessionManager`, checks the store (``check=False`` skips it), installs the session
    interface and wraps ``app.wsgi_app`` to load sessions. ``clock`` is the manager's (tests pass
    :class:`coatcheck.testing.FakeClock`). A store failure answers through ``on_error`` (by default
    a 503 with no traceback and no ``Set-Cookie``). ``purge_interval``: seconds between purges of
    expired sessions in a thread started by the first request (None: never; Redis never needs it).
    """

    def __init__(
        self,
        app: flask.Flask | None = None,
        *,
        clock: Callable[[], float] = time.time,
        on_error: ErrorHook = default_error_response,
        purge_interval: float | None = 60.0,
        check: bool = True,
    ) -> None:
        self.clock = clock
        self.on_error = on_error
        self.purge_interval = purge_interval
        self.check = check
        self._states: list[_AppState] = []
        if app is not None:
            self.init_app(app)

    def init_app(self, app: flask.Flask) -> None:
        """Install coatcheck sessions on ``app``; raises :class:`ConfigurationError` for a bad
        setting and :class:`~coatcheck.StoreError` for an unreachable store."""
        if "coatcheck" in app.extensions:
            raise ConfigurationError(f"coatcheck sessions are already installed on app {app.name!r}")
        state = _AppState(app, clock=self.clock, on_error=self.on_error, purge_interval=self.purge_interval, check=self.check)
        app.session_interface = CoatcheckSessionInterface(state)
        app.wsgi_app = _Loader(app.wsgi_app, state)  # type: ignore[method-assign]
        app.extensions["coatcheck"] = state
        self._states.append(state)

    def get_manager(self, app: flask.Flask | None = None) -> SessionManager:
        """The :class:`SessionManager` of ``app`` (default: the current app, or the only one),
        for ``revoke_user`` and ``list_sessions``."""
        if app is None:
            if flask.has_app_context():
                app = flask.current_app._get_current_object()  # type: ignore[attr-defined]
            elif len(self._states) == 1:
                app = self._states[0].app
            else:
                raise RuntimeError("no app context and not exactly one app: pass the app to get_manager(app)")
        state = app.extensions.get("coatcheck") if app is not None else None
        if not isinstance(state, _AppState) or state not in self._states:
            raise MiddlewareNotInstalledError("this Sessions object is not installed on the app: call init_app(app)")
        return state.active().manager

    @property
    def manager(self) -> SessionManager:
        """:meth:`get_manager` for the current app (or the only one)."""
        return self.get_manager()

    def close(self) -> None:
        """Stop the expirer threads and close the stores built from a ``COATCHECK_STORE`` URL (a
        store object passed in stays open: its owner closes it)."""
        for state in self._states:
            state.close()


def get_session() -> FlaskSession:
    """The current request's session, typed (``flask.session`` is typed as Flask's
    ``SessionMixin``, without ``login`` or ``user_id``). Raises
    :class:`MiddlewareNotInstalledError` when ``Sessions`` is not installed on the app."""
    proxy = cast("LocalProxy[SessionMixin]", flask.session)
    session = proxy._get_current_object()
    if not isinstance(session, FlaskSession):
        raise MiddlewareNotInstalledError(
            f"flask.session is a {type(session).__name__}, not a coatcheck session: install coatcheck.flask.Sessions(app)"
        )
    return session

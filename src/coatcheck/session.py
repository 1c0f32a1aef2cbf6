"""The Session: a dict of JSON values plus lifecycle requests. It never does I/O."""

from __future__ import annotations

from collections.abc import Callable, ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from typing import Any, Final, NamedTuple, TypeVar

from . import _codec
from ._logs import log
from .errors import SessionTooLargeError, SessionValueError

__all__ = ["Session"]

_MAX_USER_ID_LENGTH = 255
_MUTABLE = (list, dict)
_MISSING: Any = object()
D = TypeVar("D")


class Stored:
    """A session's persistence state: the record this request last read or wrote for it (a
    refresh moves only its expiry). The flows (``_core``) take it from :attr:`Session._stored`
    and hand a new one back through :meth:`Session._settle`; never changed in place (``Final``:
    mypy refuses an assignment). A class with slots, not a NamedTuple: one is made on every load
    and every write, and this is the cheaper to make."""

    __slots__ = ("created_at", "expires_at", "key", "meta", "raw", "user_id", "version")
    key: Final[str]
    raw: Final[bytes]
    version: Final[int]
    created_at: Final[float]
    expires_at: Final[float]
    user_id: Final[str | None]
    meta: Final[dict[str, Any] | None]

    def __init__(
        self,
        key: str,
        raw: bytes,
        version: int,
        created_at: float,
        expires_at: float,
        user_id: str | None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.key = key  # the store key, sha256 of the session ID
        self.raw = raw  # the record's data, as stored
        self.version = version
        self.created_at = created_at
        self.expires_at = expires_at
        self.user_id = user_id
        self.meta = meta  # the device metadata kept beside the data (SessionConfig.devices)

    def expiring_at(self, expires_at: float) -> Stored:
        """The same record with another expiry (after a refresh)."""
        return Stored(self.key, self.raw, self.version, self.created_at, expires_at, self.user_id, self.meta)


class Requests(NamedTuple):
    """What the commit of a session still has to do about its lifecycle (:attr:`Session._requests`):
    what the application asked in this request, and the cookie a legacy adoption owes. The
    commit's flow clears each one it has done."""

    rotate: bool = False  # a new ID
    login: bool = False  # bound to a user in this request: a new ID, and the absolute timeout restarts
    ended: str | None = None  # the store key of a session logged out in this request, to delete
    ended_user: str | None = None  # the user that session was bound to (for the logout event)
    cookie_due: bool = False  # the browser does not hold this ID yet (set by the manager after a legacy adoption)


NO_REQUESTS = Requests()


class Session(dict[str, Any]):
    """One browser's session, as seen by one request: a ``dict``, so anything that takes a dict
    takes it (``json.dumps``, Starlette's ``JSONResponse``, templates).

    Values must be JSON that comes back exactly (``str``, ints within 64 bits, finite floats,
    ``bool``, ``None``, lists and dicts of them); a value that is not raises
    :class:`SessionValueError` (a ``TypeError``) naming the key when it is set. Changes, including
    in-place changes to lists and dicts read from the session, are written when the response
    starts, merged key by key with concurrent requests on the same session. A change made after
    the response started (in a streamed body, a background task), or in a WebSocket, cannot
    reach the cookie or the store: it is logged as a warning on the ``coatcheck`` logger and not
    saved. Every method of the dict goes through the tracking above, except the C-level reads
    of a JSON encoder, which change nothing.
    """

    __slots__ = (
        "_accessed",
        "_added_size",
        "_base_size",
        "_codec",
        "_dirty",
        "_frozen",
        "_id",
        "_id_factory",
        "_legacy_cookie",
        "_max_size",
        "_requests",
        "_set_sizes",
        "_snapshots",
        "_stored",
        "_user_id",
    )

    def __init__(
        self,
        session_id: str | None = None,
        *,
        id_factory: Callable[[], str],
        max_size: int,
        codec: _codec.Codec = _codec.JSON,
    ) -> None:
        """Build an empty session (its ID is drawn when first needed); the flows make it a
        stored one with :meth:`_settle`. ``codec`` says which values it takes (JSON by default)."""
        self._codec = codec
        self._id_factory = id_factory
        self._max_size = max_size
        self._accessed = False
        self._frozen = False  # set by a middleware once changes can no longer be saved
        self._legacy_cookie: tuple[str, bool] | None = None  # (Set-Cookie clearing it, same cookie as ours)
        self._reset(session_id, NO_REQUESTS)

    def _reset(self, session_id: str | None, requests: Requests) -> None:
        self._id = session_id
        self._stored: Stored | None = None
        self._requests = requests
        self._user_id: str | None = None
        dict.clear(self)
        self._base_size = self._added_size = 0
        self._dirty: set[str] = set()
        self._snapshots: dict[str, bytes] = {}
        self._set_sizes: dict[str, int] = {}

    # -- the flows' side (``_core``): persistence state and lifecycle requests in, new state out ----

    def _settle(self, stored: Stored, data: Mapping[str, Any] | None = None, session_id: str | None = None) -> None:
        """Make ``stored`` this session's persistence state, after a load or a write: its user
        becomes the session's, ``data`` (when given) its content (not a change: nothing is marked
        for saving), ``session_id`` its ID."""
        self._stored = stored
        self._user_id = stored.user_id
        if session_id is not None:
            self._id = session_id
        if data is not None and data is not self:
            dict.clear(self)
            dict.update(self, data)
        self._base_size = len(stored.raw)

    def _set_requests(self, requests: Requests) -> None:
        """Replace the lifecycle requests, usually by ``session._requests._replace(...)`` (which
        mypy checks field by field): the commit's flow clears each one it has done."""
        self._requests = requests

    def _draw_id(self) -> str:
        """A new session ID, not yet this session's."""
        return self._id_factory()

    def _change_id_after_collision(self) -> None:
        """Take another ID: the one drawn was in use (a collision), and nobody has been given it."""
        self._id = self._id_factory()

    def _maybe_changed(self) -> bool:
        """Cheap: could committing write anything but a refresh (exact: :meth:`_changed_keys`)?"""
        r = self._requests
        return bool(self._dirty or self._snapshots or r.rotate or r.login)

    def _plain(self) -> dict[str, Any]:
        """The content as a plain dict, read without marking the session accessed (through the
        dict's own items view: ``dict.copy`` of a subclass with its own ``__iter__`` calls it)."""
        return dict(dict.items(self))

    # -- identity and lifecycle -------------------------------------------------------------

    @property
    def id(self) -> str:
        """The session ID: the value of the cookie this session is (or will be) sent under."""
        self._accessed = True
        return self._current_id()

    def _current_id(self) -> str:
        if self._id is None:
            self._id = self._id_factory()
        return self._id

    @property
    def is_new(self) -> bool:
        """True when this session was not loaded from the store in this request."""
        self._accessed = True  # the answer depends on the cookie: the response varies on it
        return self._stored is None

    @property
    def user_id(self) -> str | None:
        """The user bound by :meth:`login`, or None."""
        self._accessed = True  # the answer depends on the cookie: the response varies on it
        return self._user_id

    @property
    def created_at(self) -> float | None:
        """Unix time the session was created (or its user logged in); None if not yet stored."""
        self._accessed = True  # the answer depends on the cookie: the response varies on it
        return None if self._stored is None else self._stored.created_at

    @property
    def expires_at(self) -> float | None:
        """Unix time the stored session expires unless refreshed; None if not yet stored."""
        self._accessed = True  # the answer depends on the cookie: the response varies on it
        return None if self._stored is None else self._stored.expires_at

    @property
    def accessed(self) -> bool:
        """True once the application read or wrote the session (drives ``Vary: Cookie``).
        Settable, as frameworks do (Flask marks a session accessed itself)."""
        return self._accessed

    @accessed.setter
    def accessed(self, value: bool) -> None:
        self._accessed = bool(value)

    @property
    def modified(self) -> bool:
        """True when committing this session would write to the store."""
        r = self._requests
        return bool(self._changed_keys() or r.rotate or r.login or r.ended)

    def _freeze(self) -> None:
        """Called by a middleware once no change can be saved any more: its response started (the
        commit is done), or the session is a WebSocket's. Later changes are logged, once."""
        self._frozen = True

    def _late(self, change: str) -> None:
        """Log (once per session) a change made after the session was frozen: it is not saved."""
        self._frozen = False  # warn once per session
        log.warning("session changed after its response started, or in a WebSocket (%s); the change is not saved", change)

    def rotate(self) -> None:
        """Give the session a new ID when it is committed; the old ID stops working at once."""
        self._accessed = True
        if self._frozen:
            self._late("rotate()")
        if self._stored is not None:
            self._requests = self._requests._replace(rotate=True)

    def login(self, user_id: str) -> None:
        """Bind the session to ``user_id``: rotate the ID and enter the per-user index.

        Logging in as a different user than the one bound clears the data first, and the
        absolute timeout restarts from the login.
        """
        if not isinstance(user_id, str) or not 0 < len(user_id) <= _MAX_USER_ID_LENGTH:
            raise ValueError(f"user_id must be a non-empty str of at most {_MAX_USER_ID_LENGTH} characters")
        if self._frozen:
            self._late("login()")
        if self._user_id is not None and self._user_id != user_id:
            self.clear()
        self.rotate()
        self._user_id = user_id
        self._requests = self._requests._replace(login=True)

    def logout(self) -> None:
        """Delete the session server-side and clear the cookie; the request goes on anonymous."""
        self._accessed = True
        if self._frozen:
            self._late("logout()")
        requests = self._requests
        if self._stored is None:
            ended, ended_user = requests.ended, requests.ended_user
        else:
            ended, ended_user = self._stored.key, self._user_id
        self._reset(None, Requests(ended=ended, ended_user=ended_user, cookie_due=requests.cookie_due))

    # -- the mapping: every dict method, through the change tracking ------------------------

    def __getitem__(self, key: str) -> Any:
        self._accessed = True
        value = dict.__getitem__(self, key)
        if isinstance(value, _MUTABLE) and key not in self._dirty and key not in self._snapshots:
            self._snapshots[key] = self._check(key, value)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        self._accessed = True
        if not isinstance(key, str):
            raise TypeError(f"session keys must be str, not {type(key).__name__}")
        if self._frozen:
            self._late(f"session[{key!r}] set")
        size = len(key) + len(self._check(key, value)) + 4
        added = self._added_size + size - self._set_sizes.get(key, 0)
        if self._base_size + added > self._max_size:  # an over-estimate: check the exact size
            created_at = 0.0 if self._stored is None else self._stored.created_at
            exact = len(self._codec.encode(created_at, {**self._plain(), key: value}))
            if exact > self._max_size:
                raise SessionTooLargeError(
                    f"session[{key!r}] would make the session {exact} bytes, over max_size={self._max_size}"
                )
        dict.__setitem__(self, key, value)
        self._dirty.add(key)
        if self._snapshots:
            self._snapshots.pop(key, None)
        self._set_sizes[key] = size
        self._added_size = added

    def __delitem__(self, key: str) -> None:
        self._accessed = True
        dict.__delitem__(self, key)
        if self._frozen:
            self._late(f"session[{key!r}] deleted")
        self._dirty.add(key)
        self._snapshots.pop(key, None)
        self._added_size -= self._set_sizes.pop(key, 0)

    def __contains__(self, key: object) -> bool:
        self._accessed = True
        return dict.__contains__(self, key)

    def __iter__(self) -> Iterator[str]:
        self._accessed = True
        return iter(list(dict.keys(self)))

    def __len__(self) -> int:
        self._accessed = True
        return dict.__len__(self)

    def __eq__(self, other: object) -> bool:
        self._accessed = True
        return dict.__eq__(self, other)

    __hash__ = None  # a mutable mapping, like dict

    def get(self, key: str, default: Any = None) -> Any:
        if dict.__contains__(self, key):
            return self[key]  # through __getitem__: a list or dict read here is tracked
        self._accessed = True
        return default

    def keys(self) -> KeysView[str]:  # type: ignore[override]
        return KeysView(self)

    def values(self) -> ValuesView[Any]:  # type: ignore[override]
        return ValuesView(self)

    def items(self) -> ItemsView[str, Any]:  # type: ignore[override]
        return ItemsView(self)

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key in self:
            return self[key]
        self[key] = default
        return default

    def pop(self, key: str, default: Any = _MISSING) -> Any:
        if key in self:
            value = dict.__getitem__(self, key)
            del self[key]
            return value
        if default is _MISSING:
            raise KeyError(key)
        return default

    def popitem(self) -> tuple[str, Any]:
        self._accessed = True
        if not dict.__len__(self):
            raise KeyError("popitem(): session is empty")
        key = next(reversed(dict.keys(self)))
        return key, self.pop(key)

    def update(self, other: Mapping[str, Any] | Iterable[tuple[str, Any]] = (), /, **more: Any) -> None:  # type: ignore[override]
        pairs = other.items() if isinstance(other, Mapping) else other
        for key, value in pairs:
            self[key] = value
        for key, value in more.items():
            self[key] = value

    def __ior__(self, other: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> Session:  # type: ignore[override,misc]
        self.update(other)
        return self

    def copy(self) -> dict[str, Any]:
        """A plain ``dict`` with the session's content: a shallow copy, as ``dict.copy`` makes.
        Setting or removing its keys changes nothing; a list or dict in it is the session's own,
        and changing it in place is a change of the session, saved like one made through it."""
        self._accessed = True
        return {key: self[key] for key in dict.keys(self)}

    def __reduce__(self) -> Any:
        raise TypeError("a Session is not picklable: copy it with dict(session)")

    def clear(self) -> None:
        """Remove every key (each removal is merged like a ``del``)."""
        self._accessed = True
        if self._frozen and dict.__len__(self):
            self._late("clear()")
        self._dirty.update(dict.keys(self))
        dict.clear(self)
        self._snapshots.clear()
        self._set_sizes.clear()
        self._added_size = 0

    def __repr__(self) -> str:
        state = "new" if self._stored is None else "loaded"
        return f"<Session {state} user_id={self._user_id!r} keys={sorted(dict.keys(self))!r}>"

    def _changed_keys(self) -> set[str]:
        """Keys set or deleted in this request, plus lists/dicts read and then mutated in place.

        Raises :class:`SessionValueError` naming the key if a changed value is no longer plain
        JSON (a list or dict given a non-JSON item in place).
        """
        changed = set(self._dirty)
        value = dict.get
        for key, snapshot in self._snapshots.items():
            current = value(self, key, _MISSING)
            if current is not _MISSING and self._check(key, current) != snapshot:
                changed.add(key)
        for key in changed:
            current = value(self, key, _MISSING)
            if type(current) in _MUTABLE:
                self._check(key, current)
        return changed

    def _check(self, key: str, value: Any) -> bytes:
        try:
            return self._codec.check(value)
        except (TypeError, ValueError) as exc:
            raise SessionValueError(f"session[{key!r}]: {type(value).__name__} value is not JSON-serialisable ({exc})") from None

"""The Session: a mapping of JSON values plus lifecycle requests. It never does I/O."""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

from . import _codec
from ._logs import log
from .errors import SessionTooLargeError, SessionValueError

__all__ = ["Session"]

_MAX_USER_ID_LENGTH = 255
_MUTABLE = (list, dict)


class Session(MutableMapping[str, Any]):
    """One browser's session, as seen by one request.

    Values must be JSON that comes back exactly (``str``, ints within 64 bits, finite floats,
    ``bool``, ``None``, lists and dicts of them); a value that is not raises
    :class:`SessionValueError` (a ``TypeError``) naming the key when it is set. Changes, including
    in-place changes to lists and dicts read from the session, are written when the response
    starts, merged key by key with concurrent requests on the same session. A change made after
    the response started (in a streamed body, a background task), or in a WebSocket, cannot
    reach the cookie or the store: it is logged as a warning on the ``coatcheck`` logger and not
    saved.
    """

    __slots__ = (
        "_accessed",
        "_added_size",
        "_base_size",
        "_created_at",
        "_data",
        "_destroy_key",
        "_dirty",
        "_expires_at",
        "_frozen",
        "_id",
        "_id_factory",
        "_loaded_key",
        "_max_size",
        "_raw",
        "_reauthenticated",
        "_rotate",
        "_set_sizes",
        "_snapshots",
        "_user_changed",
        "_user_id",
        "_version",
    )

    def __init__(self, session_id: str | None = None, *, id_factory: Callable[[], str], max_size: int) -> None:
        """Build an empty session (its ID is drawn when first needed); the manager fills
        loaded ones with :meth:`_adopt`."""
        self._id_factory = id_factory
        self._max_size = max_size
        self._destroy_key: str | None = None
        self._accessed = False
        self._frozen = False  # set by a middleware once changes can no longer be saved
        self._reset(session_id)

    def _reset(self, session_id: str | None) -> None:
        self._id = session_id
        self._loaded_key: str | None = None
        self._raw: bytes | None = None
        self._version = 0
        self._created_at: float | None = None
        self._expires_at: float | None = None
        self._user_id: str | None = None
        self._data: dict[str, Any] = {}
        self._base_size = self._added_size = 0
        self._dirty: set[str] = set()
        self._snapshots: dict[str, bytes] = {}
        self._set_sizes: dict[str, int] = {}
        self._rotate = False
        self._reauthenticated = False
        self._user_changed = False

    def _adopt(
        self, key: str, raw: bytes, version: int, created_at: float, expires_at: float, user_id: str | None, data: dict[str, Any]
    ) -> None:
        """Make this session the one stored under ``key`` (used by the manager after a load)."""
        self._loaded_key, self._raw, self._version = key, raw, version
        self._created_at, self._expires_at, self._user_id = created_at, expires_at, user_id
        self._data, self._base_size = data, len(raw)

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
        return self._loaded_key is None

    @property
    def user_id(self) -> str | None:
        """The user bound by :meth:`login`, or None."""
        self._accessed = True  # the answer depends on the cookie: the response varies on it
        return self._user_id

    @property
    def created_at(self) -> float | None:
        """Unix time the session was created (or its user logged in); None if not yet stored."""
        self._accessed = True  # the answer depends on the cookie: the response varies on it
        return self._created_at

    @property
    def expires_at(self) -> float | None:
        """Unix time the stored session expires unless refreshed; None if not yet stored."""
        self._accessed = True  # the answer depends on the cookie: the response varies on it
        return self._expires_at

    @property
    def accessed(self) -> bool:
        """True once the application read or wrote the session (drives ``Vary: Cookie``)."""
        return self._accessed

    @property
    def modified(self) -> bool:
        """True when committing this session would write to the store."""
        return bool(self._changed_keys() or self._rotate or self._user_changed or self._destroy_key)

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
        if self._loaded_key is not None:
            self._rotate = True

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
        self._user_changed = True
        self._reauthenticated = True

    def logout(self) -> None:
        """Delete the session server-side and clear the cookie; the request goes on anonymous."""
        self._accessed = True
        if self._frozen:
            self._late("logout()")
        if self._loaded_key is not None:
            self._destroy_key = self._loaded_key
        self._reset(None)

    # -- the mapping --------------------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        self._accessed = True
        value = self._data[key]
        if isinstance(value, _MUTABLE) and key not in self._dirty and key not in self._snapshots:
            self._snapshots[key] = _codec.encode_value(value)
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
            exact = len(_codec.encode(self._created_at or 0.0, {**self._data, key: value}))
            if exact > self._max_size:
                raise SessionTooLargeError(
                    f"session[{key!r}] would make the session {exact} bytes, over max_size={self._max_size}"
                )
        self._data[key] = value
        self._dirty.add(key)
        if self._snapshots:
            self._snapshots.pop(key, None)
        self._set_sizes[key] = size
        self._added_size = added

    def __delitem__(self, key: str) -> None:
        self._accessed = True
        del self._data[key]
        if self._frozen:
            self._late(f"session[{key!r}] deleted")
        self._dirty.add(key)
        self._snapshots.pop(key, None)
        self._added_size -= self._set_sizes.pop(key, 0)

    def __contains__(self, key: object) -> bool:
        self._accessed = True
        return key in self._data

    def __iter__(self) -> Iterator[str]:
        self._accessed = True
        return iter(list(self._data))

    def __len__(self) -> int:
        self._accessed = True
        return len(self._data)

    def clear(self) -> None:
        """Remove every key (each removal is merged like a ``del``)."""
        self._accessed = True
        if self._frozen and self._data:
            self._late("clear()")
        self._dirty.update(self._data)
        self._data.clear()
        self._snapshots.clear()
        self._set_sizes.clear()
        self._added_size = 0

    def __repr__(self) -> str:
        state = "new" if self._loaded_key is None else "loaded"
        return f"<Session {state} user_id={self._user_id!r} keys={sorted(self._data)!r}>"

    def _changed_keys(self) -> set[str]:
        """Keys set or deleted in this request, plus lists/dicts read and then mutated in place.

        Raises :class:`SessionValueError` naming the key if a changed value is no longer plain
        JSON (a list or dict given a non-JSON item in place).
        """
        changed = set(self._dirty)
        for key, snapshot in self._snapshots.items():
            if key in self._data and self._check(key, self._data[key]) != snapshot:
                changed.add(key)
        for key in changed:
            if key in self._data and type(self._data[key]) in _MUTABLE:
                self._check(key, self._data[key])
        return changed

    @staticmethod
    def _check(key: str, value: Any) -> bytes:
        try:
            return _codec.encode_value(value)
        except (TypeError, ValueError) as exc:
            raise SessionValueError(f"session[{key!r}]: {type(value).__name__} value is not JSON-serialisable ({exc})") from None

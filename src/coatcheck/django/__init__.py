"""Django sessions on coatcheck: ``SESSION_ENGINE = "coatcheck.django"``.

``request.session`` stays Django's session API (a ``SessionBase``), read and written through a
coatcheck :class:`~coatcheck.Session`, so per-key merge, strict mode, hashed IDs at rest, the
idle and absolute timeouts and the user index hold through it. ``django.contrib.auth``'s
``login()`` binds the session to the user (``Session.login``: new ID, per-user index), so
:func:`revoke_user` logs that user out everywhere. See ``docs/django.md``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from datetime import datetime
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.base import CreateError, SessionBase, UpdateError
from django.db.models import Model

from ..devices import Client
from ..errors import SessionInterruptedError
from ..manager import SessionManager
from ..session import Session
from ._settings import get_manager

__all__ = ["SessionStore", "arevoke_user", "get_manager", "revoke_user"]

T = TypeVar("T")
_ID = re.compile(r"[A-Za-z0-9_-]{43}")  # what coatcheck issues; anything else is never looked up
_COOKIE_VALUE = re.compile(r"[!#-+\--:<-\[\]-~]{1,4096}")  # a cookie value that fits one Cookie pair: for legacy readers
DEADLINE_KEY = "_coatcheck_deadline"
"""The one key this module keeps in the stored data, hidden from ``request.session``: the unix
time a ``set_expiry()`` ends the session (the store's own expiry follows the idle and absolute
timeouts), or None where it only marks a session ``save()`` stored empty."""


async def _native(manager: SessionManager, call: Callable[[], Awaitable[T]], fallback: Callable[[], T]) -> T:
    """``call()`` on the store's async API; a store with only a sync API runs in a thread."""
    if manager.supports_async:
        return await call()
    return await sync_to_async(fallback)()


class _Data(MutableMapping[str, Any]):
    """What Django's SessionBase reads and writes: the coatcheck Session without
    :data:`DEADLINE_KEY`. Setting Django auth's user key to another user binds the session to
    that user (``Session.login``: the ID changes at commit, the user enters the per-user index)."""

    __slots__ = ("session",)

    def __init__(self, session: Session) -> None:
        self.session = session

    def __getitem__(self, key: str) -> Any:
        if key == DEADLINE_KEY:
            raise KeyError(key)
        return self.session[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if key == DEADLINE_KEY:
            raise ValueError(f"session key {key!r} is reserved by coatcheck.django")
        if key == SESSION_KEY and isinstance(value, str) and value and value != self.session.user_id:
            self.session.login(value)
        self.session[key] = value

    def __delitem__(self, key: str) -> None:
        if key == DEADLINE_KEY:
            raise KeyError(key)
        del self.session[key]

    def __iter__(self) -> Iterator[str]:
        return (key for key in self.session if key != DEADLINE_KEY)

    def __len__(self) -> int:
        return len(self.session) - (DEADLINE_KEY in self.session)

    def __contains__(self, key: object) -> bool:
        return key != DEADLINE_KEY and key in self.session

    def clear(self) -> None:
        self.session.clear()

    def __repr__(self) -> str:
        return repr(dict(self))


class SessionStore(SessionBase):
    """Django's session API over coatcheck's manager and stores.

    A request's reads and writes go to a coatcheck Session, committed by ``save()`` (Django's
    SessionMiddleware) or at the response (``coatcheck.django.middleware.SessionMiddleware``) as
    one compare-and-set write merged key by key with concurrent requests. ``cycle_key()`` asks
    for a new ID, given at that commit in the same atomic write as the data (and as the user
    binding, when ``auth.login()`` called it); any other store call made before (``exists``,
    ``delete``, ``load``) commits it first. ``flush()`` deletes the session server-side at once
    (at the response under coatcheck's middleware). Session keys that coatcheck did not issue and
    that name no live session are never adopted.
    """

    _session_cache: _Data  # set on first access, as in Django's backends

    def __init__(self, session_key: str | None = None) -> None:
        self._manager = get_manager()
        self._inner: Session | None = None
        self._pending = False  # a new ID or a logout asked for and not yet committed
        self._deferred = False  # set by coatcheck's middleware: a logout waits for its commit
        super().__init__(session_key)

    # -- loading ------------------------------------------------------------------------------

    def _cookie(self, session_id: str) -> str:
        return f"{self._manager.config.cookie.name}={session_id}"

    def _live(self, session: Session) -> Session:
        """``session``, or a fresh one when its ``set_expiry()`` date has passed (it reads as missing)."""
        if not session.is_new:
            deadline = session.get(DEADLINE_KEY)
            if type(deadline) in (int, float) and deadline <= self._manager.clock():
                return self._manager.new_session()
        return session

    def _loadable(self, session_id: str | None) -> bool:
        """Whether ``session_id`` may name a session: one coatcheck issued, or, with legacy
        readers set, any cookie value (a legacy session is adopted under a new key)."""
        if session_id is None:
            return False
        return _ID.fullmatch(session_id) is not None or (
            bool(self._manager.legacy) and _COOKIE_VALUE.fullmatch(session_id) is not None
        )

    def _load_id(self, session_id: str | None) -> Session:
        if not self._loadable(session_id):
            return self._manager.new_session()
        assert session_id is not None
        return self._live(self._manager.load(self._cookie(session_id)))

    async def _aload_id(self, session_id: str | None) -> Session:
        if not self._loadable(session_id):
            return self._manager.new_session()
        assert session_id is not None
        manager, cookie = self._manager, self._cookie(session_id)
        return self._live(await _native(manager, lambda: manager.aload(cookie), lambda: manager.load(cookie)))

    def _adopt(self, session: Session) -> _Data:
        self._inner = session
        self._session_cache = _Data(session)
        self._session_key = None if session.is_new else session.id
        return self._session_cache

    def _get_session(self, no_load: bool = False) -> _Data:
        self.accessed = True
        try:
            return self._session_cache
        except AttributeError:
            session_key = self._session_key
            return self._adopt(self._manager.new_session() if no_load or session_key is None else self._load_id(session_key))

    async def _aget_session(self, no_load: bool = False) -> _Data:
        self.accessed = True
        try:
            return self._session_cache
        except AttributeError:
            session_key = self._session_key
            if no_load or session_key is None:
                return self._adopt(self._manager.new_session())
            return self._adopt(await self._aload_id(session_key))

    _session = property(_get_session)

    def _preload(self) -> None:
        """Load the session the cookie names, if any, without marking it accessed (the middleware
        does this first, so that a store failure answers 503 before the app runs)."""
        if self._session_key is not None and not hasattr(self, "_session_cache"):
            self._adopt(self._load_id(self._session_key))

    async def _apreload(self) -> None:
        if self._session_key is not None and not hasattr(self, "_session_cache"):
            self._adopt(await self._aload_id(self._session_key))

    def load(self) -> dict[str, Any]:
        """The data stored under the current key (``{}`` and no key when there is none)."""
        self._settle()
        session = self._load_id(self._session_key)
        if session.is_new:
            self._session_key = None
        return dict(_Data(session))

    async def aload(self) -> dict[str, Any]:
        await self._asettle()
        session = await self._aload_id(self._session_key)
        if session.is_new:
            self._session_key = None
        return dict(_Data(session))

    def exists(self, session_key: str | None) -> bool:
        """True if ``session_key`` names a live session."""
        self._settle()
        return not self._load_id(session_key).is_new

    async def aexists(self, session_key: str | None) -> bool:
        await self._asettle()
        return not (await self._aload_id(session_key)).is_new

    # -- committing ---------------------------------------------------------------------------

    def _committed(self, session: Session) -> None:
        self._pending = False
        self._session_key = None if session.is_new else session.id

    def _commit(self, status_code: int = 200, client: Client | None = None) -> None:
        """Write what this request did (nothing, a touch, a merge, a new ID, a deletion)."""
        session = self._inner
        if session is not None:
            self._manager.commit(session, status_code=status_code, client=client)
            self._committed(session)

    async def _acommit(self, status_code: int = 200, client: Client | None = None) -> None:
        session, manager = self._inner, self._manager
        if session is not None:
            await _native(
                manager,
                lambda: manager.acommit(session, status_code=status_code, client=client),
                lambda: manager.commit(session, status_code=status_code, client=client),
            )
            self._committed(session)

    def _settle(self) -> None:
        if self._pending:
            self._commit()

    async def _asettle(self) -> None:
        if self._pending:
            await self._acommit()

    def _deadline(self, expiry: Any) -> float | None:
        if not expiry:  # None, or 0 (the cookie ends with the browser): the store's timeouts apply
            return None
        if isinstance(expiry, str):
            return datetime.fromisoformat(expiry).timestamp()
        if type(expiry) in (int, float):
            return float(self._manager.clock() + expiry)
        return None

    def _prepare_save(self) -> None:
        """Keep the ``set_expiry()`` deadline where the store can enforce it; Django moves it on
        every save, so this runs where Django would save."""
        session = self._inner
        assert session is not None
        deadline = self._deadline(session.get("_session_expiry"))
        current = session.get(DEADLINE_KEY)
        if deadline is not None and current != deadline:
            session[DEADLINE_KEY] = deadline
        elif deadline is None and current is not None:
            session[DEADLINE_KEY] = None

    def _start_save(self, data: _Data, must_create: bool) -> None:
        session = self._inner
        assert session is not None
        if must_create and not session.is_new:
            raise CreateError
        self._prepare_save()
        if session.is_new and not data:
            session[DEADLINE_KEY] = None  # Django's save() stores even an empty session

    def save(self, must_create: bool = False) -> None:
        """Commit now: create the session, or merge this request's changes into the stored one.

        Raises ``UpdateError`` when the session was deleted, revoked or given a new ID by a
        concurrent request (nothing is saved then), ``CreateError`` for ``must_create`` on a
        stored session.
        """
        self._start_save(self._get_session(no_load=must_create), must_create)
        try:
            self._commit()
        except SessionInterruptedError as exc:
            raise UpdateError(str(exc)) from exc

    async def asave(self, must_create: bool = False) -> None:
        self._start_save(await self._aget_session(no_load=must_create), must_create)
        try:
            await self._acommit()
        except SessionInterruptedError as exc:
            raise UpdateError(str(exc)) from exc

    def create(self) -> None:
        """Store the current data under a new key (the old session is left as it is)."""
        self._fresh()
        self.save(must_create=True)
        self.modified = True

    async def acreate(self) -> None:
        self._fresh()
        await self.asave(must_create=True)
        self.modified = True

    def _fresh(self) -> None:
        items = list(self._session_cache.items()) if hasattr(self, "_session_cache") else []
        data = self._adopt(self._manager.new_session())
        self._pending = False
        data.update(items)

    # -- ending and renewing ------------------------------------------------------------------

    def _delete_other(self, session: Session) -> None:
        if not session.is_new:
            session.logout()
            self._manager.commit(session)

    def delete(self, session_key: str | None = None) -> None:
        """Delete the session under ``session_key`` (default: this one) from the store."""
        self._settle()
        if session_key is not None and session_key != self._session_key:
            self._delete_other(self._load_id(session_key))
            return
        self._preload()
        if self._inner is not None and not self._inner.is_new:
            self._inner.logout()
            self._commit()

    async def adelete(self, session_key: str | None = None) -> None:
        await self._asettle()
        manager = self._manager
        if session_key is not None and session_key != self._session_key:
            other = await self._aload_id(session_key)
            if not other.is_new:
                other.logout()
                await _native(manager, lambda: manager.acommit(other), lambda: manager.commit(other))
            return
        await self._apreload()
        if self._inner is not None and not self._inner.is_new:
            self._inner.logout()
            await self._acommit()

    def _end(self) -> None:
        assert self._inner is not None
        self._inner.logout()  # the stored session is deleted at the commit; the data is gone now
        self._session_key = None
        self._pending = True
        self.modified = True

    def flush(self) -> None:
        """Log out: delete the session server-side and start an empty one without a key."""
        self._get_session()
        self._end()
        if not self._deferred:
            self._commit()

    async def aflush(self) -> None:
        await self._aget_session()
        self._end()
        if not self._deferred:
            await self._acommit()

    def _rotate(self) -> None:
        assert self._inner is not None
        if not self._inner.is_new:
            self._inner.rotate()
            self._pending = True
        self.modified = True

    def cycle_key(self) -> None:
        """Give the session a new key, keeping its data; the old key stops working at the commit."""
        self._get_session()
        self._rotate()

    async def acycle_key(self) -> None:
        await self._aget_session()
        self._rotate()

    def clear(self) -> None:
        """Remove every key (each removal merges like a ``del``)."""
        self._get_session().clear()
        self.modified = True

    # -- expiry -------------------------------------------------------------------------------

    def get_session_cookie_age(self) -> int:
        """The idle timeout (``SESSION_COOKIE_AGE`` unless ``COATCHECK['IDLE_TIMEOUT']``), never
        past the absolute timeout of a stored session."""
        config = self._manager.config
        age = config.idle_seconds
        session = self._inner
        if session is not None and not session.is_new and session.created_at is not None:
            age = min(age, session.created_at + config.absolute_seconds - self._manager.clock())
        return max(0, int(age))

    @classmethod
    def clear_expired(cls) -> None:
        """Delete expired sessions (``manage.py clearsessions``); a no-op where the store expires them."""
        get_manager().purge_expired()

    @classmethod
    async def aclear_expired(cls) -> None:
        manager = get_manager()
        await _native(manager, manager.apurge_expired, manager.purge_expired)


def _user_id(user: Model | str | int) -> str:
    """The ID ``auth.login()`` stores for ``user`` (a user instance, or its primary key)."""
    if isinstance(user, Model):
        pk = user._meta.pk
        assert pk is not None
        return str(pk.value_to_string(user))
    return str(user)


def revoke_user(user: Model | str | int) -> int:
    """Log ``user`` (a user instance, or its primary key) out everywhere: delete every session
    bound to it by ``auth.login()``. Returns how many were deleted."""
    return get_manager().revoke_user(_user_id(user))


async def arevoke_user(user: Model | str | int) -> int:
    """Async :func:`revoke_user`."""
    manager, user_id = get_manager(), _user_id(user)
    return await _native(manager, lambda: manager.arevoke_user(user_id), lambda: manager.revoke_user(user_id))

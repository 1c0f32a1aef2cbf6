"""SessionManager: the flows of ``_core`` run against a store by the drivers of ``_ops``."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Coroutine, Generator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from . import _aio, _codec, _cookies, _core, _sealing, devices, events
from ._ids import handle_of_key, is_valid_id, log_handle, new_session_id, store_key
from ._ops import (
    CORE_OPERATIONS,
    NOTHING_INLINE,
    Capabilities,
    Close,
    Delete,
    DeleteExpired,
    DeleteUser,
    ListUser,
    Load,
    Observer,
    Operation,
    Rotate,
    Scan,
    Touch,
    adrive,
    drive,
    one,
)
from ._record import Record
from ._turns import AsyncKeyTurns, KeyTurns
from .config import SessionConfig
from .errors import ConcurrentUpdateError, ConfigurationError, NotSupportedError, SessionTooLargeError
from .legacy import MAX_LEGACY_VALUE, BadValues, Forget, LegacyReader, LegacySession, Read, check_readers, user_id_of, warn
from .session import Session
from .stores import from_url
from .stores._protocol import (
    AsyncStore,
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
    implements,
    nonblocking,
)

__all__ = ["SessionInfo", "SessionManager"]

T = TypeVar("T")
Host = str | Callable[[], str | None] | None  # the request's Host, or a function that finds it
DEFAULT_STORE = "sqlite:///sessions.db"  # the store of a manager given none
_SYNC_CAPABILITIES = (
    (SupportsTouch, Touch),
    (SupportsRotate, Rotate),
    (SupportsUserIndex, DeleteUser),
    (SupportsUserIndex, ListUser),
    (SupportsScan, Scan),
)
_ASYNC_CAPABILITIES = (
    (SupportsAsyncTouch, Touch),
    (SupportsAsyncRotate, Rotate),
    (SupportsAsyncUserIndex, DeleteUser),
    (SupportsAsyncUserIndex, ListUser),
    (SupportsAsyncScan, Scan),
)


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """One live session, for "your devices" pages and the operator's tools. ``handle`` is not the
    ID (a short hash of it: what events and logs name the session by, and what :meth:`SessionManager.revoke`
    takes). ``last_seen`` is when a request last moved its expiry (to within ``touch_interval``;
    in its last ``idle_timeout`` before the absolute timeout, the start of that period). The
    device fields are None unless ``SessionConfig(devices=True)``: the browser and OS its user
    agent names, its address truncated to a network, and the time of its login."""

    handle: str
    created_at: float
    expires_at: float
    user_id: str | None = None
    last_seen: float | None = None
    login_at: float | None = None
    user_agent: str | None = None
    browser: str | None = None
    os: str | None = None
    address: str | None = None


class SessionManager:
    """Loads and commits sessions against one store under one :class:`SessionConfig`.

    ``store`` is a URL (``"sqlite:///sessions.db"``, ``"memory://"``, ``"redis://..."``) or a
    store object implementing :class:`~coatcheck.stores.Store`, :class:`~coatcheck.stores.AsyncStore`
    or both. Bad options raise :class:`ConfigurationError` here, never on a request; call
    :meth:`check` (the middleware does) to fail at startup when the store is unreachable.
    ``codec`` says which values sessions take and how they are stored (strict JSON by default;
    an integration may take more, as ``coatcheck.flask`` takes Flask's tagged types).
    ``legacy`` readers adopt the sessions of the system the app is switching from (see
    :mod:`coatcheck.legacy`); a legacy value the session cannot hold is dropped, or with
    ``legacy_bad_values="refuse"`` its session is not adopted at all.
    """

    def __init__(
        self,
        store: str | Store | AsyncStore = DEFAULT_STORE,
        *,
        config: SessionConfig | None = None,
        clock: Callable[[], float] = time.time,
        id_factory: Callable[[], str] = new_session_id,
        codec: _codec.Codec = _codec.JSON,
        legacy: Iterable[LegacyReader] = (),
        legacy_bad_values: BadValues = "drop",
    ) -> None:
        if config is None:
            config = SessionConfig()
        if not isinstance(config, SessionConfig):
            raise ConfigurationError(f"config must be a SessionConfig, not {type(config).__name__}")
        self.config = config
        self._cookie_attributes = {secure: _cookies.cookie_attributes(config.cookie, secure=secure) for secure in (False, True)}
        self.clock = clock
        self.codec = codec
        sealer = _sealing.Sealer(cast("Sequence[bytes]", config.encryption_keys)) if config.encryption_keys else None
        self.records = _codec.RecordFormat(
            codec,
            sealer,
            address_bits=config.device_address_bits if config.devices else None,
            accept_unsealed=config.accept_unsealed,
        )
        self.legacy = check_readers(legacy)
        if legacy_bad_values not in ("drop", "refuse"):
            raise ConfigurationError(f"legacy_bad_values must be 'drop' or 'refuse', not {legacy_bad_values!r}")
        self._refuse_bad_values = legacy_bad_values == "refuse"
        self._legacy_name = any(reader.cookie.name == config.cookie.name for reader in self.legacy)
        self._id_factory = id_factory if id_factory is new_session_id else _checked(id_factory)
        self.store: Any = from_url(store, clock=clock) if isinstance(store, str) else store
        self.supports_sync = implements(self.store, Store)
        self.supports_async = implements(self.store, AsyncStore)
        if not (self.supports_sync or self.supports_async):
            raise ConfigurationError(f"{type(self.store).__name__} implements neither the Store nor the AsyncStore protocol")
        self._sync_caps: Capabilities = frozenset(op for kind, op in _SYNC_CAPABILITIES if implements(self.store, kind))
        self._async_caps: Capabilities = frozenset(op for kind, op in _ASYNC_CAPABILITIES if implements(self.store, kind))
        # A store whose sync methods never block: async code runs the operations it has sync methods for inline.
        self._inline = CORE_OPERATIONS | self._sync_caps if self.supports_sync and nonblocking(self.store) else NOTHING_INLINE
        self.events = events.Events()  # subscriptions for audit trails: login, logout, revoke, ...
        self.observe: Observer | None = None  # sees every store operation (its kind, time, outcome): metrics, tracing
        self._turns = KeyTurns()  # commits of one session in this process take turns
        self._aturns = AsyncKeyTurns()

    def __repr__(self) -> str:
        return f"<SessionManager store={type(self.store).__name__}>"

    # -- running flows: the one pair of drivers, in _ops ---------------------------------------

    def _run(self, flow: Generator[Operation[Any], Any, T]) -> T:
        if not self.supports_sync:
            raise NotSupportedError(f"{type(self.store).__name__} has no synchronous API; use the a-prefixed methods")
        return drive(flow, self.store, self.observe)

    def _arun(self, flow: Generator[Operation[Any], Any, T]) -> Coroutine[Any, Any, T]:
        if not self.supports_async:  # raised when awaited, as from an async method
            flow.close()
            return _raising(NotSupportedError(f"{type(self.store).__name__} has no asynchronous API; use the sync methods"))
        return adrive(flow, self.store, self.observe, inline=self._inline)

    # -- sessions -------------------------------------------------------------------------------

    def new_session(self) -> Session:
        """A new, empty session that costs nothing until something is written to it."""
        return Session(id_factory=self._id_factory, max_size=self.config.max_size, codec=self.codec)

    def _session(self, session_id: str | None) -> Session:
        return Session(session_id, id_factory=self._id_factory, max_size=self.config.max_size, codec=self.codec)

    def _loading(self, headers: Sequence[str], legacy: bool) -> Generator[Operation[Any], Any, Session]:
        flow = self._load_or_adopt(headers) if legacy and self.legacy else self._load_flow(headers)
        return flow if not self.events._subscribers else events.loading(self.events, flow)

    def _load_flow(self, headers: Sequence[str]) -> Generator[Operation[Any], Any, Session]:
        rejected = events.rejecting(self.events) if self.events._subscribers else None
        candidates = _cookies.cookie_candidates(
            headers, self.config.cookie.name, legacy_name=self._legacy_name, rejected=rejected
        )
        return _core.load_flow(candidates, self.config, self.clock(), self._session, self.records, rejected)

    def load(self, cookie_headers: str | Iterable[str] | None, *, legacy: bool = True) -> Session:
        """The session named by the request's ``Cookie`` header(s), or a fresh one.

        Without a well-formed session cookie this does no store I/O at all. Without a live
        session but with a legacy cookie, the legacy session is adopted (see :mod:`coatcheck.legacy`),
        unless ``legacy=False`` (a request that cannot send the new cookie: a WebSocket).
        """
        if not cookie_headers and self.supports_sync:  # no cookie at all: no flow to run
            return self.new_session()
        return self._run(self._loading(_header_list(cookie_headers), legacy))

    def aload(self, cookie_headers: str | Iterable[str] | None, *, legacy: bool = True) -> Coroutine[Any, Any, Session]:
        """Async :meth:`load` (the driver's coroutine itself: one coroutine less per request)."""
        return self._arun(self._loading(_header_list(cookie_headers), legacy))

    def adopt_legacy(self, reader: LegacyReader, value: str) -> bool:
        """Adopt the legacy session behind cookie ``value`` now, before its browser comes back
        (``coatcheck migrate-sessions``): it is stored as a coatcheck session, the legacy record
        is deleted, and the first request that brings the legacy cookie gets the session (its
        timeouts start then; later copies get nothing). True if adopted; False if it was adopted
        already or does not verify."""
        return self._run(self._adoption(reader, value, _core.legacy_claim_id(reader.name, value), pending=True)) is not None

    # -- legacy sessions: the decisions are in _core; this composes the flows ------------------------

    def _legacy_cookie(self, headers: Sequence[str]) -> tuple[LegacyReader, str, str] | None:
        """The first reader whose cookie the request carries: (reader, cookie value, claim ID)."""
        for reader in self.legacy:
            value = _cookies.legacy_value(headers, reader.cookie.name, MAX_LEGACY_VALUE)
            if value is not None:
                return reader, value, _core.legacy_claim_id(reader.name, value)
        return None

    def _load_or_adopt(self, headers: Sequence[str]) -> Generator[Operation[Any], Any, Session]:
        """The load flow, then, without a live session but with a legacy cookie, the adoption."""
        session = yield from self._load_flow(headers)
        if session._stored is not None or (found := self._legacy_cookie(headers)) is None:
            return session
        reader, value, claim = found
        adopted = yield from self._adoption(reader, value, claim)
        return self._adopted(session, reader, adopted)

    def _adoption(
        self, reader: LegacyReader, value: str, claim: str, *, pending: bool = False
    ) -> Generator[Operation[Any], Any, Session | None]:
        """The session legacy cookie ``value`` leads to: the one a claim names (or None when the
        claim refuses it), else the one made from what ``reader`` reads, whose legacy record is
        then forgotten. A ``pending`` (offline) adoption makes none from a cookie claimed already."""
        if pending:  # offline: a cookie claimed already is left as it is (a pending claim waits for its browser)
            if (yield Load(store_key(claim))) is not None:
                return None
        elif (
            adoption := (yield from _core.claimed_flow(claim, self.config, self.clock(), self._session, self.records))
        ) is not None:
            return adoption.session
        found = yield Read(reader, value)
        flow = self._adopt_flow(reader, claim, found, pending=pending)
        adoption = (yield from flow) if flow is not None else _core.REFUSED
        if adoption.created:
            yield Forget(reader, value)
        return adoption.session

    def _adopt_flow(
        self, reader: LegacyReader, claim: str, found: object, *, pending: bool = False
    ) -> Generator[Operation[Any], Any, _core.Adoption] | None:
        """The flow that stores what ``reader`` found, or None when there is nothing to adopt
        (a reader's answer that is not a well-formed :class:`LegacySession` is logged and refused)."""
        if found is None:
            return None
        why = _malformed(found)
        if why is not None:
            warn(reader.name, f"session not adopted: the reader returned {why}")
            return None
        assert isinstance(found, LegacySession)
        data = _core.legacy_data(found.data, self.codec, reader.name, self._refuse_bad_values)
        if data is None:
            return None
        user_id = user_id_of(found.user_id)
        if found.user_id is not None and (user_id is None or len(user_id) > 255):
            warn(
                reader.name,
                f"user {str(found.user_id)[:40]!r} is not a user ID (1 to 255 characters); the session is adopted unbound",
            )
            user_id = None
        now = self.clock()
        flow = _core.adopt_flow(
            claim, data, user_id, found.expires_at, self.config, now, self._session, self.records, pending=pending
        )
        return _refusing_too_large(flow, reader)

    def _adopted(self, fresh: Session, reader: LegacyReader, adopted: Session | None) -> Session:
        """The request's session after a legacy cookie: the adopted one (its cookie to send), or
        ``fresh``; either way the legacy cookie is cleared (unless ours replaces it)."""
        session = adopted or fresh
        if adopted is not None:
            session._set_requests(session._requests._replace(cookie_due=True))
        ours, theirs = self.config.cookie, reader.cookie
        same = (ours.name, ours.path, ours.domain) == (theirs.name, theirs.path, theirs.domain)
        session._legacy_cookie = (_cookies.legacy_clear_header(theirs, secure=ours.secure is True), same)
        return session

    def _commit_flow(
        self, session: Session, status_code: int, caps: Capabilities, client: devices.Client | None
    ) -> Generator[Operation[Any], Any, _core.CommitResult] | None:
        """The commit flow, or None when there is nothing to commit (no store call at all)."""
        keep = status_code < 500 or self.config.save_on_server_error
        flow = _core.commit_flow(
            session, self.config, self.clock(), keep_changes=keep, capabilities=caps, records=self.records, client=client
        )
        if not self.events._subscribers:  # the dict itself: no Python call on the hot path
            return flow
        if flow is None:
            events.skipped(self.events, session, "dropped" if not keep and session._maybe_changed() else "unchanged")
            return None
        return events.announcing(self.events, session, flow)

    def _skips_commit(self, session: Session) -> bool:
        """Whether committing ``session`` now would do nothing and tell nobody: it has
        :func:`~coatcheck._core.nothing_to_commit` (which reads the clock for a stored session),
        and no event subscriber waits for its "unchanged". The integrations then make no
        :meth:`commit` call at all (an override of it in a subclass is not called either)."""
        return not self.events._subscribers and _core.nothing_to_commit(session, self.config, self.clock)

    def _set_cookie(self, result: _core.CommitResult, scheme: str, host: Host) -> str | None:
        if result.session_id is None and not result.clear:
            return None
        secure = _cookies.wants_secure(self.config.cookie, scheme)
        if secure and scheme == "http" and host is not None:
            _cookies.warn_if_browsers_drop(host if isinstance(host, str) else host())
        attributes = self._cookie_attributes[secure]
        if result.session_id is not None:
            return _cookies.set_cookie_header(self.config.cookie, result.session_id, result.max_age, attributes)
        return _cookies.clear_cookie_header(self.config.cookie, attributes)

    def commit(
        self,
        session: Session,
        *,
        status_code: int = 200,
        scheme: str = "https",
        host: Host = None,
        client: devices.Client | None = None,
    ) -> str | None:
        """Write what the request did to ``session``; return the ``Set-Cookie`` value, if any.

        ``scheme`` and ``host`` are the request's (``host`` may be a function that finds it, called
        only when needed): a ``Secure`` cookie sent over plain http to a host other than localhost
        (which browsers drop) logs one warning per process. ``client`` is the request's browser,
        kept as device metadata with ``SessionConfig(devices=True)`` (the integrations pass it).

        Changes made while answering a 5xx are dropped unless ``save_on_server_error``; a
        requested logout is applied whatever the status. Commits of one stored session in this
        process take turns (see :mod:`coatcheck._turns`), so their compare-and-set conflicts come
        mostly from other processes.
        Raises :class:`SessionInterruptedError` when a concurrent request ended the session or
        changed its ID after this one loaded it and this request's changes cannot be saved.
        """
        flow = self._commit_flow(session, status_code, self._sync_caps, client)
        if flow is None:
            return None
        key = _turn_key(session)
        if key is None:
            return self._set_cookie(self._run(flow), scheme, host)
        turns = self._turns
        held = turns.acquire(key)
        try:
            result = self._run(flow)
        except BaseException:
            turns.release(key, held, failed=True)
            raise
        turns.release(key, held)
        return self._set_cookie(result, scheme, host)

    async def acommit(
        self,
        session: Session,
        *,
        status_code: int = 200,
        scheme: str = "https",
        host: Host = None,
        client: devices.Client | None = None,
    ) -> str | None:
        """Async :meth:`commit`."""
        flow = self._commit_flow(session, status_code, self._async_caps, client)
        if flow is None:
            return None
        key = _turn_key(session)
        if key is None:
            return self._set_cookie(await self._arun(flow), scheme, host)
        turns = self._aturns
        held = turns.take(key) or await turns.wait(key)  # no coroutine at all for a free turn
        try:
            result = await self._arun(flow)
        except BaseException:
            if held:
                turns.release(key, failed=True)
            raise
        if held:
            turns.release(key)
        return self._set_cookie(result, scheme, host)

    # -- per-user operations -------------------------------------------------------------------

    def _per_user(self, op: DeleteUser | ListUser, caps: Capabilities) -> Generator[Operation[Any], Any, Any]:
        if type(op) not in caps:
            raise NotSupportedError(f"{type(self.store).__name__} has no per-user index (SupportsUserIndex)")
        return one(op)

    def _revoking(self, user_id: str, keep: Session | str | None, caps: Capabilities) -> Generator[Operation[Any], Any, int]:
        flow = self._per_user(DeleteUser(user_id), caps) if keep is None else self._revoke_others(user_id, keep, caps)
        return flow if not self.events._subscribers else events.revoking(self.events, user_id, flow)

    def _revoke_others(self, user_id: str, keep: Session | str, caps: Capabilities) -> Generator[Operation[Any], Any, int]:
        """Delete each session of ``user_id`` but the one ``keep`` is (or names by its handle),
        listing again until none is left: a session given a new ID between the listing and its
        deletion is found under that ID by the next listing (it then counts twice)."""
        kept = self.handle(keep) if isinstance(keep, Session) else _handle(keep)
        ended: set[str] = set()
        for _ in range(_REVOKE_ROUNDS):
            rows: list[tuple[str, Record]] = yield from self._per_user(ListUser(user_id), caps)
            others = [key for key, _ in rows if handle_of_key(key) != kept and key not in ended]
            if not others:
                return len(ended)
            for key in others:
                yield Delete(key)
            ended.update(others)
        raise ConcurrentUpdateError(f"sessions of this user kept appearing through {_REVOKE_ROUNDS} rounds of revocation")

    def revoke_user(self, user_id: str, *, keep: Session | str | None = None) -> int:
        """Delete every session of ``user_id`` ("log out everywhere"), or every one but ``keep``
        (a session, or a :attr:`SessionInfo.handle`: "log out other devices"); return how many."""
        return self._run(self._revoking(user_id, keep, self._sync_caps))

    async def arevoke_user(self, user_id: str, *, keep: Session | str | None = None) -> int:
        """Async :meth:`revoke_user`."""
        return await self._arun(self._revoking(user_id, keep, self._async_caps))

    def _revoke_one(self, handle: str, user_id: str | None, caps: Capabilities) -> Generator[Operation[Any], Any, bool]:
        """Find the key of the session ``handle`` names (among ``user_id``'s, or in a scan of
        the store) and delete it."""
        handle = _handle(handle)
        key: str | None = None
        if user_id is not None:
            rows: list[tuple[str, Record]] = yield from self._per_user(ListUser(user_id), caps)
            key = next((key for key, _ in rows if handle_of_key(key) == handle), None)
        else:
            if Scan not in caps:
                raise NotSupportedError(f"{type(self.store).__name__} cannot list every session: pass the session's user_id")
            cursor: str | None = None
            while key is None:
                page, cursor = yield Scan(cursor, 1000)
                key = next((key for key, _ in page if handle_of_key(key) == handle), None)
                if cursor is None:
                    break
        if key is None:
            return False
        yield Delete(key)
        if self.events._subscribers:
            self.events.emit(events.SessionEvent("revoke", handle, user_id, 1))
        return True

    def revoke(self, handle: str, *, user_id: str | None = None) -> bool:
        """End the one session whose :attr:`SessionInfo.handle` is ``handle``; True if there was
        one. Give the ``user_id`` it belongs to whenever the handle comes from a user (a "your
        devices" page): only that user's sessions are looked at, through the per-user index.
        Without it, the store is scanned (the operator's ``coatcheck revoke``)."""
        return self._run(self._revoke_one(handle, user_id, self._sync_caps))

    async def arevoke(self, handle: str, *, user_id: str | None = None) -> bool:
        """Async :meth:`revoke`."""
        return await self._arun(self._revoke_one(handle, user_id, self._async_caps))

    def _infos(self, rows: list[tuple[str, Record]]) -> list[SessionInfo]:
        """The live sessions among ``rows``, oldest first, read from their headers (a sealed
        session's data stays closed)."""
        infos = []
        now, idle = self.clock(), self.config.idle_seconds
        for key, record in rows:
            try:
                created_at, meta = self.records.header(record.data)
            except _codec.CorruptRecordError:
                continue  # a tombstone, a legacy claim, or not a record at all
            expires_at = min(record.expires_at, created_at + self.config.absolute_seconds)
            if expires_at <= now:
                continue
            meta = meta or {}
            agent, address, login_at = meta.get("ua"), meta.get("ip"), meta.get("login")
            agent = agent if isinstance(agent, str) else None
            browser, system = devices.describe(agent) if agent is not None else (None, None)
            infos.append(
                SessionInfo(
                    handle=handle_of_key(key),
                    created_at=created_at,
                    expires_at=expires_at,
                    user_id=record.user_id,
                    last_seen=min(now, max(created_at, record.expires_at - idle)),
                    login_at=_codec.finite(login_at),
                    user_agent=agent,
                    browser=browser,
                    os=system,
                    address=address if isinstance(address, str) else None,
                )
            )
        return sorted(infos, key=lambda info: info.created_at)

    def list_sessions(self, user_id: str) -> list[SessionInfo]:
        """The live sessions of ``user_id``, oldest first."""
        return self._infos(self._run(self._per_user(ListUser(user_id), self._sync_caps)))

    async def alist_sessions(self, user_id: str) -> list[SessionInfo]:
        """Async :meth:`list_sessions`."""
        return self._infos(await self._arun(self._per_user(ListUser(user_id), self._async_caps)))

    def scan(self, cursor: str | None = None, limit: int = 500) -> tuple[list[SessionInfo], str | None]:
        """A page of the store's live sessions, every user's, and the cursor of the next page
        (None after the last): ``scan()`` starts, ``scan(cursor)`` continues. A page holds up to
        about ``limit`` sessions, maybe none while the cursor is not None; a session live for the
        whole scan is listed at least once. Raises :class:`NotSupportedError` for a store without
        :class:`~coatcheck.stores.SupportsScan`."""
        if Scan not in self._sync_caps:
            raise NotSupportedError(f"{type(self.store).__name__} cannot list every session (SupportsScan)")
        rows, following = self._run(one(Scan(cursor, limit)))
        return self._infos(rows), following

    async def ascan(self, cursor: str | None = None, limit: int = 500) -> tuple[list[SessionInfo], str | None]:
        """Async :meth:`scan`."""
        if Scan not in self._async_caps:
            raise NotSupportedError(f"{type(self.store).__name__} cannot list every session (SupportsAsyncScan)")
        rows, following = await self._arun(one(Scan(cursor, limit)))
        return self._infos(rows), following

    @staticmethod
    def handle(session: Session) -> str:
        """The :attr:`SessionInfo.handle` of ``session``, to mark "this device" in a listing."""
        return log_handle(session._current_id())

    # -- upkeep ---------------------------------------------------------------------------------

    def purge_expired(self) -> int:
        """Delete expired records now; return how many (0 for stores that expire natively)."""
        return int(self._run(one(DeleteExpired(self.clock()))))

    async def apurge_expired(self) -> int:
        """Async :meth:`purge_expired` (always through the store's async method, which may
        yield to the event loop between batches, even for a store whose sync methods never block)."""
        if not self.supports_async:
            raise NotSupportedError(f"{type(self.store).__name__} has no asynchronous API; use the sync methods")
        return int(await adrive(one(DeleteExpired(self.clock())), self.store, self.observe))

    def check(self) -> None:
        """Raise :class:`StoreUnavailableError` (or another StoreError) if the store cannot be used."""
        self._run(one(_probe()))

    async def acheck(self) -> None:
        """Async :meth:`check`. Under an event loop other than asyncio (trio), a store whose
        async side needs asyncio raises :class:`NotSupportedError` here, at startup."""
        if asyncio_only(self.store) and _aio.running_asyncio_loop() is None:
            raise NotSupportedError(
                f"{type(self.store).__name__}'s async side needs asyncio, and this app runs on another"
                " event loop (trio): use memory:// or sqlite://, or run the app on asyncio"
            )
        await self._arun(one(_probe()))

    def close(self) -> None:
        """Release the store's connections."""
        self._run(one(Close()))

    async def aclose(self) -> None:
        """Async :meth:`close`."""
        await self._arun(one(Close()))


async def _raising(exc: Exception) -> Any:
    raise exc


def _turn_key(session: Session) -> str | None:
    """The store key whose commits take turns: the session's, or the one it ended."""
    return session._stored.key if session._stored is not None else session._requests.ended


def _header_list(cookie_headers: str | Iterable[str] | None) -> Sequence[str]:
    """The request's Cookie headers as a sequence (read twice when a legacy reader is set)."""
    if isinstance(cookie_headers, str):
        return [cookie_headers]
    return cookie_headers if isinstance(cookie_headers, (list, tuple)) else list(cookie_headers or ())


def _malformed(found: object) -> str | None:
    """What is wrong with a reader's answer, or None for a well-formed :class:`LegacySession`."""
    if not isinstance(found, LegacySession):
        return f"a {type(found).__name__}, not a LegacySession"
    if not isinstance(found.data, dict):
        return f"data of type {type(found.data).__name__}, not a dict"
    expires_at = found.expires_at
    if expires_at is not None and (
        isinstance(expires_at, bool) or not isinstance(expires_at, (int, float)) or not math.isfinite(expires_at)
    ):
        return f"expires_at {expires_at!r}, not unix seconds"
    return None


def _refusing_too_large(
    flow: Generator[Operation[Any], Any, _core.Adoption], reader: LegacyReader
) -> Generator[Operation[Any], Any, _core.Adoption]:
    """``flow``, adopting nothing when the legacy session is over ``max_size`` (logged)."""
    try:
        return (yield from flow)
    except SessionTooLargeError as exc:
        warn(reader.name, f"session not adopted: {exc}")
        return _core.REFUSED


def _checked(id_factory: Callable[[], str]) -> Callable[[], str]:
    """``id_factory``, refusing what is not a session ID: 43 characters of ``[A-Za-z0-9_-]``, as
    ``secrets.token_urlsafe(32)`` makes (anything else could split a header or never load)."""

    def checked() -> str:
        session_id = id_factory()
        if not isinstance(session_id, str) or not is_valid_id(session_id):
            raise ConfigurationError("id_factory must return 43 characters of [A-Za-z0-9_-], like secrets.token_urlsafe(32)")
        return session_id

    return checked


_REVOKE_ROUNDS = 16  # listings "log out other devices" makes before it gives up on a user who keeps logging in


def _handle(value: str) -> str:
    """``value``, checked to be a :attr:`SessionInfo.handle` (16 lowercase hex digits)."""
    if not isinstance(value, str) or len(value) != 16 or value.strip("0123456789abcdef"):
        raise ValueError(f"{str(value)[:40]!r} is not a session handle (16 hex digits, as SessionInfo.handle)")
    return value


def _probe() -> Load:
    return Load(store_key(new_session_id()))

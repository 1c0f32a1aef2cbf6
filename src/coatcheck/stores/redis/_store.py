"""RedisStore: sessions on one Redis server, sync and async (see the package's docstring)."""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, ClassVar, TypeVar
from urllib.parse import unquote, urlsplit

from ..._aio import PerLoop
from ..._ops import adrive, drive, one
from ...errors import ConfigurationError, NotSupportedError, StoreError, StoreUnavailableError
from .._protocol import Record, ScanPage
from ._commands import Flow, _Batch, _Del, _Get, _HMGet, _Scan, _Script, _Side, _ZRange, _ZRem
from ._options import DEFAULT_TIMEOUT, _db, _query, _ssl_context, _store_options
from ._resp import AsyncRespClient, RespClient, RespError, RespUnavailableError
from ._scripts import _FIELDS

T = TypeVar("T")


def _num(value: float) -> str:
    return repr(float(value))


def _record_args(record: Record) -> list[Any]:
    user = [] if record.user_id is None else [record.user_id]
    return [record.data, _num(record.expires_at), str(record.version), *user]


def _deadline(expires_at: float, created: float, max_lifetime: float) -> float:
    return min(expires_at, created + max_lifetime) if max_lifetime > 0 else expires_at


def _decode(values: Sequence[bytes | None], now: float, max_lifetime: float) -> tuple[Record, float] | None:
    """``(record, created)`` from an HMGET of ``_FIELDS``; None when missing, expired or malformed."""
    data, expires, version, user, created = values
    if data is None or expires is None or version is None or created is None:
        return None
    try:
        record = Record(bytes(data), float(expires), int(version), None if user is None else user.decode())
        created_at = float(created)
    except (ValueError, UnicodeDecodeError):
        return None
    if _deadline(record.expires_at, created_at, max_lifetime) <= now:
        return None
    return record, created_at


def _glob(text: str) -> str:
    """``text`` as a literal in a Redis MATCH pattern."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def _scan_position(cursor: str | None) -> int:
    """The SCAN cursor in ``cursor`` (0, the start, for None)."""
    if cursor is None:
        return 0
    if not cursor.isdigit():
        raise ConfigurationError(f"{cursor!r} is not a scan cursor of this Redis store")
    return int(cursor)


def _revoked(created: float, epoch: bytes | None) -> bool:
    try:
        return epoch is not None and created <= float(epoch)
    except ValueError:
        return False


def _unavailable(exc: Exception) -> bool:
    """Whether a driver error means Redis cannot be used now (rather than that the call failed)."""
    if isinstance(exc, RespError):
        return isinstance(exc, RespUnavailableError)
    import redis.exceptions as rex  # a redis-py client raised it, so redis-py is loaded

    unavailable = (
        rex.ConnectionError,  # also BusyLoading, MaxConnections, pool exhausted
        rex.TimeoutError,
        rex.ClusterDownError,  # also MasterDown
        rex.TryAgainError,
        rex.ReadOnlyError,  # a failover in progress
        rex.SlotNotCoveredError,
    )
    return isinstance(exc, unavailable) or type(exc) is rex.RedisClusterException


def _translate(exc: Exception, where: str) -> StoreError:
    if _unavailable(exc):
        return StoreUnavailableError(f"Redis store {where} unavailable: {type(exc).__name__}: {exc}")
    return StoreError(f"Redis store {where} failed: {type(exc).__name__}: {exc}")


def _is_driver_error(exc: Exception) -> bool:
    """Whether ``exc`` is Redis's (the lean client's or redis-py's) rather than a bug to let through."""
    if isinstance(exc, RespError):
        return True
    rex = sys.modules.get("redis.exceptions")  # only a loaded redis-py can have raised its errors
    return rex is not None and isinstance(exc, (rex.RedisError, rex.RedisClusterException))


class OneServer:
    """What a flow does on one Redis server, where every key is in one keyspace: each script
    writes the user index with the record, rotation is one script, and "log out everywhere" is
    a loop of one script per batch (see the package docstring). :class:`~._cluster.Cluster`
    does what differs on a Redis Cluster."""

    tag_open, tag_close = "", ""  # around a key's variable part (a cluster's hash tag)

    def script_index_keys(self, store: RedisStore, record: Record) -> list[str]:
        """The user index key a record's own script writes with it (none when it cannot)."""
        return [store._index_key(record.user_id)] if record.user_id else []

    def index_after_write(self, store: RedisStore, user_id: str, key: str, at: int, now: float) -> Flow[None]:
        """What indexes a record its own script could not: nothing here."""
        return
        yield

    def touch_index_prefix(self, store: RedisStore) -> str:
        """The index key prefix a touch script extends the user's index under ('' for none)."""
        return store._index_key("")

    def revoked(self, store: RedisStore, record: Record, created: float) -> Flow[bool]:
        """Whether a "log out everywhere" that no index reached revoked ``record``: never here."""
        return False
        yield

    def revoked_by(self, created: float, epoch: bytes | None) -> bool:
        """Whether a record created at ``created`` is revoked by the user's ``epoch``: never here."""
        return False

    def scan(self, store: RedisStore, cursor: str | None, limit: int) -> Flow[tuple[list[bytes], str | None]]:
        """The session keys of one page of a scan (SCAN of the store's prefix), and the next cursor."""
        following, names = yield _Scan(_scan_position(cursor), store._scan_match, limit)
        return names, (str(following) if following else None)

    def epochs(self, store: RedisStore, users: set[str]) -> Flow[dict[str, bytes | None]]:
        """The revocation epochs of ``users``, for :meth:`revoked_by`: none here."""
        return {}
        yield

    def rotate(self, store: RedisStore, old_key: str, new_key: str, record: Record, expected_version: int) -> Flow[bool]:
        now = store._clock()
        keys = [store._session_key(old_key), store._session_key(new_key), *self.script_index_keys(store, record)]
        args = [_num(now), str(expected_version), store._max_arg, new_key, "", *_record_args(record)]
        return bool((yield _Script("rotate", keys, args)))

    def delete_user(self, store: RedisStore, user_id: str) -> Flow[int]:
        # One batch per call; the call that leaves the index empty ends it (package docstring).
        now = store._clock()
        args = [user_id, _num(now), store._max_arg, store._session_key(""), store._delete_batch]
        deleted = 0
        while True:
            count, left = yield _Script("revoke", [store._index_key(user_id)], args)
            deleted += int(count)
            if not left:
                return deleted


ONE_SERVER = OneServer()


class RedisStore:
    """Sessions on one Redis server (or a proxy that speaks to one), sync and async.

    ``client`` is a ``redis.Redis`` and ``async_client`` a ``redis.asyncio.Redis`` (or the lean
    :class:`~._resp.RespClient` and :class:`~._resp.AsyncRespClient`, which :meth:`from_url`
    builds with bounded timeouts); a flavour whose client is None raises
    :class:`NotSupportedError`. ``client_factory`` builds the sync client on first use instead;
    ``async_client_factory`` builds an async client for each event loop that uses the store (for
    clients bound to the loop that first used them, as redis-py's cluster client is).
    ``max_lifetime`` (seconds, None: no cap) caps every record's TTL at its creation time plus
    that much. ``where`` names the server in error messages (never include a password).
    """

    expires_natively: ClassVar[bool] = True
    asyncio_only = True  # asyncio drivers: refused under trio
    _delete_batch: ClassVar[int] = 256  # sessions per call of a revoke

    def __init__(
        self,
        client: Any = None,
        async_client: Any = None,
        *,
        key_prefix: str = "coatcheck:",
        max_lifetime: float | None = None,
        clock: Callable[[], float] = time.time,
        client_factory: Callable[[], Any] | None = None,
        async_client_factory: Callable[[], Any] | None = None,
        where: str | None = None,
    ) -> None:
        if not isinstance(key_prefix, str):
            raise ConfigurationError("key_prefix must be a str")
        if max_lifetime is not None and not max_lifetime > 0:
            raise ConfigurationError("max_lifetime must be a positive number of seconds (or None)")
        self.key_prefix = key_prefix
        self.max_lifetime = max_lifetime
        self._max = float(max_lifetime or 0)
        self._max_arg = _num(self._max)  # as the scripts receive it
        self._clock = clock
        self._where = where or type(self).__name__
        self._client_factory = client_factory
        self._factory_lock = threading.Lock()
        self._sync = None if client is None else _Side(client)
        if async_client is not None and async_client_factory is not None:
            raise ConfigurationError("pass async_client or async_client_factory, not both")
        self._async = None if async_client is None else _Side(async_client)
        self._async_sides = None if async_client_factory is None else PerLoop(lambda: _Side(async_client_factory()))
        self._scan_match = f"{_glob(key_prefix)}s:*"  # every session key, and nothing else

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._where} prefix={self.key_prefix!r}>"

    @classmethod
    def from_url(cls, url: str, *, clock: Callable[[], float] = time.time) -> RedisStore:
        """``redis://[[user]:password@]host[:port][/db]``, ``rediss://...`` (TLS) or
        ``unix:///path/to/redis.sock``; options as query parameters (see docs/stores/redis.md)."""
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ConfigurationError(f"RedisStore needs a redis://, rediss:// or unix:// URL, not {parts.scheme!r}")
        options = _query(parts.query, cluster=False, tls=parts.scheme == "rediss")
        db = _db(parts, options.pop("db", None))
        try:
            port = parts.port
        except ValueError as exc:
            raise ConfigurationError(f"bad port in Redis URL: {exc}") from exc
        lean: dict[str, Any] = {
            "db": db,
            "username": unquote(parts.username) if parts.username else None,
            "password": unquote(parts.password) if parts.password else None,
            "socket_timeout": options.get("socket_timeout", DEFAULT_TIMEOUT),
            "socket_connect_timeout": options.get("socket_connect_timeout", DEFAULT_TIMEOUT),
            "client_name": options.get("client_name"),
        }
        if parts.scheme == "unix":
            if not parts.path:
                raise ConfigurationError("unix:// Redis URL needs a socket path, e.g. unix:///run/redis.sock")
            where = f"unix://{parts.path}?db={db}"
            lean["path"] = parts.path
        else:
            if not parts.hostname:
                raise ConfigurationError(f"{parts.scheme}:// Redis URL needs a host, e.g. redis://127.0.0.1:6379/0")
            where = f"{parts.scheme}://{parts.hostname}:{port or 6379}/{db}"
            lean.update(host=parts.hostname, port=port or 6379)
            if parts.scheme == "rediss":
                lean["ssl_context"] = _ssl_context(options)
        return cls(RespClient(**lean), AsyncRespClient(**lean), clock=clock, where=where, **_store_options(options))

    # -- keys --------------------------------------------------------------------------------------

    _topology: ClassVar[OneServer] = ONE_SERVER  # what differs between one server and a cluster

    def _session_key(self, key: str) -> str:
        t = self._topology
        return f"{self.key_prefix}s:{t.tag_open}{key}{t.tag_close}"

    def _index_key(self, user_id: str) -> str:
        t = self._topology
        return f"{self.key_prefix}u:{t.tag_open}{user_id}{t.tag_close}"

    def _epoch_key(self, user_id: str) -> str:
        t = self._topology
        return f"{self.key_prefix}revoked:{t.tag_open}{user_id}{t.tag_close}"

    # -- drivers: the only code that differs between sync and async ----------------------------------

    def _sync_side(self) -> _Side:
        if self._sync is None and self._client_factory is not None:
            with self._factory_lock:
                if self._sync is None:
                    self._sync = _Side(self._client_factory())
        if self._sync is None:
            raise NotSupportedError(f"{self!r} has no synchronous client")
        return self._sync

    def _run(self, flow: Flow[T]) -> T:
        try:
            return drive(flow, self._sync_side())
        except Exception as exc:
            if _is_driver_error(exc):
                raise _translate(exc, self._where) from exc
            raise

    def _async_side(self) -> _Side:
        if self._async is not None:
            return self._async
        if self._async_sides is None:
            raise NotSupportedError(f"{self!r} has no asynchronous client")
        return self._async_sides.get()  # the running loop's

    async def _arun(self, flow: Flow[T]) -> T:
        side = self._async or self._async_side()  # a store's one client: no call
        try:
            return await adrive(flow, side)
        except Exception as exc:
            if _is_driver_error(exc):
                raise _translate(exc, self._where) from exc
            raise

    # -- flows: every decision, shared by both flavours ------------------------------------------

    def _index_op(self, user_id: str, key: str, at: int, now: float) -> _Script:
        return _Script("index", [self._index_key(user_id)], [key, at, _num(now)])

    def _load_flow(self, key: str) -> Flow[Record | None]:
        now = self._clock()
        found = _decode((yield _HMGet(self._session_key(key), _FIELDS)), now, self._max)
        if found is None:
            return None
        record, created = found
        if (yield from self._topology.revoked(self, record, created)):
            return None
        return record

    def _save_flow(self, key: str, record: Record, expected_version: int | None, created: str = "") -> Flow[bool]:
        now = self._clock()
        expected = "" if expected_version is None else str(expected_version)
        args = [_num(now), expected, self._max_arg, key, created, *_record_args(record)]
        at: int = yield _Script("save", [self._session_key(key), *self._topology.script_index_keys(self, record)], args)
        if at and record.user_id:
            yield from self._topology.index_after_write(self, record.user_id, key, at, now)
        return at > 0

    def _touch_flow(self, key: str, expires_at: float) -> Flow[bool]:
        now = self._clock()
        args = [_num(now), _num(expires_at), self._max_arg, self._topology.touch_index_prefix(self), key]
        moved = yield _Script("touch", [self._session_key(key)], args)
        if not moved:
            return False
        if moved[0]:  # the cluster: the index is in another slot, so a second call extends it
            yield self._index_op(moved[0].decode(), key, moved[1], now)
        return True

    def _rotate_flow(self, old_key: str, new_key: str, record: Record, expected_version: int) -> Flow[bool]:
        return self._topology.rotate(self, old_key, new_key, record, expected_version)

    def _delete_user_flow(self, user_id: str) -> Flow[int]:
        if not user_id:
            return 0
        return (yield from self._topology.delete_user(self, user_id))

    def _list_user_flow(self, user_id: str) -> Flow[list[tuple[str, Record]]]:
        if not user_id:
            return []
        now = self._clock()
        index = self._index_key(user_id)
        raw_members, epoch = yield _Batch((_ZRange(index), _Get(self._epoch_key(user_id))))
        members = [m.decode() for m in raw_members]
        if not members:
            return []
        rows = yield _Batch(tuple(_HMGet(self._session_key(m), _FIELDS) for m in members))
        live: list[tuple[str, Record]] = []
        dead: list[str] = []
        for member, values in zip(members, rows, strict=True):
            found = _decode(values, now, self._max)
            if found is None or found[0].user_id != user_id or self._topology.revoked_by(found[1], epoch):
                dead.append(member)
            else:
                live.append((member, found[0]))
        if dead:
            yield _ZRem(index, dead)
        return live

    def _scan_flow(self, cursor: str | None, limit: int) -> Flow[ScanPage]:
        now = self._clock()
        names, following = yield from self._topology.scan(self, cursor, limit)
        keys = list(dict.fromkeys(name.decode() for name in names))  # SCAN may return a key twice
        if not keys:
            return [], following
        rows = yield _Batch(tuple(_HMGet(key, _FIELDS) for key in keys))  # the page's records: one round trip
        head, tail = len(self._session_key("")) - len(self._topology.tag_close), len(self._topology.tag_close)
        found = [
            (key[head : len(key) - tail], decoded)
            for key, values in zip(keys, rows, strict=True)
            if (decoded := _decode(values, now, self._max)) is not None
        ]
        epochs = yield from self._topology.epochs(self, {record.user_id for _, (record, _) in found if record.user_id})
        page = [
            (key, record)
            for key, (record, created) in found
            if not (record.user_id and self._topology.revoked_by(created, epochs.get(record.user_id)))
        ]
        return page, following

    # -- Store ---------------------------------------------------------------------------------------

    def load(self, key: str) -> Record | None:
        """The live record under ``key``, or None (one HMGET)."""
        return self._run(self._load_flow(key))

    def save(self, key: str, record: Record, *, expected_version: int | None) -> bool:
        """Create (``expected_version=None``) or compare-and-set, in one script call."""
        return self._run(self._save_flow(key, record, expected_version))

    def touch(self, key: str, expires_at: float) -> bool:
        """Move a live record's expiry (and TTL) forward, never backward; False if none is live."""
        return self._run(self._touch_flow(key, expires_at))

    def rotate(self, old_key: str, new_key: str, record: Record, *, expected_version: int) -> bool:
        """Delete ``old_key`` at ``expected_version`` and create ``new_key``, all or nothing."""
        return self._run(self._rotate_flow(old_key, new_key, record, expected_version))

    def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        self._run(one(_Del(self._session_key(key))))

    def delete_expired(self, now: float) -> int:
        """Nothing to do: Redis expires records by their TTL. Always 0."""
        return 0

    def delete_user(self, user_id: str) -> int:
        """Remove every session of ``user_id``; return how many were live."""
        return self._run(self._delete_user_flow(user_id))

    def list_user(self, user_id: str) -> list[tuple[str, Record]]:
        """The live ``(key, record)`` pairs of ``user_id``; prunes dead index entries."""
        return self._run(self._list_user_flow(user_id))

    def scan(self, cursor: str | None, limit: int) -> ScanPage:
        """A page of the live records under the store's prefix (SCAN, then every record of the
        page in one round trip), and the cursor of the next page (None after the last)."""
        return self._run(self._scan_flow(cursor, limit))

    def close(self) -> None:
        """Close the sync client and its connections."""
        if self._sync is not None:
            self._sync.client.close()

    # -- AsyncStore ----------------------------------------------------------------------------------

    # The three calls of every request return the driver's coroutine itself: one coroutine less
    # per call (3k machine instructions per read-modify-write request); typed all the same.

    def aload(self, key: str) -> Coroutine[Any, Any, Record | None]:
        """Async :meth:`load`."""
        return self._arun(self._load_flow(key))

    def asave(self, key: str, record: Record, *, expected_version: int | None) -> Coroutine[Any, Any, bool]:
        """Async :meth:`save`."""
        return self._arun(self._save_flow(key, record, expected_version))

    def atouch(self, key: str, expires_at: float) -> Coroutine[Any, Any, bool]:
        """Async :meth:`touch`."""
        return self._arun(self._touch_flow(key, expires_at))

    async def arotate(self, old_key: str, new_key: str, record: Record, *, expected_version: int) -> bool:
        """Async :meth:`rotate`."""
        return await self._arun(self._rotate_flow(old_key, new_key, record, expected_version))

    async def adelete(self, key: str) -> None:
        """Async :meth:`delete`."""
        await self._arun(one(_Del(self._session_key(key))))

    async def adelete_expired(self, now: float) -> int:
        """Async :meth:`delete_expired`: always 0."""
        return 0

    async def adelete_user(self, user_id: str) -> int:
        """Async :meth:`delete_user`."""
        return await self._arun(self._delete_user_flow(user_id))

    async def alist_user(self, user_id: str) -> list[tuple[str, Record]]:
        """Async :meth:`list_user`."""
        return await self._arun(self._list_user_flow(user_id))

    async def ascan(self, cursor: str | None, limit: int) -> ScanPage:
        """Async :meth:`scan`."""
        return await self._arun(self._scan_flow(cursor, limit))

    async def aclose(self) -> None:
        """Close the async client and its connections (the running event loop's, for clients
        built per loop)."""
        side = self._async or (None if self._async_sides is None else self._async_sides.pop())
        if side is not None:
            await side.client.aclose()

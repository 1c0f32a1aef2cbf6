"""RedisStore and RedisClusterStore: sessions in Redis, sync and async in one class.

``RedisStore.from_url`` runs on the lean RESP client of :mod:`._resp`; the cluster store and
injected clients run on redis-py.

Key layout (``key_prefix`` defaults to ``"coatcheck:"``; ``<key>`` is the sha256-hex store key,
never a session ID)::

    <prefix>s:<key>          hash: d (data), e (expires_at), v (version), c (created), u (user)
    <prefix>u:<user>         sorted set of the user's store keys, scored by their expiry (ms)
    <prefix>revoked:<user>   cluster only: the time of the user's last "log out everywhere"

The cluster store wraps the variable part in a hash tag (``s:{<key>}``, ``u:{<user>}``,
``revoked:{<user>}``), so every multi-key script stays in one slot.

Guarantees:

* Each record is self-describing and carries a native TTL (``PEXPIREAT``, never later than its
  ``expires_at``): Redis removes expired sessions, so ``delete_expired`` returns 0. A record whose
  ``expires_at`` is not after ``clock()`` reads as missing even before Redis drops it.
* Compare-and-set ``save``, ``touch`` (forward only, never creates) and, on one server,
  ``rotate`` are each one Lua script call (EVALSHA), atomic on the server. On one server a save,
  rotate or touch writes the user index in the same script.
* The user index never grows without bound: entries of expired sessions are pruned whenever the
  index is written, listed or revoked, and the index key expires with its longest session.
* Cluster: a user's sessions live in many slots, so the index is written by a second call and
  ``rotate`` is create-new, then delete-old-at-version (the new record is unreachable until
  both succeed); the old key then holds for a minute only ``r``, the store key of its
  successor, so that a retried delete knows it ran. "Log out everywhere" first records a
  revocation epoch; a record whose ``c`` is not after its user's epoch reads as missing, even
  if its index entry was lost. Each record's TTL is capped at ``c + max_lifetime`` and the
  epoch lives ``max_lifetime``, so the epoch always outlives the sessions it revokes.
* Failures: connection errors and timeouts raise :class:`StoreUnavailableError`, other Redis
  errors :class:`StoreError`, both ``from`` the driver's exception. Timeouts are bounded (1 s
  by default) and connections are bounded (redis://: one per thread and one per event loop;
  cluster: a pool per node); clients reconnect by themselves when Redis returns.
* "Log out everywhere" on one server is a loop of one script call per batch of the user's
  sessions: each call deletes up to 256 indexed sessions the user owns and drops their index
  entries, atomically, and the loop ends with the call that leaves the index empty. Every live
  session of a user is in the user's index (the script that binds a record to its owner, a
  save or a rotate, indexes it in the same call), so that last call proves that no session of
  the user is left: a rotation between two calls moves a session to a key the index names, and
  the next call deletes it. Each rotation only moves a session, so the loop ends after about
  (sessions + logins meanwhile) / 256 calls.
* At ``maxmemory`` (``noeviction``) writes fail with :class:`StoreError` and change nothing.
  Redis refuses a command that may grow memory (HSET, ZADD, SET) inside a script only while the
  script has written nothing yet; a DEL first would let every later write through. So each
  script that can grow memory writes first with HSET or ZADD, and the scripts that free memory
  (revoke, delete) start with a delete, so that an operator can still log users out.
* Every script is idempotent: run again with the same arguments, it changes nothing more, and a
  save, rotate or touch that finds its own write reports it as done (a delete run again counts
  only what it deleted itself). So a client may retry any command whose reply was lost, as the
  lean client and redis-py's cluster client do after a dropped connection.
"""

from __future__ import annotations

import asyncio
import math
import ssl
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Generator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

from .._ops import Operation, adrive, drive, one
from .._turns import PerLoop
from ..errors import ConfigurationError, NotSupportedError, StoreError, StoreUnavailableError
from ._protocol import Record
from ._resp import AsyncRespClient, RespClient, RespError, RespUnavailableError
from ._urls import flag

if TYPE_CHECKING:  # redis-py is imported where it is used: redis:// URLs run without it
    import redis.asyncio.retry
    import redis.retry

__all__ = ["RedisClusterStore", "RedisStore"]

T = TypeVar("T")
RetryT = TypeVar("RetryT", "redis.retry.Retry", "redis.asyncio.retry.Retry")

DEFAULT_TIMEOUT = 1.0
DEFAULT_MAX_CONNECTIONS = 50
CLUSTER_MAX_LIFETIME = 30 * 24 * 3600.0

_FIELDS = ("d", "e", "v", "u", "c")

# -- Lua: one prelude, one script per atomic operation ------------------------------------------
# Times travel as decimal strings of unix seconds (the store's clock), expiries of keys and index
# scores as integer milliseconds. ``max`` is the lifetime cap in seconds (0: no cap).
#
# maxmemory: a script that can grow memory writes first with HSET or ZADD (at maxmemory Redis
# refuses those, but only in a script that has not written yet); one that frees memory writes
# first with a delete, which Redis allows there.
#
# Idempotency: a client retries a command whose reply was lost, so each script may run twice.
# * index, delete_owned, revoke, revoke_epoch: naturally (ZADD of the same score, DEL of a gone
#   key, an epoch never lowered); a retried delete counts only what it deleted itself.
# * save, rotate: a live record that already is the one they write (same version, expiry, owner
#   and data) counts as written. For a create and a rotate the key is new, known only to this
#   call; for a compare-and-set, a concurrent writer that wrote exactly this record left what
#   this write would have (the session's later commit wins anyway).
# * touch: an expiry already where it is asked to go is not moved again, but the owner is
#   returned all the same, so the caller extends the index as after the first run.
# * delete_if: leaves a marker naming the successor, which a retry recognises.

_PRELUDE = """
local function deadline_ms(e, c, max)
  local at = tonumber(e)
  if max > 0 and tonumber(c) + max < at then at = tonumber(c) + max end
  return math.floor(at * 1000)
end
local function live(e, c, now, max)
  if not e or not c then return false end
  local at = tonumber(e)
  if max > 0 and tonumber(c) + max < at then at = tonumber(c) + max end
  return at > now
end
local function index_add(idx, member, at, now)
  redis.call('ZADD', idx, at, member)
  redis.call('ZREMRANGEBYSCORE', idx, '-inf', math.floor(now * 1000))
  local top = redis.call('ZRANGE', idx, -1, -1, 'WITHSCORES')
  if top[2] then redis.call('PEXPIREAT', idx, top[2]) end
end
-- ARGV: now, expected version, max, member, created, data, expires_at, version[, user]
-- Whether the record under key (its v, e and u given) is the one ARGV writes; reads d only then.
local function written(key, v, e, u)
  return v == ARGV[8] and tonumber(e) >= tonumber(ARGV[7]) and u == (ARGV[9] or false)
    and redis.call('HGET', key, 'd') == ARGV[6]
end
-- Write the record over whatever key holds (its owner so far: u); HSET first, for maxmemory.
local function write(key, idx, u, created, now, max)
  if ARGV[9] then
    redis.call('HSET', key, 'd', ARGV[6], 'e', ARGV[7], 'v', ARGV[8], 'c', created, 'u', ARGV[9])
  else
    redis.call('HSET', key, 'd', ARGV[6], 'e', ARGV[7], 'v', ARGV[8], 'c', created)
    if u then redis.call('HDEL', key, 'u') end
  end
  local at = deadline_ms(ARGV[7], created, max)
  redis.call('PEXPIREAT', key, at)
  if idx then index_add(idx, ARGV[4], at, now) end
  return at
end
-- Delete key if user owns it; 1 if it was live, else 0.
local function delete_owned(key, user, now, max)
  local cur = redis.call('HMGET', key, 'u', 'e', 'c')
  if cur[1] ~= user then return 0 end
  redis.call('DEL', key)
  if live(cur[2], cur[3], now, max) then return 1 end
  return 0
end
"""

# KEYS: session[, user index]. Create when ARGV[2] is '', else compare-and-set. ``c`` is the time
# the record was bound to its current owner: kept by a write for the same owner, reset otherwise
# (a revocation epoch then judges the binding, not the record). A write that keeps the owner and
# does not move the expiry forward (most writes: the expiry moves once per touch interval) sets
# just the data and the version: the key's TTL and index entry already match, and an expiry is
# never moved back (an out-of-order refresh, or servers whose clocks differ). Returns the key's expiry in ms, or 0 when
# the condition fails.
_SAVE = (
    _PRELUDE
    + """
local now, max = tonumber(ARGV[1]), tonumber(ARGV[3])
local cur = redis.call('HMGET', KEYS[1], 'v', 'e', 'c', 'u')
local created
if not live(cur[2], cur[3], now, max) then
  if ARGV[2] ~= '' then return 0 end
  created = ARGV[5] ~= '' and ARGV[5] or ARGV[1]
elseif cur[1] ~= ARGV[2] then
  if written(KEYS[1], cur[1], cur[2], cur[4]) then return deadline_ms(cur[2], cur[3], max) end
  return 0
elseif cur[4] ~= (ARGV[9] or false) then
  created = ARGV[1]
elseif tonumber(cur[2]) >= tonumber(ARGV[7]) then
  redis.call('HSET', KEYS[1], 'd', ARGV[6], 'v', ARGV[8])
  return deadline_ms(cur[2], cur[3], max)
else
  created = cur[3]
end
return write(KEYS[1], KEYS[2], cur[4], created, now, max)
"""
)

# KEYS: old, new[, user index]. Create new only if absent and delete old at version ARGV[2], in
# that order (the first write is the new record's HSET). The new record keeps the old creation
# time when its owner is unchanged (a revocation still holds). Returns as _SAVE.
_ROTATE = (
    _PRELUDE
    + """
local now, max = tonumber(ARGV[1]), tonumber(ARGV[3])
local new = redis.call('HMGET', KEYS[2], 'v', 'e', 'c', 'u')
if live(new[2], new[3], now, max) then
  if written(KEYS[2], new[1], new[2], new[4]) then return deadline_ms(new[2], new[3], max) end
  return 0
end
local old = redis.call('HMGET', KEYS[1], 'v', 'e', 'c', 'u')
if not live(old[2], old[3], now, max) or old[1] ~= ARGV[2] then return 0 end
local created = ARGV[1]
if old[4] == (ARGV[9] or false) then created = old[3] end
local at = write(KEYS[2], KEYS[3], new[4], created, now, max)
redis.call('DEL', KEYS[1])
return at
"""
)

# KEYS: session. ARGV: now, expires_at, max, user index prefix ('' on a cluster), member. Forward
# only, never creates. Returns {owner, expiry ms} when the record's expiry is then at ARGV[2]
# (moved by this run or an earlier one), false otherwise. On one server an owned record's index
# entry is extended in the same call (by a key built from the prefix, as the revoke does), so
# every live session stays in its user's index; on a cluster the owner comes back ('' if none)
# and the caller extends the index, in its own slot, with a second call.
_TOUCH = (
    _PRELUDE
    + """
local now, max, e = tonumber(ARGV[1]), tonumber(ARGV[3]), tonumber(ARGV[2])
local cur = redis.call('HMGET', KEYS[1], 'e', 'c', 'u')
if not live(cur[1], cur[2], now, max) or e < tonumber(cur[1]) then return false end
local at = deadline_ms(ARGV[2], cur[2], max)
if e > tonumber(cur[1]) then
  redis.call('HSET', KEYS[1], 'e', ARGV[2])
  redis.call('PEXPIREAT', KEYS[1], at)
end
if cur[3] and ARGV[4] ~= '' then
  index_add(ARGV[4] .. cur[3], ARGV[5], at, now)
  return {'', at}
end
return {cur[3] or '', at}
"""
)

# KEYS: user index. ARGV: member, expiry ms, now.
_INDEX = (
    _PRELUDE
    + """
index_add(KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]))
return 1
"""
)

# KEYS: session. ARGV: now, max, version, created, successor (the new store key). Replace only
# that exact live record with a marker naming its successor, for a minute: a load reads it as
# missing, a retry of this call finds it and reports the delete done.
_DELETE_IF = (
    _PRELUDE
    + """
local cur = redis.call('HMGET', KEYS[1], 'v', 'e', 'c', 'r')
if cur[4] == ARGV[5] then return 1 end
if not live(cur[2], cur[3], tonumber(ARGV[1]), tonumber(ARGV[2])) or cur[1] ~= ARGV[3]
   or tonumber(cur[3]) ~= tonumber(ARGV[4]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'r', ARGV[5])
redis.call('PEXPIRE', KEYS[1], 60000)
return 1
"""
)

# KEYS: sessions. ARGV: user, now, max. Delete those the user owns; count the live ones.
_DELETE_OWNED = (
    _PRELUDE
    + """
local n = 0
for _, key in ipairs(KEYS) do n = n + delete_owned(key, ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])) end
return n
"""
)

# One server. KEYS: user index. ARGV: user, now, max, session key prefix, batch. Delete up to
# ``batch`` indexed sessions the user owns and drop their entries (the index goes with its last
# one). It reaches the sessions through the index, by keys not in KEYS: a cluster would refuse
# that. Returns {live sessions deleted, entries left}.
_REVOKE = (
    _PRELUDE
    + """
local now, max, n = tonumber(ARGV[2]), tonumber(ARGV[3]), 0
local members = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[5]) - 1)
if #members == 0 then return {0, 0} end
for _, member in ipairs(members) do n = n + delete_owned(ARGV[4] .. member, ARGV[1], now, max) end
redis.call('ZREM', KEYS[1], unpack(members))
return {n, redis.call('ZCARD', KEYS[1])}
"""
)

# Cluster. KEYS: user index, revocation epoch. ARGV: now, epoch expiry ms. Prune the index's
# expired entries, raise the epoch to now (never lower it) and return the indexed store keys.
# The prune is the first write, so the SET runs at maxmemory too: a revoke frees memory.
_REVOKE_EPOCH = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', math.floor(now * 1000))
if now > tonumber(redis.call('GET', KEYS[2]) or '-1') then
  redis.call('SET', KEYS[2], ARGV[1], 'PXAT', ARGV[2])
end
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""

_SCRIPTS = {
    "save": _SAVE,
    "rotate": _ROTATE,
    "touch": _TOUCH,
    "index": _INDEX,
    "delete_if": _DELETE_IF,
    "delete_owned": _DELETE_OWNED,
    "revoke": _REVOKE,
    "revoke_epoch": _REVOKE_EPOCH,
}

# -- operations: one round trip each, run by the drivers of coatcheck._ops ------------------------
#
# Each runs against a _Side (one flavour's client and its scripts); on the async side the
# client's methods return awaitables, so ``arun`` is ``run``. The commands are the few that both
# client stacks (redis-py and coatcheck's own RESP client) offer under the same names.


class _Get(NamedTuple):
    key: str

    def queue(self, pipe: Any) -> None:
        pipe.get(self.key)

    def run(self, side: _Side) -> Any:
        return side.client.get(self.key)

    def arun(self, side: _Side) -> Any:  # the async client's methods return awaitables
        return self.run(side)


class _HMGet(NamedTuple):
    key: str
    fields: Sequence[str]

    def queue(self, pipe: Any) -> None:
        pipe.hmget(self.key, self.fields)

    def run(self, side: _Side) -> Any:
        return side.client.hmget(self.key, self.fields)

    def arun(self, side: _Side) -> Any:  # the async client's methods return awaitables
        return self.run(side)


class _ZRange(NamedTuple):
    key: str

    def queue(self, pipe: Any) -> None:
        pipe.zrange(self.key, 0, -1)

    def run(self, side: _Side) -> Any:
        return side.client.zrange(self.key, 0, -1)

    def arun(self, side: _Side) -> Any:  # the async client's methods return awaitables
        return self.run(side)


class _ZRem(NamedTuple):
    key: str
    members: Sequence[str]

    def run(self, side: _Side) -> Any:
        return side.client.zrem(self.key, *self.members)

    def arun(self, side: _Side) -> Any:  # the async client's methods return awaitables
        return self.run(side)


class _Del(NamedTuple):
    key: str

    def run(self, side: _Side) -> Any:
        return side.client.delete(self.key)

    def arun(self, side: _Side) -> Any:  # the async client's methods return awaitables
        return self.run(side)


class _Script(NamedTuple):
    """One of :data:`_SCRIPTS`, registered on each side (EVALSHA, falling back to EVAL)."""

    name: str
    keys: Sequence[str]
    args: Sequence[Any]

    def run(self, side: _Side) -> Any:
        return side.scripts[self.name](self.keys, self.args)

    def arun(self, side: _Side) -> Any:  # the async client's methods return awaitables
        return self.run(side)


class _Batch(NamedTuple):
    """Several reads in one round trip (a pipeline, not a transaction: it may span cluster nodes)."""

    commands: tuple[_Get | _HMGet | _ZRange, ...]

    def run(self, side: _Side) -> Any:
        pipe = side.client.pipeline(transaction=False)
        for command in self.commands:
            command.queue(pipe)
        return pipe.execute()

    def arun(self, side: _Side) -> Any:  # the async client's methods return awaitables
        return self.run(side)


Flow = Generator[Operation[Any], Any, T]


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


class _Side:
    """One flavour's client and the scripts registered on it (registering does no I/O)."""

    __slots__ = ("client", "scripts")

    def __init__(self, client: Any) -> None:
        self.client = client
        self.scripts = {name: client.register_script(text) for name, text in _SCRIPTS.items()}


class RedisStore:
    """Sessions on one Redis server (or a proxy that speaks to one), sync and async.

    ``client`` is a ``redis.Redis`` and ``async_client`` a ``redis.asyncio.Redis`` (or the lean
    :class:`~._resp.RespClient` and :class:`~._resp.AsyncRespClient`, which :meth:`from_url`
    builds with bounded timeouts); a flavour whose client is None raises
    :class:`NotSupportedError`. ``client_factory`` builds the sync client on first use instead.
    ``max_lifetime`` (seconds, None: no cap) caps every record's TTL at its creation time plus
    that much. ``where`` names the server in error messages (never include a password).
    """

    expires_natively: ClassVar[bool] = True
    asyncio_only = True  # asyncio drivers: refused under trio
    _inline_index: ClassVar[bool] = True  # the user index is written by the record's own script
    _revocation_epochs: ClassVar[bool] = False
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
        self._async = None if async_client is None else _Side(async_client)

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

    _open, _close = "", ""  # what wraps a key's variable part (the cluster's hash tag)

    def _session_key(self, key: str) -> str:
        return f"{self.key_prefix}s:{self._open}{key}{self._close}"

    def _index_key(self, user_id: str) -> str:
        return f"{self.key_prefix}u:{self._open}{user_id}{self._close}"

    def _epoch_key(self, user_id: str) -> str:
        return f"{self.key_prefix}revoked:{self._open}{user_id}{self._close}"

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

    async def _arun(self, flow: Flow[T]) -> T:
        if self._async is None:
            raise NotSupportedError(f"{self!r} has no asynchronous client")
        try:
            return await adrive(flow, self._async)
        except Exception as exc:
            if _is_driver_error(exc):
                raise _translate(exc, self._where) from exc
            raise

    # -- flows: every decision, shared by both flavours ------------------------------------------

    def _index_op(self, user_id: str, key: str, at: int, now: float) -> _Script:
        return _Script("index", [self._index_key(user_id)], [key, at, _num(now)])

    def _inline(self, record: Record) -> list[str]:
        return [self._index_key(record.user_id)] if self._inline_index and record.user_id else []

    def _load_flow(self, key: str) -> Flow[Record | None]:
        now = self._clock()
        found = _decode((yield _HMGet(self._session_key(key), _FIELDS)), now, self._max)
        if found is None:
            return None
        record, created = found
        if self._revocation_epochs and record.user_id:
            epoch = yield _Get(self._epoch_key(record.user_id))  # the one extra round trip
            if _revoked(created, epoch):
                return None
        return record

    def _save_flow(self, key: str, record: Record, expected_version: int | None, created: str = "") -> Flow[bool]:
        now = self._clock()
        expected = "" if expected_version is None else str(expected_version)
        args = [_num(now), expected, self._max_arg, key, created, *_record_args(record)]
        at: int = yield _Script("save", [self._session_key(key), *self._inline(record)], args)
        if at and record.user_id and not self._inline_index:
            yield self._index_op(record.user_id, key, at, now)
        return at > 0

    def _touch_flow(self, key: str, expires_at: float) -> Flow[bool]:
        now = self._clock()
        index_prefix = self._index_key("") if self._inline_index else ""  # one server: the script extends the index
        args = [_num(now), _num(expires_at), self._max_arg, index_prefix, key]
        moved = yield _Script("touch", [self._session_key(key)], args)
        if not moved:
            return False
        if moved[0]:  # the cluster: the index is in another slot, so a second call extends it
            yield self._index_op(moved[0].decode(), key, moved[1], now)
        return True

    def _rotate_flow(self, old_key: str, new_key: str, record: Record, expected_version: int) -> Flow[bool]:
        now = self._clock()
        keys = [self._session_key(old_key), self._session_key(new_key), *self._inline(record)]
        args = [_num(now), str(expected_version), self._max_arg, new_key, "", *_record_args(record)]
        return bool((yield _Script("rotate", keys, args)))

    def _delete_user_flow(self, user_id: str) -> Flow[int]:
        # One batch per call; the call that leaves the index empty ends it (module docstring).
        if not user_id:
            return 0
        now = self._clock()
        args = [user_id, _num(now), self._max_arg, self._session_key(""), self._delete_batch]
        deleted = 0
        while True:
            count, left = yield _Script("revoke", [self._index_key(user_id)], args)
            deleted += int(count)
            if not left:
                return deleted

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
            if found is None or found[0].user_id != user_id or (self._revocation_epochs and _revoked(found[1], epoch)):
                dead.append(member)
            else:
                live.append((member, found[0]))
        if dead:
            yield _ZRem(index, dead)
        return live

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

    def close(self) -> None:
        """Close the sync client and its connections."""
        if self._sync is not None:
            self._sync.client.close()

    # -- AsyncStore ----------------------------------------------------------------------------------

    # The three calls of every request return the driver's coroutine itself (one coroutine less
    # per call, so fewer objects live while a request waits for Redis).

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

    async def aclose(self) -> None:
        """Close the async client and its connections."""
        if self._async is not None:
            await self._async.client.aclose()


class RedisClusterStore(RedisStore):
    """Sessions on a Redis Cluster (``redis+cluster://host:port,host:port,...``), sync and async.

    Keys carry hash tags so each script touches one slot. "Log out everywhere" records a
    per-user revocation epoch that revokes every older session of the user on every node, even
    one whose index entry was lost; loading an owned record costs one more GET for it. Records
    live at most ``max_lifetime`` seconds (default 30 days) from creation.

    redis-py's async cluster client fails a command at once when a node's pool is full, so a
    burst of requests would answer 503 while Redis is fine: ``max_concurrency`` operations (the
    URL's ``max_connections``, the size of each node's pool) run at a time per event loop, so no
    node's pool can run out, and the others wait for a turn up to ``pool_timeout`` seconds, then
    raise :class:`StoreUnavailableError`.
    """

    _inline_index = False
    _revocation_epochs = True
    _open, _close = "{", "}"

    def __init__(
        self,
        client: Any = None,
        async_client: Any = None,
        *,
        key_prefix: str = "coatcheck:",
        max_lifetime: float = CLUSTER_MAX_LIFETIME,
        clock: Callable[[], float] = time.time,
        client_factory: Callable[[], Any] | None = None,
        where: str | None = None,
        max_concurrency: int | None = None,
        pool_timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if max_concurrency is not None and max_concurrency < 1:
            raise ConfigurationError("max_concurrency must be at least 1 (or None: no limit)")
        self._max_concurrency = max_concurrency
        self._pool_timeout = pool_timeout
        self._slots = PerLoop(lambda: asyncio.Semaphore(max_concurrency or 1))
        if not isinstance(key_prefix, str) or "{" in key_prefix or "}" in key_prefix:
            raise ConfigurationError("a Redis Cluster key_prefix must be a str without '{' or '}' (hash tags)")
        if max_lifetime is None:
            raise ConfigurationError("RedisClusterStore needs a max_lifetime: the revocation epoch lives that long")
        super().__init__(
            client,
            async_client,
            key_prefix=key_prefix,
            max_lifetime=max_lifetime,
            clock=clock,
            client_factory=client_factory,
            where=where,
        )

    @classmethod
    def from_url(cls, url: str, *, clock: Callable[[], float] = time.time) -> RedisClusterStore:
        """``redis+cluster://[[user]:password@]host:port,host:port,...[?key_prefix=...]``.

        The sync client is built on first use (redis-py's ``RedisCluster`` connects in its
        constructor); the async one connects on its first command.
        """
        try:
            import redis.asyncio.cluster
            import redis.asyncio.retry
            import redis.cluster
            import redis.retry
        except ImportError as exc:
            raise ConfigurationError(f"redis+cluster:// needs redis-py ({exc.name}): pip install 'coatcheck[redis]'") from exc

        parts = urlsplit(url)
        if parts.scheme != "redis+cluster":
            raise ConfigurationError(f"RedisClusterStore needs a redis+cluster:// URL, not {parts.scheme!r}")
        if parts.path not in ("", "/", "/0"):
            raise ConfigurationError("a Redis Cluster has only database 0; drop the path from the URL")
        userinfo, _, hosts = parts.netloc.rpartition("@")
        nodes = [_host_port(item) for item in hosts.split(",") if item.strip()]
        if not nodes:
            raise ConfigurationError("redis+cluster:// URL needs at least one host:port")
        options = _query(parts.query, cluster=True, tls=False)
        username, _, password = userinfo.partition(":")
        auth = {"username": unquote(username) or None, "password": unquote(password) or None} if userinfo else {}
        pool_options = _pool_options(options)
        pool_options.pop("timeout", None)  # cluster node pools fail fast when full instead of waiting
        common = {**auth, **pool_options}
        where = "redis+cluster://" + ",".join(f"{host}:{port}" for host, port in nodes)

        def connect() -> redis.cluster.RedisCluster:
            return redis.cluster.RedisCluster(
                startup_nodes=[redis.cluster.ClusterNode(host, port) for host, port in nodes],  # type: ignore[no-untyped-call]
                retry=_retry_once(redis.retry.Retry),
                **common,
            )

        async_client = redis.asyncio.cluster.RedisCluster(
            startup_nodes=[redis.asyncio.cluster.ClusterNode(host, port) for host, port in nodes],
            retry=_retry_once(redis.asyncio.retry.Retry),
            **common,
        )
        return cls(
            None,
            async_client,
            client_factory=connect,
            clock=clock,
            where=where,
            max_concurrency=pool_options["max_connections"],
            pool_timeout=options.get("pool_timeout", DEFAULT_TIMEOUT),
            **_store_options(options),
        )

    async def _arun(self, flow: Flow[T]) -> T:
        if self._max_concurrency is None:
            return await super()._arun(flow)
        slots = self._slots.get()
        if slots.locked():  # only a full house pays for a timed wait
            try:
                await asyncio.wait_for(slots.acquire(), self._pool_timeout)
            except asyncio.TimeoutError:
                flow.close()
                raise StoreUnavailableError(
                    f"Redis store {self._where} unavailable: no free connection within {self._pool_timeout} s"
                ) from None
        else:
            await slots.acquire()
        try:
            return await super()._arun(flow)
        finally:
            slots.release()

    def _rotate_flow(self, old_key: str, new_key: str, record: Record, expected_version: int) -> Flow[bool]:
        # Two slots, so no single script: create the new record first (unreachable: its ID has
        # not left the server), then delete the old one at its version; undo the first on failure.
        now = self._clock()
        found = _decode((yield _HMGet(self._session_key(old_key), _FIELDS)), now, self._max)
        if found is None or found[0].version != expected_version:
            return False
        old, created = found
        keep_created = _num(created) if old.user_id == record.user_id else ""
        if not (yield from self._save_flow(new_key, record, None, keep_created)):
            return False
        args = [_num(now), self._max_arg, str(expected_version), _num(created), new_key]
        if (yield _Script("delete_if", [self._session_key(old_key)], args)):
            return True
        yield _Del(self._session_key(new_key))
        return False

    def _delete_user_flow(self, user_id: str) -> Flow[int]:
        # The epoch first: it revokes every older session of the user, indexed or not, on every
        # node, and a rotation keeps the old creation time; then delete the indexed ones.
        if not user_id:
            return 0
        now = self._clock()
        index = self._index_key(user_id)
        until = str(math.floor((now + self._max) * 1000))
        members = [m.decode() for m in (yield _Script("revoke_epoch", [index, self._epoch_key(user_id)], [_num(now), until]))]
        deleted = 0
        for member in members:  # one slot per call
            deleted += yield _Script("delete_owned", [self._session_key(member)], [user_id, _num(now), self._max_arg])
        if members:
            yield _ZRem(index, members)
        return deleted


# -- URL options ---------------------------------------------------------------------------------


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
    options: dict[str, Any] = {}
    if not cluster:  # one connection per thread and per event loop: no pool to size or wait for
        del known["max_connections"], known["pool_timeout"]
    for name, text in parse_qsl(query, keep_blank_values=True):
        if name in ("max_connections", "pool_timeout") and not cluster:
            raise ConfigurationError(
                f"Redis URL option {name!r} applies to redis+cluster:// only: a redis:// store keeps one"
                " connection per thread and per event loop, with no pool to size or wait for"
            )
        if name not in known:
            raise ConfigurationError(f"unknown Redis URL option {name!r}; known: {', '.join(sorted(known))}")
        try:
            options[name] = known[name](text)
        except ValueError as exc:
            raise ConfigurationError(f"bad value for Redis URL option {name!r}: {exc}") from exc
    return options


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

"""RedisClusterStore: sessions on a Redis Cluster (see the package's docstring)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar
from urllib.parse import unquote, urlsplit

from ..._aio import PerLoop
from ...errors import ConfigurationError, StoreError, StoreUnavailableError
from .._protocol import Record

if TYPE_CHECKING:  # redis-py is imported where it is used: redis:// URLs run without it
    import redis.asyncio.retry
    import redis.retry

from ._commands import Flow, _Batch, _Del, _Get, _HMGet, _Primaries, _Scan, _Script, _ZRem
from ._options import DEFAULT_TIMEOUT, _host_port, _pool_options, _query, _retry_once, _store_options
from ._scripts import _FIELDS
from ._store import OneServer, RedisStore, _decode, _num, _revoked, _scan_position

T = TypeVar("T")
CLUSTER_MAX_LIFETIME = 30 * 24 * 3600.0


class Cluster(OneServer):
    """What differs on a Redis Cluster: keys carry a hash tag, so each multi-key script stays in
    one slot; a user's sessions live in many slots, so the index is written by a second call,
    rotation is create-new then delete-old-at-version, and "log out everywhere" first records a
    revocation epoch that every read checks (see the package docstring)."""

    tag_open, tag_close = "{", "}"

    def script_index_keys(self, store: RedisStore, record: Record) -> list[str]:
        return []  # the index is in another slot

    def index_after_write(self, store: RedisStore, user_id: str, key: str, at: int, now: float) -> Flow[None]:
        yield store._index_op(user_id, key, at, now)

    def touch_index_prefix(self, store: RedisStore) -> str:
        return ""  # the script reports the user; a second call extends the index

    def revoked(self, store: RedisStore, record: Record, created: float) -> Flow[bool]:
        if not record.user_id:
            return False
        epoch = yield _Get(store._epoch_key(record.user_id))  # the one extra round trip
        return _revoked(created, epoch)

    def revoked_by(self, created: float, epoch: bytes | None) -> bool:
        return _revoked(created, epoch)

    def scan(self, store: RedisStore, cursor: str | None, limit: int) -> Flow[tuple[list[bytes], str | None]]:
        # Each primary in turn (by name), its own SCAN to the end: the cursor is "<position>@<node>".
        primaries: list[str] = yield _Primaries()
        if cursor is None:
            position, node = 0, primaries[0]
        else:
            text, _, node = cursor.partition("@")
            position = _scan_position(text)
            if node not in primaries:
                raise StoreError(f"Redis store {store._where}: {node!r} is no longer a primary of the cluster: scan again")
        following, names = yield _Scan(position, store._scan_match, limit, node)
        if following:
            return names, f"{following}@{node}"
        later = [name for name in primaries if name > node]
        return names, (f"0@{later[0]}" if later else None)

    def epochs(self, store: RedisStore, users: set[str]) -> Flow[dict[str, bytes | None]]:
        if not users:
            return {}
        ordered = sorted(users)
        values = yield _Batch(tuple(_Get(store._epoch_key(user)) for user in ordered))
        return dict(zip(ordered, values, strict=True))

    def rotate(self, store: RedisStore, old_key: str, new_key: str, record: Record, expected_version: int) -> Flow[bool]:
        # Two slots, so no single script: create the new record first (unreachable: its ID has
        # not left the server), then delete the old one at its version; undo the first on failure.
        now = store._clock()
        found = _decode((yield _HMGet(store._session_key(old_key), _FIELDS)), now, store._max)
        if found is None or found[0].version != expected_version:
            return False
        old, created = found
        keep_created = _num(created) if old.user_id == record.user_id else ""
        if not (yield from store._save_flow(new_key, record, None, keep_created)):
            return False
        args = [_num(now), store._max_arg, str(expected_version), _num(created), new_key]
        if (yield _Script("delete_if", [store._session_key(old_key)], args)):
            return True
        yield _Del(store._session_key(new_key))
        return False

    def delete_user(self, store: RedisStore, user_id: str) -> Flow[int]:
        # The epoch first: it revokes every older session of the user, indexed or not, on every
        # node, and a rotation keeps the old creation time; then delete the indexed ones.
        now = store._clock()
        index = store._index_key(user_id)
        until = str(math.floor((now + store._max) * 1000))
        members = [m.decode() for m in (yield _Script("revoke_epoch", [index, store._epoch_key(user_id)], [_num(now), until]))]
        deleted = 0
        for member in members:  # one slot per call
            deleted += yield _Script("delete_owned", [store._session_key(member)], [user_id, _num(now), store._max_arg])
        if members:
            yield _ZRem(index, members)
        return deleted


CLUSTER = Cluster()


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

    _topology: ClassVar[OneServer] = CLUSTER

    def __init__(
        self,
        client: Any = None,
        async_client: Any = None,
        *,
        key_prefix: str = "coatcheck:",
        max_lifetime: float = CLUSTER_MAX_LIFETIME,
        clock: Callable[[], float] = time.time,
        client_factory: Callable[[], Any] | None = None,
        async_client_factory: Callable[[], Any] | None = None,
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
            async_client_factory=async_client_factory,
            where=where,
        )

    @classmethod
    def from_url(cls, url: str, *, clock: Callable[[], float] = time.time) -> RedisClusterStore:
        """``redis+cluster://[[user]:password@]host:port,host:port,...[?key_prefix=...]``.

        The sync client is built on first use (redis-py's ``RedisCluster`` connects in its
        constructor); each event loop gets an async one, which connects on its first command.
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

        def async_connect() -> redis.asyncio.cluster.RedisCluster:  # one per event loop: it is bound to its loop
            return redis.asyncio.cluster.RedisCluster(
                startup_nodes=[redis.asyncio.cluster.ClusterNode(host, port) for host, port in nodes],
                retry=_retry_once(redis.asyncio.retry.Retry),
                **common,
            )

        return cls(
            None,
            client_factory=connect,
            async_client_factory=async_connect,
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

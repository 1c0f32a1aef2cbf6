"""RedisStore and RedisClusterStore: sessions in Redis, sync and async in one class.

``RedisStore.from_url`` runs on the lean RESP client of :mod:`._resp`; the cluster store and
injected clients run on redis-py. The package: ``_scripts`` (the Lua and the record layout),
``_commands`` (the round trips the flows yield), ``_options`` (URLs), ``_store`` (RedisStore),
``_cluster`` (RedisClusterStore) and ``_resp`` (the lean client). What differs between one
server and a cluster (key tags, where the user index is written, rotation, "log out
everywhere", revocation epochs) is a strategy object: ``_store.OneServer`` and ``_cluster.Cluster``.

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

from ._cluster import CLUSTER_MAX_LIFETIME, RedisClusterStore
from ._store import RedisStore

__all__ = ["CLUSTER_MAX_LIFETIME", "RedisClusterStore", "RedisStore"]

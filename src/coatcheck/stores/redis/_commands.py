"""One round trip each: the operations the Redis flows yield (see :mod:`coatcheck._ops`), run
against one flavour's client and its registered scripts."""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ..._ops import Operation
from ._scripts import _SCRIPTS

T = TypeVar("T")


class _Side:
    """One flavour's client and the scripts registered on it (registering does no I/O)."""

    __slots__ = ("client", "scripts")

    def __init__(self, client: Any) -> None:
        self.client = client
        self.scripts = {name: client.register_script(text) for name, text in _SCRIPTS.items()}


# -- operations: one round trip each, run by the drivers of coatcheck._ops ------------------------
#
# Each runs against a _Side (one flavour's client and its scripts); on the async side the
# client's methods return awaitables, so ``arun`` is ``run`` (the same function). The commands are the few that both
# client stacks (redis-py and coatcheck's own RESP client) offer under the same names.


@dataclass(slots=True)
class _Get:
    key: str

    def queue(self, pipe: Any) -> None:
        pipe.get(self.key)

    def run(self, side: _Side) -> Any:
        return side.client.get(self.key)

    arun = run  # the async client's methods return awaitables


@dataclass(slots=True)
class _HMGet:
    key: str
    fields: Sequence[str]

    def queue(self, pipe: Any) -> None:
        pipe.hmget(self.key, self.fields)

    def run(self, side: _Side) -> Any:
        return side.client.hmget(self.key, self.fields)

    arun = run  # the async client's methods return awaitables


@dataclass(slots=True)
class _ZRange:
    key: str

    def queue(self, pipe: Any) -> None:
        pipe.zrange(self.key, 0, -1)

    def run(self, side: _Side) -> Any:
        return side.client.zrange(self.key, 0, -1)

    arun = run  # the async client's methods return awaitables


@dataclass(slots=True)
class _ZRem:
    key: str
    members: Sequence[str]

    def run(self, side: _Side) -> Any:
        return side.client.zrem(self.key, *self.members)

    arun = run  # the async client's methods return awaitables


@dataclass(slots=True)
class _Del:
    key: str

    def run(self, side: _Side) -> Any:
        return side.client.delete(self.key)

    arun = run  # the async client's methods return awaitables


@dataclass(slots=True)
class _Scan:
    """``SCAN cursor MATCH match COUNT count``: the next cursor (0 at the end) and the keys; on a
    cluster, on the primary named ``node``."""

    cursor: int
    match: str
    count: int
    node: str | None = None

    def _call(self, side: _Side) -> Any:
        client = side.client
        if self.node is None:
            return client.scan(self.cursor, match=self.match, count=self.count)
        return client.scan(self.cursor, match=self.match, count=self.count, target_nodes=client.get_node(node_name=self.node))

    @staticmethod
    def _page(reply: Any) -> tuple[int, list[bytes]]:
        following, keys = reply  # the cursor: a number, its digits, or a cluster's {node: cursor}
        if isinstance(following, dict):
            (following,) = following.values()
        return int(following), list(keys)

    def run(self, side: _Side) -> tuple[int, list[bytes]]:
        return self._page(self._call(side))

    async def arun(self, side: _Side) -> tuple[int, list[bytes]]:
        return self._page(await self._call(side))


@dataclass(slots=True)
class _Primaries:
    """The names (``host:port``) of a cluster's primaries, sorted: what its scan goes through."""

    def run(self, side: _Side) -> list[str]:
        return sorted(node.name for node in side.client.get_primaries())

    async def arun(self, side: _Side) -> list[str]:
        await side.client.initialize()  # the async client learns the nodes on its first command
        return self.run(side)


@dataclass(slots=True)
class _Script:
    """One of :data:`_SCRIPTS`, registered on each side (EVALSHA, falling back to EVAL)."""

    name: str
    keys: Sequence[str]
    args: Sequence[Any]

    def run(self, side: _Side) -> Any:
        return side.scripts[self.name](self.keys, self.args)

    arun = run  # the async client's methods return awaitables


@dataclass(slots=True)
class _Batch:
    """Several reads in one round trip (a pipeline, not a transaction: it may span cluster nodes)."""

    commands: tuple[_Get | _HMGet | _ZRange, ...]

    def run(self, side: _Side) -> Any:
        pipe = side.client.pipeline(transaction=False)
        for command in self.commands:
            command.queue(pipe)
        return pipe.execute()

    arun = run  # the async client's methods return awaitables


Flow = Generator[Operation[Any], Any, T]

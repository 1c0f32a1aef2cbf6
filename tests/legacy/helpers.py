"""What the legacy reader tests of every integration share."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import redis


@contextlib.contextmanager
def emptied_redis(url: str) -> Iterator[Any]:
    """A sync client on the Redis database ``url`` that an old session system used, emptied
    before and after the test."""
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield client
    finally:
        client.flushdb()
        client.close()

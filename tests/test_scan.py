"""The store scan (``SupportsScan``), on every store of the matrix in both flavours: paging,
continuing from a cursor, writes and deletes during a scan, and what the manager makes of
records that are not live sessions. Also the purge's running total."""

from __future__ import annotations

from pathlib import Path

import pytest

from coatcheck import NotSupportedError, Record, SessionManager, _codec
from coatcheck._ids import handle_of_key, store_key
from coatcheck.stores import SupportsAsyncScan, SupportsScan, expires_natively, implements
from coatcheck.stores.memory import MemoryStore
from coatcheck.testing import FakeClock

from .backends import ALL_BACKENDS, opened
from .core_stores import CoreOnlyStore

pytestmark = pytest.mark.anyio

Page = tuple[list[tuple[str, Record]], str | None]


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Face:
    """One store in one flavour: ``await face.scan(...)`` calls ``scan`` or awaits ``ascan``."""

    def __init__(self, store: object, mode: str, clock: FakeClock) -> None:
        self.store, self.mode, self.clock = store, mode, clock
        self.manager = SessionManager(store, clock=clock)  # type: ignore[arg-type]

    async def call(self, name: str, *args: object, **kwargs: object) -> object:
        if self.mode == "sync":
            return getattr(self.store, name)(*args, **kwargs)
        return await getattr(self.store, "a" + name)(*args, **kwargs)

    async def scan(self, cursor: str | None, limit: int) -> Page:
        page = await self.call("scan", cursor, limit)
        assert isinstance(page, tuple)
        return page

    async def put(self, name: str, *, user: str | None = None, data: bytes | None = None, ttl: float = 600) -> str:
        """Create the record ``name`` names (a session's unless ``data`` says otherwise); its key."""
        key = store_key(name)
        body = _codec.encode(self.clock(), {"name": name}) if data is None else data
        assert await self.call("save", key, Record(body, self.clock() + ttl, 1, user), expected_version=None)
        return key

    async def every(self, limit: int) -> list[list[tuple[str, Record]]]:
        """Every page of a scan, first to last."""
        pages, cursor = [], None
        while True:
            rows, cursor = await self.scan(cursor, limit)
            pages.append(rows)
            if cursor is None:
                return pages

    async def sessions(self, cursor: str | None, limit: int) -> tuple[list[str], str | None]:
        """A page of the manager's scan: the handles of the live sessions, and the next cursor."""
        if self.mode == "sync":
            infos, cursor = self.manager.scan(cursor, limit)
        else:
            infos, cursor = await self.manager.ascan(cursor, limit)
        return [info.handle for info in infos], cursor


@pytest.fixture
def face(store: object, mode: str, clock: FakeClock) -> Face:
    if not implements(store, SupportsScan if mode == "sync" else SupportsAsyncScan):
        pytest.fail(f"{type(store).__name__} has no {mode} scan")
    return Face(store, mode, clock)


def _bounded(store: object) -> bool:
    """Whether a page is at most ``limit`` records (Redis's SCAN COUNT is a hint only)."""
    return not expires_natively(store)


async def test_a_scan_pages_through_every_record(face: Face) -> None:
    keys = {await face.put(f"s{i}", user=f"u{i % 3}") for i in range(23)}
    pages = await face.every(5)
    seen = [key for page in pages for key, _ in page]
    assert set(seen) == keys
    if _bounded(face.store):
        assert all(len(page) <= 5 for page in pages) and len(pages) >= 5
        assert seen == sorted(keys)  # each once, in key order
    for key, record in (row for page in pages for row in page):
        assert record == await face.call("load", key)


async def test_a_cursor_continues_the_scan_anywhere(face: Face) -> None:
    """The cursor alone says where the scan goes on: the same cursor gives the same page, and a
    scan continued from it sees the rest."""
    keys = {await face.put(f"s{i}") for i in range(12)}
    first, cursor = await face.scan(None, 4)
    while not first and cursor is not None:  # Redis: a page may hold none
        first, cursor = await face.scan(cursor, 4)
    assert cursor is not None
    again = await face.scan(cursor, 4)
    assert again == await face.scan(cursor, 4)
    rest: set[str] = set()
    while cursor is not None:
        page, cursor = await face.scan(cursor, 4)
        rest |= {key for key, _ in page}
    assert {key for key, _ in first} | rest == keys


async def test_a_scan_under_concurrent_writes_and_deletes(face: Face) -> None:
    """A key present for the whole scan is met at least once; one deleted before a page is read
    is not on that page; keys written meanwhile may be met or not."""
    stay = {await face.put(f"stay{i}") for i in range(20)}
    doomed = [await face.put(f"doomed{i}") for i in range(20)]
    deleted: set[str] = set()
    met: set[str] = set()
    cursor: str | None = None
    step = 0
    while True:
        rows, cursor = await face.scan(cursor, 4)
        assert not deleted & {key for key, _ in rows}
        met |= {key for key, _ in rows}
        if cursor is None:
            break
        await face.put(f"new{step}")  # written during the scan
        if doomed:
            gone = doomed.pop()
            await face.call("delete", gone)
            deleted.add(gone)
        step += 1
    assert stay <= met
    assert step > 3  # the scan really was interleaved with the writes


async def test_records_that_are_not_live_sessions(face: Face) -> None:
    """The store returns what it holds; the manager lists only the live sessions, never a
    tombstone, a legacy claim or an expired record."""
    live = await face.put("live", user="alice")
    old = await face.put("old", ttl=10)
    tombstone = await face.put("rotated-away", data=_codec.TOMBSTONE)
    claim = await face.put("claim", data=b"legacy-claim " + b"x" * 43 + b" pending")
    face.clock.advance(20)
    held = {key for page in await face.every(100) for key, _ in page}
    assert {live, tombstone, claim} <= held
    assert (old in held) is not expires_natively(face.store)  # Redis drops what expired; the others wait for a purge
    handles: list[str] = []
    cursor: str | None = None
    while True:
        page, cursor = await face.sessions(cursor, 2)
        handles += page
        if cursor is None:
            break
    assert handles == [handle_of_key(live)]


@pytest.mark.parametrize("backend", [name for name in ALL_BACKENDS if not name.startswith("redis")])  # Redis expires natively
async def test_a_purge_tells_its_running_total(backend: str, mode: str, clock: FakeClock, tmp_path: Path) -> None:
    async with opened(backend, clock, tmp_path) as store:
        await _purge_with_progress(Face(store, mode, clock))


async def _purge_with_progress(face: Face) -> None:
    assert not expires_natively(face.store)
    if hasattr(face.store, "purge_batch"):
        face.store.purge_batch = 10
    for i in range(25):
        await face.put(f"expiring{i}", ttl=10)
    await face.put("staying", ttl=1000)
    face.clock.advance(20)
    totals: list[int] = []
    assert await face.call("delete_expired", face.clock(), progress=totals.append) == 25
    assert totals == sorted(totals) and totals[-1] == 25
    if hasattr(face.store, "purge_batch"):
        assert totals == [10, 20, 25]  # one call per batch, the SQL stores' statements
    assert await face.call("delete_expired", face.clock()) == 0  # the callback is optional


async def test_without_the_capability_the_manager_refuses_a_scan() -> None:
    manager = SessionManager(CoreOnlyStore(MemoryStore()))
    with pytest.raises(NotSupportedError, match=r"\(SupportsScan\)"):
        manager.scan()
    with pytest.raises(NotSupportedError, match=r"\(SupportsAsyncScan\)"):
        await manager.ascan()

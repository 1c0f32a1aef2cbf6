"""Checklist section I: denial of service and resources (C-45 to C-48)."""

from __future__ import annotations

import time

import pytest

from coatcheck import Record, SessionConfig, SessionManager
from coatcheck._ids import store_key
from coatcheck.stores.memory import MemoryStore
from coatcheck.testing import FakeClock
from tests.apps import Browser, FlakyStore, set_cookies
from tests.security.conftest import PARSE_BOUND, bare_request, issued_id, send_with

pytestmark = pytest.mark.anyio


async def test_c45_sessions_are_created_lazily(browser: Browser, spy: FlakyStore) -> None:
    """C-45: 10,000 cookie-less requests that read the session cost no store call, no record and
    no Set-Cookie (the bot-flood defence)."""
    for _ in range(10_000):
        response = await bare_request(browser, "GET", "/peek")
        assert response.status == 200 and "set-cookie" not in dict(response.headers)
    assert spy.calls == {}
    assert len(spy.wrapped) == 0


async def test_c46_memory_store_never_holds_more_than_max_entries(clock: FakeClock) -> None:
    """C-46: with ``max_entries`` set, 10x that many new sessions never grow the store past it;
    the soonest-expiring (oldest) sessions make room and the newest stay."""
    memory = MemoryStore(max_entries=1_000, clock=clock)
    manager = SessionManager(memory, clock=clock)
    ids = []
    for n in range(10_000):
        session = manager.new_session()
        session["n"] = n
        manager.commit(session)
        ids.append(session.id)
        assert len(memory) <= 1_000
        clock.advance(0.1)
    assert manager.load(f"sessionid={ids[-1]}")["n"] == 9_999
    assert manager.load(f"sessionid={ids[0]}").is_new


async def test_c46_expired_entries_are_evicted_before_live_ones(clock: FakeClock) -> None:
    """C-46: at the bound, expired records go first; no live record is evicted while an expired
    one is left."""
    memory = MemoryStore(max_entries=100, clock=clock)

    def fill(prefix: str, count: int, ttl: float) -> list[str]:
        keys = [store_key(f"{prefix}{n}") for n in range(count)]
        for key in keys:
            assert memory.save(key, Record(b"{}", clock() + ttl, 1), expected_version=None)
        return keys

    long = fill("long", 50, 10_000)
    fill("short", 50, 10)
    clock.advance(20)
    fresh = fill("fresh", 50, 10_000)
    assert all(memory.load(key) is not None for key in long + fresh)
    assert len(memory) == 100  # so every expired one was evicted


async def test_c46_memory_store_ttl_counts_seconds(clock: FakeClock) -> None:
    """C-46 (starsessions' seconds-vs-nanoseconds bug): a 60 s session is alive at 59 s and gone
    at 61 s, and a purge then frees its memory."""
    memory = MemoryStore(clock=clock)
    manager = SessionManager(memory, config=SessionConfig(idle_timeout=60, touch_interval=10), clock=clock)
    session = manager.new_session()
    session["a"] = 1
    manager.commit(session)
    clock.advance(59)
    assert not manager.load(f"sessionid={session.id}").is_new
    clock.advance(2)
    assert manager.load(f"sessionid={session.id}").is_new
    assert manager.purge_expired() == 1 and len(memory) == 0


async def test_c47_pathological_cookie_header_is_parsed_in_linear_time(browser: Browser, spy: FlakyStore) -> None:
    """C-47 (CPython CVE-2024-7592, Tornado CVE-2024-52804): 64 KiB of backslash-escaped quotes
    in another cookie cost one quick request and hide nothing; a session cookie longer than an
    ID is ignored before any store call."""
    session_id = issued_id(await browser.post("/login", params={"user": "alice"}))
    escaped = 'x="' + '\\"' * 32_768 + '"'
    start = time.perf_counter()
    response = await send_with(browser, "GET", "/whoami", None, headers={"cookie": f"{escaped}; sessionid={session_id}"})
    assert time.perf_counter() - start < PARSE_BOUND
    assert response.text == "alice"
    spy.reset()
    response = await send_with(browser, "GET", "/whoami", session_id + "A" * 65_536)
    assert (response.text, set_cookies(response), spy.calls) == ("anon", [], {})


@pytest.mark.parametrize(
    "neighbour", ["bad:name=1", "=sessionid=x", 'x="unterminated', "novalue", "a=b=c", "\xe9=\xfc", ";;", "sessionid=not-an-id"]
)
@pytest.mark.parametrize("session_first", [True, False], ids=["session-first", "session-last"])
async def test_c48_one_malformed_cookie_never_hides_the_session_cookie(
    browser: Browser, neighbour: str, session_first: bool
) -> None:
    """C-48 (tornado#633, web2py#1084): a malformed pair next to the session cookie, before or
    after it, is skipped and the session is found."""
    session_id = issued_id(await browser.post("/login", params={"user": "alice"}))
    pairs = [f"sessionid={session_id}", neighbour]
    header = "; ".join(pairs if session_first else pairs[::-1])
    assert (await bare_request(browser, "GET", "/whoami", header)).body == b"alice"

"""Checklist section C: validation and strict mode (C-14 to C-19)."""

from __future__ import annotations

import base64
import logging
import secrets
from pathlib import Path
from typing import Any

import pytest

from coatcheck.stores import Record
from coatcheck.stores.redis import RedisStore
from coatcheck.stores.sqlite import SQLiteStore
from coatcheck.testing import FakeClock, SpyStore
from tests.apps import Browser, set_cookies
from tests.backends import dump
from tests.backends.redis import admin
from tests.security.conftest import BrowserFactory, bare_request, hashed, issued_id, send_with, stored

pytestmark = pytest.mark.anyio


def _files(root: Path) -> list[Path]:
    return sorted(root.rglob("*"))


async def test_c14_unknown_id_is_never_adopted(store_browser: Browser, store: Any) -> None:
    """C-14: strict mode: a well-formed ID the server never issued is not adopted; a write gets a
    fresh ID and nothing is stored under the supplied one (CS "Permissive and Strict Session
    Management", PHP CVE-2011-4718)."""
    forged = secrets.token_urlsafe(32)
    issued = issued_id(await send_with(store_browser, "POST", "/set?k=a&v=1", forged))
    assert issued != forged
    assert await stored(store, forged) is None
    at_rest = await dump(store)
    assert forged.encode() not in at_rest and hashed(forged).encode() not in at_rest
    assert hashed(issued).encode() in at_rest


WELL_FORMED = "A" * 43
MALFORMED = {
    "empty": "",
    "one-char": "a",
    "one-short": WELL_FORMED[:-1],
    "one-long": WELL_FORMED + "A",
    "10-kB": "A" * 10_000,
    "traversal": "../../etc/passwd",
    "traversal-of-id-length": "../" * 14 + "a",
    "dot-dot": "..poc",
    "slash": "a/b",
    "backslash": "a\\b",
    "nul": "\x00",
    "crlf": "id\r\nX: y",
    "percent-encoded": "%2e%2e%2f",
    "non-ascii": "é" * 43,
    # RFC 6265 5.2 trims only SP and HTAB around a value; other whitespace makes it malformed
    "vt-padded": "\x0b" + WELL_FORMED,
    "ff-padded": WELL_FORMED + "\x0c",
    "fs-padded": "\x1c" + WELL_FORMED,
    "nbsp-padded": "\xa0" + WELL_FORMED,
    "nel-padded": WELL_FORMED + "\x85",
}


@pytest.mark.parametrize("value", MALFORMED.values(), ids=MALFORMED.keys())
async def test_c15_malformed_ids_never_reach_the_store(
    make_browser: BrowserFactory, clock: FakeClock, tmp_path: Path, value: str, logs: pytest.LogCaptureFixture
) -> None:
    """C-15: a malformed cookie value costs no store call, answers 200 anonymously and creates
    no file (CS "Manage Session ID as Any Other User Input"; Django CVE-2011-0698, GO-2024-2730);
    no log line holds it raw."""
    spy = SpyStore(SQLiteStore(tmp_path / "sessions.db", clock=clock))
    browser = make_browser(spy)
    spy.reset()
    files = _files(tmp_path)
    response = await bare_request(browser, "GET", "/whoami", f"sessionid={value}")
    assert (response.status, response.body) == (200, b"anon")
    assert spy.calls == {}
    assert _files(tmp_path) == files
    if len(value) > 3:
        assert not any(value in record.getMessage() for record in logs.records)


async def test_c16_loading_never_creates_a_record(make_browser: BrowserFactory, store: Any) -> None:
    """C-16: reading a session under unknown IDs writes nothing and sets no cookie
    (Django CVE-2015-5143)."""
    spy = SpyStore(store)
    browser = make_browser(spy)
    spy.reset()
    for _ in range(200):
        response = await send_with(browser, "GET", "/peek", secrets.token_urlsafe(32))
        assert response.json() == {"data": {}, "user": None}
        assert set_cookies(response) == []
    assert spy.calls == {"load": 200}
    assert await dump(store) == b""


async def test_c17_bad_ids_are_security_events_logged_hashed(browser: Browser, logs: pytest.LogCaptureFixture) -> None:
    """C-17: each request with a malformed or unknown ID makes one line on ``coatcheck.security``
    (malformed ones a warning) naming a hash of the value, never the value (CS "Session ID
    Guessing and Brute Force Detection", ASVS 5.0 16.2.5)."""
    malformed = ["../../etc/passwd", "A" * 44, "id\r\nX: y", "é" * 43]
    unknown = [secrets.token_urlsafe(32) for _ in range(3)]
    for value in [*malformed, *unknown]:
        logs.clear()
        assert (await bare_request(browser, "GET", "/whoami", f"sessionid={value}")).body == b"anon"
        [record] = [r for r in logs.records if r.name == "coatcheck.security"]
        assert hashed(value)[:16] in record.getMessage()
        assert value not in record.getMessage()
        assert record.levelno == (logging.WARNING if value in malformed else logging.INFO)


def _plant_outside_the_namespace(store: Any, session_id: str, payload: bytes, expires_at: float) -> list[str]:
    """Write a session-shaped Redis entry where a store without its own namespace would look:
    the bare ID, the bare hash and the unprefixed record layout. Returns the keys to delete."""
    client = admin(store)
    key = hashed(session_id)
    client.set(session_id, payload)
    client.set(key, payload)
    fields = {"d": payload, "e": repr(expires_at), "v": "1", "c": repr(expires_at - 3600), "u": "mallory"}
    layouts = [f"s:{key}", f"s:{{{key}}}"]
    for layout in layouts:
        client.hset(layout, mapping=fields)
    return [session_id, key, *layouts]


async def test_c18_data_outside_the_session_namespace_is_never_a_session(
    store_browser: Browser, store: Any, clock: FakeClock
) -> None:
    """C-18: session records live in their own namespace: data written under the raw ID (as an
    app caching by session ID would), or, in Redis, outside the store's key prefix, is never
    read as a session (Django CVE-2011-4136)."""
    session_id = secrets.token_urlsafe(32)
    payload = b'{"v":1,"c":%r,"d":{"role":"admin"}}' % clock()
    record = Record(payload, clock() + 3600, 1, "mallory")
    await store.asave(session_id, record, expected_version=None)
    planted = _plant_outside_the_namespace(store, session_id, payload, record.expires_at) if isinstance(store, RedisStore) else []
    try:
        response = await send_with(store_browser, "GET", "/peek", session_id)
    finally:
        for key in planted:
            admin(store).delete(key)
    assert response.json() == {"data": {}, "user": None}
    await store.asave(hashed(session_id), record, expected_version=None)  # the same record inside the namespace
    assert (await send_with(store_browser, "GET", "/peek", session_id)).json() == {"data": {"role": "admin"}, "user": "mallory"}


async def test_c19_stores_hold_hashes_of_ids_and_a_hash_is_no_credential(store_browser: Browser, store: Any) -> None:
    """C-19: at rest, a store holds SHA-256 of each ID, never the ID (Rack CVE-2019-16782, scs
    ``HashTokenInStore``); the hash sent as a cookie opens nothing (rack#1431)."""
    created = issued_id(await store_browser.post("/set", params={"k": "a", "v": "1"}))
    logged_in = issued_id(await store_browser.post("/login", params={"user": "alice"}))
    at_rest = await dump(store)
    for session_id in (created, logged_in):
        assert session_id.encode() not in at_rest
        assert base64.urlsafe_b64decode(session_id + "=") not in at_rest
    assert hashed(logged_in).encode() in at_rest
    for value in (hashed(logged_in), hashed(logged_in)[:43]):
        assert (await send_with(store_browser, "GET", "/whoami", value)).text == "anon"

"""Checklist section H: data, serialization and crypto (C-41, C-42, C-44; C-43 does not apply:
coatcheck ships no client-side cookie store)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

import coatcheck
from coatcheck import _codec
from coatcheck._ids import log_handle, store_key
from coatcheck.testing import FakeClock
from tests.apps import Browser, set_cookies
from tests.security.conftest import issued_id, pickled_payload, plant, send_with, stored

pytestmark = pytest.mark.anyio

UNSAFE_DESERIALIZERS = {"pickle", "_pickle", "cPickle", "marshal", "shelve", "dill", "cloudpickle", "jsonpickle", "yaml"}


async def assert_read_as_fresh(browser: Browser, session_id: str, logs: pytest.LogCaptureFixture, message: str) -> None:
    """The planted record of ``session_id`` reads as no session, is logged (hashed) on the
    security log, and a write gets a new ID."""
    response = await send_with(browser, "GET", "/peek", session_id)
    assert (response.status_code, response.json()) == (200, {"data": {}, "user": None})
    lines = [r.getMessage() for r in logs.records if r.name == "coatcheck.security" and message in r.getMessage()]
    assert lines and all(log_handle(session_id) in line and session_id not in line for line in lines)
    assert issued_id(await send_with(browser, "POST", "/set?k=a&v=1", session_id)) not in ("", session_id)


async def test_c41_pickled_record_is_never_unpickled(
    store_browser: Browser, store: Any, clock: FakeClock, tmp_path: Path, logs: pytest.LogCaptureFixture
) -> None:
    """C-41: a pickle written into the store record of a valid ID is not executed; the session
    reads as corrupt (C-42), with a security warning."""
    sentinel = tmp_path / "unpickled"
    session_id = await plant(store, pickled_payload(sentinel), clock() + 600)
    await assert_read_as_fresh(store_browser, session_id, logs, "corrupt")
    assert not sentinel.exists()


def test_c41_no_unsafe_deserializer_is_imported_anywhere_in_the_library() -> None:
    """C-41: the library imports no pickle-like module (JSON only)."""
    found = []
    for path in Path(coatcheck.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            found += [f"{path.name}: {name}" for name in names if name.split(".")[0] in UNSAFE_DESERIALIZERS]
    assert found == []


@pytest.mark.parametrize(
    "raw",
    [b"\xff{not json", _codec.encode(1.0, {"user": "alice"})[:-3], b""],
    ids=["not-utf8", "truncated", "empty"],
)
async def test_c42_corrupt_record_reads_as_a_fresh_session(
    store_browser: Browser, store: Any, clock: FakeClock, logs: pytest.LogCaptureFixture, raw: bytes
) -> None:
    """C-42: an undecodable record is an empty session (200, not 500), a hashed security log
    line, and a fresh ID on the next write."""
    session_id = await plant(store, raw, clock() + 600)
    await assert_read_as_fresh(store_browser, session_id, logs, "corrupt")


async def test_c44_app_keys_named_like_metadata_stay_app_data(browser: Browser, clock: FakeClock) -> None:
    """C-44: keys that look like the record's metadata (format version, creation time, user,
    expiry) are plain app data: they change neither the format, the lifetime nor the user."""
    reserved = {"v": "99", "c": "0", "d": "x", "__meta__": "{}", "user_id": "mallory", "expires_at": "9999999999"}
    for key, value in reserved.items():
        await browser.post("/set", params={"k": key, "v": value})
    assert (await browser.get("/peek")).json() == {"data": reserved, "user": None}
    clock.advance(browser.app.manager.config.absolute_seconds + 1)
    assert (await browser.get("/peek")).json() == {"data": {}, "user": None}


async def test_c44_tampered_record_with_a_forged_expiry_is_ignored(store_browser: Browser, store: Any, clock: FakeClock) -> None:
    """C-44: a stored record whose expiry was pushed ten years out still ends at the absolute
    timeout: the server's configuration, not the record, decides."""
    session_id = issued_id(await store_browser.post("/login", params={"user": "alice"}))
    record = await stored(store, session_id)
    assert record is not None
    forged = record._replace(expires_at=clock() + 10 * 365 * 86400, version=record.version + 1)
    assert await store.asave(store_key(session_id), forged, expected_version=record.version)
    clock.advance(store_browser.app.manager.config.absolute_seconds + 1)
    response = await send_with(store_browser, "GET", "/whoami", session_id)
    assert (response.text, set_cookies(response)) == ("anon", [])

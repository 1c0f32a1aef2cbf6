"""Checklist section A: the session identifier (C-01 to C-05)."""

from __future__ import annotations

import base64
import itertools
import json
import random
import re
import secrets
from typing import NoReturn

import pytest

from coatcheck import CookieConfig, SessionConfig, SessionManager
from coatcheck.stores.memory import MemoryStore
from coatcheck.testing import FakeClock
from tests.apps import Browser, cookie_value, set_cookies
from tests.security.conftest import BrowserFactory, issued_id, send_with

pytestmark = pytest.mark.anyio

ID_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")


def _decoded(session_id: str) -> bytes:
    """The random bytes behind an ID (URL-safe base64 without padding)."""
    return base64.urlsafe_b64decode(session_id + "=" * (-len(session_id) % 4))


def _shared_prefix(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def _mersenne_twister(*args: object) -> NoReturn:
    raise AssertionError("a session ID was drawn from the random module")


async def test_c01_ids_carry_256_bits_from_the_csprng(
    manager: SessionManager, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """C-01: IDs carry at least 128 bits from a CSPRNG and are unique (ASVS 5.0 7.2.3).

    With ``secrets`` returning a sentinel and the random module's generator raising, the ID each
    middleware issues is the sentinel: IDs come from ``secrets``, never from ``random``.
    """
    ids = {manager.new_session().id for _ in range(100_000)}
    assert len(ids) == 100_000
    assert {len(_decoded(session_id)) for session_id in ids} == {32}
    sentinel = bytes(range(32))
    monkeypatch.setattr(secrets, "token_bytes", lambda n=32: sentinel[:n])
    for name in ("random", "getrandbits", "randbytes"):
        monkeypatch.setattr(random, name, _mersenne_twister)
        monkeypatch.setattr(random.Random, name, _mersenne_twister)
    for kind in ("asgi", "wsgi"):  # both middlewares in one test: the 100,000 IDs are drawn once
        browser = Browser(kind, SessionManager(MemoryStore(clock=clock), clock=clock))
        try:
            response = await browser.post("/set", params={"k": "a", "v": "1"})
        finally:
            await browser.close()
        assert _decoded(issued_id(response)) == sentinel


async def test_c02_ids_hold_no_user_data_time_or_counter(browser: Browser, manager: SessionManager) -> None:
    """C-02: IDs are opaque: no user data, timestamp or counter (CS "Session ID Content", ASVS 5.0 7.2.2)."""
    session_id = issued_id(await browser.post("/login", params={"user": "alice@example.com"}))
    raw = _decoded(session_id)
    assert "alice" not in session_id.lower() and b"alice" not in raw.lower()
    with pytest.raises((UnicodeDecodeError, json.JSONDecodeError)):  # neither text nor JSON
        json.loads(raw.decode())
    ids = []
    for _ in range(1000):  # the same user at the same instant of the (frozen) clock
        session = manager.new_session()
        session.login("alice@example.com")
        manager.commit(session)
        ids.append(session.id)
    ids.sort()
    assert max(_shared_prefix(a, b) for a, b in itertools.pairwise(ids)) <= 6  # sorted: neighbours share most


async def test_c03_ids_have_a_fixed_length_and_a_url_safe_alphabet(browser: Browser, manager: SessionManager) -> None:
    """C-03: IDs have a fixed length and the alphabet [A-Za-z0-9_-] (CS "Manage Session ID as Any
    Other User Input"), safe in a cookie, a URL, a file name and a store key."""
    ids = [manager.new_session().id for _ in range(10_000)]
    ids.append(issued_id(await browser.post("/set", params={"k": "a", "v": "1"})))
    assert all(ID_SHAPE.fullmatch(session_id) for session_id in ids)


async def test_c04_creating_a_session_never_overwrites_another(store: object, make_browser: BrowserFactory) -> None:
    """C-04: creation is insert-if-absent: an ID collision draws a new ID and leaves the existing
    session untouched (Django ``save(must_create=True)``)."""
    victim_id = secrets.token_urlsafe(32)
    draws = iter([victim_id, victim_id])  # the victim's ID, then the same ID again for the attacker
    browser = make_browser(store, id_factory=lambda: next(draws, None) or secrets.token_urlsafe(32))
    assert issued_id(await send_with(browser, "POST", "/set?k=owner&v=victim", None)) == victim_id
    attacker_id = issued_id(await send_with(browser, "POST", "/set?k=owner&v=attacker", None))
    assert attacker_id != victim_id
    for session_id, owner in [(victim_id, "victim"), (attacker_id, "attacker")]:
        assert (await send_with(browser, "GET", "/peek", session_id)).json()["data"] == {"owner": owner}


BAD_NAMES = ["a;b", "a=b", "a b", "a\r\nb", "é", "", "a,b", 'a"b', "a\tb", "(id)"]


async def test_c05_cookie_name_is_configurable_and_validated_at_construction(make_browser: BrowserFactory) -> None:
    """C-05: a bad cookie name fails when the configuration is built, never on a request
    (CS "Session ID Name Fingerprinting", CVE-2024-47764); a good one is used end to end."""
    for name in BAD_NAMES:
        with pytest.raises(ValueError, match="cookie name"):
            SessionManager(MemoryStore(), config=SessionConfig(cookie=CookieConfig(name=name)))
    browser = make_browser(config=SessionConfig(cookie=CookieConfig(name="id")))
    [header] = set_cookies(await send_with(browser, "POST", "/set?k=a&v=1", None))
    assert header.startswith("id=")
    session_id = cookie_value(header)
    assert (await send_with(browser, "GET", "/peek", session_id, name="id")).json()["data"] == {"a": "1"}
    assert (await send_with(browser, "GET", "/peek", session_id)).json()["data"] == {}

"""Checklist section J: duplicate cookies and injection (C-49, C-50, C-51)."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coatcheck import ConfigurationError, CookieConfig, SessionConfig, SessionManager
from coatcheck._ids import log_handle, new_session_id
from coatcheck.stores.memory import MemoryStore
from coatcheck.testing import FakeClock
from tests.apps import Browser, FlakyStore, set_cookies
from tests.security.conftest import issued_id, open_browser, send_with

pytestmark = pytest.mark.anyio

HOST = "__Host-id"


async def _logged_in(browser: Browser, user: str, name: str = "sessionid") -> str:
    """Log ``user`` in from a fresh cookie jar; return the issued ID."""
    browser.client.cookies.clear()
    response = await browser.post("/login", params={"user": user})
    [header] = set_cookies(response)
    assert header.startswith(f"{name}=")
    return issued_id(response)


async def _logged_out(browser: Browser) -> str:
    session_id = await _logged_in(browser, "carol")
    await send_with(browser, "POST", "/logout", session_id)
    return session_id


async def _unknown(browser: Browser) -> str:
    return new_session_id()


DECOYS: dict[str, Callable[[Browser], Awaitable[str]]] = {"unknown": _unknown, "logged-out": _logged_out}


@pytest.mark.parametrize("decoy", list(DECOYS))
@pytest.mark.parametrize("decoy_first", [True, False], ids=["decoy-first", "decoy-last"])
async def test_c49_a_tossed_session_cookie_never_hides_the_live_one(browser: Browser, decoy: str, decoy_first: bool) -> None:
    """C-49 (cookie tossing, spring-session#275): a second ``sessionid`` that names no live
    session, before or after the real one, is skipped and the live session is used."""
    tossed = await DECOYS[decoy](browser)
    session_id = await _logged_in(browser, "alice")
    pair = [f"sessionid={tossed}", f"sessionid={session_id}"]
    header = "; ".join(pair if decoy_first else pair[::-1])
    response = await send_with(browser, "GET", "/whoami", None, headers={"cookie": header})
    assert response.text == "alice"


async def test_c49_two_live_session_cookies_resolve_to_the_first_and_are_logged(
    browser: Browser, logs: pytest.LogCaptureFixture
) -> None:
    """C-49: two live sessions in one request: the first wins, every time, and a security
    warning names both by hash, never by ID."""
    alice, bob = await _logged_in(browser, "alice"), await _logged_in(browser, "bob")
    seen = []
    for first, second in [(alice, bob), (bob, alice), (alice, bob)]:
        header = f"sessionid={first}; sessionid={second}"
        seen.append((await send_with(browser, "GET", "/whoami", None, headers={"cookie": header})).text)
    assert seen == ["alice", "bob", "alice"]
    warnings = [r for r in logs.records if "several live session cookies" in r.getMessage()]
    assert len(warnings) == 3 and all(r.levelno == logging.WARNING for r in warnings)
    assert all(log_handle(alice) in r.getMessage() and log_handle(bob) in r.getMessage() for r in warnings)
    assert not any(sid in r.getMessage() for r in logs.records for sid in (alice, bob))


async def test_c50_a_nameless_cookie_is_not_the_session_cookie(kind: str, spy: FlakyStore, clock: FakeClock) -> None:
    """C-50 (Werkzeug CVE-2023-23934): ``=__Host-id=<live ID>`` is a nameless cookie, not
    ``__Host-id``: it is never looked up."""
    manager = SessionManager(spy, config=SessionConfig(cookie=CookieConfig(name=HOST)), clock=clock)
    async with open_browser(kind, manager) as browser:
        attacker = await _logged_in(browser, "mallory", HOST)
        spy.reset()
        response = await send_with(browser, "GET", "/whoami", None, headers={"cookie": f"={HOST}={attacker}"})
    assert (response.text, spy.calls) == ("anon", {})


@pytest.mark.parametrize(
    "options",
    [
        {"domain": "x.com\r\nSet-Cookie: a=b"},
        {"domain": "x.com; SameSite=None"},
        {"path": "/;Domain=evil"},
        {"path": "/\r\nX-Injected: 1"},
        {"name": "a\nb"},
        {"name": "a;b"},
        {"name": "a=b"},
        {"name": "sid; Domain=evil.com"},
    ],
)
def test_c51_injecting_cookie_options_are_refused_at_construction(options: dict[str, str]) -> None:
    """C-51 (CVE-2024-47764): a name, path or domain that would escape into other attributes or
    headers raises ConfigurationError when the configuration is built."""
    with pytest.raises(ConfigurationError):
        CookieConfig(**options)  # type: ignore[arg-type]


ATTRIBUTE = re.compile(r"Max-Age=\d+|Expires=[A-Za-z0-9, :]+GMT|Path=\S+|Domain=\S+|Secure|HttpOnly|SameSite=(Lax|Strict|None)")


@given(
    name=st.from_regex(r"(__Host-|__Secure-)?[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,20}", fullmatch=True) | st.text(max_size=20),
    path=st.from_regex(r"/[\x21-\x7e]{0,30}", fullmatch=True) | st.text(max_size=30).map(lambda text: "/" + text),
    domain=st.none() | st.from_regex(r"\.?[a-z0-9-]{1,10}(\.[a-z]{2,5}){0,2}", fullmatch=True) | st.text(max_size=30),
    secure=st.booleans(),
)
def test_c51_every_set_cookie_a_valid_configuration_builds_is_one_clean_cookie(
    name: str, path: str, domain: str | None, secure: bool
) -> None:
    """C-51: for any configuration that builds, the Set-Cookie headers (issue and clear) hold no
    control character and consist of exactly the session pair and known attributes."""
    try:
        cookie = CookieConfig(name=name, path=path, domain=domain, secure=secure)
    except ConfigurationError:
        return
    clock = FakeClock()
    manager = SessionManager(MemoryStore(clock=clock), config=SessionConfig(cookie=cookie), clock=clock)
    session = manager.new_session()
    session["a"] = 1
    issued = manager.commit(session, scheme="http")
    loaded = manager.load(f"{name}={session.id}")
    loaded.logout()
    cleared = manager.commit(loaded, scheme="http")
    for header, value in [(issued, session.id), (cleared, "")]:
        assert header is not None and not re.search(r"[\x00-\x1f\x7f]", header)
        first, *attributes = header.split("; ")
        assert first == f"{name}={value}"
        assert all(ATTRIBUTE.fullmatch(attribute) for attribute in attributes), header
        assert [a.split("=", 1)[1] for a in attributes if a.startswith("Path=")] == [path]

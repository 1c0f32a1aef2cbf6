"""Checklist section G: caching and transport headers (C-38, C-39)."""

from __future__ import annotations

from urllib.parse import urlencode

import httpx
import pytest

from coatcheck import SessionManager
from coatcheck.testing import FakeClock
from tests.apps import Browser, set_cookies
from tests.security.conftest import shared_cacheable, varies_on_cookie

pytestmark = pytest.mark.anyio

# Every route of tests/apps.py that reads or writes the session.
SESSION_ROUTES = [
    ("GET", "/peek"),
    ("GET", "/whoami"),
    ("POST", "/set?k=a&v=1"),
    ("GET", "/id"),
    ("GET", "/cached"),
    ("GET", "/stream"),
    ("POST", "/login?user=alice"),
    ("POST", "/logout"),
]


async def _in_three_states(
    browser: Browser, clock: FakeClock, manager: SessionManager, method: str, url: str
) -> list[httpx.Response]:
    """``method url`` sent without a session, with a live one, and with one due a refresh."""
    responses = [await browser.request(method, url)]
    browser.client.cookies.clear()
    await browser.post("/login", params={"user": "alice"})
    responses.append(await browser.request(method, url))
    browser.client.cookies.clear()
    await browser.post("/login", params={"user": "alice"})
    clock.advance(manager.config.touch_seconds + 1)
    responses.append(await browser.request(method, url))
    return responses


@pytest.mark.parametrize(("method", "url"), SESSION_ROUTES)
async def test_c38_vary_cookie_on_every_response_that_used_the_session(
    browser: Browser, clock: FakeClock, manager: SessionManager, method: str, url: str
) -> None:
    """C-38 (Flask CVE-2023-30861): a response that depends on the session varies on Cookie,
    whether the visitor is anonymous, logged in, or due a cookie refresh."""
    responses = await _in_three_states(browser, clock, manager, method, url)
    assert [varies_on_cookie(r) for r in responses] == [True, True, True]


async def test_c38_a_cookie_sent_from_a_page_that_ignores_the_session_varies_on_cookie(
    browser: Browser, clock: FakeClock, manager: SessionManager
) -> None:
    """C-38: ``GET /public`` never touches the session: it carries either no Set-Cookie, or
    ``Vary: Cookie`` with it (the refresh of a permanent session, the Flask CVE's case)."""
    responses = await _in_three_states(browser, clock, manager, "GET", "/public")
    assert all(varies_on_cookie(r) for r in responses if set_cookies(r))
    assert set_cookies(responses[0]) == [] and set_cookies(responses[1]) == []


@pytest.mark.parametrize(
    "app_cache_control",
    [None, "public, max-age=3600", "max-age=600", "s-maxage=600", "public", "no-cache", "must-revalidate, proxy-revalidate"],
)
async def test_c39_set_cookie_never_publicly_cacheable(
    browser: Browser, clock: FakeClock, manager: SessionManager, app_cache_control: str | None
) -> None:
    """C-39: every response that carries a session Set-Cookie (create, rotate, refresh, clear,
    streamed) is ``private`` or ``no-store``, whatever Cache-Control the app chose."""
    if app_cache_control is None:  # the app sets no Cache-Control: coatcheck's own choice
        steps = [
            ("POST", "/set?k=a&v=1"),
            ("POST", "/login?user=alice"),
            ("GET", "/stream"),
            ("GET", "/peek"),
            ("POST", "/logout"),
        ]
    else:
        steps = [("GET", "/cached"), ("POST", "/login?user=alice"), ("GET", "/cached")]
    responses = []
    for method, url in steps:
        clock.advance(manager.config.touch_seconds + 1)  # so a read-only request refreshes the cookie
        if url == "/cached":
            url += "?" + urlencode({"cc": app_cache_control})
        responses.append(await browser.request(method, url))
    with_cookie = [r for r in responses if set_cookies(r)]
    assert len(with_cookie) == len(steps)
    assert [shared_cacheable(r) for r in with_cookie] == [False] * len(steps)

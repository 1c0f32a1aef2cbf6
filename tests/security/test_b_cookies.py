"""Checklist section B: cookie attributes (C-06 to C-13)."""

from __future__ import annotations

import re
from datetime import timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import pytest

from coatcheck import CookieConfig, SessionConfig
from coatcheck.stores.memory import MemoryStore
from coatcheck.testing import FakeClock
from tests.apps import BASE, Browser, cookie_value, set_cookies
from tests.security.conftest import BrowserFactory, cookie_attributes, hashed, issued_id, send_with

pytestmark = pytest.mark.anyio

PLAIN_HTTP = "http://testserver"


async def _lifecycle(
    browser: Browser, clock: FakeClock, *, name: str = "sessionid", headers: dict[str, str] | None = None
) -> list[str]:
    """Every Set-Cookie of one session's life: issued, refreshed, rotated by a login, cleared."""
    created = await send_with(browser, "POST", "/set?k=a&v=1", None, name=name, headers=headers)
    clock.advance(120)  # a refresh of the expiry is due
    refreshed = await send_with(browser, "GET", "/peek", issued_id(created), name=name, headers=headers)
    logged_in = await send_with(browser, "POST", "/login?user=alice", issued_id(created), name=name, headers=headers)
    cleared = await send_with(browser, "POST", "/logout", issued_id(logged_in), name=name, headers=headers)
    found = [header for response in (created, refreshed, logged_in, cleared) for header in set_cookies(response)]
    assert len(found) == 4 and issued_id(cleared) == ""
    return found


async def test_c06_every_session_cookie_is_httponly(browser: Browser, clock: FakeClock) -> None:
    """C-06: HttpOnly by default, on every Set-Cookie (CS "HttpOnly Attribute", ASVS 5.0 3.3.4)."""
    for header in await _lifecycle(browser, clock):
        assert "httponly" in cookie_attributes(header)


@pytest.mark.parametrize(
    ("cookie", "base_url", "headers", "secure"),
    [
        pytest.param(CookieConfig(), BASE, {}, True, id="default-https"),
        pytest.param(CookieConfig(), PLAIN_HTTP, {}, True, id="default-plain-http"),
        pytest.param(CookieConfig(secure="auto"), BASE, {}, True, id="auto-https"),
        pytest.param(CookieConfig(secure="auto"), PLAIN_HTTP, {}, False, id="auto-plain-http"),
        pytest.param(CookieConfig(secure="auto"), PLAIN_HTTP, {"x-forwarded-proto": "https"}, False, id="auto-forged-proto"),
    ],
)
async def test_c07_secure_by_default_and_never_from_a_request_header(
    make_browser: BrowserFactory, clock: FakeClock, cookie: CookieConfig, base_url: str, headers: dict[str, str], secure: bool
) -> None:
    """C-07: Secure by default (CS "Secure Attribute", ASVS 5.0 3.3.1). By default a plain-http
    request still gets a Secure cookie, never a bare one; ``secure="auto"`` follows the scheme
    the server reports (where a server applies its trusted-proxy settings), never a client's
    X-Forwarded-Proto (Django CVE-2019-12781)."""
    browser = make_browser(config=SessionConfig(cookie=cookie), base_url=base_url)
    for header in await _lifecycle(browser, clock, headers=headers):
        assert ("secure" in cookie_attributes(header)) is secure


@pytest.mark.parametrize(
    ("cookie", "same_site"),
    [
        pytest.param(CookieConfig(), "Lax", id="default"),
        pytest.param(CookieConfig(same_site="strict"), "Strict", id="strict"),
        pytest.param(CookieConfig(same_site="none"), "None", id="none"),
    ],
)
async def test_c08_samesite_is_always_explicit_and_none_needs_secure(
    make_browser: BrowserFactory, clock: FakeClock, cookie: CookieConfig, same_site: str
) -> None:
    """C-08: SameSite is always sent, Lax by default, and never None without Secure
    (CS "SameSite Attribute", ASVS 5.0 3.3.2)."""
    for secure in (False, "auto"):
        with pytest.raises(ValueError, match="same_site='none' needs secure=True"):
            CookieConfig(same_site="none", secure=secure)
    browser = make_browser(config=SessionConfig(cookie=cookie))
    for header in await _lifecycle(browser, clock):
        attributes = cookie_attributes(header)
        assert attributes["samesite"] == same_site
        assert "secure" in attributes


PREFIX_VIOLATIONS: list[dict[str, Any]] = [
    {"name": "__Host-id", "domain": "example.com"},
    {"name": "__Host-id", "secure": False},
    {"name": "__Host-id", "secure": "auto"},
    {"name": "__Host-id", "path": "/app"},
    {"name": "__HOST-id", "path": "/app"},  # browsers match the prefixes case-insensitively
    {"name": "__Secure-id", "secure": False},
    {"name": "__secure-id", "secure": "auto"},
]


async def test_c09_host_prefix_rules_are_enforced(make_browser: BrowserFactory, clock: FakeClock) -> None:
    """C-09: a ``__Host-`` cookie is Secure, Path=/ and has no Domain, a ``__Secure-`` cookie is
    Secure; a configuration that breaks the rules fails at construction (CS "Cookie Name
    Prefixes", ASVS 5.0 3.3.3)."""
    for options in PREFIX_VIOLATIONS:
        with pytest.raises(ValueError, match="needs secure=True"):
            CookieConfig(**options)
    browser = make_browser(config=SessionConfig(cookie=CookieConfig(name="__Host-id")))
    headers = await _lifecycle(browser, clock, name="__Host-id")
    assert re.fullmatch(r"__Host-id=[A-Za-z0-9_-]{43}; Max-Age=\d+; Path=/; Secure; HttpOnly; SameSite=Lax", headers[0])
    for header in headers:
        attributes = cookie_attributes(header)
        assert header.startswith("__Host-id=") and attributes["path"] == "/"
        assert "secure" in attributes and "domain" not in attributes


async def test_c10_no_domain_and_path_root_by_default(browser: Browser, clock: FakeClock, make_browser: BrowserFactory) -> None:
    """C-10: no Domain and Path=/ by default (CS "Domain and Path Attributes", ASVS 4.0.3 3.4.5);
    a configured path is used, and requests outside it (which do not carry the cookie) never
    clear it."""
    for header in await _lifecycle(browser, clock):
        attributes = cookie_attributes(header)
        assert attributes["path"] == "/" and "domain" not in attributes
    scoped = make_browser(config=SessionConfig(cookie=CookieConfig(path="/app")))
    [header] = set_cookies(await scoped.post("/set", params={"k": "a", "v": "1"}))
    assert cookie_attributes(header)["path"] == "/app"
    outside = await scoped.post("/logout")  # outside /app: the browser does not send the cookie
    assert set_cookies(outside) == []
    assert scoped.client.cookies.get("sessionid") == cookie_value(header)
    assert (await send_with(scoped, "GET", "/peek", cookie_value(header))).json()["data"] == {"a": "1"}


async def test_c11_the_cookie_never_outlives_the_server_side_session(make_browser: BrowserFactory, clock: FakeClock) -> None:
    """C-11: every Set-Cookie ends exactly when the server-side session does, capped by the
    absolute timeout (CS "Expire and Max-Age Attributes"): with 8 h absolute and a request every
    20 min, the cookie the browser holds at 7 h 59 min has 60 s left. coatcheck's cookies are
    persistent (Max-Age); an Expires, if any, must agree with it."""
    store = MemoryStore(clock=clock)
    config = SessionConfig(idle_timeout=timedelta(minutes=30), absolute_timeout=timedelta(hours=8))
    browser = make_browser(store, config=config)
    start = clock()
    login = await send_with(browser, "POST", "/login?user=alice", None)
    session_id = issued_id(login)
    cookie_ends = [start + int(cookie_attributes(set_cookies(login)[0])["max-age"])]
    for elapsed in [*range(20 * 60, 8 * 3600, 20 * 60), 8 * 3600 - 60]:
        clock.advance(start + elapsed - clock())
        response = await send_with(browser, "GET", "/whoami", session_id)
        assert response.text == "alice"
        record = store.load(hashed(session_id))
        assert record is not None and record.expires_at <= start + 8 * 3600
        for header in set_cookies(response):
            attributes = cookie_attributes(header)
            cookie_ends.append(clock() + int(attributes["max-age"]))
            assert cookie_ends[-1] == record.expires_at
            if "expires" in attributes:
                assert parsedate_to_datetime(attributes["expires"]).timestamp() == pytest.approx(cookie_ends[-1], abs=1)
    assert cookie_ends[-1] - clock() == 60  # at 7 h 59 min
    assert len(cookie_ends) == 1 + 23  # the login, then each request up to 7 h 40 min, when the cap was reached


def _long_domain(length: int) -> str:
    """A valid host name of exactly ``length`` characters (labels of at most 63)."""
    labels, left = [], length
    while left > 64:
        labels.append("d" * 63)
        left -= 64
    labels.append("d" * left)
    return ".".join(labels)


async def test_c12_the_cookie_fits_in_4096_bytes_with_the_longest_allowed_options(make_browser: BrowserFactory) -> None:
    """C-12: with the longest name, domain and path the configuration accepts, and the widest
    Max-Age, every Set-Cookie stays within 4096 bytes; one byte more fails at construction
    (ASVS 5.0 3.3.5, RFC 6265 6.1)."""
    name, domain = "n" * 1500, _long_domain(1000)
    path = "/" + "p" * 1424
    with pytest.raises(ValueError, match="4096"):
        CookieConfig(name=name, domain=domain, path=path + "p")
    cookie = CookieConfig(name=name, domain=domain, path=path, same_site="strict")
    longest = 400 * 86400  # the widest timeout the configuration accepts (RFC 6265bis's cookie cap)
    browser = make_browser(config=SessionConfig(cookie=cookie, idle_timeout=longest, absolute_timeout=longest))
    created = await send_with(browser, "POST", "/set?k=a&v=1", None, name=name)
    cleared = await send_with(browser, "POST", "/logout", issued_id(created), name=name)
    for response in (created, cleared):
        [header] = set_cookies(response)
        assert header.startswith(f"{name}=") and f"Domain={domain}" in header and f"Path={path}" in header
        assert len(header.encode()) <= 4096
    assert cookie_attributes(set_cookies(created)[0])["max-age"] == str(longest)


SESSION_FLOW = [
    ("POST", "/set?k=a&v=1"),
    ("POST", "/login?user=alice"),
    ("GET", "/peek"),
    ("GET", "/whoami"),
    ("POST", "/logout"),
]


async def test_c13_the_id_travels_only_in_the_cookie(browser: Browser) -> None:
    """C-13: the ID is never accepted from, or written to, a URL, a query, a form or a body
    (CS "Used vs. Accepted Session ID Exchange Mechanisms", ASVS 4.0.3 3.1.1)."""
    responses = [await browser.request(method, url) for method, url in SESSION_FLOW]
    ids = {cookie_value(header) for response in responses for header in set_cookies(response)} - {""}
    assert len(ids) == 2  # created, then rotated by the login
    for response in responses:
        exposed = [response.text, *(value for key, value in response.headers.multi_items() if key != "set-cookie")]
        assert not any(session_id in part for session_id in ids for part in exposed)
    alice = issued_id(await send_with(browser, "POST", "/login?user=alice", None))
    browser.client.cookies.clear()
    assert (await browser.get("/whoami", params={"sessionid": alice})).text == "anon"
    posted = await browser.post("/set", params={"k": "x", "v": "1", "sessionid": alice}, data={"sessionid": alice})
    assert issued_id(posted) != alice
    assert (await send_with(browser, "GET", "/peek", alice)).json() == {"data": {}, "user": "alice"}

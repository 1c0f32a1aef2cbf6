"""The HTTP-level behaviour, through the ASGI middleware (Starlette) and the WSGI middleware
(Flask) alike: every test runs once per middleware."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from typing import Any

import httpx
import pytest

from coatcheck import CookieConfig, SessionConfig, SessionManager, _cookies, _http
from coatcheck.stores.memory import MemoryStore
from coatcheck.testing import FakeClock, SpyStore
from tests.apps import BASE, Browser, FlakyStore, cookie_value, set_cookies

pytestmark = pytest.mark.anyio


# 1. lazy ------------------------------------------------------------------------------------------


async def test_requests_that_never_write_cost_no_store_call_and_no_cookie(browser: Browser, spy: SpyStore) -> None:
    for path in ["/public", "/peek", "/whoami"]:
        response = await browser.get(path)
        assert response.status_code == 200
        assert set_cookies(response) == []
    assert spy.calls == {}
    assert len(spy.wrapped) == 0


async def test_reading_the_session_adds_vary_cookie_but_public_pages_do_not(browser: Browser) -> None:
    assert "cookie" in (await browser.get("/peek")).headers.get("vary", "").lower()
    assert "vary" not in (await browser.get("/public")).headers


# 2. usable in the request that creates it ------------------------------------------------------------


async def test_session_id_in_the_creating_request_matches_the_cookie(browser: Browser) -> None:
    response = await browser.get("/id")
    [header] = set_cookies(response)
    assert cookie_value(header) == response.text
    assert (await browser.get("/peek")).json()["data"] == {"visited": True}


# 3. strict mode ----------------------------------------------------------------------------------------


async def test_unknown_cookie_is_not_adopted(browser: Browser, spy: SpyStore) -> None:
    forged = "A" * 43
    browser.client.cookies.set("sessionid", forged)
    response = await browser.post("/set", params={"k": "a", "v": "1"})
    issued = cookie_value(set_cookies(response)[0])
    assert issued != forged
    assert spy.calls["load"] == 1


MALFORMED = ["", "a", "A" * 42, "A" * 44, "A" * 10_000, "../../etc/passwd", "..poc", "a/b", "a\\b", "%2e%2e%2f", "A" * 42 + "."]


@pytest.mark.parametrize("value", MALFORMED, ids=range(len(MALFORMED)))
async def test_malformed_cookie_never_reaches_the_store(
    browser: Browser, spy: SpyStore, value: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "coatcheck.security")
    response = await browser.get("/whoami", headers={"cookie": f"sessionid={value}".encode()})
    assert (response.status_code, response.text) == (200, "anon")
    assert spy.calls == {}
    assert all(value not in record.getMessage() for record in caplog.records if len(value) > 2)


async def test_one_bad_cookie_does_not_hide_the_session_cookie(browser: Browser) -> None:
    await browser.post("/login", params={"user": "alice"})
    sid = browser.session_id
    browser.client.cookies.clear()
    header = f'bad:name=1; =sessionid={"B" * 43}; sessionid={sid}; x="unterminated'
    assert (await browser.get("/whoami", headers={"cookie": header})).text == "alice"


async def test_duplicate_session_cookies_take_the_first_live_one(browser: Browser) -> None:
    await browser.post("/login", params={"user": "alice"})
    sid = browser.session_id
    browser.client.cookies.clear()
    for header in [f"sessionid={'C' * 43}; sessionid={sid}", f"sessionid={sid}; sessionid={'C' * 43}"]:
        assert (await browser.get("/whoami", headers={"cookie": header})).text == "alice"


async def test_c49_two_live_session_cookies_are_logged(browser: Browser, caplog: pytest.LogCaptureFixture) -> None:
    sids = []
    for user in ("alice", "bob"):
        browser.client.cookies.clear()
        await browser.post("/login", params={"user": user})
        sids.append(browser.session_id)
    browser.client.cookies.clear()
    with caplog.at_level(logging.INFO, logger="coatcheck.security"):
        first = await browser.get("/whoami", headers={"cookie": f"sessionid={sids[0]}; sessionid={sids[1]}"})
        again = await browser.get("/whoami", headers={"cookie": f"sessionid={sids[1]}; sessionid={sids[0]}"})
    assert (first.text, again.text) == ("alice", "bob")
    tossed = [r for r in caplog.records if "several live session cookies" in r.getMessage()]
    assert len(tossed) == 2 and all(r.levelno == logging.WARNING for r in tossed)
    assert not any(sid in r.getMessage() for r in caplog.records for sid in sids if sid)


async def test_r14_many_malformed_cookies_cost_one_log_line(browser: Browser, caplog: pytest.LogCaptureFixture) -> None:
    header = "; ".join(f"sessionid=bad{i}" for i in range(2000))  # about 30 KiB
    with caplog.at_level(logging.INFO, logger="coatcheck.security"):
        response = await browser.get("/whoami", headers={"cookie": header})
    assert response.text == "anon"
    [line] = [r for r in caplog.records if r.name == "coatcheck.security"]
    assert "2000 malformed" in line.getMessage()


# 4. Set-Cookie and cache headers -------------------------------------------------------------------------


async def test_set_cookie_attributes(browser: Browser, manager: SessionManager) -> None:
    response = await browser.post("/set", params={"k": "a", "v": "1"})
    [header] = set_cookies(response)
    assert re.fullmatch(r"sessionid=[A-Za-z0-9_-]{43}; Max-Age=(\d+); Path=/; Secure; HttpOnly; SameSite=Lax", header)
    max_age = int(re.findall(r"Max-Age=(\d+)", header)[0])
    assert 0 < max_age <= manager.config.idle_seconds
    assert "domain" not in header.lower()
    assert response.headers["cache-control"] == "no-store"
    assert "cookie" in response.headers["vary"].lower()


async def test_app_cache_control_is_kept(browser: Browser) -> None:
    response = await browser.get("/cached")
    assert response.headers.get_list("cache-control") == ["private, max-age=60"]
    assert set_cookies(response)


@pytest.mark.parametrize(
    ("app_value", "sent"),
    [
        ("public, max-age=3600", "private, max-age=3600"),
        ("max-age=600", "private, max-age=600"),
        ("s-maxage=600, max-age=60, must-revalidate", "private, max-age=60, must-revalidate"),
        ("no-cache", "private, no-cache"),
        ("public, no-store", "public, no-store"),
        ("Private", "Private"),
    ],
)
async def test_c39_set_cookie_is_never_storable_by_a_shared_cache(
    browser: Browser, app_value: str, sent: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_http, "_warned_cacheable", False)
    with caplog.at_level(logging.WARNING, logger="coatcheck"):
        for _ in range(3):
            browser.client.cookies.clear()
            response = await browser.get("/cached", params={"cc": app_value})
            assert set_cookies(response)
            assert response.headers.get_list("cache-control") == [sent]
    warnings = [r for r in caplog.records if "Cache-Control" in r.getMessage()]
    assert len(warnings) == (0 if sent == app_value else 1)


async def test_a_non_json_value_put_in_place_answers_500_naming_the_key_without_a_traceback(
    browser: Browser, caplog: pytest.LogCaptureFixture
) -> None:
    assert (await browser.get("/append")).status_code == 200
    with caplog.at_level(logging.ERROR, logger="coatcheck"):
        response = await browser.get("/append")
    assert response.status_code == 500 and not set_cookies(response) and "Traceback" not in response.text
    [line] = [r.getMessage() for r in caplog.records if r.name == "coatcheck"]
    assert "SessionValueError" in line and "session['cart']" in line
    assert (await browser.get("/peek")).json()["data"] == {"cart": []}


async def test_r17_a_change_after_the_response_started_is_logged_not_lost_silently(
    browser: Browser, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="coatcheck"):
        response = await browser.get("/stream")
    assert response.text == "first chunk\nsecond chunk\n"
    assert set_cookies(response)
    assert (await browser.get("/peek")).json()["data"] == {"before": True}
    [warning] = [r for r in caplog.records if "after its response started" in r.getMessage()]
    assert "'after'" in warning.getMessage()


@pytest.mark.parametrize(
    ("secure", "base", "expected"), [("auto", "http://testserver", False), ("auto", BASE, True), (False, BASE, False)]
)
async def test_secure_flag_follows_the_option(kind: str, clock: FakeClock, secure: Any, base: str, expected: bool) -> None:
    manager = SessionManager(MemoryStore(clock=clock), config=SessionConfig(cookie=CookieConfig(secure=secure)), clock=clock)
    browser = Browser(kind, manager, base_url=base)
    try:
        [header] = set_cookies(await browser.post("/set", params={"k": "a", "v": "1"}))
    finally:
        await browser.close()
    assert ("; Secure" in header) is expected


async def test_max_age_never_outlives_the_absolute_timeout(kind: str, clock: FakeClock) -> None:
    config = SessionConfig(idle_timeout=3600, absolute_timeout=8 * 3600, touch_interval=60)
    browser = Browser(kind, SessionManager(MemoryStore(clock=clock), config=config, clock=clock))
    start = clock()
    cookie_ends: list[float] = []
    try:
        while clock() < start + 8 * 3600:  # active every 20 minutes, so only the absolute timeout ends it
            for header in set_cookies(await browser.post("/set", params={"k": "t", "v": str(clock())})):
                cookie_ends.append(clock() + int(re.findall(r"Max-Age=(\d+)", header)[0]))
            clock.advance(1200)
    finally:
        await browser.close()
    assert len(cookie_ends) == 8 * 3600 // 1200 - 2  # no refresh once the absolute cap stops the expiry moving
    assert all(end <= start + 8 * 3600 for end in cookie_ends)
    assert cookie_ends[-1] == start + 8 * 3600


# 6. read-only requests and the throttled touch -----------------------------------------------------------


async def test_read_only_request_costs_one_read_and_touch_is_throttled(browser: Browser, spy: SpyStore, clock: FakeClock) -> None:
    await browser.post("/set", params={"k": "a", "v": "1"})
    spy.reset()
    response = await browser.get("/peek")
    assert spy.calls == {"load": 1}
    assert set_cookies(response) == []
    clock.advance(61)
    spy.reset()
    response = await browser.get("/peek")
    assert spy.calls == {"load": 1, "touch": 1}
    [header] = set_cookies(response)
    assert cookie_value(header) == browser.session_id


# 7. rotation, login, logout -------------------------------------------------------------------------------


async def test_login_fixation_attacker_id_is_anonymous(browser: Browser, kind: str, manager: SessionManager) -> None:
    await browser.post("/set", params={"k": "cart", "v": "1"})
    attacker_id = browser.session_id
    response = await browser.post("/login", params={"user": "victim"})
    assert cookie_value(set_cookies(response)[0]) != attacker_id
    assert (await browser.get("/whoami")).text == "victim"
    attacker = Browser(kind, manager)
    attacker.client.cookies.set("sessionid", attacker_id)
    try:
        assert (await attacker.get("/whoami")).text == "anon"
    finally:
        await attacker.close()


async def test_logout_deletes_server_side_and_clears_the_cookie(browser: Browser, spy: SpyStore) -> None:
    await browser.post("/login", params={"user": "alice"})
    old = browser.session_id
    response = await browser.post("/logout")
    [header] = set_cookies(response)
    assert header.startswith(
        "sessionid=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/; Secure; HttpOnly; SameSite=Lax"
    )
    assert len(spy.wrapped) == 0
    browser.client.cookies.set("sessionid", old)
    assert (await browser.get("/whoami")).text == "anon"


async def test_logout_uses_the_configured_path_and_domain(kind: str, clock: FakeClock) -> None:
    cookie = CookieConfig(path="/app", domain="example.com")
    browser = Browser(kind, SessionManager(MemoryStore(clock=clock), config=SessionConfig(cookie=cookie), clock=clock))
    try:
        set_header = set_cookies(await browser.post("/login", params={"user": "alice"}))[0]
        sid = cookie_value(set_header)
        clear_header = set_cookies(await browser.post("/logout", headers={"cookie": f"sessionid={sid}"}))[0]
    finally:
        await browser.close()
    for header in (set_header, clear_header):
        assert "; Path=/app; Domain=example.com;" in header


async def test_logout_without_a_session_creates_nothing(browser: Browser, spy: SpyStore) -> None:
    for _ in range(20):
        response = await browser.post("/logout")
        assert set_cookies(response) == []
    assert spy.writes == 0
    assert len(spy.wrapped) == 0


# 11. store failures --------------------------------------------------------------------------------------------


async def test_store_failure_answers_503_without_traceback_and_recovers(
    browser: Browser, spy: FlakyStore, caplog: pytest.LogCaptureFixture
) -> None:
    await browser.post("/set", params={"k": "a", "v": "1"})
    sid = browser.session_id
    spy.down = True
    for method, path in [("GET", "/peek"), ("POST", "/set?k=b&v=2")]:
        response = await browser.request(method, path)
        assert response.status_code == 503
        assert set_cookies(response) == []
        assert "Traceback" not in response.text
        assert sid is not None and sid not in response.text
    assert any(record.levelno == logging.ERROR for record in caplog.records)
    spy.down = False
    assert (await browser.get("/peek")).json()["data"] == {"a": "1"}


async def test_store_failure_at_commit_sends_no_cookie(browser: Browser, spy: FlakyStore) -> None:
    spy.down = True
    response = await browser.post("/set", params={"k": "a", "v": "1"})  # no cookie: the failure is the create
    assert response.status_code == 503
    assert set_cookies(response) == []
    assert response.text.startswith("503")


async def test_error_hook_is_replaceable(kind: str, spy: FlakyStore, manager: SessionManager) -> None:
    browser = Browser(kind, manager, on_error=lambda exc: (599, [("X-Why", type(exc).__name__)], b"down"))
    spy.down = True
    try:
        response = await browser.post("/set", params={"k": "a", "v": "1"})
    finally:
        await browser.close()
    assert (response.status_code, response.headers["x-why"], response.text) == (599, "StoreUnavailableError", "down")


# 12. 5xx ----------------------------------------------------------------------------------------------------


async def test_changes_made_while_answering_5xx_are_not_saved(browser: Browser) -> None:
    await browser.post("/set", params={"k": "a", "v": "1"})
    response = await browser.get("/fail")
    assert response.status_code == 500
    assert set_cookies(response) == []
    assert (await browser.get("/peek")).json()["data"] == {"a": "1"}


async def test_save_on_server_error_is_configurable(kind: str, clock: FakeClock) -> None:
    manager = SessionManager(MemoryStore(clock=clock), config=SessionConfig(save_on_server_error=True), clock=clock)
    browser = Browser(kind, manager)
    try:
        await browser.get("/fail")
        assert (await browser.get("/peek")).json()["data"] == {"during_error": True}
    finally:
        await browser.close()


# 8. concurrency on every store ------------------------------------------------------------------------------


async def test_concurrent_requests_each_keep_their_key_without_errors(kind: str, store: Any, clock: FakeClock) -> None:
    """A burst on one session (200 coroutines through ASGI, 50 threads through WSGI): commits of
    one session take turns in the process, so none runs out of compare-and-set attempts."""
    count = 200 if kind == "asgi" else 50
    manager = SessionManager(store, clock=clock)
    browser = Browser(kind, manager)
    try:
        await browser.post("/set", params={"k": "base", "v": "0"})
        cookie = {"cookie": f"sessionid={browser.session_id}"}
        if kind == "asgi":
            responses = await asyncio.gather(
                *(browser.post("/set", params={"k": f"k{i}", "v": str(i)}, headers=cookie) for i in range(count))
            )
        else:
            responses = _threaded(browser, cookie, count)
        assert [r.status_code for r in responses] == [200] * count
        data = (await browser.get("/peek")).json()["data"]
    finally:
        await browser.close()
    assert data == {"base": "0", **{f"k{i}": str(i) for i in range(count)}}


def _threaded(browser: Browser, cookie: dict[str, str], count: int) -> list[httpx.Response]:
    responses: list[httpx.Response] = []
    barrier = threading.Barrier(count)

    def one(i: int) -> None:
        with httpx.Client(transport=httpx.WSGITransport(app=browser.app), base_url=BASE) as client:
            barrier.wait(timeout=30)
            responses.append(client.post("/set", params={"k": f"k{i}", "v": str(i)}, headers=cookie))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return responses


@pytest.mark.parametrize(
    ("base_url", "warned"),
    [
        ("http://192.168.1.10:8000", True),
        ("http://app.internal", True),
        ("http://localhost:8000", False),
        ("http://127.0.0.1:8000", False),
        ("http://shop.localhost", False),
        ("https://192.168.1.10", False),
    ],
)
async def test_a_secure_cookie_over_plain_http_that_browsers_drop_is_warned_about_once(
    kind: str, clock: FakeClock, base_url: str, warned: bool, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_cookies, "_warned_insecure", False)
    browser = Browser(kind, SessionManager(MemoryStore(clock=clock), clock=clock), base_url=base_url)
    try:
        with caplog.at_level(logging.WARNING, logger="coatcheck"):
            for _ in range(3):
                browser.client.cookies.clear()
                assert set_cookies(await browser.post("/set", params={"k": "a", "v": "1"}))
    finally:
        await browser.close()
    lines = [r.getMessage() for r in caplog.records if "browsers drop it" in r.getMessage()]
    assert len(lines) == (1 if warned else 0)
    if warned:
        assert "secure='auto'" in lines[0]

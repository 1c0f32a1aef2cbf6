"""Checklist section L: errors and availability (C-53, C-54)."""

from __future__ import annotations

import pytest

from tests.apps import Browser, FlakyStore, set_cookies
from tests.security.conftest import issued_id, send_with, serve_actions, take_store_down_in_handler

pytestmark = pytest.mark.anyio

READS = [("GET", "/whoami"), ("GET", "/peek")]
WRITES = [("POST", "/set?k=role&v=admin"), ("POST", "/login?user=mallory"), ("POST", "/logout")]


@pytest.mark.parametrize("fails_at", ["load", "commit"])
async def test_c53_store_failure_never_authenticates_anyone_or_replaces_the_cookie(
    browser: Browser, spy: FlakyStore, fails_at: str
) -> None:
    """C-53 (ASVS 16.5.2/16.5.3, fail closed): while the store fails, at load (every request) or
    at commit (every request that must write), no request is answered as alice or as anyone
    else and no Set-Cookie replaces hers; once it is back her cookie names her unchanged session."""
    alice = issued_id(await browser.post("/login", params={"user": "alice"}))
    plain_app = browser.app.app
    if fails_at == "commit":
        take_store_down_in_handler(browser, spy)
    for method, url in WRITES if fails_at == "commit" else READS + WRITES:
        spy.down = fails_at == "load"
        response = await send_with(browser, method, url, alice)
        assert (response.status_code, set_cookies(response)) == (503, [])
        assert "alice" not in response.text and "mallory" not in response.text
    browser.app.app = plain_app
    spy.down = False
    response = await send_with(browser, "GET", "/peek", alice)
    assert response.json() == {"data": {}, "user": "alice"}


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_c54_changes_made_while_answering_5xx_are_not_persisted(browser: Browser, spy: FlakyStore, status: int) -> None:
    """C-54 (Django test_session_save_on_5xx): a handler that sets a key and answers 5xx
    persists nothing, neither on a live session nor by creating one."""
    serve_actions(browser)
    session_id = issued_id(await browser.post("/?k=base&v=1"))
    response = await send_with(browser, "POST", f"/?k=x&v=1&status={status}", session_id)
    assert (response.status_code, set_cookies(response)) == (status, [])
    assert (await send_with(browser, "GET", "/", session_id)).json()["data"] == {"base": "1"}
    records = len(spy.wrapped)
    response = await send_with(browser, "POST", f"/?k=x&v=1&status={status}", None)
    assert (set_cookies(response), len(spy.wrapped)) == ([], records)


async def test_c54_a_logout_answered_with_a_5xx_still_ends_the_session(browser: Browser) -> None:
    """C-54, coatcheck's decision: a requested logout is applied whatever the status, so an
    error page never leaves a session alive that the user asked to end."""
    serve_actions(browser)
    session_id = issued_id(await browser.post("/?k=base&v=1"))
    response = await send_with(browser, "POST", "/?logout=1&status=500", session_id)
    assert response.status_code == 500 and issued_id(response) == ""
    assert (await send_with(browser, "GET", "/", session_id)).json()["data"] == {}

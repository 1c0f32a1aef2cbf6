"""Checklist section K: logging and observability (C-52)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import httpx
import pytest

from coatcheck import SessionManager
from coatcheck._ids import log_handle, new_session_id
from coatcheck.testing import FakeClock
from tests.apps import Browser, FlakyStore
from tests.security.conftest import Gate, issued_id, plant, send_with, serve_actions

pytestmark = pytest.mark.anyio


def logged_text(record: logging.LogRecord) -> str:
    """Everything a log record can carry to a log file: message, arguments, traceback."""
    text = f"{record.getMessage()} {record.args!r} {record.exc_text or ''}"
    if record.exc_info:
        text += logging.Formatter().formatException(record.exc_info)
    return text


async def test_c52_no_raw_session_id_reaches_a_log_line_an_error_or_a_repr(
    browser: Browser, spy: FlakyStore, clock: FakeClock, manager: SessionManager, logs: pytest.LogCaptureFixture
) -> None:
    """C-52: through create, login, refresh, duplicate, malformed, logout, replay, expiry,
    corrupt record, store failure and an interrupted commit, no log line, exception message or
    repr holds a raw session ID; the events that are logged name sessions by hash."""
    ids = [issued_id(await browser.post("/set", params={"k": "a", "v": "1"}))]
    ids.append(issued_id(await browser.post("/login", params={"user": "alice"})))
    clock.advance(manager.config.touch_seconds + 1)
    await browser.get("/peek")
    browser.client.cookies.clear()
    ids.append(issued_id(await browser.post("/login", params={"user": "bob"})))
    await send_with(browser, "GET", "/whoami", None, headers={"cookie": f"sessionid={ids[1]}; sessionid={ids[2]}"})
    await send_with(browser, "GET", "/whoami", ids[1] + "x")
    await send_with(browser, "POST", "/logout", ids[1])
    await send_with(browser, "GET", "/whoami", ids[1])
    await send_with(browser, "GET", "/whoami", ids[2])
    clock.advance(manager.config.idle_seconds + 1)
    await send_with(browser, "GET", "/whoami", ids[2])
    ids.append(await plant(spy.wrapped, b"\xff corrupt", clock() + 600))
    await send_with(browser, "GET", "/peek", ids[-1])
    ids.append(issued_id(await send_with(browser, "POST", "/login?user=dave", None)))
    spy.down = True
    assert (await send_with(browser, "GET", "/whoami", ids[-1])).status_code == 503
    spy.down = False
    gate = Gate()
    serve_actions(browser, gate)

    def log_out() -> Awaitable[httpx.Response]:
        return send_with(browser, "POST", "/?logout=1", ids[-1])

    interrupted, _ = await gate.interleave(
        browser, "POST", "/?k=late&hold=1", log_out, headers={"cookie": f"sessionid={ids[-1]}"}
    )
    assert interrupted.status_code == 409
    texts = [logged_text(record) for record in logs.records]
    texts.append(repr(manager.load(f"sessionid={ids[0]}")) + repr(manager) + repr(manager.list_sessions("bob")))
    logged_events = ["corrupt", "malformed", "several live", "unknown", "store failure", "SessionInterruptedError"]
    assert [event for event in logged_events if not any(event in text for text in texts)] == []
    assert [session_id for session_id in ids if any(session_id in text for text in texts)] == []


async def _create(browser: Browser) -> tuple[httpx.Response, list[str]]:
    response = await browser.post("/set", params={"k": "a", "v": "1"})
    return response, [issued_id(response)]


async def _rotate(browser: Browser) -> tuple[httpx.Response, list[str]]:
    old = browser.session_id
    response = await browser.post("/login", params={"user": "alice"})
    return response, [old or "", issued_id(response)]


async def _destroy(browser: Browser) -> tuple[httpx.Response, list[str]]:
    old = browser.session_id
    return await browser.post("/logout"), [old or ""]


async def _invalid(browser: Browser) -> tuple[httpx.Response, list[str]]:
    unknown = new_session_id()
    return await send_with(browser, "GET", "/whoami", unknown), [unknown]


LIFECYCLE: dict[str, Callable[[Browser], Awaitable[tuple[httpx.Response, list[str]]]]] = {
    "create": _create,
    "rotate": _rotate,
    "destroy": _destroy,
    "invalid": _invalid,
}


async def test_c52_lifecycle_events_are_logged_with_a_hashed_id(
    browser: Browser, spy: FlakyStore, clock: FakeClock, manager: SessionManager, logs: pytest.LogCaptureFixture
) -> None:
    """C-52 (OWASP "Logging Sessions Life Cycle"): creation, rotation, destruction, expiry and
    invalid IDs each leave a log line naming the session by hash; a store error an error line."""
    unlogged = []
    for event, step in LIFECYCLE.items():
        logs.clear()
        _, concerned = await step(browser)
        if not any(log_handle(sid) in record.getMessage() for record in logs.records for sid in concerned if sid):
            unlogged.append(event)
    expiring = issued_id(await send_with(browser, "POST", "/login?user=erin", None))
    clock.advance(manager.config.idle_seconds + 1)
    logs.clear()
    await send_with(browser, "GET", "/whoami", expiring)
    if not any(log_handle(expiring) in record.getMessage() for record in logs.records):
        unlogged.append("expire")
    spy.down = True
    logs.clear()
    await send_with(browser, "GET", "/whoami", expiring)
    if not any(record.levelno >= logging.ERROR for record in logs.records):
        unlogged.append("store error")
    assert unlogged == []

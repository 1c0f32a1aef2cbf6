"""A fuzz target over the request path: a Cookie header and an action in, response headers out.

``check(data)`` runs one request through the WSGI and the ASGI middleware on a fresh memory store
that holds two live sessions (IDs ``A...`` and ``B...``, so inputs can reach the paths of a live
session), and raises AssertionError when an invariant breaks:

* nothing escapes the middleware: every request is answered 200;
* no response header holds CR, LF or another control character;
* at most one ``Set-Cookie``, either the session cookie with a well-formed ID and the default
  attributes, or its deletion; and only when the action changed the session;
* strict mode: a cookie never carries an ID the request sent, unless that ID named a live session.

The first byte picks the action, the rest (latin-1) is the Cookie header. ``scripts/fuzz`` runs it
under atheris (coverage-guided, bounded in time) and grows ``tests/fuzz/corpus``; the test suite
replays that corpus (tests/test_fuzz_corpus.py), so every input the fuzzer kept stays a
regression test. Run directly: ``python -m tests.fuzz.request_path [libFuzzer options] CORPUS``.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import Callable, MutableMapping
from typing import Any

from coatcheck import Session, SessionManager
from coatcheck.asgi import SessionMiddleware as ASGIMiddleware
from coatcheck.asgi import get_session as asgi_session
from coatcheck.stores.memory import MemoryStore
from coatcheck.testing import FakeClock
from coatcheck.wsgi import SessionMiddleware as WSGIMiddleware
from coatcheck.wsgi import get_session as wsgi_session

LIVE = ("A" * 43, "B" * 43)
_SET = re.compile(r"sessionid=([A-Za-z0-9_-]{43}); Max-Age=\d+; Path=/; Secure; HttpOnly; SameSite=Lax")
_CLEAR = "sessionid=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/; Secure; HttpOnly; SameSite=Lax"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _act(session: Session, action: int) -> bool:
    """Do action ``action % 6`` to ``session``: read, write, login, logout, rotate or clear.
    True if a cookie may follow (the action changed something the store holds)."""
    kind = action % 6
    if kind == 0:
        session.get("n")
        return False
    if kind == 1:
        session["n"] = session.get("n", 0) + 1
        return True
    if kind == 2:
        session.login("alice")
        return True
    loaded = not session.is_new
    if kind == 3:
        session.logout()
    elif kind == 4:
        session.rotate()
    else:
        session.clear()
    return loaded


def _manager() -> SessionManager:
    """A fresh memory store holding the two live sessions of LIVE."""
    clock = FakeClock(start=1_000_000.0)
    ids = iter(LIVE)
    seeding = SessionManager(MemoryStore(clock=clock), clock=clock, id_factory=lambda: next(ids))
    for _ in LIVE:
        session = seeding.new_session()
        session["n"] = 0
        seeding.commit(session)
    return SessionManager(seeding.store, clock=clock)


def _check_headers(headers: list[tuple[str, str]], cookie: str, wrote: bool) -> None:
    for name, value in headers:
        assert not _CONTROL.search(name) and not _CONTROL.search(value), (name, value)
    set_cookies = [value for name, value in headers if name.lower() == "set-cookie"]
    assert len(set_cookies) <= 1, set_cookies
    if not set_cookies:
        return
    assert wrote, f"a cookie for a request that changed nothing: {set_cookies}"
    [value] = set_cookies
    if value == _CLEAR:
        return
    match = _SET.fullmatch(value)
    assert match is not None, value
    issued = match.group(1)
    assert issued not in cookie or issued in LIVE, "strict mode: an ID the client chose was adopted"


def _wsgi(cookie: str, action: int) -> None:
    wrote = [False]

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        wrote[0] = _act(wsgi_session(environ), action)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    seen: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], object]:
        seen.append((status, headers))
        return lambda chunk: None

    middleware = WSGIMiddleware(app, _manager(), purge_interval=None)
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "wsgi.url_scheme": "https", "HTTP_COOKIE": cookie}
    body = b"".join(middleware(environ, start_response))
    [(status, headers)] = seen
    assert status.startswith("200") and body == b"ok", (status, body)
    _check_headers(headers, cookie, wrote[0])


def _asgi(cookie: str, action: int, loop: asyncio.AbstractEventLoop) -> None:
    wrote = [False]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        wrote[0] = _act(asgi_session(scope), action)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})

    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "scheme": "https", "method": "GET", "path": "/", "headers": [(b"cookie", cookie.encode("latin-1"))]}
    loop.run_until_complete(ASGIMiddleware(app, _manager(), purge_interval=None)(scope, receive, send))
    start, body = sent
    assert start["status"] == 200 and body["body"] == b"ok", sent
    _check_headers([(n.decode("latin-1"), v.decode("latin-1")) for n, v in start["headers"]], cookie, wrote[0])


_loop: asyncio.AbstractEventLoop | None = None


def check(data: bytes) -> None:
    """Run one fuzz input through both middlewares; AssertionError if an invariant breaks."""
    global _loop
    if not data:
        return
    if _loop is None:
        _loop = asyncio.new_event_loop()
    cookie = data[1:].decode("latin-1")
    _wsgi(cookie, data[0])
    _asgi(cookie, data[0], _loop)


def main() -> None:  # pragma: no cover - run by scripts/fuzz
    import logging

    import atheris

    logging.disable(logging.CRITICAL)  # the security log would print a line for most inputs
    atheris.instrument_all()
    # libFuzzer re-runs argv[0] for -merge: under ``python -m`` that is this file, not a program.
    atheris.Setup([os.environ.get("FUZZ_TARGET", sys.argv[0]), *sys.argv[1:]], check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

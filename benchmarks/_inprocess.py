"""One request through an app, in process, as a server would send it: the helpers that
:mod:`benchmarks.concurrent` and :mod:`benchmarks.bytecodes` share. A response other than 200
raises, so that no figure ever measures an error page."""

from __future__ import annotations

import asyncio
import inspect
import io
import sys
from collections.abc import Callable, Iterable
from typing import Any

_HEADERS = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"wrk"), (b"accept", b"*/*")]
_BODY = {"type": "http.request", "body": b"", "more_body": False}


async def asgi_request(app: Any, path: str, cookie: str | None) -> dict[str, Any]:
    """One GET through an ASGI ``app``, with uvicorn's ``receive``: the (empty) body, then, to an
    app that listens for a disconnect (Django's handler does), ``http.disconnect`` once the
    response is sent. Returns the ``http.response.start`` message."""
    headers = [*_HEADERS, *([(b"cookie", cookie.encode())] if cookie else [])]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": headers,
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000), "state": {}}  # fmt: skip
    sent: list[dict[str, Any]] = []
    state: list[Any] = [False, None]  # the body was received; a future a later receive() waits on

    async def receive() -> dict[str, Any]:
        if not state[0]:
            state[0] = True
            return dict(_BODY)
        if not sent or sent[-1]["type"] != "http.response.body" or sent[-1].get("more_body"):
            state[1] = asyncio.get_running_loop().create_future()
            await state[1]
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if state[1] is not None and message["type"] == "http.response.body" and not message.get("more_body"):
            state[1].set_result(None)

    await app(scope, receive, send)
    if sent[0]["status"] != 200:
        raise RuntimeError(f"GET {path} answered {sent[0]['status']}: the benchmark measures only successful requests")
    return sent[0]


def wsgi_request(app: Callable[..., Iterable[bytes]], path: str, cookie: str | None) -> tuple[str, list[tuple[str, str]]]:
    """One GET through a WSGI ``app`` with the environ gunicorn builds; the body is read and the
    response closed (Django finishes its request there). Returns the status and the headers."""
    environ = {"REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": path, "QUERY_STRING": "", "RAW_URI": path,
               "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1",
               "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "50000", "HTTP_HOST": "127.0.0.1:8000",
               "HTTP_USER_AGENT": "wrk", "HTTP_ACCEPT": "*/*", "wsgi.version": (1, 0), "wsgi.url_scheme": "http",
               "wsgi.input": io.BytesIO(b""), "wsgi.errors": sys.stderr, "wsgi.multithread": False,
               "wsgi.multiprocess": False, "wsgi.run_once": False}  # fmt: skip
    if cookie:
        environ["HTTP_COOKIE"] = cookie
    started: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
        started[:] = [status, headers]
        return lambda data: None

    result = app(environ, start_response)
    try:
        for _ in result:
            pass
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    if not started[0].startswith("200"):
        raise RuntimeError(f"GET {path} answered {started[0]}: the benchmark measures only successful requests")
    return started[0], started[1]


def asgi_cookie(start: dict[str, Any]) -> str | None:
    """The ``name=value`` of the Set-Cookie in an ASGI response start, if any."""
    return next((v.decode().split(";", 1)[0].strip() for n, v in start["headers"] if n.lower() == b"set-cookie"), None)


def wsgi_cookie(response: tuple[str, list[tuple[str, str]]]) -> str | None:
    """The ``name=value`` of the Set-Cookie in a WSGI response, if any."""
    return next((v.split(";", 1)[0].strip() for n, v in response[1] if n.lower() == "set-cookie"), None)


def is_asgi(app: Any) -> bool:
    """Whether ``app`` is an ASGI app (a coroutine function, or an object whose ``__call__`` is one)."""
    return inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(type(app).__call__)

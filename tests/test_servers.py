"""Real HTTP servers: the demo as its own process, and the ASGI middleware under uvicorn."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from coatcheck import SessionManager
from coatcheck.asgi import SessionMiddleware
from tests.apps import asgi_app
from tests.servers import Server


def _demo(store: str) -> Server:
    """``coatcheck demo`` on a free port over ``store``."""
    command = [sys.executable, "-m", "coatcheck.cli", "demo", "--port", "0", "--store", store]
    return Server(command, r"coatcheck demo on (http://127\.0\.0\.1:\d+)/")


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/demo.db"


def _visits(page: str) -> int:
    match = re.search(r'<strong id="visits">(\d+)</strong>', page)
    assert match, page
    return int(match.group(1))


def _token(page: str) -> str:
    match = re.search(r'<input type="hidden" name="csrf" value="([\w-]+)">', page)
    assert match, page
    return match.group(1)


def test_demo_login_welcome_counter_and_logout_everywhere(store_url: str) -> None:
    with (
        _demo(store_url) as demo,
        httpx.Client(base_url=demo.url, follow_redirects=True, timeout=10) as laptop,
        httpx.Client(base_url=demo.url, follow_redirects=True, timeout=10) as phone,
    ):
        first = laptop.get("/")
        assert 'name="username"' in first.text
        assert "set-cookie" not in first.headers
        page = laptop.post("/login", data={"username": "<b>alice</b>"}).text
        assert "Welcome, &lt;b&gt;alice&lt;/b&gt;" in page
        assert _visits(page) == 1
        assert _visits(laptop.get("/").text) == 2
        phone.post("/login", data={"username": "<b>alice</b>"})
        listing = phone.get("/").text
        assert listing.count('<li class="device') == 2
        assert listing.count(">This device<") == 1
        assert phone.post("/logout-everywhere").status_code == 403  # no CSRF token
        assert 'name="username"' in phone.post("/logout-everywhere", data={"csrf": _token(listing)}).text
        assert 'name="username"' in laptop.get("/").text


def test_demo_sessions_survive_a_restart(store_url: str) -> None:
    with _demo(store_url) as demo, httpx.Client(base_url=demo.url, follow_redirects=True, timeout=10) as client:
        client.post("/login", data={"username": "bob"})
        cookie = client.cookies["sessionid"]
    with _demo(store_url) as demo, httpx.Client(base_url=demo.url, timeout=10, cookies={"sessionid": cookie}) as client:
        assert "Welcome, bob" in client.get("/").text


def test_demo_refuses_an_unusable_store(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "coatcheck.cli", "demo", "--store", "nosuch://x"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 1
    assert "unknown store URL scheme 'nosuch'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def uvicorn_url(tmp_path: Path) -> Iterator[str]:
    manager = SessionManager(f"sqlite:///{tmp_path}/asgi.db")
    config = uvicorn.Config(SessionMiddleware(asgi_app(), manager), host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_asgi_middleware_under_uvicorn(uvicorn_url: str) -> None:
    with httpx.Client(base_url=uvicorn_url, timeout=10) as client:
        response = client.post("/login", params={"user": "carol"})
        sid = response.cookies.get("sessionid")
        assert sid is not None
        assert client.get("/whoami", headers={"cookie": f"sessionid={sid}"}).text == "carol"
        assert client.get("/whoami").text == "anon"

"""A smoke test against a real server: the Flask example under gunicorn (two worker processes on
one SQLite file) on 127.0.0.1, driven by httpx over plain http, then stopped."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import GUNICORN, Server


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[Server]:
    """``gunicorn examples.flask_app:app`` on a free loopback port, in ``tmp_path``, once both workers booted."""
    command = [sys.executable, "-m", "gunicorn", "examples.flask_app:app", "--bind", "127.0.0.1:0", "--workers", "2"]
    with Server([*command, "--graceful-timeout", "5"], GUNICORN, cwd=tmp_path) as server:
        for _ in range(2):
            server.wait_for("Booting worker")
        yield server
    assert server.process.returncode == 0


def test_the_flask_example_under_gunicorn(gunicorn: Server) -> None:
    with httpx.Client(base_url=gunicorn.url, timeout=10, follow_redirects=True) as browser:
        first = browser.get("/")
        assert 'name="username"' in first.text and "set-cookie" not in first.headers
        login = browser.post("/login", data={"username": "alice"})
        [set_cookie] = login.history[0].headers.get_list("set-cookie")
        assert "; HttpOnly; SameSite=Lax" in set_cookie and "Secure" not in set_cookie  # plain http, "auto"
        assert "Welcome, alice" in login.text and "Visit <strong>1</strong>" in login.text
        for visit in range(2, 6):  # whichever worker answers, it finds the session
            assert f"Visit <strong>{visit}</strong>" in browser.get("/").text
        logged_in = browser.cookies["session"]
        goodbye = browser.post("/logout")
        assert "You are logged out." in goodbye.text and 'name="username"' in goodbye.text
    with httpx.Client(base_url=gunicorn.url, timeout=10, cookies={"session": logged_in}) as stale:
        assert 'name="username"' in stale.get("/").text  # deleted server-side

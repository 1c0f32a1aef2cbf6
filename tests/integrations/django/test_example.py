"""examples/django_app runs from the command line on the port it is given: log in, welcome, log out."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import Server


@pytest.fixture
def example(tmp_path: Path) -> Iterator[Server]:
    """The example on a free port, its databases in a scratch directory."""
    command = [sys.executable, "-m", "examples.django_app", "--port", "0"]
    with Server(command, r"Serving on (http://127\.0\.0\.1:\d+)/", cwd=tmp_path) as server:
        yield server


def _token(page: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert match, page
    return match.group(1)


def _visits(page: str) -> int:
    match = re.search(r'<strong id="visits">(\d+)</strong>', page)
    assert match, page
    return int(match.group(1))


def test_example_login_welcome_logout(example: Server, tmp_path: Path) -> None:
    with httpx.Client(base_url=example.url, follow_redirects=True, timeout=10) as browser:
        form = browser.get("/")
        assert form.url.path == "/login"
        assert "sessionid" not in browser.cookies  # nobody logged in: no session, no cookie
        denied = browser.post("/login", data={"username": "demo", "password": "nope", "csrfmiddlewaretoken": _token(form.text)})
        assert "Wrong name or password." in denied.text
        welcome = browser.post("/login", data={"username": "demo", "password": "demo", "csrfmiddlewaretoken": _token(form.text)})
        assert "Welcome, demo" in welcome.text
        assert _visits(welcome.text) == 1
        cookie = browser.cookies["sessionid"]
        assert _visits(browser.get("/").text) == 2
        bye = browser.post("/logout", data={"csrfmiddlewaretoken": _token(welcome.text)})
        assert bye.url.path == "/login"
        assert "sessionid" not in browser.cookies
    with httpx.Client(base_url=example.url, timeout=10, cookies={"sessionid": cookie}) as replay:
        assert replay.get("/").headers["location"] == "/login?next=/"  # the old session is gone
    assert (tmp_path / "sessions.db").exists()

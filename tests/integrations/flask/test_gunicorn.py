"""A smoke test against a real server: the Flask example under gunicorn (two worker processes on
one SQLite file) on 127.0.0.1, driven by httpx over plain http, then stopped."""

from __future__ import annotations

import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[3]  # where the examples package is
STARTUP = 20.0  # seconds


class Gunicorn:
    """``gunicorn examples.flask_app:app`` on a free loopback port, in ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        command = [
            *(sys.executable, "-m", "gunicorn", "examples.flask_app:app"),
            *("--bind", "127.0.0.1:0", "--workers", "2", "--graceful-timeout", "5"),
            *("--pythonpath", str(ROOT), "--chdir", str(workdir)),
        ]
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)  # noqa: S603
        self.lines: queue.Queue[str] = queue.Queue()
        self.drainer = threading.Thread(target=self._drain, daemon=True)
        self.drainer.start()
        self.url = ""

    def wait_started(self) -> None:
        """Wait (at most ``STARTUP`` seconds) until it listens and both workers booted."""
        deadline = time.monotonic() + STARTUP
        seen = []
        while True:
            line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            seen.append(line)
            match = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", line)
            if match:
                self.url = f"http://127.0.0.1:{match.group(1)}"
                break
            assert self.process.poll() is None, f"gunicorn exited: {''.join(seen)}"
        workers = 0
        while workers < 2:  # both workers loaded the app (and checked the store)
            line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            workers += "Booting worker" in line

    def _drain(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self.drainer.join(timeout=5)  # the pipe reaches its end once every process holding it exited
        assert self.process.stderr is not None
        self.process.stderr.close()


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[Gunicorn]:
    server = Gunicorn(tmp_path)
    try:
        server.wait_started()
        yield server
    finally:
        server.stop()
    assert server.process.returncode == 0


def test_the_flask_example_under_gunicorn(gunicorn: Gunicorn) -> None:
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

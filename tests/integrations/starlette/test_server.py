"""The examples as real servers: ``python -m examples.<app> --port 0`` (uvicorn on 127.0.0.1) in a
process of its own, driven by httpx over the loopback, then stopped."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[3]


class Example:
    """``python -m examples.<name> --port 0`` run in ``directory`` (where its SQLite file lands)."""

    def __init__(self, name: str, directory: Path) -> None:
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        command = [sys.executable, "-m", f"examples.{name}", "--port", "0"]
        self.process = subprocess.Popen(  # noqa: S603
            command,
            cwd=directory,
            env={**os.environ, "PYTHONPATH": path},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.log: queue.Queue[str] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:  # uvicorn logs to stderr; read it all so the pipe never fills
            self.log.put(line)
        self.log.put("")  # end of output: the process exited

    def url(self, within: float) -> str:
        """The address uvicorn reports once it listens."""
        deadline = time.monotonic() + within
        seen: list[str] = []
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.log.get(timeout=left)
            except queue.Empty:
                break
            match = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", line)
            if match:
                return match.group(1)
            assert line, f"the server exited before it listened: {''.join(seen)}"
            seen.append(line)
        raise AssertionError(f"the server did not listen within {within} s: {''.join(seen)}")

    def stop(self) -> str:
        """Stop the server as a process manager would (SIGTERM); return what it logged meanwhile."""
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        finally:
            self.process.kill()  # a no-op once it exited
            self.process.wait(timeout=10)
            self.reader.join(timeout=10)
            assert self.process.stderr is not None
            self.process.stderr.close()
        return "".join(iter(self.log.get_nowait, ""))


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[[str], Example]]:
    """``start(name)``: the example running in ``tmp_path``; stopped after the test if still up."""
    started: list[Example] = []

    def run(name: str) -> Example:
        started.append(Example(name, tmp_path))
        return started[-1]

    yield run
    for server in started:
        if server.process.poll() is None:
            server.stop()


def test_the_fastapi_example_under_uvicorn(start: Callable[[str], Example], tmp_path: Path) -> None:
    server = start("fastapi_app")
    with httpx.Client(base_url=server.url(within=20), timeout=10) as client:
        assert client.get("/").status_code == 401
        response = client.post("/login", json={"name": "alice"})
        assert response.json() == {"user": "alice"}
        assert "Secure" not in response.headers["set-cookie"]  # secure="auto" over plain http
        assert client.get("/").json() == {"message": "Welcome, alice", "visits": 1}
        assert client.get("/").json() == {"message": "Welcome, alice", "visits": 2}
        assert client.post("/logout").json() == {"user": None}
        assert client.get("/").status_code == 401
    assert "Application shutdown complete." in server.stop()  # the lifespan's end: the store closed
    assert (tmp_path / "sessions.db").exists()


def test_the_starlette_example_under_uvicorn(start: Callable[[str], Example]) -> None:
    server = start("starlette_app")
    with httpx.Client(base_url=server.url(within=20), timeout=10, follow_redirects=True) as client:
        assert 'name="username"' in client.get("/").text
        assert "Welcome, alice" in client.post("/login", data={"username": "alice"}).text
        assert 'name="username"' in client.post("/logout").text
    assert "Application shutdown complete." in server.stop()

"""A server process for the smoke tests: started, its address read from its log, stopped."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
STARTUP = 30.0  # seconds a server may take to print its address (a busy 2-core machine)


class Process:
    """A server process whose address is read from its log; ``stop()`` ends it and waits."""

    def __init__(self, command: list[str], pattern: str, env: dict[str, str], cwd: Path | None = None) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - a fixed command of this test
            command, cwd=cwd or ROOT, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + STARTUP
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                pytest.fail(f"{command[2]} did not start within {STARTUP:.0f} s: {self.log}")
            match = re.search(pattern, line)
            if match:
                self.url = f"http://127.0.0.1:{match.group(1)}"
                return

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.log.append(line)
            self.lines.put(line)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        assert self.process.stdout is not None
        self.process.stdout.close()

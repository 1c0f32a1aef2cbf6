"""A server process for the smoke tests: started, its address read from its log, stopped; every wait has a deadline."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

import pytest

ROOT = Path(__file__).resolve().parents[1]  # where the examples and tests packages are
STARTUP = 30.0  # seconds a server may take to print a line waited for (a busy 2-core machine)
GUNICORN = r"Listening at: (http://127\.0\.0\.1:\d+)"
UVICORN = r"Uvicorn running on (http://127\.0\.0\.1:\d+)"


class Server:
    """``command`` run in ``cwd`` with ``env`` added, until the first group of ``address`` in its log gives ``url``.

    Its stdout and stderr are read to the end as one log, so the pipe never fills; ``ROOT`` leads its
    ``PYTHONPATH``. A context manager: ``stop()`` on exit.
    """

    def __init__(self, command: Sequence[str], address: str, env: Mapping[str, str] | None = None, cwd: Path = ROOT) -> None:
        self.name = " ".join(command)
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        self.process = subprocess.Popen(  # noqa: S603 - a fixed command of the test
            command,
            cwd=cwd,
            env={**os.environ, "PYTHONPATH": path, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        assert self.process.stdout is not None
        self.log: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()  # None: the end of the output
        self._reader = threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True)
        self._reader.start()
        try:
            self.url = self.wait_for(address).group(1)
        except BaseException:  # pytest.fail's exception too
            self.stop()
            raise

    def _read(self, pipe: IO[str]) -> None:
        try:
            with pipe:  # closed here, at its end: closing it under a blocked read would block too
                for line in pipe:
                    self.log.append(line)
                    self._lines.put(line)
        finally:
            self._lines.put(None)

    @property
    def output(self) -> str:
        """The log so far."""
        return "".join(self.log)

    def wait_for(self, pattern: str, within: float = STARTUP) -> re.Match[str]:
        """The next line of the log that matches ``pattern``; the test fails if none comes within ``within`` seconds."""
        deadline = time.monotonic() + within
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"{self.name} did not print {pattern!r} within {within:.0f} s; its log:\n{self.output}")
            if line is None:
                self._lines.put(None)  # any later wait ends at once too
                code = self.process.poll()
                pytest.fail(
                    f"{self.name} ended its output (exit code {code}) before printing {pattern!r}; its log:\n{self.output}"
                )
            if match := re.search(pattern, line):
                return match

    def stop(self, within: float = 10.0) -> str:
        """Terminate the process (SIGTERM), kill it if it still runs after ``within`` seconds; return its whole log."""
        self.process.terminate()  # a no-op once it exited
        try:
            self.process.wait(timeout=within)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=within)
        self._reader.join(timeout=within)  # the output ends once every process holding the pipe exited
        assert not self._reader.is_alive(), f"a child of {self.name} still holds its output; its log:\n{self.output}"
        return self.output

    def __enter__(self) -> Server:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.stop()

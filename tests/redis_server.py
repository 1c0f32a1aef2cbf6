"""A private ``redis-server`` for tests that kill, freeze or reconfigure one (never the shared 6379)."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis


def until(check: Callable[[], bool], deadline: float = 10.0) -> None:
    """Poll ``check`` until it holds, for at most ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while not check():
        assert time.monotonic() < end, "condition not reached in time"
        time.sleep(0.02)


class Server:
    """A private ``redis-server`` on a free port (and, optionally, a unix socket or TLS)."""

    def __init__(self, *extra: str, tls: Path | None = None) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        listen = ["--port", str(self.port)]
        if tls is not None:
            listen = ["--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no"]
            listen += ["--tls-cert-file", str(tls / "cert.pem"), "--tls-key-file", str(tls / "key.pem")]
        self.command = ["redis-server", *listen, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", *extra]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603

        def listening() -> bool:
            assert self.process is not None and self.process.poll() is None, "redis-server exited"
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", self.port)) == 0

        until(listening)
        return self

    def kill(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def freeze(self, frozen: bool) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP if frozen else signal.SIGCONT)

    def admin(self, **options: Any) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=2, **options)
